"""The container lifecycle through the command line: what a docker user does after
the first ``run``.

Every command is a fresh ``python -m minirt`` process, as a user types it, so
nothing is shared between commands but the state root on disk: a detached
container (``run -d``) is looked after by its monitor, and every later command
(``ps``, ``inspect``, ``logs``, ``exec``, ``stop``, ``kill``, ``wait``, ``rm``,
``start``) finds it there by name or by a unique prefix of its id.  The rootless
variants at the end run the same commands as the user nobody.
"""

import json
import os
import re
import signal
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from minirt.kernel import cgroups
from minirt.runtime import state

pytestmark = pytest.mark.privileged

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOOP = "trap 'exit 0' TERM; while :; do sleep 0.05; done"   # a container that stops politely
NOBODY = 65534


def minirt(root, *args, input=None, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args], input=input,
                          capture_output=True, timeout=timeout, env=env)


def ok(root, *args, **kw):
    r = minirt(root, *args, **kw)
    assert r.returncode == 0, (args, r.stderr.decode())
    return r.stdout.decode()


class Lifecycle:
    """A private state root; every container started through ``run_d`` is removed at the end."""

    def __init__(self, root, image, host):
        self.root, self.image, self.host, self.ids = root, image, host, []

    def __call__(self, *args, **kw):
        return minirt(self.root, *args, **kw)

    def ok(self, *args, **kw):
        return ok(self.root, *args, **kw)

    def run_d(self, *cmd, options=()):
        cid = self.ok("run", "-d", *options, self.image, *cmd).strip()
        assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
        self.ids.append(cid)
        return cid

    def inspect(self, ref):
        [info] = json.loads(self.ok("inspect", ref))
        return info

    def dir(self, cid):
        return os.path.join(state.containers_dir(self.root), cid)

    def cgroup(self, cid):
        return cgroups.for_container(cid, os.environ["MINIRT_CGROUP_PARENT"])

    def gone(self, cid):
        """No trace of the container is left: state, cgroup, monitor, processes."""
        assert not os.path.exists(self.dir(cid))
        assert not self.cgroup(cid).exists()
        assert self.host.processes_mentioning(cid) == []

    def remove_all(self):
        """At the test's end: every container it started removed, and no trace left."""
        for cid in self.ids:
            if os.path.exists(self.dir(cid)):
                self("rm", "-f", cid)
            self.gone(cid)


@pytest.fixture(scope="module")
def module_root():
    path = tempfile.mkdtemp(prefix="minirt-lifecycle-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lc(module_root, busybox_image, host):
    life = Lifecycle(module_root, busybox_image, host)
    yield life
    life.remove_all()


def wait_for(predicate, timeout=120):
    """Wait until ``predicate()`` is true, and return it; the bound only stops a
    hang (an emulated machine, as in make test-vm, is ten times slower than this host)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def process_alive(pid):
    return state.alive(pid, None)


# -- run -d, ps, names, id prefixes --------------------------------------------------------

def test_run_d_returns_at_once_and_ps_lists_the_container(lc):
    cid = lc.run_d("sh", "-c", LOOP, options=["--name", "lister"])  # (LOOP never ends by itself)
    assert cid[:12] in lc.ok("ps", "-q").split()
    rows = [line for line in lc.ok("ps").splitlines() if line.startswith(cid[:12])]
    assert len(rows) == 1 and "Up " in rows[0] and rows[0].endswith("lister")
    assert lc.ok("ps").splitlines()[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                                    "PORTS", "NAMES"]
    lc.ok("stop", "lister")
    assert cid[:12] not in lc.ok("ps", "-q").split()
    assert lc.ok("ps", "-q", "-f", "status=exited", "-f", "name=list") == cid[:12] + "\n"  # (status: -a implied)
    assert lc.ok("ps", "-q", "-f", "status=running", "-f", "name=list") == ""
    assert cid[:12] in lc.ok("ps", "-a", "-q").split()
    [row] = [line for line in lc.ok("ps", "-a").splitlines() if line.startswith(cid[:12])]
    assert "Exited (0)" in row


def test_ps_q_prints_ids_only_newest_first(lc):
    first = lc.run_d("sleep", "30")
    second = lc.run_d("sleep", "30")
    ids = lc.ok("ps", "-q").split()
    assert ids.index(second[:12]) < ids.index(first[:12])
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)


def test_ps_filters_as_dockers(lc):
    web = lc.run_d("sleep", "60", options=["--name", "f-web", "-l", "tier=web", "-l", "x", "-p", "127.0.0.1::80"])
    db = lc.run_d("sh", "-c", "exit 3", options=["--name", "f-db", "-l", "tier=db"])
    wait_for(lambda: lc.inspect(db)["State"]["Status"] == "exited")

    def ids(*filters, all=False):
        return lc.ok("ps", "-q", *(["-a"] if all else []), *(w for f in filters for w in ("-f", f))).split()

    assert ids("label=tier=web") == ids("label=tier") == ids("label=x") == [web[:12]]  # (running ones only)
    assert ids("label=tier", all=True) == [db[:12], web[:12]]  # (newest first)
    assert ids("name=f-web", "name=f-db", all=True) == [db[:12], web[:12]]  # one key given twice: either
    assert ids("name=f-", "label=tier=db", all=True) == [db[:12]]  # two keys: both
    assert ids("exited=3") == ids("status=exited", "name=f-") == [db[:12]]
    assert ids("exited=0", "name=f-") == ids("id=" + db[:6], "status=running") == []
    assert ids("ancestor=" + lc.image, "name=f-", all=True) == [db[:12], web[:12]]
    assert ids("health=none", "name=f-") == [web[:12]]
    [row] = [line for line in lc.ok("ps").splitlines() if line.startswith(web[:12])]
    assert re.search(r"127\.0\.0\.1:\d+->80/tcp", row)  # PORTS: the host port the kernel chose


def test_names_are_unique_and_free_again_after_rm(lc):
    cid = lc.run_d("sleep", "30", options=["--name", "only-one"])
    r = lc("run", "-d", "--name", "only-one", lc.image, "sleep", "30")
    assert r.returncode == 125
    assert r.stderr.decode() == f'minirt: the container name "only-one" is already in use by container {cid[:12]}\n'
    assert len(state.container_ids(lc.root)) == len([c for c in lc.ids if os.path.exists(lc.dir(c))])
    lc.ok("rm", "-f", "only-one")
    lc.gone(cid)
    again = lc.run_d("true", options=["--name", "only-one"])
    assert lc.inspect("only-one")["Id"] == again


def test_processes_racing_for_one_name_exactly_one_wins(lc):
    before = set(state.container_ids(lc.root))
    procs = [subprocess.Popen([sys.executable, "-m", "minirt", "--root", lc.root, "run", "-d", "--name", "contested",
                               lc.image, "sleep", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(6)]
    results = [(p.wait(timeout=60), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    winners = [out.strip() for code, out, _ in results if code == 0]
    assert len(winners) == 1, results
    lc.ids.append(winners[0])
    losers = [err for code, _, err in results if code != 0]
    assert all(code in (0, 125) for code, _, _ in results)
    assert all("already in use" in err for err in losers), losers
    # The losers left nothing behind: one new container, one name, no stray cgroups.
    assert set(state.container_ids(lc.root)) - before == {winners[0]}
    assert os.readlink(os.path.join(lc.root, "names", "contested")) == winners[0]
    parent = os.path.dirname(lc.cgroup(winners[0]).path)
    for tree in cgroups.hierarchies():
        base = os.path.join(tree.mountpoint, parent.strip("/"))
        if os.path.isdir(base):
            assert [d for d in os.listdir(base) if len(d) == 64 and d not in state.container_ids(lc.root)] == []


def test_unique_id_prefixes_are_accepted_everywhere(lc):
    cid = lc.run_d("sh", "-c", "echo from-logs; " + LOOP)
    prefix = cid[:5]
    assert lc.inspect(prefix)["Id"] == cid
    assert lc.inspect(cid.upper()[:8])["Id"] == cid
    wait_for(lambda: b"from-logs" in lc("logs", prefix).stdout)
    assert lc.ok("exec", prefix, "hostname") == cid[:12] + "\n"
    assert lc.ok("kill", prefix) == prefix + "\n"
    assert lc.ok("wait", prefix) == "137\n"
    lc.ok("start", prefix)
    assert lc.ok("stop", "-t", "5", prefix) == prefix + "\n"
    assert lc.ok("rm", prefix) == prefix + "\n"
    lc.gone(cid)


def test_unknown_and_ambiguous_references(lc, tmp_path):
    r = lc("inspect", "no-such-thing")
    assert r.returncode == 1 and r.stderr.decode() == "minirt: no such container: no-such-thing\n"
    assert json.loads(r.stdout) == []
    for cmd in (["logs"], ["exec"], ["stop"], ["rm"], ["kill"], ["wait"], ["start"]):
        r = lc(*cmd, "no-such-thing", *(["true"] if cmd == ["exec"] else []))
        assert r.returncode != 0 and b"no such container: no-such-thing" in r.stderr, cmd
    # Two ids sharing a prefix (made by hand: random ids rarely do).
    fake = tmp_path / "root"
    for cid in ("ab" + "0" * 62, "ab" + "1" * 62):
        (fake / "containers" / cid).mkdir(parents=True)
    with pytest.raises(state.NoSuchContainer, match="ambiguous"):
        state.resolve(str(fake), "ab")
    assert state.resolve(str(fake), "ab1") == "ab" + "1" * 62


# -- inspect -------------------------------------------------------------------------------

def test_inspect_running_then_exited(lc, tmp_path):
    cid = lc.run_d("sh", "-c", LOOP, options=["--name", "inspected", "-e", "COLOR=blue", "-v", f"{tmp_path}:/data:ro"])
    info = lc.inspect("inspected")
    assert (info["Id"], info["Name"], info["Image"], info["Path"]) == (cid, "inspected", lc.image, "sh")
    s = info["State"]
    assert (s["Status"], s["Running"], s["ExitCode"], s["OOMKilled"], s["FinishedAt"]) == \
        ("running", True, None, False, None)
    assert process_alive(s["Pid"]) and process_alive(s["MonitorPid"])
    with open(f"/proc/{s['Pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sh"
    assert abs(s["StartedAt"] - time.time()) < 60 and s["StartedAt"] >= info["Created"]
    assert "COLOR=blue" in info["Config"]["env"] and info["Config"]["args"] == ["sh", "-c", LOOP]
    assert info["Mounts"] == [{"Type": "bind", "Source": str(tmp_path), "Destination": "/data", "RW": False}]
    assert os.path.isdir(info["StateDir"])

    lc.ok("kill", "inspected")
    assert lc.ok("wait", "inspected") == "137\n"
    s = lc.inspect(cid)["State"]
    assert (s["Status"], s["Running"], s["Pid"], s["ExitCode"], s["OOMKilled"]) == ("exited", False, 0, 137, False)
    assert s["FinishedAt"] >= s["StartedAt"]
    assert not process_alive(s["MonitorPid"])


def test_inspect_reports_the_oom_kill(lc):
    cid = lc.run_d("sh", "-c", "head -c 200m /dev/zero | tail", options=["-m", "20m"])
    assert lc.ok("wait", cid) == "137\n"
    s = lc.inspect(cid)["State"]
    assert (s["ExitCode"], s["OOMKilled"]) == (137, True)
    [row] = [line for line in lc.ok("ps", "-a").splitlines() if line.startswith(cid[:12])]
    assert "Exited (137) (OOM killed)" in row


def test_inspect_several_reports_each(lc):
    a = lc.run_d("true")
    b = lc.run_d("true")
    r = lc("inspect", a, "missing", b[:10])
    assert r.returncode == 1 and r.stderr.decode() == "minirt: no such container: missing\n"
    assert [i["Id"] for i in json.loads(r.stdout)] == [a, b]


# -- logs ----------------------------------------------------------------------------------

def test_logs_keeps_stdout_and_stderr_apart_and_tails(lc):
    cid = lc.run_d("sh", "-c", "for i in 1 2 3 4 5; do echo out$i; done; echo oops >&2")
    lc.ok("wait", cid)
    r = lc("logs", cid)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"out1\nout2\nout3\nout4\nout5\n", b"oops\n")
    r = lc("logs", "--tail", "2", cid)
    assert (r.stdout, r.stderr) == (b"out4\nout5\n", b"oops\n")
    assert lc("logs", "--tail", "0", cid).stdout == b""
    assert lc("logs", "--tail", "all", cid).stdout.count(b"\n") == 5
    r = lc("logs", "--tail", "x", cid)
    assert r.returncode == 125 and b"--tail" in r.stderr


def test_logs_follow_until_the_container_exits(lc):
    cid = lc.run_d("sh", "-c", "echo first; sleep 1; echo second; sleep 0.5; exit 3")
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "minirt", "--root", lc.root, "logs", "-f", cid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"first\n"
        assert p.stdout.readline() == b"second\n"   # arrives while the container still runs
        assert p.wait(timeout=20) == 0
        assert p.stdout.read() == b""
        assert time.monotonic() - t0 >= 1.4          # it waited for the exit
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()
    assert lc.ok("wait", cid) == "3\n"


# -- exec ----------------------------------------------------------------------------------

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "uts")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:  # gone meanwhile
        return b""


def test_exec_joins_every_namespace_cgroup_privilege_and_root(lc):
    cid = lc.run_d("sh", "-c", "echo pid1 > /made-by-pid1; " + LOOP)
    wait_for(lambda: lc("exec", cid, "test", "-e", "/made-by-pid1").returncode == 0)
    script = "; ".join(f"echo {ns} $(readlink /proc/self/ns/{ns}) $(readlink /proc/1/ns/{ns})" for ns in NAMESPACES)
    out = lc.ok("exec", cid, "sh", "-c", script)
    seen = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert set(seen) == set(NAMESPACES)
    for ns, (mine, pid1s) in seen.items():
        assert mine == pid1s, ns
        assert mine != os.readlink(f"/proc/self/ns/{ns}"), f"{ns}: still the host's"
    pid1 = lc.inspect(cid)["State"]["Pid"]
    for ns, (mine, _) in seen.items():
        assert mine == os.readlink(f"/proc/{pid1}/ns/{ns}")

    out = lc.ok("exec", cid, "sh", "-c", "cat /proc/self/cgroup; grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status;"
                                        " grep CapEff /proc/1/status; cat /made-by-pid1; echo $$")
    lines = out.splitlines()
    cgroup_lines = [line for line in lines if re.match(r"\d+:", line)]
    assert cgroup_lines and all(line.endswith(":/") for line in cgroup_lines)
    fields = {}
    for line in lines:
        if ":\t" in line:
            fields.setdefault(line.split(":")[0], []).append(line.split()[1])
    assert fields["Seccomp"] == ["2"] and fields["NoNewPrivs"] == ["1"]
    assert fields["CapEff"][0] == fields["CapEff"][1] != "000001ffffffffff"   # exec's == PID 1's, not full
    assert "pid1" in lines
    assert int(lines[-1]) > 1   # a new process in the container's pid namespace
    # From the host: the exec'd process is in the container's cgroup.
    p = subprocess.Popen([sys.executable, "-m", "minirt", "--root", lc.root, "exec", cid, "sleep", "600"])
    try:
        cg = lc.cgroup(cid)

        def exec_sleep():
            return next((pid for pid in cg.pids() if _cmdline(pid) == b"sleep\x00600\x00"), None)
        wait_for(exec_sleep)
        sleeper = exec_sleep()
        with open(f"/proc/{sleeper}/stat") as f:
            joiner = int(f.read().rsplit(")", 1)[1].split()[1])  # its parent: exec's process that joined
        # PID 1 and exec's two, in every tree, v1 and v2 alike (PID 1's short
        # sleeps come and go between the reads: not compared).
        for d in cg.dirs:
            with open(os.path.join(d, "cgroup.procs")) as f:
                assert {pid1, joiner, sleeper} <= {int(line) for line in f}, d
    finally:
        p.kill()
        p.wait()


def test_exec_env_workdir_user(lc):
    cid = lc.run_d("sh", "-c", LOOP, options=["-e", "FROM_RUN=1"])
    out = lc.ok("exec", "-e", "FOO=bar", "-w", "/tmp", "-u", "1234:55", cid,
                "sh", "-c", "echo $FOO $FROM_RUN; pwd; id -u; id -g")
    assert out.split() == ["bar", "1", "/tmp", "1234", "55"]
    assert lc.ok("exec", "-u", "nobody", cid, "id", "-un") == "nobody\n"
    assert lc.ok("exec", "-i", cid, "tr", "a-z", "A-Z", input=b"piped\n") == "PIPED\n"
    assert lc.ok("exec", cid, "cat") == ""   # without -i, stdin is empty


def test_exec_exit_codes(lc):
    cid = lc.run_d("sh", "-c", LOOP)
    r = lc("exec", cid, "sh", "-c", "exit 3")
    assert (r.returncode, r.stderr) == (3, b"")
    r = lc("exec", cid, "no-such-command")
    assert r.returncode == 127 and r.stderr.decode().startswith("minirt: ") and b"not found" in r.stderr
    r = lc("exec", cid, "/etc/passwd")
    assert r.returncode == 126 and b"permission denied" in r.stderr
    r = lc("exec", "-w", "/no/such/dir", cid, "true")
    assert r.returncode != 0 and b"/no/such/dir" in r.stderr
    r = lc("exec", cid)
    assert r.returncode == 125 and b"no command" in r.stderr
    lc.ok("stop", cid)
    r = lc("exec", cid, "true")
    assert r.returncode == 125 and r.stderr.decode() == f"minirt: container {cid[:12]} is not running\n"


def test_exec_into_a_container_that_just_exited_is_a_clean_error(lc):
    """Its state still says running (the monitor has not written yet) but PID 1 is gone."""
    cid = lc.run_d("true")
    lc.ok("wait", cid)
    gone = subprocess.Popen(["true"])
    gone.wait()
    recorded = state.update(lc.dir(cid), status="running", pid=gone.pid, pid_start=None,
                            monitor_pid=os.getpid(), monitor_start=state.start_time(os.getpid()))
    try:
        r = lc("exec", cid, "true")
        assert (r.returncode, r.stderr.decode()) == (125, f"minirt: container {cid[:12]} is not running\n")
    finally:
        state.update(lc.dir(cid), **dict(recorded, status="exited"))


def test_exec_it_through_a_terminal(lc, terminal):
    cid = lc.run_d("sh", "-c", LOOP)
    t = terminal("--root", lc.root, "exec", "-it", cid, "sh", size=(31, 97))
    t.read_until(b"# ")
    t.write(b"stty size; test -t 0 && echo terminal-$((40+2)); tty\n")
    t.read_until(b"terminal-42")
    assert b"31 97" in t.out
    assert t.interrupt_then_exit(4) == 4
    assert b"/dev/pts/" in t.out or b"not a tty" in t.out   # see test_exec_tty_is_the_containers
    assert lc.inspect(cid)["State"]["Running"]   # the container is unaffected


# -- stop, kill, wait ------------------------------------------------------------------------

def test_stop_a_container_that_handles_sigterm(lc):
    cid = lc.run_d("sh", "-c", LOOP)
    assert lc.ok("stop", cid) == cid + "\n"
    assert lc.inspect(cid)["State"]["ExitCode"] == 0  # its trap's, not the grace period's SIGKILL (137)


def test_stop_a_container_that_ignores_sigterm_kills_it_after_the_grace_period(lc):
    cid = lc.run_d("sh", "-c", "trap '' TERM; while :; do sleep 0.05; done")
    t0 = time.monotonic()
    lc.ok("stop", "-t", "1", cid)
    assert time.monotonic() - t0 >= 1  # the grace period
    s = lc.inspect(cid)["State"]
    assert (s["Status"], s["ExitCode"]) == ("exited", 137)
    assert lc.ok("stop", cid) == cid + "\n"   # stopping a stopped container is harmless


def test_kill_with_a_signal(lc):
    cid = lc.run_d("sh", "-c", "trap 'exit 42' USR1; while :; do sleep 0.05; done")
    time.sleep(0.3)  # let the shell install its trap
    assert lc.ok("kill", "-s", "USR1", cid) == cid + "\n"
    assert lc.ok("wait", cid) == "42\n"
    r = lc("kill", cid)
    assert r.returncode == 1 and b"is not running" in r.stderr
    r = lc("kill", "-s", "NOPE", cid)
    assert r.returncode == 125 and b"invalid signal" in r.stderr
    other = lc.run_d("sh", "-c", "trap 'exit 9' TERM; while :; do sleep 0.05; done")
    time.sleep(0.3)
    lc.ok("kill", "-s", "15", other)
    assert lc.ok("wait", other) == "9\n"
    third = lc.run_d("sleep", "30")
    lc.ok("kill", "-s", "SIGKILL", third)
    assert lc.ok("wait", third) == "137\n"


def test_wait_prints_each_exit_code(lc):
    a = lc.run_d("sh", "-c", "sleep 0.3; exit 7")
    b = lc.run_d("sh", "-c", "exit 0")
    assert lc.ok("wait", a, b) == "7\n0\n"
    assert lc.ok("wait", a) == "7\n"   # and again, from the record


# -- rm, start -------------------------------------------------------------------------------

def test_rm_refuses_a_running_container_without_force(lc):
    cid = lc.run_d("sleep", "30", options=["--name", "keepme"])
    r = lc("rm", "keepme")
    assert r.returncode == 1 and r.stderr.decode() == \
        f"minirt: container {cid[:12]} is running: stop it first or use rm -f\n"
    assert lc.inspect("keepme")["State"]["Running"]
    pid = lc.inspect(cid)["State"]["Pid"]
    monitor = lc.inspect(cid)["State"]["MonitorPid"]
    assert lc.ok("rm", "-f", "keepme") == "keepme\n"
    lc.gone(cid)
    assert not process_alive(pid) and not process_alive(monitor)
    assert not os.path.lexists(os.path.join(lc.root, "names", "keepme"))
    assert lc("inspect", "keepme").returncode == 1


def test_init_forwards_stop_and_signals_to_the_command(lc):
    """With --init the command is not PID 1: a shell with no trap ends on
    stop's SIGTERM (as PID 1 it would ignore it until the grace period's
    SIGKILL, 137), and kill's signals reach it."""
    cid = lc.run_d("sh", "-c", "while :; do sleep 0.05; done", options=["--init"])
    lc.ok("stop", cid)
    assert lc.inspect(cid)["State"]["ExitCode"] == 128 + signal.SIGTERM
    other = lc.run_d("sh", "-c", "trap 'exit 42' USR1; while :; do sleep 0.05; done", options=["--init"])
    time.sleep(0.3)  # let the shell install its trap
    lc.ok("kill", "-s", "USR1", other)
    assert lc.ok("wait", other) == "42\n"


def test_an_init_that_cannot_fork_its_command_says_so(lc):
    r = lc("run", "--rm", "--init", "--pids-limit", "1", lc.image, "true")
    assert r.returncode == 125
    assert r.stderr == b"minirt: --init: starting the command: fork: Resource temporarily unavailable\n"


def test_rm_a_stopped_container(lc):
    cid = lc.run_d("true", options=["--name", "done-already"])
    lc.ok("wait", cid)
    assert lc.ok("rm", cid) == cid + "\n"
    lc.gone(cid)
    assert not os.path.lexists(os.path.join(lc.root, "names", "done-already"))


def test_run_d_rm_removes_the_container_when_it_exits(lc):
    cid = lc.run_d("true", options=["--rm", "--name", "gone-by-itself"])
    deadline = time.monotonic() + 30
    while os.path.exists(lc.dir(cid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    lc.gone(cid)
    assert not os.path.lexists(os.path.join(lc.root, "names", "gone-by-itself"))


def test_start_a_stopped_container_keeps_its_writable_layer(lc):
    cid = lc.run_d("sh", "-c", "echo run >> /runs; wc -l < /runs", options=["--name", "again"])
    assert lc.ok("wait", "again") == "0\n"
    assert lc.ok("logs", "again") == "1\n"
    assert lc.ok("start", "again") == "again\n"
    assert lc.ok("wait", "again") == "0\n"
    assert lc.ok("logs", "again") == "1\n2\n"
    assert lc.inspect(cid)["Name"] == "again"


def test_start_runs_it_in_the_background_again(lc):
    cid = lc.run_d("sh", "-c", LOOP)
    first = lc.inspect(cid)["State"]
    lc.ok("stop", cid)
    lc.ok("start", cid)
    second = lc.inspect(cid)["State"]
    assert second["Running"] and second["Pid"] != first["Pid"] and second["ExitCode"] is None
    assert second["FinishedAt"] is None and second["StartedAt"] > first["StartedAt"]
    r = lc("start", cid)
    assert r.returncode == 1 and b"already running" in r.stderr
    assert lc.ok("exec", cid, "echo", "in") == "in\n"
    assert lc.ok("stop", cid) == cid + "\n"
    assert not lc.cgroup(cid).exists()   # the monitor removed the cgroup it made


# -- images: load, images, run by tag, rmi -----------------------------------------------------

def test_load_run_by_tag_images_rmi(lc):
    out = lc.ok("load", "-i", os.path.join(REPO, "images", "busybox.tar"), "-t", "busybox:latest")
    assert out == "Loaded image: busybox:latest\n"
    lc.ok("load", "-i", os.path.join(REPO, "images", "busybox.tar"), "-t", "bb")   # a second tag, "bb:latest"
    rows = lc.ok("images").splitlines()
    assert rows[0].split()[:4] == ["REPOSITORY", "TAG", "IMAGE", "ID"]
    tags = {":".join(row.split()[:2]): row.split()[2] for row in rows[1:]}
    assert tags["busybox:latest"] == tags["bb:latest"]

    r = lc("run", "--rm", "busybox:latest", "echo", "by tag")
    assert (r.returncode, r.stdout) == (0, b"by tag\n"), r.stderr
    cid = lc.ok("run", "-d", "busybox", "sleep", "30").strip()   # ":latest" is implied
    lc.ids.append(cid)
    assert lc.inspect(cid)["Image"] == "busybox"

    # Untagging one of two names is fine; deleting the image under a container is not.
    assert lc.ok("rmi", "bb") == "Untagged: bb:latest\n"
    r = lc("rmi", "busybox:latest")
    assert r.returncode == 1 and b"(must force) - container " + cid[:12].encode() in r.stderr
    assert "busybox " in lc.ok("images")   # refused means unchanged
    lc.ok("rm", "-f", cid)
    out = lc.ok("rmi", "busybox:latest").splitlines()
    assert out[0] == "Untagged: busybox:latest" and out[1].startswith("Deleted: sha256:")
    assert lc.ok("images").splitlines()[1:] == []  # (a run of the name would now pull it, as docker's does)
    r = lc("rmi", "busybox:latest")
    assert r.returncode == 1 and b"no such image" in r.stderr


def test_load_names_the_image_by_its_own_tags_and_rmi_takes_an_id_prefix(lc):
    out = lc.ok("load", "-i", lc.image)
    assert out == "Loaded image: busybox:latest\n"   # the archive's RepoTags
    [row] = [r for r in lc.ok("images").splitlines() if r.split()[:2] == ["busybox", "latest"]]
    short_id = row.split()[2]
    r = lc("run", "--rm", short_id, "echo", "by id")
    assert (r.returncode, r.stdout) == (0, b"by id\n"), r.stderr
    out = lc.ok("rmi", short_id).splitlines()
    assert out[0] == "Untagged: busybox:latest" and out[-1].startswith("Deleted: sha256:" + short_id)


@pytest.mark.parametrize("damage", [
    lambda e: e["config"]["config"].update(Cmd="true"),   # written by hand, or by an older minirt
    lambda e: e["config"].update(config=["a list"]),
    lambda e: e.update(layers="sha256:00"),
    lambda e: e.update(layers=["../../etc"]),
    lambda e: e.update(config=5),
    lambda e: e.clear(),
    lambda e: e.update(blobs="sha256:00"),
    lambda e: e.update(blobs=[]),
    lambda e: e.update(blobs=[{"digest": "../../etc", "size": 1, "mediaType": "x"}]),
    lambda e: e.update(blobs=[{"digest": "sha256:" + "0" * 64, "size": "big", "mediaType": "x"}]),
])
def test_a_damaged_catalog_entry_is_one_clear_line(lc, damage):
    lc.ok("load", "-i", lc.image, "-t", "damaged")
    [row] = [r for r in lc.ok("images").splitlines() if r.split()[:2] == ["damaged", "latest"]]
    [name] = [f for f in os.listdir(os.path.join(lc.root, "images")) if f.startswith(row.split()[2])]
    path = os.path.join(lc.root, "images", name)
    with open(path) as f:
        good = f.read()
    entry = json.loads(good)
    damage(entry)
    with open(path, "w") as f:
        json.dump(entry, f)
    for args in (["run", "--rm", "damaged", "true"], ["images"]):
        r = lc(*args)
        err = r.stderr.decode()
        assert r.returncode == 125 and err.count("\n") == 1 and "Traceback" not in err, err
        assert name in err and "load the image again" in err, err
    with open(path, "w") as f:
        f.write(good)
    lc.ok("rmi", "damaged")


# -- system prune -------------------------------------------------------------------------------

def test_system_prune_removes_stopped_containers_and_keeps_running_ones(lc):
    stopped = lc.run_d("true", options=["--name", "prunable"])
    running = lc.run_d("sleep", "30")
    lc.ok("wait", stopped)
    out = lc.ok("system", "prune").splitlines()
    assert f"Deleted container {stopped[:12]}" in out
    assert f"Deleted container {running[:12]}" not in out
    lc.gone(stopped)
    assert not os.path.lexists(os.path.join(lc.root, "names", "prunable"))
    assert lc.inspect(running)["State"]["Running"]
    assert lc.ok("exec", running, "true") == ""   # its layers were not pruned from under it


# -- rootless: the same commands as the user nobody ---------------------------------------------


def test_rootless_lifecycle(home, host, nobody):
    def ok(*args):
        r = nobody(*args)
        assert r.returncode == 0, (args, r.stderr.decode())
        return r.stdout.decode()

    cid = ok("run", "-d", "--name", "rl", os.path.join(home, "busybox.tar"), "sh", "-c",
             "echo hello; " + LOOP).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert ok("ps", "-q").split() == [cid[:12]]
    [info] = json.loads(ok("inspect", "rl"))
    assert info["State"]["Running"] and info["Cgroup"] is None
    monitor = info["State"]["MonitorPid"]
    with open(f"/proc/{monitor}/status") as f:
        assert [line.split()[1] for line in f if line.startswith("Uid:")] == [str(NOBODY)]
    wait_for(lambda: nobody("logs", "rl").stdout == b"hello\n")
    out = ok("exec", "rl", "sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; "
                                       "readlink /proc/1/ns/user; readlink /proc/self/ns/mnt; readlink /proc/1/ns/mnt")
    lines = out.splitlines()
    assert lines[0] == "0" and lines[1].split() == ["0", str(NOBODY), "1"]
    assert lines[2] == lines[3] and lines[4] == lines[5]
    assert ok("exec", "-e", "X=y", "-w", "/tmp", "rl", "sh", "-c", "echo $X; pwd") == "y\n/tmp\n"
    r = nobody("rm", "rl")
    assert r.returncode == 1 and b"is running" in r.stderr
    assert ok("stop", "rl") == "rl\n"
    assert json.loads(ok("inspect", cid))[0]["State"]["ExitCode"] == 0
    assert ok("ps", "-q") == ""
    assert ok("rm", "rl") == "rl\n"
    assert ok("ps", "-a", "-q") == ""
    assert not os.path.exists(os.path.join(home, "root", "containers", cid))
    assert host.processes_mentioning(cid) == []


def test_rootless_rm_f_of_a_running_container(home, host, nobody):
    r = nobody("run", "-d", os.path.join(home, "busybox.tar"), "sleep", "30")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    r = nobody("rm", "-f", cid[:6])
    assert r.returncode == 0, r.stderr
    assert host.processes_mentioning(cid) == []
    assert not os.path.exists(os.path.join(home, "root", "containers", cid))
