"""User namespaces: rootless containers and ``--userns=remap``.

Rootless: the test driver (root) runs ``minirt`` as the user nobody through
``setpriv`` — a real unprivileged user, no capabilities, no supplementary
groups.  Inside, nobody is root (uid_map ``0 65534 1``); the layer store is the
rootless one, the state is under the given ``--root``, no cgroup is made, and
asking for a limit on a host that has not delegated cgroups is a clear error.
Given a delegated cgroup2 subtree (``delegated``), the container's cgroup is
made, limited, joined and removed in it.

Remap (as root): root inside is uid 100000 outside, as the host sees it.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import minirt.api
from minirt.kernel import cgroups
from minirt.runtime.container import Container

from .conftest import join_cgroup
from .test_crash import wait_for

pytestmark = pytest.mark.privileged

NOBODY = 65534


def image(home):
    return os.path.join(home, "busybox.tar")


# -- rootless -------------------------------------------------------------------------

def test_rootless_run_as_nobody(home, nobody):
    r = nobody("run", "--rm", image(home), "sh", "-c",
                  "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map;"
                  " echo written > /etc/new && cat /etc/new; echo more >> /etc/passwd && tail -1 /etc/passwd;"
                  " rm /bin/ls && echo removed")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[:2] == ["0", "0"]
    assert lines[2].split() == ["0", str(NOBODY), "1"] and lines[3].split() == ["0", str(NOBODY), "1"]
    assert lines[4:] == ["written", "more", "removed"]
    root = os.path.join(home, "root")
    layers = os.listdir(os.path.join(root, "layers"))
    assert "rootless" in layers and "sha256" not in layers   # the rootless store, only
    assert os.listdir(os.path.join(root, "containers")) == []   # --rm
    assert os.stat(os.path.join(root, "layers", "rootless")).st_uid == NOBODY


def test_rootless_build_as_nobody(home, nobody):
    """minirt build without root: RUN in a user namespace, COPY's owners in the
    layer's tar though the rootless store cannot hold them."""
    import tarfile

    from minirt.image import open_image

    ctx = os.path.join(home, "ctx")
    os.makedirs(os.path.join(ctx, "src"))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nRUN echo made > /made && rm /bin/vi\nCOPY --chown=1:2 src/ /src/\n")
    with open(os.path.join(ctx, "src", "a"), "w") as f:
        f.write("copied\n")
    for top, dirs, files in os.walk(ctx):
        for name in dirs + files:
            os.chmod(os.path.join(top, name), 0o755 if name in dirs else 0o644)
    os.chmod(ctx, 0o755)
    assert nobody("load", "-i", image(home), "-t", "busybox").returncode == 0
    r = nobody("build", "-t", "rootless-built", ctx, timeout=120)
    assert r.returncode == 0, r.stderr
    r = nobody("run", "--rm", "rootless-built", "sh", "-c", "cat /made /src/a; ls /bin/vi 2>&1; true")
    assert r.stdout.decode().splitlines() == ["made", "copied", "ls: /bin/vi: No such file or directory"]
    archive = os.path.join(home, "built.tar")
    assert nobody("save", "-o", archive, "rootless-built").returncode == 0
    members = {}
    with open_image(archive) as img:
        for layer in img.layers[1:]:
            with img.open_layer(layer) as blob, tarfile.open(fileobj=blob, mode="r|gz") as tar:
                members.update({m.name: (m.uid, m.gid) for m in tar})
    assert members == {"made": (0, 0), "bin": (0, 0), "bin/.wh.vi": (0, 0), "src": (1, 2), "src/a": (1, 2)}


def test_rootless_state_is_under_the_root_given_and_no_cgroup_is_made(home, host, nobody):
    r = nobody("run", image(home), "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    containers = os.path.join(home, "root", "containers")
    [cid] = os.listdir(containers)
    with open(os.path.join(containers, cid, "state.json")) as f:
        state = json.load(f)
    assert state["cgroup"] is None and state.get("exit_code") == 0
    assert not cgroups.for_container(cid, os.environ["MINIRT_CGROUP_PARENT"]).exists()
    assert not cgroups.for_container(cid, "minirt").exists()
    assert not os.path.exists(os.path.join(home, ".local", "share", "minirt"))
    assert host.processes_in_cgroup_of(cid) == []


def test_rootless_default_root_is_in_home(home, nobody):
    r = nobody("run", "--rm", image(home), "true", root=False)
    assert r.returncode == 0, r.stderr
    assert os.path.isdir(os.path.join(home, ".local", "share", "minirt", "layers", "rootless"))


def test_rootless_keeps_the_hardening(home, nobody):
    r = nobody("run", "--rm", image(home), "sh", "-c",
                  "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status;"
                  " mount -t tmpfs x /tmp 2>/dev/null && echo mounted;"
                  " echo x > /proc/sys/kernel/hostname 2>/dev/null && echo sysctl; true")
    assert r.returncode == 0, r.stderr
    from minirt.kernel.security import expected_status_mask
    from minirt.kernel.capabilities import DEFAULT
    st = dict(line.split(":\t") for line in r.stdout.decode().splitlines() if ":\t" in line)
    assert st == {"CapEff": expected_status_mask(DEFAULT), "CapBnd": expected_status_mask(DEFAULT),
                  "NoNewPrivs": "1", "Seccomp": "2"}
    assert b"mounted" not in r.stdout and b"sysctl" not in r.stdout


@pytest.mark.parametrize("args", [["--memory", "64m"], ["--pids-limit", "10"], ["--cpus", "0.5"]])
def test_rootless_limits_without_delegated_cgroups_are_a_clear_error(home, args, nobody):
    r = nobody("run", "--rm", *args, image(home), "true")
    err = r.stderr.decode()
    assert r.returncode == 125, err
    assert err.startswith("minirt: ") and err.count("\n") == 1 and "cgroup" in err, err
    containers = os.path.join(home, "root", "containers")
    assert not os.path.isdir(containers) or os.listdir(containers) == []


# -- rootless with a delegated cgroup2 subtree ---------------------------------------
#
# As systemd's Delegate=yes makes user@UID.service for a user, the test makes a
# subtree for nobody under the cgroup2 tree's root.  A "session" (nobody's sleep,
# standing for the user's shell) lives in it, and minirt runs where the session
# is.  On this kind of host the cgroup2 tree may have no controllers (hybrid):
# placement, exec and removal are the same; limits are v2-only (the test VM).

class Delegation:
    def __init__(self, nobody):
        self.nobody = nobody
        self.tree = next(t for t in cgroups.hierarchies() if t.version == "v2")
        self.path = f"/minirt-test-deleg-{os.getpid()}"   # swept with the session's parent if pytest dies
        self.dir = self.host(self.path)
        missing = {"memory", "pids", "cpu"} & self.tree.controllers - _words(self.tree.mountpoint, "cgroup.subtree_control")
        if missing:  # the controllers enabled in the parent, as delegation needs
            with open(os.path.join(self.tree.mountpoint, "cgroup.subtree_control"), "w") as f:
                f.write(" ".join("+" + c for c in sorted(missing)))
        os.mkdir(self.dir)
        for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(os.path.join(self.dir, name), NOBODY, NOBODY)
        self.session = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                                         "sleep", "600"], preexec_fn=lambda: join_cgroup(self.dir))

    def host(self, path):
        return os.path.join(self.tree.mountpoint, path.lstrip("/"))

    def session_cgroup(self):
        with open(f"/proc/{self.session.pid}/cgroup") as f:
            return next(line[3:].strip() for line in f if line.startswith("0::"))

    def run(self, *args, **how):
        """``minirt ARGS`` as nobody, in the session's cgroup."""
        return self.nobody(*args, cgroup=self.host(self.session_cgroup()), **how)

    def containers(self):
        """Container cgroups in the subtree."""
        parent = self.host(f"{self.path}/{os.environ['MINIRT_CGROUP_PARENT']}")
        return [e for e in os.listdir(parent) if os.path.isdir(os.path.join(parent, e))] \
            if os.path.isdir(parent) else []

    def close(self):
        self.session.kill()
        self.session.wait()
        left = self.containers()
        for sub, _dirs, _files in os.walk(self.dir, topdown=False):  # killing what a failed test left
            cgroups.CgroupV2("/" + os.path.relpath(sub, self.tree.mountpoint), [self.tree]).remove()
        assert left == [], f"container cgroups left in the delegated subtree: {left}"


def _file(d, name):
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def _words(d, name):
    return set(_file(d, name).split())


@pytest.fixture
def delegated(nobody):
    d = Delegation(nobody)
    yield d
    d.close()


def _inspect(delegated, cid):
    r = delegated.run("inspect", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def test_rootless_delegated_cgroup_holds_the_container_exec_joins_and_rm_removes_it(home, delegated):
    r = delegated.run("run", "-d", image(home), "sleep", "600")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    parent = os.environ["MINIRT_CGROUP_PARENT"]
    info = _inspect(delegated, cid)
    assert info["Cgroup"] == f"{delegated.path}/{parent}/{cid}"   # under the delegated subtree's top
    cgroup = delegated.host(info["Cgroup"])
    assert os.stat(cgroup).st_uid == NOBODY
    assert info["State"]["Pid"] in cgroups.at(info["Cgroup"]).pids()
    assert not cgroups.for_container(cid, parent).exists()   # root's place, in any tree: none
    assert cid[:12] in delegated.run("ps").stdout.decode()

    r = delegated.run("exec", cid, "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    assert "0::/" in r.stdout.decode().splitlines()   # the container's cgroup, its cgroup namespace's root

    r = delegated.run("rm", "-f", cid)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(cgroup)
    r = delegated.run("system", "prune")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(delegated.host(f"{delegated.path}/{parent}"))


def test_rootless_delegated_foreground_run_cleans_up(home, delegated):
    p = delegated.run("run", "--rm", image(home), "sleep", "600", background=True)
    try:
        wait_for(delegated.containers)
        [cid] = delegated.containers()
        cgroup = cgroups.at(f"{delegated.path}/{os.environ['MINIRT_CGROUP_PARENT']}/{cid}")
        wait_for(cgroup.pids)  # PID 1 is in it
        assert delegated.run("kill", cid).returncode == 0
        assert p.wait(timeout=60) == 137
    finally:
        p.kill()
        p.communicate()
    assert delegated.containers() == []


def test_rootless_delegated_exec_from_outside_the_subtree_is_a_clear_error(home, delegated, nobody):
    r = delegated.run("run", "-d", image(home), "sleep", "600")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    # From nobody's place outside the subtree: the common ancestor is not nobody's.
    r = nobody("exec", cid, "true")
    err = r.stderr.decode()
    assert r.returncode == 125 and err.startswith("minirt: ") and err.count("\n") == 1, err
    assert "cgroup" in err and delegated.path in err, err
    assert delegated.run("rm", "-f", cid).returncode == 0


LIMITS = ["--pids-limit", "20", "--memory", "32m", "--cpus", "0.5"]


def test_rootless_delegated_limits_are_enforced(home, delegated):
    """Pure cgroup v2 (the test VM): the limits land and hold, and the
    session's processes moved into the leaf so that controllers could be
    handed down.  With a controller-less cgroup2 tree (hybrid: this host),
    the same run is refused in one line naming the tree, and nothing is left."""
    r = delegated.run("run", "-d", *LIMITS, image(home), "sleep", "600")
    if cgroups.detect() != "v2":
        err = r.stderr.decode()
        assert r.returncode == 125 and err.startswith("minirt: ") and err.count("\n") == 1, err
        assert "not delegated" in err and delegated.tree.mountpoint in err, err
        assert os.listdir(os.path.join(home, "root", "containers")) == []
        return
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    cgroup = delegated.host(_inspect(delegated, cid)["Cgroup"])
    assert [_file(cgroup, f) for f in ("pids.max", "memory.max", "cpu.max")] == ["20", "33554432", "50000 100000"]
    assert delegated.session_cgroup() == f"{delegated.path}/{cgroups.LEAF}"   # no internal processes
    assert _file(delegated.dir, "cgroup.procs") == ""
    r = delegated.run("exec", cid, "sh", "-c", "for i in $(seq 40); do sleep 60 & done 2>&1 | head -1")
    assert b"can't fork" in r.stdout + r.stderr
    assert int(_file(cgroup, "pids.events").split()[-1]) > 0   # "max N": forks refused
    assert delegated.run("rm", "-f", cid).returncode == 0

    r = delegated.run("run", "--rm", "-m", "20m", image(home), "sh", "-c", "head -c 200m /dev/zero | tail")
    assert r.returncode == 137 and b"OOM" in r.stderr, r.stderr


def test_rootless_remap_is_refused(home, nobody):
    r = nobody("run", "--rm", "--userns=remap", image(home), "true")
    assert r.returncode == 125 and b"--userns=remap needs root" in r.stderr


# -- rootless networking: slirp4netns -----------------------------------------------
#
# Traffic stays on this host: the container reaches a server the test runs on
# the host's loopback (slirp4netns's 10.0.2.2), and the host reaches a server in
# the container through a port published on 127.0.0.1.

@pytest.fixture
def tun():
    """/dev/net/tun usable by every user, as Debian's udev leaves it (0666):
    slirp4netns, running as the user, opens it.  A host without udev may have
    it at 0600; then for this test only."""
    mode = os.stat("/dev/net/tun").st_mode & 0o777
    os.chmod("/dev/net/tun", 0o666)
    yield
    os.chmod("/dev/net/tun", mode)


def _server_on_host_loopback(reply):
    """A one-connection TCP server on 127.0.0.1; returns its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        with server:
            server.settimeout(30)
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def _slirps_of(host, home):
    """slirp4netns processes of nobody's minirt in ``home``."""
    return [pid for pid in host.processes_started_in(home) if _name(pid) == "slirp4netns"]


def _name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def test_rootless_default_network_reaches_the_hosts_loopback(home, nobody, tun):
    port = _server_on_host_loopback(b"hello from the host\n")
    r = nobody("run", "--rm", image(home), "sh", "-c",
               f"ip -o -4 addr show tap0; ip route; cat /etc/resolv.conf; nc 10.0.2.2 {port}")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert " 10.0.2.100/24 " in out and "default via 10.0.2.2 dev tap0" in out
    assert "nameserver 10.0.2.3" in out and out.endswith("hello from the host\n")


def test_rootless_published_port_reaches_a_server_in_the_container(home, host, nobody, tun):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = nobody("run", "-d", "-p", f"127.0.0.1:{port}:8080", image(home), "sh", "-c",
               "while true; do echo hello from inside | nc -l -p 8080; done")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    try:
        assert _slirps_of(host, home)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    data = c.recv(100)
                if data:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "nothing from the published port"
            time.sleep(0.05)
        assert data == b"hello from inside\n"
    finally:
        assert nobody("rm", "-f", cid).returncode == 0
    _wait_until_gone(host, home)


def test_rootless_slirp4netns_dies_with_a_killed_minirt(home, host, tun):
    """SIGKILL of a foreground minirt: its PID 1 dies with it, and slirp4netns
    (and its watcher) follow."""
    env = {k: v for k, v in os.environ.items() if k not in ("MINIRT_ROOT", "XDG_DATA_HOME")}
    env["HOME"] = home
    cli = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            sys.executable, "-m", "minirt", "--root", os.path.join(home, "root"),
                            "run", image(home), "sleep", "60"], env=env, cwd=home,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _slirps_of(host, home):
            assert time.monotonic() < deadline and cli.poll() is None, "slirp4netns never started"
            time.sleep(0.05)
    finally:
        cli.kill()
        cli.wait()
    _wait_until_gone(host, home)


def test_rootless_none_stays_available_and_bridge_needs_root(home, nobody):
    r = nobody("run", "--rm", "--network", "none", image(home), "cat", "/proc/net/dev")
    assert r.returncode == 0, r.stderr
    assert _links(r.stdout) == ["lo"]
    r = nobody("run", "--rm", "--network", "bridge", image(home), "true")
    assert r.returncode == 125 and b"needs root" in r.stderr and r.stderr.count(b"\n") == 1


def test_rootless_without_dev_net_tun_gets_none_or_a_clear_error(home, nobody):
    mode = os.stat("/dev/net/tun").st_mode & 0o777
    os.chmod("/dev/net/tun", 0o600)  # as on a host without udev
    try:
        r = nobody("run", "--rm", image(home), "cat", "/proc/net/dev")
        assert r.returncode == 0, r.stderr
        assert _links(r.stdout) == ["lo"]
        r = nobody("run", "--rm", "--network", "slirp4netns", image(home), "true")
        assert r.returncode == 125 and r.stderr.count(b"\n") == 1
        assert b"/dev/net/tun is not open to this user" in r.stderr
    finally:
        os.chmod("/dev/net/tun", mode)


def _links(proc_net_dev):
    return [line.split(":")[0].strip() for line in proc_net_dev.decode().splitlines()[2:]]


def _wait_until_gone(host, home):
    deadline = time.monotonic() + 10
    while _slirps_of(host, home):
        assert time.monotonic() < deadline, f"slirp4netns left running: {_slirps_of(host, home)}"
        time.sleep(0.05)


# -- --userns=remap (as root) --------------------------------------------------------

@pytest.fixture(scope="module")
def remap_root():
    """A state root the remapped root (uid 100000) can traverse, as /var/lib/minirt
    is (the session's state root is a private 0700 temporary directory)."""
    d = tempfile.mkdtemp(prefix="minirt-remap-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def _start(busybox_image, state_root, script, **options):
    spec = minirt.api.prepare(busybox_image, ["sh", "-c", script], root=state_root, remove=True,
                              userns="remap", **options)
    c = Container(spec, state_root)
    c.create()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        c.start(stdio=(0, out_w, err_w))
    except BaseException:
        c.delete()
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    return c, out_r, err_r


def _read(fd):
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    os.close(fd)
    return data.decode()


def test_remap_root_inside_is_an_unprivileged_uid_outside(busybox_image, remap_root, host):
    c, out_r, err_r = _start(busybox_image, remap_root,
                             "id -u; cat /proc/self/uid_map /proc/self/gid_map; head -1 /etc/passwd;"
                             " echo ready; sleep 30")
    try:
        out = b""
        while b"ready" not in out:
            chunk = os.read(out_r, 4096)
            assert chunk, out
            out += chunk
        with open(f"/proc/{c.pid}/status") as f:
            st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        assert st["Uid"].split() == ["100000"] * 4 and st["Gid"].split() == ["100000"] * 4
        lines = out.decode().splitlines()
        assert lines[0] == "0"
        assert lines[1].split() == ["0", "100000", "65536"] and lines[2].split() == ["0", "100000", "65536"]
        assert lines[3].startswith("root:x:0:0:")   # image files are readable
        c.signal(9)
        assert c.wait() == 137
    finally:
        os.close(out_r)
        os.close(err_r)
        c.delete()
    assert host.processes_in_cgroup_of(c.spec.id) == [] and not os.path.exists(c.dir)
    assert not c.cgroup.exists()


def test_remap_container_can_write_new_files(busybox_image, remap_root):
    """The writable layer belongs to the container's root: new files and directories work."""
    c, out_r, err_r = _start(busybox_image, remap_root,
                             "touch /new && mkdir -p /made/here && echo ok > /made/here/f && cat /made/here/f;"
                             " touch /tmp/t && echo tmp-ok")
    out, err = _read(out_r), _read(err_r)
    code = c.wait()
    c.delete()
    assert (code, out) == (0, "ok\ntmp-ok\n"), err


def test_remap_copy_up_of_image_files(busybox_image, remap_root):
    """Changing a file of the image (copy-up into the writable layer).

    Known gap: the layer store's files belong to host root, which is unmapped
    (nobody) inside a remapped namespace; an id-shifted store is being added.
    """
    c, out_r, err_r = _start(busybox_image, remap_root,
                             "echo more >> /etc/passwd && tail -1 /etc/passwd; rm /bin/ls && echo removed;"
                             " ls -ln /etc/passwd | awk '{print $3}'")
    out, err = _read(out_r), _read(err_r)
    code = c.wait()
    c.delete()
    assert (code, out) == (0, "more\nremoved\n0\n"), err
