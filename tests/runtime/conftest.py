"""Fixtures shared by the runtime tests.

- ``host``: what the host shows of containers, to check that nothing is left
  (``host.assert_nothing_left(container)``, ``host.processes_in_cgroup_of(cid)``,
  ``host.processes_mentioning(text)``, ``host.container_cgroups()``).
- ``home``: a directory the user nobody may use, holding a copy of the busybox
  image, for the rootless tests; no process may mention it (or have it as
  HOME) afterwards.
- ``nobody(*args, root=True)``: ``minirt [--root HOME/root] ARGS`` run as the
  user nobody in ``home`` (setpriv, straight to this venv's python).
- ``run(*cmd, **options)``: busybox run to completion in-process with any
  ContainerSpec option (``cap_add=``, ``resources=``, ...), the host checked
  afterwards; the Result carries the Container as ``.container``.
- ``terminal(*args, size=(ROWS, COLS))``: ``minirt ARGS`` at a pseudo-terminal
  of its own (a Terminal: ``read_until``, ``write``, ``interrupt_then_exit``,
  all it printed in ``.out``); killed at the end of the test if still there.
"""

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import minirt.api
from minirt.kernel import cgroups
from minirt.runtime.container import Container

NOBODY = 65534


class Host:
    @staticmethod
    def processes_in_cgroup_of(cid):
        return Host._processes("cgroup", cid)

    @staticmethod
    def processes_mentioning(text):
        """Host processes whose command line mentions ``text`` (a monitor names its container's dir)."""
        return Host._processes("cmdline", text)

    @staticmethod
    def processes_started_in(home):
        """Host processes whose environment names ``home`` as HOME (a rootless
        minirt's slirp4netns inherits its environment)."""
        return Host._processes("environ", f"HOME={home}\0")

    @staticmethod
    def _processes(proc_file, text):
        """Pids whose /proc/PID/``proc_file`` contains ``text``."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/{proc_file}", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
        return found

    @staticmethod
    def container_cgroups():
        """Every container cgroup under this test session's cgroup parent, in any tree."""
        parent = cgroups.for_container("", os.environ["MINIRT_CGROUP_PARENT"])
        return [os.path.join(d, e) for d in parent.dirs if os.path.isdir(d)
                for e in os.listdir(d) if os.path.isdir(os.path.join(d, e))]

    @staticmethod
    def assert_nothing_left(container):
        """No state directory, cgroup or process of ``container`` on the host."""
        cid = container.spec.id
        assert not os.path.exists(container.dir), f"state directory of {cid[:12]} left"
        assert not cgroups.for_container(cid, container.spec.cgroup_parent).exists(), f"cgroup of {cid[:12]} left"
        assert Host.processes_in_cgroup_of(cid) == []


@pytest.fixture
def host():
    return Host


@pytest.fixture
def run(busybox_image, state_root):
    def run(*cmd, **options):
        spec = minirt.api.prepare(busybox_image, list(cmd), root=state_root, remove=True, **options)
        c = Container(spec, state_root)
        c.create()
        try:
            _, out, err = minirt.api._captured(c.start, None)
            result = minirt.api.Result(c.wait(), out, err, c.id)
        finally:
            c.delete()
        Host.assert_nothing_left(c)
        result.container = c
        return result
    return run


@pytest.fixture
def home(busybox_image):
    d = tempfile.mkdtemp(prefix="minirt-rootless-")
    os.chmod(d, 0o777)
    image = os.path.join(d, "busybox.tar")
    shutil.copyfile(busybox_image, image)
    os.chmod(image, 0o644)
    yield d
    # slirp4netns exits moments after its container's PID 1 is reaped: give it those
    deadline = time.monotonic() + 5
    while True:
        leftover = sorted(set(Host.processes_mentioning(d)) | set(Host.processes_started_in(d)))
        if not leftover or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(d, ignore_errors=True)
    assert leftover == []


@pytest.fixture
def nobody(home):
    """``nobody(ARGS)``: ``minirt ARGS`` as the user nobody; with ``cgroup``
    (a cgroup2 directory) started in that cgroup, as a user's shell would be;
    ``background``: not waited for (a Popen)."""
    def minirt_as_nobody(*args, root=True, timeout=60, cgroup=None, background=False):
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               sys.executable, "-m", "minirt"]
        if root:
            cmd += ["--root", os.path.join(home, "root")]
        env = {k: v for k, v in os.environ.items() if k not in ("MINIRT_ROOT", "XDG_DATA_HOME")}
        env["HOME"] = home
        how = dict(env=env, cwd=home, preexec_fn=cgroup and (lambda: join_cgroup(cgroup)))
        if background:
            return subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, **how)
        return subprocess.run(cmd + list(args), capture_output=True, timeout=timeout, **how)
    return minirt_as_nobody


def join_cgroup(directory):
    """Move the calling process into the cgroup ``directory``."""
    with open(os.path.join(directory, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))


class Terminal:
    """``python -m minirt ARGS`` with a new pseudo-terminal of ``size`` (rows,
    columns) as its controlling terminal; we hold the other end."""

    def __init__(self, args, size):
        import fcntl
        import pty
        import struct
        import termios

        self.pid, self.master = pty.fork()
        if self.pid == 0:
            os.execv(sys.executable, [sys.executable, "-m", "minirt", *args])
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        self.out = b""  # all read so far
        self._pos = 0   # where the last needle found ends

    def write(self, data):
        os.write(self.master, data)

    def read_until(self, needle, timeout=10):
        """Read until ``needle`` shows up after the last one found."""
        deadline = time.monotonic() + timeout
        while (found := self.out.find(needle, self._pos)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {needle!r}; got {self.out[self._pos:]!r}"
            if select.select([self.master], [], [], left)[0]:
                chunk = os.read(self.master, 4096)
                assert chunk, f"the terminal closed before {needle!r}; got {self.out[self._pos:]!r}"
                self.out += chunk
        self._pos = found + len(needle)

    def interrupt_then_exit(self, code):
        """In the container's shell: Ctrl-C stops a foreground ``sleep`` (it must
        reach the container, not kill minirt), then ``exit CODE`` ends minirt.
        Returns minirt's exit status."""
        self.write(b"sleep 50\n")
        time.sleep(0.5)
        self.write(b"\x03")
        self.write(b"echo after-$((6*7))\n")
        self.read_until(b"after-42")
        self.write(f"exit {code}\n".encode())
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return os.waitstatus_to_exitcode(status)

    def close(self):
        os.close(self.master)
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


@pytest.fixture
def terminal():
    opened = []

    def start(*args, size=(24, 80)):
        opened.append(Terminal(args, size))
        return opened[-1]
    yield start
    for t in opened:
        t.close()
