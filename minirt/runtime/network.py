"""Container networks: which network, which address, which name, which port.

Lecture idea: the network namespace gives a container its own, empty network
stack (``minirt/kernel/links.py``); a *network* is the policy that connects
it: a bridge on the host with a subnet, an address for each container from
that subnet, NAT to the outside (``minirt/kernel/nftables.py``), and names.

``--network`` modes (docker's):

    none            only the loopback device
    host            no network namespace: the host's own links
    bridge          the default network: bridge ``minirt0``, subnet picked free
    slirp4netns     user-mode networking, the default for rootless runs (below)
    NAME            a user-defined network (``minirt network create NAME``), on
                    which containers find each other by name (/etc/hosts)
    container:NAME  share the network namespace of a running container

The default and user-defined networks combine: a container may be on several
(``--network a --network b``, ``network connect``), with an interface each.

A network's bridge (with its NAT rules and its route) is made when its first
container starts and stays until the network is removed (``network rm``, or
``system prune`` once no container uses it), as docker's ``docker0`` does:
making and deleting a bridge per container would cost ~100 ms each time.  A
bridge whose state root has disappeared (a test's temporary root, say) is
swept by the next minirt that makes a bridge.

On disk, under the state root (everything recorded before it is created, so
``minirt system prune`` can always undo it)::

    networks/<name>/network.json      name, id, bridge, subnet, gateway
    networks/<name>/addresses/<ip>    one file per address in use: its container
                                      (created with O_EXCL under the network's
                                      lock, so an address is never handed out twice)
    networks/<name>/last              the last address handed out; the next search
                                      starts after it, so a released address is not
                                      reused at once (its old MAC may still be cached)
    ports/<proto>-<port>              a published host port: its container and rule
    containers/<id>/state.json        "networks": the container's endpoints (network,
                                      address, interface, veth); "ports": as published

and host-wide, because bridges and routes are: ``/run/minirt/subnets/<subnet>``
(which state root's network has reserved a subnet) and ``/run/minirt/network.lock``.

The links minirt makes carry an *alias* (``ip link show`` prints it) naming the
state root and the owner, so cleaning up never touches another root's links.
"""

import os
import sys
import time

from minirt import lightjson
from minirt.errors import MinirtError, SpecError
from minirt.runtime import lifecycle, state
from minirt.spec import is_network_name, on_path

DEFAULT = "bridge"                  # the default network's name (docker's)
SLIRP = "slirp4netns"               # user-mode networking (and the program that does it)
POOL = "10.88.0.0/13"               # where free subnets are looked for
DEFAULT_PREFIXLEN, USER_PREFIXLEN = 20, 24  # 4093 and 253 containers
HOST_LOCK_DIR = "/run/minirt"       # bridges are host-wide: so is the lock that picks subnets


class NetworkError(MinirtError):
    pass


# -- names ------------------------------------------------------------------------

def prefix():
    """The prefix of everything minirt names on the host: links and the nft table.

    ``$MINIRT_NET_PREFIX`` if set; otherwise ``minirt``, or, under a cgroup
    parent of its own (the test suite sets one per session), a short prefix
    derived from it, so that parallel runs never share a bridge.
    """
    p = os.environ.get("MINIRT_NET_PREFIX")
    if p:
        if not (len(p) <= 7 and p[0].isalpha() and p.isascii() and p.isalnum() and p.islower()):
            raise SpecError(f"invalid MINIRT_NET_PREFIX {p!r}: 1 to 7 lower-case letters and digits")
        return p
    parent = os.environ.get("MINIRT_CGROUP_PARENT", "minirt")
    if parent == "minirt":
        return "minirt"
    import zlib
    return "mr" + f"{zlib.crc32(parent.encode()):08x}"[:5]


def veth_name(cid, index=0):
    """The host end of the veth pair of a container's interface eth<index> (at
    most 15 bytes, IFNAMSIZ - 1): ``<prefix>v<id>``, then ``_<index>`` for eth1
    and later (an id has no "_": no name of one container is another's)."""
    p, suffix = prefix(), f"_{index}" if index else ""
    return p + "v" + cid[:14 - len(p) - len(suffix)] + suffix


def _bridge_name(root, name, nid):
    """``minirt0`` for the default network of the host's own state root
    (``/var/lib/minirt``; docker's is ``docker0``).  Every other network, the
    default network of any other root included, is named by its id: two state
    roots on one host never want the same bridge (``$MINIRT_ROOT`` does not make
    a second "default" root)."""
    p = prefix()
    if name == DEFAULT and os.path.abspath(root) == state.SYSTEM_ROOT:
        return p + "0"
    return p + "-" + nid[:14 - len(p)]


def _table_of(bridge):
    """The nft table a bridge's rules are in: its name's prefix.  Not
    ``prefix()``: whoever removes the bridge may run under another one."""
    return bridge[:-1] if bridge.endswith("0") and "-" not in bridge else bridge.rsplit("-", 1)[0]


def _alias(root, what):
    return f"minirt {os.path.abspath(root)} {what}"


# -- checking a container's request, before anything exists ------------------------

def mode(spec):
    """"none", "host", "container" or "bridge" (the default and user networks)."""
    return _mode(spec.network)


def _mode(net):
    if net in ("none", "host", SLIRP):
        return net
    if net.startswith("container:"):
        return "container"
    return "bridge"


def validate(root, spec):
    """Refuse a request that cannot be honoured; change nothing."""
    check(root, spec.network, spec.ports, [n["name"] for n in spec.more_networks])


def check(root, network, ports, more=()):
    """``validate`` for the command line, before the image is even unpacked.
    ``more``: the networks after the first (``--network a --network b``)."""
    m = _mode(network)
    if more and m != "bridge":
        raise SpecError(f"--network {network} cannot be combined with other networks"
                        " (only the default and user-defined networks can)")
    for i, name in enumerate(more):
        if _mode(name) != "bridge":
            raise SpecError(f"--network {name} cannot be combined with other networks"
                            " (only the default and user-defined networks can)")
        if name in [network, *more[:i]]:
            raise SpecError(f"--network {name} is given twice")
    if ports and m not in ("bridge", SLIRP):
        raise SpecError(f"published ports (-p) need a bridge network or {SLIRP}, not --network {network}")
    if m == "container":
        _netns_pid(root, network.split(":", 1)[1])
        return
    if m == SLIRP:
        if not on_path(SLIRP):
            raise SpecError(f"--network {SLIRP}: the {SLIRP} command is missing (install the {SLIRP} package)")
        if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
            raise SpecError(f"--network {SLIRP}: /dev/net/tun is not open to this user"
                            " (udev makes it 0666; or use --network none)")
        for p in ports:
            _check_port_free(root, p)
        return
    if m != "bridge":
        return
    if os.geteuid() != 0:
        raise SpecError(f"--network {network} needs root: rootless containers have"
                        f" --network {SLIRP} (the default), none or host")
    for name in [network, *more]:
        if name != DEFAULT and not os.path.exists(_record_path(root, name)):
            raise SpecError(f"network {name} not found (see minirt network ls)")
    for p in ports:
        _check_port_free(root, p)


def _netns_pid(root, ref):
    """PID 1 of the running container ``ref``, whose network namespace we join."""
    info = state.load(root, state.resolve(root, ref))
    if not lifecycle.is_running(info):
        raise SpecError(f"--network container:{ref}: container is not running")
    return info["pid"]


def netns_fd(root, spec):
    """For container:NAME, an open fd of that container's network namespace.

    Opened by the parent before it forks: an fd names one namespace for good,
    a pid might be reused before the helper gets to it."""
    if mode(spec) != "container":
        return None
    pid = _netns_pid(root, spec.network.split(":", 1)[1])
    return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)


# -- networks ---------------------------------------------------------------------

def _networks_dir(root):
    return os.path.join(root, "networks")


def _record_path(root, name):
    return os.path.join(_networks_dir(root), name, "network.json")


def load(root, name):
    try:
        return state.read_json(_record_path(root, name))
    except (FileNotFoundError, NotADirectoryError):
        raise NetworkError(f"network {name} not found") from None


def names(root):
    try:
        return sorted(n for n in os.listdir(_networks_dir(root))
                      if os.path.exists(_record_path(root, n)))
    except FileNotFoundError:
        return []


def create(root, name, subnet=None, labels=None):
    """``minirt network create``: record the network (its bridge comes with its
    first container), with docker's ``labels``."""
    if not is_network_name(name) or name in ("none", "host", DEFAULT, SLIRP):
        raise SpecError(f"invalid network name {name!r}"
                        + (": a pre-defined network" if is_network_name(name) else ""))
    if os.geteuid() != 0:
        raise SpecError("minirt network create needs root")
    if subnet is not None:
        subnet = _parse_subnet(subnet)
    return _record(root, name, subnet, USER_PREFIXLEN, labels=labels)


def ensure(root, name):
    """The record of network ``name``; the default one is recorded on first use."""
    if os.path.exists(_record_path(root, name)):
        return load(root, name)
    if name != DEFAULT:
        raise NetworkError(f"network {name} not found")
    return _record(root, name, None, DEFAULT_PREFIXLEN, exist_ok=True)


def _record(root, name, subnet, prefixlen, exist_ok=False, labels=None):
    os.makedirs(_networks_dir(root), exist_ok=True)
    # Two locks: this root's (one creator of a network at a time) and the
    # host's (two roots or test sessions must not pick the same free subnet).
    with state.locked(_networks_dir(root), ".lock"), _host_lock():
        if os.path.exists(_record_path(root, name)):
            if exist_ok:
                return load(root, name)
            raise NetworkError(f"network with name {name} already exists")
        nid = os.urandom(32).hex()
        taken = _taken_subnets(root)
        if subnet is None:
            subnet = _free_subnet(prefixlen, taken)
        else:
            for other, what in taken:
                if subnet.overlaps(other):
                    raise SpecError(f"invalid subnet {subnet}: overlaps {other} ({what})")
        net = {"name": name, "id": nid, "bridge": _bridge_name(root, name, nid), "subnet": str(subnet),
               "gateway": str(next(subnet.hosts())), "prefixlen": subnet.prefixlen, "created": time.time(),
               "labels": dict(labels or {})}
        os.makedirs(os.path.join(_networks_dir(root), name, "addresses"), exist_ok=True)
        state.write_json(_record_path(root, name), net)
        _claim_subnet(root, net)
    return net


# The bridge, its nft elements and sysctls: made with the network's first
# container, under the network's lock (as are allocation and release).

def _bring_up(root, net):
    if _bridge_ok(root, net):
        return
    from minirt.kernel import links, nftables  # (nftables imports subprocess)

    try:
        with _host_lock():
            _sweep_orphans()
            _claim_subnet(root, net)  # again: after a reboot /run is empty
            table = prefix()
            nftables.ensure(table)
            nftables.add_network(table, net["bridge"], net["subnet"])
            if links.exists(net["bridge"]):
                raise _not_ours(net)
            links.create_bridge(net["bridge"], net["gateway"], net["prefixlen"],
                                alias=_alias(root, "network " + net["id"]))
        # 127.0.0.1 may leave through the bridge (DNAT of published ports, see
        # nftables.py); and the host routes the containers' traffic out.
        links.set_sysctl(f"net/ipv4/conf/{net['bridge']}/route_localnet", 1)
        links.set_sysctl("net/ipv4/ip_forward", 1)
    except (OSError, nftables.NftError) as e:
        raise NetworkError(f"network {net['name']}: making bridge {net['bridge']}:"
                           f" {getattr(e, 'strerror', None) or e}") from None


def _not_ours(net):
    """A link has the name of our bridge but is not ours (the sweep has already
    removed bridges of state roots that are gone): say whose it is, and the way out."""
    from minirt.kernel import links

    bridge, words = net["bridge"], links.alias(net["bridge"]).split()
    owner = (f"it is the bridge of state root {words[1]}" if len(words) == 4 and words[0] == "minirt"
             else "it was not made by minirt")
    return NetworkError(f"network {net['name']}: bridge {bridge} exists and is not this state root's"
                        f" ({owner}); if nothing uses it, delete it: ip link delete {bridge}")


def _tear_down(root, net):
    from minirt.kernel import links

    if _bridge_ok(root, net):  # (a link of that name that is not ours stays)
        links.delete_link(net["bridge"])
    with _host_lock():
        _forget_bridge(_table_of(net["bridge"]), net["bridge"], net["subnet"])


def _forget_bridge(table, bridge, subnet):
    """Take a bridge out of the nft rules; the table goes with the last bridge."""
    from minirt.kernel import nftables

    if nftables.exists(table):
        nftables.delete_network(table, bridge, subnet)
        if not nftables.set_elements(table, "bridges"):
            nftables.delete_table(table)


def sweep_orphans():
    """Delete bridges whose network record is gone from their state root
    (a root deleted without ``network rm`` or ``system prune``); return their
    names.  Done by every minirt that makes a bridge, by ``system prune``,
    and by the test suite at its end."""
    with _host_lock():
        return _sweep_orphans()


def _sweep_orphans():
    from minirt.kernel import links

    swept = []
    for link in links.links():
        words = links.alias(link).split()
        if len(words) != 4 or words[0] != "minirt" or words[2] != "network":
            continue
        _, root, _, nid = words
        if any(_record_id(root, n) == nid for n in names(root)):
            continue
        subnet = _bridge_subnet(link)
        links.delete_link(link)
        if subnet:
            _forget_bridge(_table_of(link), link, subnet)
        swept.append(link)
    return swept


def _record_id(root, name):
    try:
        return load(root, name).get("id")
    except (NetworkError, ValueError):
        return None


def _bridge_subnet(link):
    """The subnet of a bridge's connected route (from /proc/net/route)."""
    from minirt.kernel import links

    for dest, plen, dev in links.routes():
        if dev == link and plen > 0:
            return f"{dest}/{plen}"
    return None


def _bridge_ok(root, net):
    """The network's bridge exists and is this root's (by its alias)."""
    from minirt.kernel import links

    return links.exists(net["bridge"]) and links.alias(net["bridge"]) == _alias(root, "network " + net["id"])


def _host_lock():
    os.makedirs(HOST_LOCK_DIR, exist_ok=True)
    return state.locked(HOST_LOCK_DIR, "network.lock")


# -- subnets: free on the host, and reserved host-wide ------------------------------
#
# A network's bridge (and so its route) exists only while it has containers,
# so the host's routes alone do not show which subnets are taken.  Every
# network therefore reserves its subnet in /run/minirt/subnets/, naming its
# state root; a reservation whose network no longer exists there is stale.

def _subnets_dir():
    return os.path.join(HOST_LOCK_DIR, "subnets")


def _claim_subnet(root, net):
    """Reserve ``net``'s subnet host-wide (under the host lock)."""
    os.makedirs(_subnets_dir(), exist_ok=True)
    path = os.path.join(_subnets_dir(), net["subnet"].replace("/", "_"))
    me = {"root": os.path.abspath(root), "network": net["name"], "id": net["id"]}
    try:
        other = state.read_json(path)
    except (OSError, ValueError):
        other = None
    if other and other != me and _reservation_live(other):
        raise NetworkError(f"network {net['name']}: subnet {net['subnet']} is in use by network"
                           f" {other['network']} of {other['root']}")
    if other != me:
        state.write_json(path, me)


def _release_subnet(root, net):
    path = os.path.join(_subnets_dir(), net["subnet"].replace("/", "_"))
    try:
        if state.read_json(path).get("id") == net["id"]:
            os.unlink(path)
    except (OSError, ValueError):
        pass


def _reservation_live(r):
    try:
        return state.read_json(_record_path(r["root"], r["network"])).get("id") == r["id"]
    except (OSError, ValueError, KeyError):
        return False


def _parse_subnet(text):
    import ipaddress

    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise SpecError(f"invalid subnet {text!r}: {e}") from None
    if net.version != 4 or not 8 <= net.prefixlen <= 29:
        raise SpecError(f"invalid subnet {text!r}: an IPv4 network with a prefix length of 8 to 29")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified:
        raise SpecError(f"invalid subnet {text!r}: not usable for containers")
    return net


def _taken_subnets(root):
    """What a new subnet must not overlap: the host's routes, and the subnets
    reserved by minirt networks (of any state root)."""
    import ipaddress

    from minirt.kernel import links

    taken = [(ipaddress.ip_network(f"{dest}/{plen}", strict=False), f"a route on {dev}")
             for dest, plen, dev in links.routes() if plen > 0]
    try:
        reserved = os.listdir(_subnets_dir())
    except FileNotFoundError:
        reserved = []
    for entry in reserved:
        try:
            r = state.read_json(os.path.join(_subnets_dir(), entry))
        except (OSError, ValueError):
            continue
        if _reservation_live(r):
            taken.append((ipaddress.ip_network(entry.replace("_", "/")), f"network {r['network']}"))
        else:
            try:
                os.unlink(os.path.join(_subnets_dir(), entry))
            except FileNotFoundError:
                pass
    return taken


def _free_subnet(prefixlen, taken):
    import ipaddress

    for candidate in ipaddress.ip_network(POOL).subnets(new_prefix=prefixlen):
        if not any(candidate.overlaps(t) for t, _ in taken):
            return candidate
    raise NetworkError(f"no free /{prefixlen} subnet left in {POOL}; give one with --subnet")


def remove(root, name, force_default=False):
    """``minirt network rm``: refused while a container has an address in it."""
    if name == DEFAULT and not force_default:
        raise NetworkError(f"{DEFAULT} is a pre-defined network and cannot be removed")
    net = load(root, name)
    with state.locked(_networks_dir(root), ".lock"), state.locked(_net_dir(root, name), "lock"):
        users = [a["id"][:12] for a in _allocations(root, name).values()
                 if os.path.isdir(os.path.join(state.containers_dir(root), a["id"]))]
        if users:  # (docker's words, and which containers)
            raise NetworkError(f"error while removing network: network {name} id {net['id']} has active"
                               f" endpoints (container{'s' if len(users) > 1 else ''} {', '.join(sorted(users))})")
        _tear_down(root, net)
        # Renamed away first: from that instant the network is gone for everyone.
        doomed = os.path.join(_networks_dir(root), f".removing-{net['id']}")
        os.rename(os.path.join(_networks_dir(root), net["name"]), doomed)
    with _host_lock():
        _release_subnet(root, net)
    state.remove_tree(doomed)


def listing(root):
    """(network record, number of containers) for ``minirt network ls``."""
    return [(load(root, n), len(_allocations(root, n))) for n in names(root)]


def describe(root, name):
    """``minirt network inspect``: docker's record of network ``name``."""
    import datetime

    net = load(root, name)
    prefixlen = net["subnet"].split("/")[1]
    return {"Name": name, "Id": net["id"],
            "Created": datetime.datetime.fromtimestamp(net["created"], datetime.timezone.utc).isoformat(),
            "Scope": "local", "Driver": "bridge", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {},
                     "Config": [{"Subnet": net["subnet"], "Gateway": net["gateway"]}]},
            "Internal": False, "Attachable": False, "Ingress": False,
            "Containers": {a["id"]: {"Name": a.get("name") or "", "IPv4Address": f"{ip}/{prefixlen}",
                                     "IPv6Address": "", "Aliases": a.get("aliases", [])}
                           for ip, a in sorted(_allocations(root, name).items()) if "id" in a},
            "Options": {"com.docker.network.bridge.name": net["bridge"]}, "Labels": net.get("labels", {})}


def prune_networks(root):
    """``minirt network prune``: remove the user-defined networks no container
    is on; their names."""
    gone = []
    for name in names(root):
        if name != DEFAULT and not _allocations(root, name):
            try:
                remove(root, name)
            except NetworkError:
                continue  # a container joined it meanwhile
            gone.append(name)
    return gone


# -- addresses ----------------------------------------------------------------------

def _net_dir(root, name):
    return os.path.join(_networks_dir(root), name)


def _allocations(root, name):
    """ip -> {"id", "name", "hostname"} for every address in use on network ``name``."""
    out = {}
    base = os.path.join(_net_dir(root, name), "addresses")
    try:
        entries = os.listdir(base)
    except FileNotFoundError:
        return out
    for ip in entries:
        if ip.startswith("."):
            continue
        try:
            out[ip] = state.read_json(os.path.join(base, ip))
        except (OSError, ValueError):
            pass  # half-written by a process that crashed: prune removes it
    return out


def _allocate(root, net, owner):
    """The next free address of ``net`` for ``owner`` (a dict with the container's id)."""
    # Addresses as 32-bit numbers (ipaddress would add its import to every bridged start).
    network, prefixlen = net["subnet"].split("/")
    base = os.path.join(_net_dir(root, net["name"]), "addresses")
    used = set(os.listdir(base)) | {net["gateway"]}
    last_path = os.path.join(_net_dir(root, net["name"]), "last")
    try:
        with open(last_path) as f:
            last = _number(f.read().strip())
    except (OSError, ValueError):
        last = _number(network)
    first, end = _number(network) + 1, _number(network) + (1 << (32 - int(prefixlen))) - 1  # end: broadcast
    size = end - first
    for i in range(size):
        ip = _dotted(first + (last - first + 1 + i) % size)
        if ip in used:
            continue
        try:
            fd = os.open(os.path.join(base, ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(lightjson.dumps(owner))
        state.write_text(last_path, ip + "\n")
        return ip
    raise NetworkError(f"network {net['name']}: no free address left in {net['subnet']}")


def _number(address):
    import _socket

    try:
        return int.from_bytes(_socket.inet_aton(address), "big")
    except OSError:
        raise ValueError(f"invalid IPv4 address {address!r}") from None


def _dotted(number):
    import _socket

    return _socket.inet_ntoa(number.to_bytes(4, "big"))


# -- a container's endpoints: one interface per network ------------------------------
#
# A container may be on several networks (``--network a --network b``, or
# ``network connect`` later): one veth pair per network, whose container end
# is eth0, eth1, ... in the order joined; the first carries the default route.
# Each endpoint is recorded in the container's state.json ("networks"), so a
# restart plugs in the same interfaces with the same addresses.

def _wanted(spec):
    """[(network name, aliases)] a bridged container asks for at create, eth0 first."""
    return [(spec.network, spec.aliases)] + [(n["name"], n["aliases"]) for n in spec.more_networks]


def endpoints(info):
    """The endpoints recorded in a container's state (``info``), eth0 first."""
    if "networks" in info:
        return info["networks"]
    old = info.get("network")  # (recorded by a minirt of one network per container)
    return [dict(old, interface="eth0", aliases=[], network_id="")] if old and "address" in old else []


def setup(container):
    """At create: the container's addresses, published ports and /etc/hosts.

    Records the endpoints PID 1 configures (state.json's "networks") and the
    published ports with their host ports (state.json's "ports").
    """
    spec, root = container.spec, container.root
    hosts_path = os.path.join(container.dir, "hosts")
    m = mode(spec)
    if m == "host":
        try:
            with open("/etc/hosts") as f:
                state.write_text(hosts_path, f.read())
        except OSError:
            pass
        return
    if m == "container":
        target = state.resolve(root, spec.network.split(":", 1)[1])
        try:
            with open(os.path.join(state.containers_dir(root), target, "hosts")) as f:
                state.write_text(hosts_path, f.read())
        except OSError:
            pass
        return
    if m == SLIRP:
        _use_slirp_dns(os.path.join(container.dir, "resolv.conf"))
        state.update(container.dir, ports=[_choose_port(root, p) for p in spec.ports])
        return
    if m != "bridge":
        return
    # (removal finds addresses and ports by their records, even if we die half-way)
    joined = [_join(root, ensure(root, name), spec, aliases, index)
              for index, (name, aliases) in enumerate(_wanted(spec))]
    ports = [_publish(root, spec.id, p, joined[0]["address"]) for p in spec.ports]
    state.update(container.dir, networks=joined, ports=ports)
    _write_hosts(root, {spec.id} | _peers(root, [n for n, _ in _wanted(spec)]))


def _join(root, net, spec, aliases, index):
    """An address on ``net`` for the container, and its endpoint's record."""
    owner = {"id": spec.id, "name": spec.name, "hostname": spec.hostname, "aliases": list(aliases)}
    with state.locked(_net_dir(root, net["name"]), "lock"):
        _bring_up(root, net)
        address = _allocate(root, net, owner)
    return {"name": net["name"], "network_id": net["id"], "bridge": net["bridge"], "address": address,
            "prefixlen": net["prefixlen"], "gateway": net["gateway"], "interface": f"eth{index}",
            "veth": veth_name(spec.id, index), "aliases": list(aliases)}


def attach(joined, pid, root, cid):
    """At start, once the container's network namespace exists (PID 1 is ``pid``):
    a veth pair per endpoint, its host end on the bridge.  PID 1 configures
    the interfaces itself."""
    from minirt.kernel import links

    veths = []
    for endpoint in joined:
        links.delete_link(endpoint["veth"])  # left by a crash of an earlier start
        veths.append(_cable(root, endpoint, pid, cid))
    try:
        if _plumber:
            _ask_plumber(veths)
        else:
            for veth in veths:
                links.create_veth(**veth)
    except OSError as e:
        raise NetworkError(f"connecting container {cid[:12]} to network"
                           f" {', '.join(e['name'] for e in joined)}: {e.strerror or e}") from None


def _cable(root, endpoint, pid, cid):
    """The arguments of ``links.create_veth`` for ``endpoint``; its bridge is
    brought up if it is not (a restart after a reboot or a prune)."""
    net = load(root, endpoint["name"])
    if not _bridge_ok(root, net):
        with state.locked(_net_dir(root, net["name"]), "lock"):
            _bring_up(root, net)
    return {"host_name": endpoint["veth"], "bridge": net["bridge"], "netns_pid": pid,
            "peer_name": endpoint["interface"], "alias": _alias(root, "container " + cid)}


def connect(container, name, aliases=()):
    """``minirt network connect``: put ``container`` on network ``name`` too.

    A running container gets the new interface at once (a veth pair
    hot-plugged into its network namespace, configured from there); a created
    or stopped one gets it when it starts.  Peers' /etc/hosts learn its name."""
    from minirt.kernel import links

    spec, root, info = container.spec, container.root, container.state()
    who = spec.name or spec.id[:12]
    if mode(spec) != "bridge":
        raise NetworkError(f"container {who} is on --network {spec.network}: it cannot be connected"
                           " to another network")
    if name == DEFAULT and aliases:
        raise SpecError("network-scoped aliases are supported only on user-defined networks")
    net = ensure(root, name)
    joined = endpoints(info)
    if any(e["name"] == name for e in joined):
        raise NetworkError(f"endpoint with name {who} already exists in network {name}")
    used = {e["interface"] for e in joined}
    index = next(i for i in range(len(joined) + 1) if f"eth{i}" not in used)
    endpoint = _join(root, net, spec, aliases, index)
    state.update(container.dir, change=lambda d: {"networks": endpoints(d) + [endpoint]})
    if lifecycle.is_running(info):
        try:
            links.create_veth(**_cable(root, endpoint, info["pid"], spec.id))
            _inside(info["pid"], lambda: links.configure(endpoint["interface"], endpoint["address"],
                                                         endpoint["prefixlen"]))
        except OSError as e:
            _leave(container, endpoint)
            raise NetworkError(f"connecting container {who} to network {name}: {e.strerror or e}") from None
    _write_hosts(root, {spec.id} | _peers(root, [name]))
    return endpoint


def disconnect(container, name):
    """``minirt network disconnect``: take ``container`` off network ``name``
    (its interface goes at once if it runs, with the routes through it)."""
    who = container.spec.name or container.spec.id[:12]
    load(container.root, name)  # (an unknown network says so first)
    endpoint = next((e for e in endpoints(container.state()) if e["name"] == name), None)
    if endpoint is None:
        raise NetworkError(f"container {who} is not connected to network {name}")
    _leave(container, endpoint)
    _write_hosts(container.root, {container.spec.id} | _peers(container.root, [name]))


def _leave(container, endpoint):
    """Unplug ``endpoint`` and give its address back."""
    from minirt.kernel import links

    links.delete_link(endpoint["veth"])  # (and with it the container's end)
    state.update(container.dir, change=lambda d: {
        "networks": [e for e in endpoints(d) if e["interface"] != endpoint["interface"]]})
    with state.locked(_net_dir(container.root, endpoint["name"]), "lock"):
        try:
            os.unlink(os.path.join(_net_dir(container.root, endpoint["name"]), "addresses", endpoint["address"]))
        except FileNotFoundError:
            pass


def _inside(pid, function):
    """Call ``function`` in the network namespace of process ``pid`` (this
    thread enters it, and comes back to its own)."""
    from minirt.kernel import libc

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(target, libc.CLONE_NEWNET)
        try:
            return function()
        finally:
            libc.setns(own, libc.CLONE_NEWNET)
    finally:
        os.close(own)
        os.close(target)


# The command line's head start.  A fresh ``minirt run`` must import
# pyroute2's netlink classes before it can make the veth pair (~15 ms, half of
# what the rest of a container start costs).  So, as soon as it knows that the
# container goes on a bridge, the CLI forks a *plumber*: a helper that imports
# them while minirt opens the image, creates the container and clones PID 1,
# and then makes the veth pair when told PID 1's pid.  (A program using the
# API pays the import once and needs no plumber.)

_plumber = None  # in the CLI: (pid, request pipe, answer pipe) of the plumber


def head_start(network):
    """Fork the plumber if ``network`` is a bridge network and we are root."""
    global _plumber
    if _mode(network) != "bridge" or os.geteuid() != 0:
        return
    request_r, request_w = os.pipe2(os.O_CLOEXEC)
    answer_r, answer_w = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(request_w)  # or we would never see the end of the requests
        os.close(answer_r)
        _plumb(parent, request_r, answer_w)  # never returns
    os.close(request_r)
    os.close(answer_w)
    _plumber = (pid, request_w, answer_r)


def _plumb(parent, request_r, answer_w):
    """The plumber: import, wait for the request (EOF: minirt needs no veth
    after all), make the veth pairs, answer "" or the first error."""
    import _signal as signal

    from minirt.kernel import libc, links

    try:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # die with minirt
        if os.getppid() != parent:  # ... which may have died before we asked
            return
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(s, signal.SIG_IGN)  # minirt forwards these to the container
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # hold nobody's output open
            os.dup2(null, fd)
        links.netlink_ready()
        with os.fdopen(request_r, "rb") as requests:
            request = requests.readline()  # (PID 1 holds the pipe too, until it execs: no EOF)
        answer = b""
        try:
            for veth in lightjson.loads(request) if request else ():
                links.create_veth(**veth)
        except OSError as e:
            answer = f"{e.errno} {e.strerror}".encode()
        os.write(answer_w, answer)
    finally:
        os._exit(0)


def _ask_plumber(veths):
    global _plumber
    pid, request_w, answer_r = _plumber
    _plumber = None
    try:
        os.write(request_w, lightjson.dumps(veths).encode() + b"\n")
        os.close(request_w)
        with os.fdopen(answer_r, "rb") as answers:
            answer = answers.read()
    finally:
        os.waitpid(pid, 0)
    if answer:
        code, _, message = answer.decode().partition(" ")
        raise OSError(int(code), message)


def release(root, cid):
    """At removal: published ports and addresses; peers' /etc/hosts.

    The veth pairs need nothing: deleting either end deletes both, and the
    kernel deletes the container's ends with its network namespace."""
    for key, owner in _port_reservations(root).items():
        if owner.get("id") == cid:
            _unpublish(root, key)
    left = []
    for name in names(root):
        base = os.path.join(_net_dir(root, name), "addresses")
        mine = [ip for ip, a in _allocations(root, name).items() if a.get("id") == cid]
        if not mine:
            continue
        with state.locked(_net_dir(root, name), "lock"):
            for ip in mine:
                os.unlink(os.path.join(base, ip))
        left.append(name)
    _write_hosts(root, _peers(root, left))


# -- user-mode networking: slirp4netns ----------------------------------------------
#
# Without root nothing can be made on the host's side: no bridge, no veth.
# slirp4netns (Debian package slirp4netns; rootless podman's default) runs as
# the user, outside the container, and makes a tap device, tap0, inside the
# container's network namespace.  What the container sends into it, a TCP/IP
# stack in user space (libslirp) turns into ordinary socket calls of the
# slirp4netns process: the container's connections leave from the user's own
# sockets, with the user's rights.  The container is 10.0.2.100/24; its
# gateway 10.0.2.2 is also the host's 127.0.0.1 (rootless only: as root that
# would hand the host's loopback-only services to the container); 10.0.2.3
# forwards DNS.  ``-p HOST:CTR`` asks slirp4netns, over its API socket, to
# listen on the host port and forward what comes in.
#
# slirp4netns must not outlive the container, however that ends and whoever
# dies first.  It exits when its --exit-fd hangs up: the read end of a pipe
# whose write end only a *watcher* holds, a small Python that waits for a pidfd
# of PID 1 to become readable (PID 1 has exited) and then exits.  (A pidfd
# itself hangs up only once PID 1 is reaped, and only since Linux 6.9.)

SLIRP_ADDRESS, SLIRP_DNS = "10.0.2.100", "10.0.2.3"


def _use_slirp_dns(path):
    with open(path) as f:
        kept = [line for line in f.read().splitlines() if not line.startswith("nameserver")]
    state.write_text(path, "\n".join([f"nameserver {SLIRP_DNS}"] + kept) + "\n")


def start_slirp(container_dir, pid, ports):
    """slirp4netns for the container whose PID 1 is ``pid``; returns once tap0
    is configured and ``ports`` are published."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    pid1 = os.pidfd_open(pid)
    slirp = [SLIRP, "--configure", "--mtu=65520", f"--ready-fd={ready_w}", f"--exit-fd={exit_r}"]
    # (relative to the container's directory: a socket's path may have only 107 bytes)
    slirp += ["--api-socket", "slirp4netns.sock"] if ports else []
    slirp += ["--disable-host-loopback"] if os.geteuid() == 0 else []
    slirp += [str(pid), "tap0"]
    try:
        _spawn_detached(container_dir, (lambda: os.execvp(SLIRP, slirp), (ready_w, exit_r)),
                        (lambda: _watch(pid1), (pid1, exit_w)))
    finally:
        for fd in (ready_w, exit_r, exit_w, pid1):
            os.close(fd)
    with os.fdopen(ready_r, "rb") as ready:
        if ready.read(1) != b"1":
            raise NetworkError(f"{SLIRP} failed: {_last_line(os.path.join(container_dir, 'slirp4netns.log'))}")
    for p in ports:
        _slirp_forward(container_dir, p)


def _watch(pidfd):
    """The watcher: hold on (to the fds we were given) until the pidfd is readable."""
    wait = f"import select; select.select([{pidfd}], [], [])"
    try:  # a fresh, small interpreter rather than this copy of minirt
        os.execv(sys.executable, [sys.executable, "-S", "-P", "-c", wait])
    except OSError:  # not executable from here (as in container._become_monitor): wait in this copy
        exec(wait)


def _spawn_detached(directory, *programs):
    """Run each ``(function, fds to keep)`` of ``programs`` in a process of its
    own, in ``directory``: nobody's children (forked by a child that exits at
    once: no zombies for us to reap), in a session of their own (Ctrl-C on our
    terminal is not for them), their output in ``directory/slirp4netns.log``."""
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            os.chdir(directory)
            log = os.open(SLIRP + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            for function, fds in programs:
                if os.fork() == 0:
                    try:
                        start = 3  # let go of all else (a function that does not exec holds on)
                        for fd in sorted(fds) + [os.sysconf("SC_OPEN_MAX")]:
                            os.closerange(start, fd)
                            start = fd + 1
                        for fd in fds:
                            os.set_inheritable(fd, True)
                        function()
                    except OSError as e:
                        os.write(2, f"{e.strerror}\n".encode())
                    finally:
                        os._exit(0)
        except OSError as e:
            os.write(2, f"{e.strerror}\n".encode())
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def _last_line(path):
    try:
        with open(path) as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else "it exited without saying why"


def _slirp_forward(container_dir, p):
    """One published port, through slirp4netns's API socket (a JSON request)."""
    import _socket as socket

    request = {"execute": "add_hostfwd",
               "arguments": {"proto": p["proto"], "host_addr": p["host_ip"] or "0.0.0.0",
                             "host_port": p["host_port"], "guest_port": p["container_port"]}}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    directory = os.open(container_dir, os.O_PATH | os.O_CLOEXEC)
    try:
        s.connect(f"/proc/self/fd/{directory}/slirp4netns.sock")  # a short path to a long one
        s.sendall(lightjson.dumps(request).encode())
        s.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: s.recv(4096), b""))
    except OSError as e:
        answer = lightjson.dumps({"error": {"desc": f"{SLIRP}'s API socket: {e.strerror}"}}).encode()
    finally:
        s.close()
        os.close(directory)
    error = lightjson.loads(answer or b"{}").get("error")
    if error or not answer:
        raise NetworkError(f"publishing port {p['host_port']}/{p['proto']}:"
                           f" {(error or {}).get('desc', 'no answer from ' + SLIRP)}")


# -- /etc/hosts ---------------------------------------------------------------------

def _peers(root, networks):
    """The ids of the containers on the user-defined ``networks`` (the default
    network's containers do not see each other's names)."""
    return {a["id"] for name in networks if name != DEFAULT
            for a in _allocations(root, name).values() if "id" in a}


def _write_hosts(root, cids):
    """Rewrite /etc/hosts of the containers ``cids``.

    A container lists itself (each of its addresses) and, on every
    user-defined network it is on, every other container there by name,
    hostname, aliases on that network and short id; on the default network
    only itself (as docker).  The file is bind-mounted into running
    containers, so it is rewritten in place — a rename would leave the
    container looking at the old inode.  One writer at a time (a lock of the
    state root's): a file is never written from an older view than the last.
    """
    from minirt.runtime.container import HOSTS

    if not cids:
        return
    os.makedirs(_networks_dir(root), exist_ok=True)
    with state.locked(_networks_dir(root), ".hosts.lock"):
        every = [(name, _allocations(root, name)) for name in names(root)]
        for cid in cids:
            seen = {}
            for name, allocations in every:
                if any(a.get("id") == cid for a in allocations.values()):
                    seen.update((ip, a) for ip, a in allocations.items() if name != DEFAULT or a.get("id") == cid)
            lines = []
            for ip, a in sorted(seen.items(), key=lambda item: _number(item[0])):
                aliases = [n for n in (a.get("hostname"), a.get("name"), *a.get("aliases", ()), a["id"][:12]) if n]
                lines.append(f"{ip}\t{' '.join(dict.fromkeys(aliases))}\n")
            directory = os.path.join(state.containers_dir(root), cid)
            try:
                hostname = state.read_json(os.path.join(directory, "config.json")).get("hostname") or cid[:12]
            except (OSError, ValueError):
                continue  # being removed
            base = HOSTS.format(hostname=hostname).splitlines(keepends=True)
            if any(a.get("id") == cid for a in seen.values()):  # its own address names it
                base = [line for line in base if line != f"127.0.0.1\t{hostname}\n"]
            _rewrite_in_place(os.path.join(directory, "hosts"), "".join(base + lines))


def _rewrite_in_place(path, text):
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return  # the container is being removed
    try:
        # Write, then cut: a reader sees old or new lines, never an empty file.
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


# -- published ports ----------------------------------------------------------------

def _ports_dir(root):
    return os.path.join(root, "ports")


def _port_key(p):
    return f"{p['proto']}-{p['host_port']}"


def _port_reservations(root):
    out = {}
    try:
        entries = os.listdir(_ports_dir(root))
    except FileNotFoundError:
        return out
    for key in entries:
        if key.startswith("."):
            continue
        try:
            out[key] = state.read_json(os.path.join(_ports_dir(root), key))
        except (OSError, ValueError):
            out[key] = {}
    return out


def _check_port_free(root, p):
    owner = _port_reservations(root).get(_port_key(p))
    if owner and os.path.isdir(os.path.join(state.containers_dir(root), owner.get("id", "-"))):
        raise SpecError(f"port {p['host_port']}/{p['proto']} is already published by container {owner['id'][:12]}")
    _bind(p)


def _bind(p):
    """Bind a socket to ``p``'s host address and port, and let go; the port
    bound (the one the kernel chose, for port 0)."""
    import socket

    kind = socket.SOCK_STREAM if p["proto"] == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((p["host_ip"] or "0.0.0.0", p["host_port"]))
        except OSError as e:
            raise SpecError(f"port {p['host_ip'] or '0.0.0.0'}:{p['host_port']}/{p['proto']}:"
                            f" {e.strerror.lower() if e.strerror else e}") from None
        return s.getsockname()[1]


def _choose_port(root, p):
    """``p`` itself; or, without a host port (``-p 80``), ``p`` with one the
    kernel picks, as docker does: bind port 0 and see which it gave (from
    its ephemeral range, net.ipv4.ip_local_port_range), one no container of
    this root has published."""
    if p["host_port"]:
        return p
    for _ in range(100):
        chosen = dict(p, host_port=_bind(p))
        if _port_key(chosen) not in _port_reservations(root):
            return chosen
    raise NetworkError(f"no free host port for {p['container_port']}/{p['proto']}")


def _publish(root, cid, p, address):
    """Reserve and publish ``p``; return it, with its host port chosen if it had none."""
    from minirt.kernel import nftables

    os.makedirs(_ports_dir(root), exist_ok=True)
    while True:  # (a chosen port may be taken by another minirt meanwhile: choose again)
        chosen = _choose_port(root, p)
        record = dict(chosen, id=cid, address=address, table=prefix())
        try:  # the reservation is the record: made before the rule, exclusive
            fd = os.open(os.path.join(_ports_dir(root), _port_key(chosen)),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            break
        except FileExistsError:
            if p["host_port"]:
                raise SpecError(f"port {p['host_port']}/{p['proto']} is already published") from None
    with os.fdopen(fd, "w") as f:
        f.write(lightjson.dumps(record))
    try:
        nftables.publish(record["table"], p["host_ip"], p["proto"], chosen["host_port"], address, p["container_port"])
    except nftables.NftError as e:
        raise NetworkError(f"publishing port {chosen['host_port']}/{p['proto']}: {e}") from None
    return chosen


def _unpublish(root, key):
    from minirt.kernel import nftables

    record = _port_reservations(root).get(key) or {}
    proto, _, port = key.partition("-")
    table = record.get("table") or prefix()
    if nftables.exists(table):
        nftables.unpublish(table, record.get("host_ip", ""), proto, port)
    try:
        os.unlink(os.path.join(_ports_dir(root), key))
    except FileNotFoundError:
        pass


# -- system prune -------------------------------------------------------------------

def prune(root, running):
    """After crashes: addresses, ports and veths whose container is gone or not
    running; then networks no container uses (as ``docker system prune``).
    ``running`` is the set of ids of running containers."""
    from minirt.kernel import links

    done = []
    existing = set(state.container_ids(root))
    for key, owner in _port_reservations(root).items():
        if owner.get("id") not in existing:
            _unpublish(root, key)
    for name in names(root):
        stale = [ip for ip, a in _allocations(root, name).items() if a.get("id") not in existing]
        base = os.path.join(_net_dir(root, name), "addresses")
        broken = [ip for ip in os.listdir(base) if not ip.startswith(".") and ip not in _allocations(root, name)]
        if stale or broken:
            with state.locked(_net_dir(root, name), "lock"):
                for ip in stale + broken:
                    try:
                        os.unlink(os.path.join(base, ip))
                    except FileNotFoundError:
                        pass
    containers, networks = _alias(root, "container "), _alias(root, "network ")
    recorded = set()
    for name in names(root):
        try:
            recorded.add(load(root, name)["id"])
        except (NetworkError, KeyError):
            pass
    for link in links.links():
        alias = links.alias(link)
        if ((alias.startswith(containers) and alias[len(containers):] not in running)
                or (alias.startswith(networks) and alias[len(networks):] not in recorded)):
            links.delete_link(link)
            done.append(f"Deleted link {link}")
    for name in names(root):
        if not _allocations(root, name):
            try:
                remove(root, name, force_default=True)
                done.append(f"Deleted network {name}")
            except MinirtError:
                pass
    for name in os.listdir(_networks_dir(root)) if os.path.isdir(_networks_dir(root)) else ():
        if name.startswith(".removing-"):
            state.remove_tree(os.path.join(_networks_dir(root), name))
    if os.geteuid() == 0:  # and bridges of other state roots that are gone
        done += [f"Deleted link {link} (its state root is gone)" for link in sweep_orphans()]
    return done
