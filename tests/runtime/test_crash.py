"""Crashes: minirt or the monitor killed with SIGKILL at chosen points.

The promise (issue 5): everything a container owns is recorded before it is
made, so whatever dies when, ``minirt ps`` still tells the truth (a container
whose processes are gone shows as exited) and ``minirt rm`` / ``minirt system
prune`` remove every trace: the state directory, the name, the cgroup, the
processes.

The crash points are the fault-injection hooks in ``runtime/container.py``
(``MINIRT_CRASH_AT=point`` makes the process that reaches it SIGKILL itself):

    create        state directory and name recorded; no cgroup yet
    cgroup        the cgroup exists; no process yet
    helper-ready  the helper (to-be monitor) exists, in its own session, and has
                  cloned PID 1, which waits to be recorded: it gives up, and the
                  container never ran (it stays created)
    running       PID 1 recorded as running, but not yet told to go on
    signal        `minirt stop` dies before it sends anything
    monitor       the monitor dies after PID 1 exited, before recording it

and, from outside, a SIGKILL of the monitor (its pid from ``inspect``) while
the container runs.  The last tests run many minirt processes at once and check
that state.json is never corrupted and no update is lost.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from minirt.kernel import cgroups
from minirt.runtime import state

pytestmark = pytest.mark.privileged

LOOP = "trap 'exit 0' TERM; while :; do sleep 0.05; done"


@pytest.fixture
def root():
    import shutil
    path = tempfile.mkdtemp(prefix="minirt-crash-")
    yield path
    # Whatever a test left, rm -f and prune must be able to take away.
    left = state.container_ids(path)
    if left:
        subprocess.run([sys.executable, "-m", "minirt", "--root", path, "rm", "-f", *left], capture_output=True)
    subprocess.run([sys.executable, "-m", "minirt", "--root", path, "system", "prune"], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def minirt(root, *args, crash_at=None, timeout=60):
    env = dict(os.environ)
    env.pop("MINIRT_CRASH_AT", None)
    if crash_at:
        env["MINIRT_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args],
                          capture_output=True, timeout=timeout, env=env)


def ok(root, *args):
    r = minirt(root, *args)
    assert r.returncode == 0, (args, r.stderr.decode())
    return r.stdout.decode()


def the_one_container(root):
    [cid] = state.container_ids(root)
    return cid


def ps_status(root, cid):
    """The STATUS column of ``ps -a`` for ``cid``; '' if not listed."""
    lines = ok(root, "ps", "-a").splitlines()
    start = lines[0].index("STATUS")
    for line in lines[1:]:
        if line.startswith(cid[:12]):
            return line[start:].split("   ")[0].strip()
    return ""


def cgroup_of(cid):
    return cgroups.for_container(cid, os.environ["MINIRT_CGROUP_PARENT"])


def processes_of(cid):
    """Host processes that belong to the container: in its cgroup, or naming it (the monitor)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                mine = cid in f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                mine = mine or cid.encode() in f.read()
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if mine and not zombie:
            found.append(int(pid))
    return found


def wait_for(predicate, timeout=120):
    """Wait until ``predicate()``; the bound only stops a hang (an emulated
    machine, as in make test-vm, is ten times slower than this host)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def clean_up(root, cid, how, name=None):
    """Remove the container with ``rm -f`` or ``system prune``; check no trace is left."""
    if how == "rm":
        assert ok(root, "rm", "-f", cid[:12]) == cid[:12] + "\n"
    else:
        out = ok(root, "system", "prune")
        assert f"Deleted container {cid[:12]}" in out.splitlines(), out
    assert state.container_ids(root) == []
    assert [n for n in os.listdir(state.containers_dir(root))] == []   # no half-removed directory either
    assert not cgroup_of(cid).exists()
    assert processes_of(cid) == []
    if name:
        assert not os.path.lexists(os.path.join(root, "names", name))
        assert minirt(root, "inspect", name).returncode == 1


# -- minirt itself killed during run -d ------------------------------------------------

@pytest.mark.parametrize("how", ["rm", "prune"])
@pytest.mark.parametrize("point", ["create", "cgroup", "helper-ready"])
def test_crash_before_the_container_runs(root, busybox_image, point, how):
    r = minirt(root, "run", "-d", "--name", "crashy", busybox_image, "sleep", "30", crash_at=point)
    assert r.returncode == -signal.SIGKILL
    cid = the_one_container(root)
    assert ps_status(root, cid) == "Created"
    assert cid[:12] not in ok(root, "ps", "-q").split()
    wait_for(lambda: processes_of(cid) == [])   # a helper that lost its parent gives up
    assert cgroup_of(cid).exists() == (point != "create")
    # The name is still taken until the container is removed.
    r = minirt(root, "run", "-d", "--name", "crashy", busybox_image, "true")
    assert r.returncode == 125 and b"already in use" in r.stderr
    clean_up(root, cid, how, name="crashy")
    # ... and then free again.
    cid = ok(root, "run", "-d", "--name", "crashy", busybox_image, "true").strip()
    assert ok(root, "wait", "crashy") == "0\n"
    clean_up(root, cid, "rm", name="crashy")


@pytest.mark.parametrize("how", ["rm", "prune"])
def test_crash_after_recording_running(root, busybox_image, how):
    """PID 1 exists and is recorded, but minirt dies before telling it to go on:
    it gives up, and the monitor records that."""
    r = minirt(root, "run", "-d", busybox_image, "sleep", "30", crash_at="running")
    assert r.returncode == -signal.SIGKILL
    cid = the_one_container(root)
    wait_for(lambda: ps_status(root, cid).startswith("Exited"))
    assert cid[:12] not in ok(root, "ps", "-q").split()
    wait_for(lambda: processes_of(cid) == [])
    clean_up(root, cid, how)


@pytest.mark.parametrize("point", ["cgroup", "running"])
def test_crash_of_a_foreground_run(root, busybox_image, point):
    """Without -d the helper dies with minirt (PR_SET_PDEATHSIG), and PID 1 with the helper."""
    r = minirt(root, "run", busybox_image, "sleep", "30", crash_at=point)
    assert r.returncode == -signal.SIGKILL
    cid = the_one_container(root)
    wait_for(lambda: processes_of(cid) == [])
    status = ps_status(root, cid)
    assert status == "Created" if point == "cgroup" else status.startswith("Exited (255)"), status
    if point == "running":
        info = json.loads(ok(root, "inspect", cid))[0]["State"]
        assert (info["Status"], info["Running"], info["ExitCode"]) == ("exited", False, 255)
        assert "monitor died" in info["Error"]
    clean_up(root, cid, "rm")


# -- the monitor killed ------------------------------------------------------------------

@pytest.mark.parametrize("how", ["rm", "prune"])
def test_monitor_dies_before_recording_the_exit(root, busybox_image, how):
    cid = ok(root, "run", "-d", busybox_image, "sh", "-c", "exit 3").strip()
    # The CLI had the variable too, but it has no "monitor" point: only the monitor dies.
    assert cid
    assert ok(root, "ps", "-a", "-q").split() == [cid[:12]]
    cid2 = None
    r = minirt(root, "run", "-d", busybox_image, "sh", "-c", "exit 3", crash_at="monitor")
    assert r.returncode == 0, r.stderr
    cid2 = r.stdout.decode().strip()
    wait_for(lambda: processes_of(cid2) == [])
    wait_for(lambda: ps_status(root, cid2).startswith("Exited"))
    assert ps_status(root, cid2).startswith("Exited (255)")   # the truth: it ended, status unknown
    assert ps_status(root, cid).startswith("Exited (3)")      # the normal one, for contrast
    assert cgroup_of(cid2).exists()          # nobody removed it ...
    assert not cgroup_of(cid).exists()
    ok(root, "rm", cid)
    clean_up(root, cid2, how)                # ... until now


@pytest.mark.parametrize("how", ["rm", "prune"])
def test_monitor_killed_from_outside_while_the_container_runs(root, busybox_image, how):
    cid = ok(root, "run", "-d", "--name", "orphan", busybox_image, "sh", "-c", LOOP).strip()
    s = json.loads(ok(root, "inspect", "orphan"))[0]["State"]
    assert s["Running"]
    os.kill(s["MonitorPid"], signal.SIGKILL)
    # PID 1 dies with its parent (PR_SET_PDEATHSIG), and so the whole pid namespace.
    wait_for(lambda: not state.alive(s["Pid"], None))
    wait_for(lambda: processes_of(cid) == [])
    assert ps_status(root, cid).startswith("Exited (255)")
    assert cid[:12] not in ok(root, "ps", "-q").split()
    s = json.loads(ok(root, "inspect", "orphan"))[0]["State"]
    assert (s["Status"], s["ExitCode"]) == ("exited", 255) and s["FinishedAt"]
    assert ok(root, "wait", "orphan") == "255\n"
    r = minirt(root, "exec", "orphan", "true")
    assert r.returncode == 125 and b"not running" in r.stderr
    clean_up(root, cid, how, name="orphan")


def test_pid_1_killed_from_outside_is_recorded_by_the_monitor(root, busybox_image):
    cid = ok(root, "run", "-d", busybox_image, "sleep", "30").strip()
    s = json.loads(ok(root, "inspect", cid))[0]["State"]
    os.kill(s["Pid"], signal.SIGKILL)
    assert ok(root, "wait", cid) == "137\n"
    s = json.loads(ok(root, "inspect", cid))[0]["State"]
    assert (s["ExitCode"], s["Error"]) == (137, "")
    wait_for(lambda: not cgroup_of(cid).exists())   # the monitor cleans up after a normal exit
    clean_up(root, cid, "rm")


def test_stop_killed_before_it_signals(root, busybox_image):
    cid = ok(root, "run", "-d", busybox_image, "sh", "-c", LOOP).strip()
    r = minirt(root, "stop", cid, crash_at="signal")
    assert r.returncode == -signal.SIGKILL
    assert ps_status(root, cid).startswith("Up")   # still running, and said so
    assert ok(root, "exec", cid, "echo", "alive") == "alive\n"
    assert ok(root, "stop", cid) == cid + "\n"
    assert ps_status(root, cid).startswith("Exited (0)")
    clean_up(root, cid, "rm")


def test_rm_killed_half_way_is_finished_by_prune(root, busybox_image):
    """A removal interrupted after the rename leaves a .removing-<id> directory: prune
    finishes it, and removes the cgroup of that container too."""
    cid = ok(root, "run", "-d", busybox_image, "true").strip()
    ok(root, "wait", cid)
    cg = cgroup_of(cid)
    cg.create()   # as if the monitor had not got round to removing it
    d = os.path.join(state.containers_dir(root), cid)
    os.rename(d, os.path.join(state.containers_dir(root), ".removing-" + cid))
    assert ok(root, "ps", "-a", "-q") == ""
    out = ok(root, "system", "prune")
    assert os.listdir(state.containers_dir(root)) == []
    assert not cg.exists() and f"Deleted cgroup {cg.path}" in out


# -- many minirt processes at once ---------------------------------------------------------

def test_concurrent_commands_never_corrupt_state(root, busybox_image):
    cids = [ok(root, "run", "-d", busybox_image, "sh", "-c", "trap : USR1; " + LOOP).strip() for _ in range(3)]
    commands = []
    for i in range(24):
        cid = cids[1 + i % 2]   # cids[0] is stopped and started meanwhile: exec or kill may find it stopped
        commands.append([["ps", "-a"], ["inspect", *cids], ["kill", "-s", "USR1", cid], ["exec", cid, "true"],
                         ["logs", cids[0]], ["ps", "-q"]][i % 6])
    procs = [subprocess.Popen([sys.executable, "-m", "minirt", "--root", root, *cmd],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for cmd in commands]
    # Meanwhile, stop and start one of them, so that monitors write state too.
    ok(root, "stop", cids[0])
    ok(root, "start", cids[0])
    for cmd, p in zip(commands, procs):
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, (cmd, err.decode())
        if cmd[0] == "inspect":
            assert [i["Id"] for i in json.loads(out)] == cids
    for cid in cids:
        d = os.path.join(state.containers_dir(root), cid)
        data = state.read_json(os.path.join(d, "state.json"))
        assert data["status"] == "running" and data["id"] == cid
        assert [f for f in os.listdir(d) if f.startswith(".tmp-")] == []
    ok(root, "rm", "-f", *cids)
    assert state.container_ids(root) == []


def test_concurrent_updates_are_never_lost(tmp_path):
    """state.update is a read-modify-write under the container's lock: eight
    processes adding fifty fields each end with all four hundred.  (The lock
    is config.json's, which every container's directory has.)"""
    d = str(tmp_path)
    state.write_json(os.path.join(d, "config.json"), {"id": "c1"})
    state.write_json(os.path.join(d, "state.json"), {"status": "running"})
    script = ("import sys; from minirt.runtime import state\n"
              "for i in range(50): state.update(sys.argv[1], **{f'w{sys.argv[2]}_{i}': i})\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, d, str(w)]) for w in range(8)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 8
    data = state.read_json(os.path.join(d, "state.json"))
    assert len(data) == 1 + 8 * 50 and data["status"] == "running"
    assert [f for f in os.listdir(d) if f.startswith(".tmp-")] == []


def test_prune_leaves_containers_that_are_being_created(root, busybox_image):
    """``run -d`` racing ``system prune``: a container still being created (not
    yet running, maybe without its config yet) is not prune's to remove."""
    ok(root, "load", "-i", busybox_image, "-t", "racer")  # its layers stay: creation is all that races
    runs = [subprocess.Popen([sys.executable, "-m", "minirt", "--root", root, "run", "-d", "racer",
                              "sleep", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(12)]
    while any(p.poll() is None for p in runs):
        minirt(root, "system", "prune")
    started = []
    for p in runs:
        out, err = p.communicate()
        assert p.returncode == 0, err.decode()
        started.append(out.decode().strip())
    assert sorted(ok(root, "ps", "-q").split()) == sorted(cid[:12] for cid in started)
    ok(root, "rm", "-f", *started)
    ok(root, "rmi", "racer")


def test_prune_leaves_the_layers_of_a_run_not_yet_recorded(root, busybox_image):
    """A run unpacks its image file's layers before its container records them
    (config.json): a prune in between must not take them from under it."""
    import minirt
    from minirt.api import prepare
    from minirt.runtime.container import Container

    spec = prepare(busybox_image, ["echo", "still here"], root=root, network="none")
    ok(root, "system", "prune")
    container = Container(spec, root)
    container.create()
    try:
        assert all(os.path.isdir(layer) for layer in spec.layers)
        r, w = os.pipe()
        with open(os.devnull) as null:
            container.start(stdio=(null.fileno(), w, 2))
        os.close(w)
        assert container.wait() == 0
        with os.fdopen(r) as out:
            assert out.read() == "still here\n"
    finally:
        container.delete(force_remove=True)
    assert minirt.run(busybox_image, ["true"], root=root, network="none").exit_code == 0


def test_prune_leaves_the_layers_of_a_load_not_yet_recorded(root, busybox_image, monkeypatch):
    """``minirt load`` unpacks first and writes its catalog entry after: a
    prune in between must not take the layers (the image would load "fine"
    and then fail to run)."""
    from minirt.image.store import Store
    from minirt.runtime.catalog import Catalog

    unpack = Store.unpack

    def unpack_then_prune(self, img, **kw):
        dirs = unpack(self, img, **kw)
        ok(root, "system", "prune")
        return dirs

    monkeypatch.setattr(Store, "unpack", unpack_then_prune)
    Catalog(root).load(busybox_image, Store(root), tags=["late"])
    monkeypatch.undo()
    assert all(Store(root).has(d) for d in Catalog(root).lookup("late")["layers"])
    assert ok(root, "run", "--rm", "--network", "none", "late", "echo", "ran").strip() == "ran"
    ok(root, "rmi", "late")


def test_a_lease_whose_holder_died_pins_nothing(root, busybox_image):
    """A run that died between unpacking and creating leaves its lease: prune
    removes it, and the layers with it."""
    code = ("import sys; from minirt.api import prepare; "
            "prepare(sys.argv[1], root=sys.argv[2], network='none')")
    subprocess.run([sys.executable, "-c", code, busybox_image, root], check=True, timeout=60)
    leases = os.path.join(root, "layers", "leases")
    assert len(os.listdir(leases)) == 1
    assert "Deleted layer sha256:" in ok(root, "system", "prune")
    assert not os.listdir(leases) and not os.listdir(os.path.join(root, "layers", "sha256"))
