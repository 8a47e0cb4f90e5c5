"""Resource limits end to end: containers share the host without drowning it.

A memory hog is OOM-killed and reported, a fork bomb stops at its pids limit
while the host keeps forking, the CPU flags land in the cgroup's files, and bad
values are refused before anything exists.  The container's cgroup is read
from the host while the container runs (``container.cgroup.dirs``), and every
test checks afterwards that no cgroup, state directory or process is left.
"""

import os
import re
import subprocess
import sys
import time

import pytest

import minirt.api
from minirt import spec as specs
from minirt.errors import SpecError
from minirt.runtime.container import Container

pytestmark = pytest.mark.privileged


# -- helpers ------------------------------------------------------------------------

class Running:
    """A container started in the background, its output in a pipe, for
    looking at its cgroup from the host while it runs."""

    def __init__(self, host, image, root, cmd, **options):
        self.host = host
        spec = minirt.api.prepare(image, cmd, root=root, remove=True, **options)
        self.container = Container(spec, root)
        self.container.create()
        self.out_r, out_w = os.pipe()
        try:
            self.container.start(stdio=(0, out_w, 2))
        except BaseException:
            self.container.delete()
            raise
        finally:
            os.close(out_w)

    def readline(self):
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(self.out_r, 1)
            if not chunk:
                break
            line += chunk
        return line.decode()

    def file(self, controller, name):
        """The content of the cgroup file ``name`` (in the tree holding ``controller``)."""
        cg = self.container.cgroup
        for tree, d in zip(cg.trees, cg.dirs):
            if cg.version == "v2" or controller in tree.controllers:
                with open(os.path.join(d, name)) as f:
                    return f.read().strip()
        raise AssertionError(f"no {controller} tree")

    def finish(self):
        self.container.signal(9)
        code = self.container.wait()
        os.close(self.out_r)
        self.container.delete()
        self.host.assert_nothing_left(self.container)
        return code


@pytest.fixture
def running(busybox_image, state_root, host):
    started = []

    def start(cmd, **options):
        r = Running(host, busybox_image, state_root, cmd, **options)
        started.append(r)
        return r
    yield start
    for r in started:
        if r.container.exit_code is None:
            r.finish()


def cli(state_root, *args, **kw):
    return subprocess.run([sys.executable, "-m", "minirt", "--root", state_root, *args],
                          capture_output=True, timeout=60, **kw)


def tree(top):
    """Every path under ``top``, with the size and mtime of files (a directory's
    mtime may change: a container made and removed again leaves nothing)."""
    out = {}
    for d, dirs, files in os.walk(top):
        for name in dirs:
            out[os.path.join(d, name)] = "dir"
        for name in files:
            st = os.lstat(os.path.join(d, name))
            out[os.path.join(d, name)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


HOG = "head -c 200m /dev/zero | tail"   # tail keeps its last line: 200 MiB without a newline


# -- memory -------------------------------------------------------------------------

def test_memory_hog_is_oom_killed_and_reported(run):
    r = run("sh", "-c", HOG, resources=specs.resources(memory="20m"))
    assert r.exit_code == 137
    assert r.container.oom_killed is True


def test_without_a_limit_the_same_program_finishes(run):
    r = run("sh", "-c", "head -c 50m /dev/zero | tail | wc -c")
    assert (r.exit_code, r.stdout) == (0, b"52428800\n")
    assert r.container.oom_killed is False


def test_shell_string_doubling_is_oom_killed(run):
    r = run("sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done", resources=specs.resources(memory="20m"))
    assert (r.exit_code, r.container.oom_killed) == (137, True)


def test_cli_reports_the_oom_kill(busybox_image, state_root, host):
    r = cli(state_root, "run", "--rm", "-m", "20m", busybox_image, "sh", "-c", HOG)
    assert r.returncode == 137
    last = r.stderr.decode().splitlines()[-1]
    assert last.startswith("minirt: ") and "OOM" in last and "20m" in last
    assert host.container_cgroups() == []


def test_a_normal_kill_is_not_reported_as_oom(busybox_image, state_root):
    # A child, not PID 1 itself: the kernel ignores a SIGKILL sent to init from inside.
    r = cli(state_root, "run", "--rm", "-m", "20m", busybox_image, "sh", "-c", "sleep 30 & kill -9 $!; wait $!")
    assert r.returncode == 137 and b"OOM" not in r.stderr


def test_memory_limits_land_in_the_cgroup(running):
    r = running(["sh", "-c", "echo up; sleep 30"],
                resources=specs.resources(memory="64m", memory_swap="96m"))
    assert r.readline() == "up\n"
    if r.container.cgroup.version == "v1":
        assert r.file("memory", "memory.limit_in_bytes") == str(64 << 20)
        if os.path.exists(os.path.join(r.container.cgroup._dir_for("memory"), "memory.memsw.limit_in_bytes")):
            assert r.file("memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
    else:
        assert r.file("memory", "memory.max") == str(64 << 20)
        assert r.file("memory", "memory.swap.max") == str(32 << 20)
    assert r.finish() == 137


# -- placement ----------------------------------------------------------------------

def _host_view(pid):
    """/proc/PID/cgroup from the host: tree -> path."""
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.split(":", 2)[1]: line.rstrip("\n").split(":", 2)[2] for line in f}


@pytest.mark.parametrize("clone3", ["available", "missing"])
def test_pid1_is_in_its_cgroup_in_every_tree(running, monkeypatch, clone3):
    """PID 1 is born in its cgroup2 cgroup (clone3) and enters its v1 cgroups
    itself; without clone3 (old kernels, seccomp) the parent moves it instead."""
    if clone3 == "missing":
        def no_clone3(*args, **kwargs):
            raise OSError(38, "clone3: Function not implemented")
        monkeypatch.setattr("minirt.kernel.libc.clone3", no_clone3)
    r = running(["sh", "-c", "echo up; sleep 30"])
    assert r.readline() == "up\n"
    seen = _host_view(r.container.pid)
    assert set(seen.values()) == {r.container.cgroup.path}
    assert len(seen) == len(r.container.cgroup.trees)
    assert r.finish() == 137


@pytest.mark.parametrize("clone3", ["available", "missing"])
def test_on_a_cgroup2_only_host_pid1_is_born_in_its_cgroup(running, host, monkeypatch, clone3):
    """The pure v2 path (most current distributions), on this host's cgroup2 tree
    with the v1 trees hidden: one cgroup, the eBPF device filter, and PID 1
    born inside it (or moved in by the parent where clone3 is missing)."""
    from minirt.kernel import cgroups

    v2_only = [t for t in cgroups.hierarchies() if t.version == "v2"]
    if not v2_only:
        pytest.skip("no cgroup2 mount on this host")
    monkeypatch.setattr(cgroups, "hierarchies", lambda mountinfo=cgroups.MOUNTINFO: v2_only)
    if clone3 == "missing":
        def no_clone3(*args, **kwargs):
            raise OSError(38, "clone3: Function not implemented")
        monkeypatch.setattr("minirt.kernel.libc.clone3", no_clone3)
    r = running(["sh", "-c", "grep ^0:: /proc/self/cgroup; head -c 1 /dev/zero | wc -c;"
                 " mknod /tmp/loop b 7 0 && head -c 1 /tmp/loop 2>&1 | grep -c 'not permitted'; sleep 30"])
    assert r.container.cgroup.version == "v2"
    assert r.readline() == "0::/\n"      # its own cgroup is its root
    assert r.readline().strip() == "1"   # /dev/zero is on the device allow-list
    assert r.readline().strip() == "1"   # a block device it made itself is not
    assert _host_view(r.container.pid)[""] == r.container.cgroup.path
    assert r.finish() == 137


@pytest.mark.parametrize("threads", [1, 2])
def test_who_is_pid1s_parent(running, threads):
    """In the foreground minirt itself makes PID 1, as runc does: cloned, or,
    in a program with more threads than one (which may not clone from
    Python; pytest-xdist's workers have two), forked into namespaces its
    thread stepped into and out of (namespaces.fork_into)."""
    import threading

    mine = {ns: os.readlink(f"/proc/thread-self/ns/{ns}") for ns in ("pid", "pid_for_children", "net", "uts", "ipc")}
    stop = threading.Event()
    extra = [threading.Thread(target=stop.wait) for _ in range(threads - 1)]
    for t in extra:
        t.start()
    try:
        r = running(["sh", "-c", "echo up $$ $(hostname) $(cat /sys/class/net/lo/flags); sleep 30"])
        assert {ns: os.readlink(f"/proc/thread-self/ns/{ns}") for ns in mine} == mine  # we stepped back
    finally:
        stop.set()
        for t in extra:
            t.join()
    assert r.readline() == f"up 1 {r.container.id[:12]} 0x9\n"  # (lo: IFF_LOOPBACK | IFF_UP, set by us)
    with open(f"/proc/{r.container.pid}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    assert parent == os.getpid() and r.container.helper is None
    theirs = {ns: os.readlink(f"/proc/{r.container.pid}/ns/{ns}") for ns in ("pid", "net", "uts", "ipc")}
    assert all(theirs[ns] != mine[ns] for ns in theirs)
    assert set(_host_view(r.container.pid).values()) == {r.container.cgroup.path}
    assert r.finish() == 137


# -- pids ---------------------------------------------------------------------------

# PID 1 waits with the shell's own read (sleep would be a fork, refused while the
# bomb is at the limit, and ash exits on a refused fork).
BOMB = "bomb() { bomb | bomb & }; bomb; echo bombed; read -t 1 x < /dev/zero; echo survived"


def test_fork_bomb_stops_at_the_pids_limit_and_the_host_is_unaffected(running):
    r = running(["sh", "-c", BOMB], resources=specs.resources(pids_limit=30))
    assert r.readline() == "bombed\n"
    assert r.file("pids", "pids.max") == "30"
    peak = 0
    for _ in range(20):
        peak = max(peak, int(r.file("pids", "pids.current")))
        # The host still forks while the bomb is going off.
        assert subprocess.run(["true"]).returncode == 0
        time.sleep(0.02)
    assert 0 < peak <= 30
    events = r.file("pids", "pids.events")
    assert int(events.split()[-1]) > 0  # "max N": forks refused
    # PID 1 (the shell) survives its bomb and exits; the pid namespace goes with it.
    assert r.readline() == "survived\n"
    code = r.container.wait()
    assert code == 0
    r.finish()


def test_pids_limit_zero_or_negative_means_unlimited(running):
    r = running(["sh", "-c", "echo up; sleep 30"], resources=specs.resources(pids_limit=-1))
    assert r.readline() == "up\n"
    assert r.file("pids", "pids.max") == "max"
    assert r.finish() == 137


# -- cpu ----------------------------------------------------------------------------

def test_cpu_flags_land_in_the_cgroup(running):
    r = running(["sh", "-c", "grep Cpus_allowed_list /proc/self/status; sleep 30"],
                resources=specs.resources(cpus="0.5", cpu_shares="512", cpuset_cpus="0"))
    assert r.readline().split() == ["Cpus_allowed_list:", "0"]
    if r.container.cgroup.version == "v1":
        assert r.file("cpu", "cpu.cfs_period_us") == "100000"
        assert r.file("cpu", "cpu.cfs_quota_us") == "50000"
        assert r.file("cpu", "cpu.shares") == "512"
    else:
        assert r.file("cpu", "cpu.max") == "50000 100000"
        assert r.file("cpu", "cpu.weight") == str(1 + (510 * 9999) // 262142)
    assert r.file("cpuset", "cpuset.cpus") == "0"
    assert r.finish() == 137


def test_cpu_quota_throttles(running):
    r = running(["sh", "-c", "echo up; while :; do :; done"], resources=specs.resources(cpus="0.2"))
    assert r.readline() == "up\n"
    cg = r.container.cgroup
    if cg.version == "v1":
        def used():
            return _cpuacct(cg)
    else:
        def used():
            return int(re.search(r"usage_usec (\d+)", r.file("cpu", "cpu.stat")).group(1)) / 1e6
    start, t0 = used(), time.monotonic()
    time.sleep(1.0)
    share = (used() - start) / (time.monotonic() - t0)
    assert share < 0.35, share  # one busy loop, 0.2 of a CPU (with slack)
    r.finish()


def _cpuacct(cg):
    for tree, d in zip(cg.trees, cg.dirs):
        if "cpuacct" in tree.controllers:
            with open(os.path.join(d, "cpuacct.usage")) as f:
                return int(f.read()) / 1e9
    raise AssertionError("no cpuacct tree")


# -- the cgroup namespace -------------------------------------------------------------

def test_container_with_limits_sees_its_cgroup_as_root(run):
    r = run("cat", "/proc/self/cgroup", resources=specs.resources(memory="64m", pids_limit=50))
    lines = r.stdout.decode().split()
    assert r.exit_code == 0 and lines and all(line.endswith(":/") for line in lines), lines


# -- bad values: refused, nothing created ----------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--memory", "abc"], "invalid --memory"),
    (["--memory=-5m"], "must not be negative"),
    (["--memory", "1m"], "minimum"),
    (["--memory-swap", "100m"], "--memory-swap needs --memory"),
    (["-m", "100m", "--memory-swap", "50m"], "--memory-swap"),
    (["--cpus", "0"], "invalid --cpus"),
    (["--cpus", "lots"], "invalid --cpus"),
    (["--cpus", "0.001"], "invalid --cpus"),
    (["--cpus", "100000"], "invalid --cpus"),
    (["--cpu-shares", "1"], "invalid --cpu-shares"),
    (["--cpu-shares", "x"], "invalid --cpu-shares"),
    (["--pids-limit", "many"], "invalid --pids-limit"),
    (["--cpuset-cpus", "a-b"], "invalid --cpuset-cpus"),
    (["--cpuset-cpus", "4096"], "cpuset"),     # well-formed, but no such CPU: refused by the kernel
])
def test_bad_limits_are_one_line_errors_and_create_nothing(busybox_image, state_root, args, message, host):
    cli(state_root, "run", "--rm", busybox_image, "true")  # the image is in the store already
    before = tree(state_root)
    r = cli(state_root, "run", "--rm", *args, busybox_image, "true")
    err = r.stderr.decode()
    assert r.returncode == 125, err
    assert err.startswith("minirt: ") and err.count("\n") == 1 and message in err, err
    assert tree(state_root) == before
    assert host.container_cgroups() == []


@pytest.mark.parametrize("kwargs", [
    {"memory": "abc"}, {"cpus": 0}, {"memory_swap": "1g"}, {"cpu_shares": 1}, {"cpuset_cpus": "0,,1"},
])
def test_bad_limits_from_python_raise_spec_error(kwargs):
    with pytest.raises(SpecError):
        specs.resources(**kwargs)
