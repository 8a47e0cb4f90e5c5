"""Container networking end to end: none, host, bridge, container:NAME,
user-defined networks with names, published ports, and the clean-up of all of it.

Traffic goes only between the host and the tests' own containers, or between
those containers, on addresses minirt assigned on links it created.  The
networks use this session's prefix (``minirt.runtime.network.prefix()``,
derived from the per-session cgroup parent), so parallel runs never share a
bridge; every test removes what it made, and the module ends with a prune.
"""

import concurrent.futures
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time

import pytest

import minirt
from minirt.errors import SpecError
from minirt.kernel import nftables
from minirt.runtime import network
from minirt.runtime.container import Container

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A state root of this module's own, pruned (networks and all) at the end."""
    path = str(tmp_path_factory.mktemp("netroot"))
    yield path
    from minirt.runtime import prune
    prune.prune(path)
    assert not _our_links(path), "links left behind"


def _our_links(root, kind=""):
    tag = f"minirt {os.path.abspath(root)} {kind}"
    out = []
    for link in os.listdir("/sys/class/net"):
        try:
            with open(f"/sys/class/net/{link}/ifalias") as f:
                if f.read().startswith(tag):
                    out.append(link)
        except OSError:
            pass
    return out


def cli(root, *args, timeout=60, as_default=False):
    """``minirt --root ROOT ARGS``; ``as_default``: ROOT is the default root (MINIRT_ROOT)."""
    # stdout to a file: a detached container's monitor keeps minirt's stdout
    # open, so a pipe would never see end-of-file.
    os.makedirs(root, exist_ok=True)
    env = dict(os.environ, MINIRT_ROOT=root) if as_default else None
    with open(os.path.join(root, f".out-{os.getpid()}-{time.monotonic_ns()}"), "w+") as out:
        r = subprocess.run([sys.executable, "-m", "minirt", *([] if as_default else ["--root", root]), *args],
                           stdout=out, stderr=subprocess.PIPE, timeout=timeout, text=True, env=env)
        out.seek(0)
        r.stdout = out.read()
        os.unlink(out.name)
    return r


@pytest.fixture
def net(root):
    """A user-defined network for one test."""
    made = []

    def make(name, *args):
        r = cli(root, "network", "create", *args, name)
        assert r.returncode == 0, r.stderr
        made.append(name)
        return network.load(root, name)

    yield make
    for name in made:
        network.remove(root, name)


def sh(image, root, script, **kw):
    r = minirt.run(image, ["sh", "-c", script], root=root, **kw)
    assert r.exit_code == 0, r.stderr
    return r.stdout.decode()


def start(image, root, *cmd, **kw):
    return minirt.start(image, list(cmd), root=root, **kw)


def links_in(output):
    return sorted(line.split(":")[1].strip().split("@")[0] for line in output.splitlines()
                  if line[:1].isdigit() and ":" in line)


# -- modes -------------------------------------------------------------------------

def test_none_has_only_loopback(busybox_image, root):
    out = sh(busybox_image, root, "ip -o link; echo ---; ip -o -4 addr show lo", network="none")
    assert links_in(out.split("---")[0]) == ["lo"]
    assert "<LOOPBACK,UP," in out and " inet 127.0.0.1/8 " in out  # up: the kernel gave it its address


def test_bridge_is_the_default_with_eth0_address_and_route(busybox_image, root):
    out = sh(busybox_image, root, "ip -o link; echo ---; ip -o -4 addr show eth0; ip route; cat /etc/hosts")
    assert links_in(out.split("---")[0]) == ["eth0", "lo"]
    bridge = network.load(root, "bridge")
    subnet = ipaddress.ip_network(bridge["subnet"])
    address = out.split(" inet ")[1].split()[0]
    assert ipaddress.ip_interface(address).network == subnet
    assert f"default via {bridge['gateway']} dev eth0" in out
    assert f"{address.split('/')[0]}\t" in out  # its own name in /etc/hosts
    # the subnet collides with no route of the host but its own bridge's
    for line in open("/proc/net/route").read().splitlines()[1:]:
        dev, dest, mask = line.split()[0], line.split()[1], line.split()[7]
        if dev != bridge["bridge"] and int(mask, 16):
            route = ipaddress.ip_network((socket.inet_ntoa(bytes.fromhex(dest)[::-1]),
                                          bin(int(mask, 16)).count("1")))
            assert not route.overlaps(subnet)


def test_host_sees_the_hosts_links(busybox_image, root):
    before = set(os.listdir("/sys/class/net"))
    out = sh(busybox_image, root, "ip -o link", network="host")
    steady = before & set(os.listdir("/sys/class/net"))  # other test sessions add and remove links
    assert len(steady) > 1 and steady <= set(links_in(out))


def test_container_mode_shares_the_namespace(busybox_image, root):
    with start(busybox_image, root, "sleep", "30", name="netowner", network="none") as owner:
        inode = os.stat(f"/proc/{owner.state()['pid']}/ns/net").st_ino
        out = sh(busybox_image, root, "readlink /proc/self/ns/net", network="container:netowner")
        assert out.strip() == f"net:[{inode}]"


def test_host_reaches_container_and_containers_reach_each_other_by_name(busybox_image, root, net):
    net("nettest-a")
    with start(busybox_image, root, "sleep", "30", name="alpha", network="nettest-a") as a:
        address = a.state()["networks"][0]["address"]
        out = sh(busybox_image, root, "ping -c1 -W2 alpha >/dev/null && echo reached; cat /etc/hosts",
                 network="nettest-a", name="beta")
        assert out.startswith("reached\n")
        assert f"{address}\t" in out and " alpha" in out
        # alpha learnt beta's name while beta ran, and forgot it when beta was removed
        assert "beta" not in a.exec(["cat", "/etc/hosts"]).stdout.decode()


def test_names_appear_in_running_containers_as_others_start(busybox_image, root, net):
    net("nettest-b")
    with start(busybox_image, root, "sleep", "30", name="first", network="nettest-b") as first, \
            start(busybox_image, root, "sleep", "30", name="second", network="nettest-b") as second:
        assert first.exec(["ping", "-c1", "-W2", "second"]).exit_code == 0
        hosts = first.exec(["cat", "/etc/hosts"]).stdout.decode()
        assert second.state()["networks"][0]["address"] + "\t" in hosts


def test_networks_are_isolated_from_each_other(busybox_image, root, net):
    net("nettest-c")
    net("nettest-d")
    with start(busybox_image, root, "sleep", "30", name="gamma", network="nettest-c") as c:
        address = c.state()["networks"][0]["address"]
        out = sh(busybox_image, root, f"ping -c1 -W1 {address} >/dev/null && echo reached || echo isolated",
                 network="nettest-d")
        assert out == "isolated\n"
        # ... while on its own network it is reachable
        assert sh(busybox_image, root, f"ping -c1 -W1 {address} >/dev/null && echo reached",
                  network="nettest-c") == "reached\n"


def test_published_port_reaches_a_server_in_the_container(busybox_image, root):
    port = _free_port()
    with start(busybox_image, root, "sh", "-c", "while true; do echo hello from inside | nc -l -p 8080; done",
               ports=[f"127.0.0.1:{port}:8080"]) as c:
        assert _read_from(("127.0.0.1", port)) == b"hello from inside\n"
        # the same server, directly on the address minirt gave it
        assert _read_from((c.state()["networks"][0]["address"], 8080)) == b"hello from inside\n"
        table = network.prefix()
        assert any(str(port) in json.dumps(e) for e in nftables.set_elements(table, "ports_ip"))
    # removed with the container
    assert not any(str(port) in json.dumps(e) for e in nftables.set_elements(network.prefix(), "ports_ip"))
    assert not os.listdir(os.path.join(root, "ports"))


def test_twenty_containers_at_once_get_twenty_addresses(busybox_image, root):
    """Twenty minirt processes at once: the allocator's lock and O_EXCL keep them apart."""
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: cli(root, "run", "-d", busybox_image, "sleep", "30"), range(20)))
    ids = [r.stdout.strip() for r in results if r.returncode == 0]
    try:
        assert len(ids) == 20, [r.stderr for r in results if r.returncode]
        containers = [Container.load(root, cid) for cid in ids]
        addresses = [c.state()["networks"][0]["address"] for c in containers]
        inside = {c.exec(["sh", "-c", "ip -o -4 addr show eth0"]).stdout.decode().split()[3].split("/")[0]
                  for c in containers}
        assert len(set(addresses)) == 20 and inside == set(addresses)
    finally:
        cli(root, "rm", "-f", *ids)
    assert os.listdir(os.path.join(root, "networks", "bridge", "addresses")) == []


# -- errors: one line, exit 125, nothing changed ----------------------------------------

@pytest.mark.parametrize("args, message", [
    (["run", "--network", "nope", "IMAGE", "true"], "network nope not found"),
    (["run", "--network", "con/tainer", "IMAGE", "true"], "invalid --network"),
    (["run", "-p", "99999:80", "IMAGE", "true"], "is not a port number"),
    (["run", "-p", "80:0", "IMAGE", "true"], "is not a port number"),
    (["run", "-p", "localhost::80", "IMAGE", "true"], "is not an IPv4 address"),
    (["run", "-p", "80/sctp", "IMAGE", "true"], "protocol must be tcp or udp"),
    (["run", "--network", "none", "-p", "8080:80", "IMAGE", "true"], "need a bridge network"),
    (["network", "create", "--subnet", "10.0.0.1/33", "bad"], "invalid subnet"),
    (["network", "create", "--subnet", "not-a-subnet", "bad"], "invalid subnet"),
    (["network", "create", "bridge"], "pre-defined"),
    (["network", "rm", "nope"], "network nope not found"),
    (["run", "--network", "bridge", "--network", "none", "IMAGE", "true"], "cannot be combined"),
    (["run", "--network", "host", "--network", "bridge", "IMAGE", "true"], "cannot be combined"),
    (["run", "--network", "bridge", "--network", "bridge", "IMAGE", "true"], "given twice"),
    (["run", "--network", "bridge", "--network", "nope", "IMAGE", "true"], "network nope not found"),
    (["run", "--network", "name=bridge,ip=10.1.1.1", "IMAGE", "true"], "expected name=NETWORK"),
    (["run", "--network", "name=bridge,alias=a b", "IMAGE", "true"], "invalid hostname"),
    (["network", "connect", "bridge", "nope"], "nope"),
])
def test_bad_flags(busybox_image, root, args, message):
    before = _snapshot(root)
    r = cli(root, *[busybox_image if a == "IMAGE" else a for a in args])
    assert r.returncode == 125, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("minirt: ") and message in r.stderr
    assert _snapshot(root) == before


def test_the_plumber_goes_when_minirt_exits_before_asking_it(host):
    """The CLI forks its plumber (``network.head_start``) before the last flags
    and the image are checked; if minirt then exits, so must the plumber."""
    marker = f"plumber-{time.monotonic_ns()}"
    script = f"from minirt.runtime import network; network.head_start('bridge')  # {marker}"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    deadline = time.monotonic() + 5
    while host.processes_mentioning(marker):
        assert time.monotonic() < deadline, f"plumber left running: {host.processes_mentioning(marker)}"
        time.sleep(0.05)


def test_subnet_overlapping_a_host_route_is_refused(root):
    dest, plen, dev = next(r for r in network_routes() if r[1] > 0)
    r = cli(root, "network", "create", "--subnet", f"{dest}/{plen}", "clash")
    assert r.returncode == 125 and f"a route on {dev}" in r.stderr


def test_network_in_use_cannot_be_removed(busybox_image, root, net):
    net("nettest-e")
    with start(busybox_image, root, "sleep", "30", network="nettest-e") as c:
        r = cli(root, "network", "rm", "nettest-e")
        assert r.returncode == 125 and "has active endpoints" in r.stderr and c.id[:12] in r.stderr
        assert r.stderr.count("\n") == 1
        assert os.path.exists(f"/sys/class/net/{network.load(root, 'nettest-e')['bridge']}")


def test_network_ls_and_rm(busybox_image, root):
    r = cli(root, "network", "create", "--subnet", "10.95.250.0/24", "nettest-f")
    assert r.returncode == 0, r.stderr
    assert "nettest-f" in cli(root, "network", "ls").stdout and "10.95.250.0/24" in cli(root, "network", "ls").stdout
    out = sh(busybox_image, root, "ip -o -4 addr show eth0", network="nettest-f")
    assert " 10.95.250.2/24 " in out
    bridge = network.load(root, "nettest-f")["bridge"]
    assert cli(root, "network", "rm", "nettest-f").returncode == 0
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    assert "nettest-f" not in cli(root, "network", "ls").stdout


def test_prune_after_a_crash_removes_address_and_port(busybox_image, root):
    port = _free_port()
    env = dict(os.environ, MINIRT_CRASH_AT="network")
    r = subprocess.run([sys.executable, "-m", "minirt", "--root", root, "run", "-p", f"{port}:80",
                        busybox_image, "true"], env=env, capture_output=True, timeout=60)
    assert r.returncode == -9
    assert os.listdir(os.path.join(root, "networks", "bridge", "addresses"))
    assert cli(root, "system", "prune").returncode == 0
    assert not os.listdir(os.path.join(root, "ports"))
    assert not os.path.exists(os.path.join(root, "networks", "bridge"))
    assert not _our_links(root)


def test_removal_under_another_prefix_removes_the_rules_too(busybox_image, tmp_path):
    """The nft table goes with the bridge even when whoever removes the network
    runs with another MINIRT_NET_PREFIX (or cgroup parent) than its creator."""
    other = str(tmp_path / "other-root")
    env = dict(os.environ, MINIRT_NET_PREFIX="mrtab")
    for args in (["network", "create", "--subnet", "10.95.251.0/24", "tabnet"],
                 ["run", "--rm", "--network", "tabnet", busybox_image, "true"]):  # makes bridge and table
        r = subprocess.run([sys.executable, "-m", "minirt", "--root", other, *args], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    try:
        assert nftables.exists("mrtab")
        assert cli(other, "network", "rm", "tabnet").returncode == 0  # this session's prefix
        assert not nftables.exists("mrtab")
        assert not _our_links(other)
    finally:
        subprocess.run([sys.executable, "-m", "minirt", "--root", other, "system", "prune"], env=env,
                       capture_output=True, timeout=60)
        if nftables.exists("mrtab"):
            nftables.delete_table("mrtab")


# -- several state roots on one host ---------------------------------------------------

def test_two_state_roots_run_bridged_containers_side_by_side(busybox_image, tmp_path):
    """Each root is its process's default root (MINIRT_ROOT): their default
    networks get bridges of their own, and removing one root's network leaves
    the other's containers connected."""
    roots = [str(tmp_path / name) for name in ("one", "two")]
    ids = []

    def reaches_its_gateway(root, cid):
        r = cli(root, "exec", cid, "ping", "-c1", "-W2", network.load(root, "bridge")["gateway"], as_default=True)
        return r.returncode == 0

    try:
        for root in roots:
            r = cli(root, "run", "-d", busybox_image, "sleep", "60", as_default=True)
            assert r.returncode == 0, r.stderr
            ids.append(r.stdout.strip())
        bridges = [network.load(root, "bridge")["bridge"] for root in roots]
        assert bridges[0] != bridges[1]
        assert reaches_its_gateway(roots[0], ids[0]) and reaches_its_gateway(roots[1], ids[1])
        # root one goes away completely; root two's container keeps its network
        assert cli(roots[0], "rm", "-f", ids[0], as_default=True).returncode == 0
        assert cli(roots[0], "system", "prune", as_default=True).returncode == 0
        assert not os.path.exists(f"/sys/class/net/{bridges[0]}")
        assert reaches_its_gateway(roots[1], ids[1])
    finally:
        for root, cid in zip(roots, ids):
            cli(root, "rm", "-f", cid, as_default=True)
            cli(root, "system", "prune", as_default=True)


def test_a_deleted_roots_bridge_is_swept_by_prune(busybox_image, tmp_path):
    gone, kept = str(tmp_path / "gone"), str(tmp_path / "kept")
    assert cli(gone, "run", "--rm", busybox_image, "true").returncode == 0
    bridge = network.load(gone, "bridge")["bridge"]
    import shutil
    shutil.rmtree(gone)  # without network rm or system prune: its bridge stays
    assert os.path.exists(f"/sys/class/net/{bridge}")
    r = cli(kept, "system", "prune")
    assert r.returncode == 0 and f"Deleted link {bridge}" in r.stdout
    assert not os.path.exists(f"/sys/class/net/{bridge}")


def test_a_foreign_link_with_the_bridges_name_is_a_clear_error(busybox_image, root, net):
    bridge = net("nettest-g")["bridge"]
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        r = cli(root, "run", "--rm", "--network", "nettest-g", busybox_image, "true")
        assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
        assert f"bridge {bridge} exists and is not this state root's (it was not made by minirt)" in r.stderr
        assert f"ip link delete {bridge}" in r.stderr
    finally:
        subprocess.run(["ip", "link", "delete", bridge])  # the way out the message gives
    assert cli(root, "run", "--rm", "--network", "nettest-g", busybox_image, "true").returncode == 0


def test_port_parsing():
    from minirt.spec import parse_port
    assert parse_port("8080:80") == {"host_ip": "", "host_port": 8080, "container_port": 80, "proto": "tcp"}
    assert parse_port("127.0.0.1:53:53/udp")["proto"] == "udp"
    assert parse_port("80") == {"host_ip": "", "host_port": 0, "container_port": 80, "proto": "tcp"}
    assert parse_port("127.0.0.1::80/udp") == {"host_ip": "127.0.0.1", "host_port": 0, "container_port": 80,
                                               "proto": "udp"}
    for bad in ("99999:80", "80:0", "a:80", "1.2.3:80:80", "80:80/sctp", "::1:80:80", "0", "", "1:2:3:4"):
        with pytest.raises(SpecError):
            parse_port(bad)


# -- helpers ---------------------------------------------------------------------------

def network_routes():
    from minirt.kernel import links
    return links.routes()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_from(address, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(address, timeout=2) as s:
                data = s.recv(100)
                if data:
                    return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing from {address}")
        time.sleep(0.05)


def _snapshot(root):
    # Our bridges only: other sessions' links come and go, and so do veths of
    # containers that already exited (the kernel frees a netns asynchronously).
    links = sorted(_our_links(root, "network"))
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if not f.startswith(".out-"))
    table = network.prefix()
    ports = nftables.set_elements(table, "ports_any") + nftables.set_elements(table, "ports_ip")
    return links, files, json.dumps(ports)


# -- several networks, connect and disconnect -------------------------------------------

def _addresses(c):
    """{interface: address} inside the running container ``c``."""
    out = c.exec(["sh", "-c", "ip -o -4 addr show"]).stdout.decode().split("\n")
    return {words[1]: words[3].split("/")[0] for words in (line.split() for line in out) if words and words[1] != "lo"}


def _reaches(c, target):
    return c.exec(["ping", "-c1", "-W1", target]).exit_code == 0


def test_a_container_on_two_networks_reaches_a_peer_on_each_and_they_not_each_other(busybox_image, root, net):
    net("multi-a")
    net("multi-b")
    with start(busybox_image, root, "sleep", "30", name="on-a", network="multi-a") as on_a, \
            start(busybox_image, root, "sleep", "30", name="on-b", network="multi-b") as on_b, \
            start(busybox_image, root, "sleep", "30", name="both", network="multi-a", aliases=["front"],
                  more_networks=[{"name": "multi-b", "aliases": ["back"]}]) as both:
        eth0, eth1 = both.state()["networks"]
        assert (eth0["name"], eth0["interface"], eth1["name"], eth1["interface"]) == \
            ("multi-a", "eth0", "multi-b", "eth1")
        assert _addresses(both) == {"eth0": eth0["address"], "eth1": eth1["address"]}
        routes = both.exec(["ip", "route"]).stdout.decode().splitlines()
        assert [r.split()[:5] for r in routes if r.startswith("default")] == \
            [["default", "via", eth0["gateway"], "dev", "eth0"]]
        assert _reaches(both, "on-a") and _reaches(both, "on-b")
        # each peer knows it by its address and aliases on the network they share, and only those
        assert _reaches(on_a, "both") and _reaches(on_a, "front") and not _reaches(on_a, "back")
        assert _reaches(on_b, "back") and not _reaches(on_b, "front")
        hosts_a = on_a.exec(["cat", "/etc/hosts"]).stdout.decode()
        assert eth0["address"] + "\t" in hosts_a and eth1["address"] not in hosts_a and "on-b" not in hosts_a
        # and the two peers do not reach each other: the container between them routes nothing
        assert not _reaches(on_a, on_b.state()["networks"][0]["address"])
        described = json.loads(cli(root, "inspect", "both").stdout)[0]["NetworkSettings"]["Networks"]
        assert {n: (e["IPAddress"], e["Aliases"]) for n, e in described.items()} == \
            {"multi-a": (eth0["address"], ["front"]), "multi-b": (eth1["address"], ["back"])}


def test_the_command_lines_long_form_and_aliases(busybox_image, root, net):
    net("multi-c")
    net("multi-d")
    r = cli(root, "run", "-d", "--name", "longform", "--network", "multi-c", "--network-alias", "every",
            "--network", "name=multi-d,alias=only-d", busybox_image, "sleep", "30")
    assert r.returncode == 0, r.stderr
    try:
        networks = json.loads(cli(root, "inspect", "longform").stdout)[0]["NetworkSettings"]["Networks"]
        assert {n: e["Aliases"] for n, e in networks.items()} == \
            {"multi-c": ["every"], "multi-d": ["only-d", "every"]}
        assert [e["Interface"] for e in networks.values()] == ["eth0", "eth1"]
    finally:
        cli(root, "rm", "-f", "longform")


def test_connect_a_running_container_then_disconnect_it(busybox_image, root, net):
    net("multi-e")
    net("multi-f")
    with start(busybox_image, root, "sleep", "30", name="hub", network="multi-e") as hub, \
            start(busybox_image, root, "sleep", "30", name="peer-f", network="multi-f") as peer:
        assert not _reaches(hub, "peer-f")
        for args, message in [(("nope", "hub"), "network nope not found"),
                              (("--alias", "a b", "multi-f", "hub"), "invalid hostname 'a b'"),
                              (("--alias", "x", "bridge", "hub"), "only on user-defined networks")]:
            r = cli(root, "network", "connect", *args)
            assert (r.returncode, r.stderr.count("\n"), message in r.stderr) == (125, 1, True), r.stderr
        assert len(hub.state()["networks"]) == 1
        pid = hub.state()["pid"]
        r = cli(root, "network", "connect", "--alias", "hub-f", "multi-f", "hub")
        assert r.returncode == 0, r.stderr
        assert hub.state()["pid"] == pid  # no restart: hot-plugged
        eth1 = hub.state()["networks"][1]
        assert _addresses(hub) == {"eth0": hub.state()["networks"][0]["address"], "eth1": eth1["address"]}
        assert _reaches(hub, "peer-f") and _reaches(peer, "hub-f") and _reaches(peer, "hub")
        listed = json.loads(cli(root, "network", "inspect", "multi-f").stdout)[0]["Containers"]
        assert listed[hub.id]["Name"] == "hub" and listed[hub.id]["IPv4Address"] == eth1["address"] + "/24"
        # twice is an error, and changes nothing
        r = cli(root, "network", "connect", "multi-f", "hub")
        assert r.returncode == 125 and "already exists in network multi-f" in r.stderr
        assert len(hub.state()["networks"]) == 2

        r = cli(root, "network", "disconnect", "multi-f", "hub")
        assert r.returncode == 0, r.stderr
        assert list(_addresses(hub)) == ["eth0"]
        assert "eth1" not in hub.exec(["ip", "route"]).stdout.decode()
        assert not _reaches(hub, "peer-f") and not _reaches(peer, eth1["address"])
        assert "hub" not in peer.exec(["cat", "/etc/hosts"]).stdout.decode()
        assert eth1["address"] not in os.listdir(os.path.join(root, "networks", "multi-f", "addresses"))
        assert not os.path.exists(f"/sys/class/net/{eth1['veth']}")
        r = cli(root, "network", "disconnect", "multi-f", "hub")
        assert r.returncode == 125 and "is not connected to network multi-f" in r.stderr
        assert r.stderr.count("\n") == 1


def test_a_container_without_a_bridge_cannot_be_connected(busybox_image, root, net):
    net("multi-i")
    with start(busybox_image, root, "sleep", "30", name="alone", network="none") as c:
        r = cli(root, "network", "connect", "multi-i", "alone")
        assert r.returncode == 125 and "is on --network none: it cannot be connected" in r.stderr
        assert "networks" not in c.state() and not os.listdir(os.path.join(root, "networks", "multi-i", "addresses"))


def test_a_stopped_container_connected_gets_its_interfaces_when_it_starts_again(busybox_image, root, net):
    net("multi-g")
    net("multi-h")
    with start(busybox_image, root, "sleep", "30", name="sleeper", network="multi-g") as c, \
            start(busybox_image, root, "sleep", "30", name="peer-h", network="multi-h") as peer:
        assert cli(root, "stop", "-t", "0", "sleeper").returncode == 0
        assert cli(root, "network", "connect", "multi-h", "sleeper").returncode == 0
        joined = c.state()["networks"]
        assert cli(root, "start", "sleeper").returncode == 0
        assert c.state()["networks"] == joined
        assert _addresses(c) == {e["interface"]: e["address"] for e in joined}
        assert _reaches(c, "peer-h") and _reaches(peer, "sleeper")
        assert cli(root, "stop", "-t", "0", "sleeper").returncode == 0  # a restart keeps both, addresses and all
        assert cli(root, "start", "sleeper").returncode == 0
        assert _addresses(c) == {e["interface"]: e["address"] for e in joined}


def test_a_host_port_chosen_by_the_kernel(busybox_image, root):
    r = cli(root, "run", "-d", "--name", "anyport", "-p", "127.0.0.1::8080", "-p", "9090/udp", busybox_image,
            "sh", "-c", "while true; do echo hello from inside | nc -l -p 8080; done")
    assert r.returncode == 0, r.stderr
    try:
        lines = cli(root, "port", "anyport").stdout.splitlines()
        assert len(lines) == 2 and lines[0].startswith("8080/tcp -> 127.0.0.1:")
        assert lines[1].startswith("9090/udp -> 0.0.0.0:")
        port = int(lines[0].rsplit(":", 1)[1])
        assert port > 0 and cli(root, "port", "anyport", "8080").stdout == f"127.0.0.1:{port}\n"
        assert _read_from(("127.0.0.1", port)) == b"hello from inside\n"
        ports = json.loads(cli(root, "inspect", "anyport").stdout)[0]["NetworkSettings"]["Ports"]
        assert ports["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        r = cli(root, "port", "anyport", "81")
        assert r.returncode == 125 and "no public port '81/tcp' published" in r.stderr
    finally:
        cli(root, "rm", "-f", "anyport")
    assert not os.listdir(os.path.join(root, "ports"))


def test_network_inspect_prune_and_rm_of_a_network_in_use(busybox_image, root, net):
    assert cli(root, "network", "create", "--label", "team=x", "multi-unused").returncode == 0
    made = net("multi-used")
    with start(busybox_image, root, "sleep", "30", name="user", network="multi-used") as c:
        (described,) = json.loads(cli(root, "network", "inspect", "multi-used").stdout)
        assert described["Name"] == "multi-used" and described["Id"] == made["id"]
        assert described["Driver"] == "bridge"
        assert described["IPAM"]["Config"] == [{"Subnet": made["subnet"], "Gateway": made["gateway"]}]
        assert list(described["Containers"]) == [c.id] and described["Containers"][c.id]["Name"] == "user"
        assert json.loads(cli(root, "network", "inspect", "multi-unused").stdout)[0]["Labels"] == {"team": "x"}
        r = cli(root, "network", "inspect", "multi-used", "nope")  # (docker's: what it found, then the error)
        assert r.returncode == 1 and r.stderr == "minirt: network nope not found\n"
        assert [n["Name"] for n in json.loads(r.stdout)] == ["multi-used"]
        r = cli(root, "network", "prune", "-f")
        assert r.returncode == 0 and r.stdout == "Deleted Networks:\nmulti-unused\n"
        assert network.names(root).count("multi-used") == 1 and "multi-unused" not in network.names(root)
        r = cli(root, "network", "rm", "multi-used")
        assert r.returncode == 125 and "has active endpoints" in r.stderr
