"""A modest load test, and the Python API for detached containers.

Load: twenty detached containers started at once from twenty separate minirt
processes, all listed by ``ps``, each exec'd into, all stopped and removed, and
nothing left behind.  (``bench/bench_lifecycle.py`` does the same with 200 and
measures it.)

API: ``minirt.start(...)`` returns a Container; as a context manager it is
removed whatever happens in the body.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import minirt
from minirt.errors import CommandNotFound, MinirtError
from minirt.kernel import cgroups
from minirt.runtime import state

pytestmark = pytest.mark.privileged

N = 20
LOOP = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


@pytest.fixture
def root():
    path = tempfile.mkdtemp(prefix="minirt-load-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def spawn(root, *args):
    return subprocess.Popen([sys.executable, "-m", "minirt", "--root", root, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(procs, timeout=120):
    """Wait for all; return their stdouts (decoded), asserting each succeeded."""
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err.decode()
        outs.append(out.decode())
    return outs


def cgroup_of(cid):
    return cgroups.for_container(cid, os.environ["MINIRT_CGROUP_PARENT"])


def test_twenty_containers_at_once(root, busybox_image):
    # Unpack the image once, so that the timed part is starting containers.
    subprocess.run([sys.executable, "-m", "minirt", "--root", root, "run", "--rm", busybox_image, "true"], check=True)
    t0 = time.monotonic()
    ids = [out.strip() for out in finish([spawn(root, "run", "-d", "--name", f"load-{i}", busybox_image,
                                                "sh", "-c", f"echo {i} > /who; " + LOOP) for i in range(N)])]
    started = time.monotonic() - t0
    assert len(set(ids)) == N

    listed = subprocess.run([sys.executable, "-m", "minirt", "--root", root, "ps", "-q"],
                            capture_output=True, check=True).stdout.decode().split()
    assert sorted(listed) == sorted(cid[:12] for cid in ids)
    pids = set()
    for cid in ids:
        info = state.load(root, cid)
        assert info["status"] == "running" and state.alive(info["pid"], info["pid_start"])
        pids.add(info["pid"])
    assert len(pids) == N

    # Every container answers exec, with its own files.
    outs = finish([spawn(root, "exec", f"load-{i}", "cat", "/who") for i in range(N)])
    assert outs == [f"{i}\n" for i in range(N)]

    finish([spawn(root, "stop", *ids[i::4]) for i in range(4)])
    for cid in ids:
        assert state.load(root, cid)["exit_code"] == 0
    finish([spawn(root, "rm", *ids[i::4]) for i in range(4)])

    assert state.container_ids(root) == []
    assert [n for n in os.listdir(os.path.join(root, "names")) if not n.startswith(".")] == []
    assert [cid for cid in ids if cgroup_of(cid).exists()] == []
    for pid in pids:
        assert not state.alive(pid, None)
    assert started < 60, f"starting {N} containers took {started:.1f} s"


# -- the Python API ---------------------------------------------------------------------------

def test_start_exec_logs_stop(busybox_image, state_root):
    with minirt.start(busybox_image, ["sh", "-c", "echo ready; echo warn >&2; " + LOOP],
                      root=state_root, name="api-web", env=["GREETING=hi"]) as c:
        assert c.state()["status"] == "running"
        r = c.exec(["sh", "-c", "echo $GREETING $EXTRA; hostname; exit 4"], env=["EXTRA=there"])
        assert (r.exit_code, r.stdout, r.stderr) == (4, b"hi there\n" + c.id[:12].encode() + b"\n", b"")
        assert c.exec(["cat"], input=b"fed\n").stdout == b"fed\n"
        assert c.exec(["id", "-u"], user="nobody").stdout == b"65534\n"
        assert c.exec(["pwd"], workdir="/tmp").stdout == b"/tmp\n"
        with pytest.raises(CommandNotFound):
            c.exec(["no-such-command"])
        deadline = time.monotonic() + 10
        while c.logs() != (b"ready\n", b"warn\n"):
            assert time.monotonic() < deadline, c.logs()
            time.sleep(0.02)
        assert c.stop(timeout=5) == 0
        assert c.state()["status"] == "exited" and c.wait() == 0
        with pytest.raises(MinirtError, match="not running"):
            c.exec(["true"])
    assert not os.path.exists(c.dir)
    assert not cgroup_of(c.id).exists()
    assert not os.path.lexists(os.path.join(state_root, "names", "api-web"))


def test_the_container_is_removed_even_when_the_body_raises(busybox_image, state_root):
    with pytest.raises(ZeroDivisionError):
        with minirt.start(busybox_image, ["sleep", "30"], root=state_root) as c:
            pid = c.state()["pid"]
            1 / 0
    assert not os.path.exists(c.dir)
    assert not cgroup_of(c.id).exists()
    assert not state.alive(pid, None)


def test_loaded_container_and_wait(busybox_image, state_root):
    from minirt.runtime.container import Container

    with minirt.start(busybox_image, ["sh", "-c", "read x < /dev/null; sleep 0.2; exit 6"], root=state_root) as c:
        again = Container.load(state_root, c.id[:10])   # another handle, as another process would
        assert again.wait(timeout=10) == 6
        assert c.wait() == 6
        again.remove()
    assert not os.path.exists(c.dir)


def test_start_failure_leaves_nothing(busybox_image, state_root):
    before = state.container_ids(state_root)
    with pytest.raises(CommandNotFound):
        minirt.start(busybox_image, ["no-such-command"], root=state_root)
    assert state.container_ids(state_root) == before


def test_signal_and_remove_force(busybox_image, state_root):
    c = minirt.start(busybox_image, ["sh", "-c", "trap 'exit 11' USR1; " + LOOP], root=state_root)
    try:
        time.sleep(0.3)
        c.signal(signal.SIGUSR1)
        assert c.wait(timeout=10) == 11
    finally:
        c.remove(force=True)
    assert not os.path.exists(c.dir)
