"""Shared test set-up: privileged-test policy, the leak check, common fixtures.

- ``@pytest.mark.privileged`` tests need root with working namespaces.  Where
  that is missing they skip — except under ``MINIRT_REQUIRE_PRIVILEGED=1``
  (set by ``.ci/run``), where *every* skip is turned into a failure, so CI can
  never go green by silently not running something.
- At the end of the session the suite fails if anything it created on the host
  is left: a mount, a cgroup, a process.  Containers made by the tests use the
  cgroup parent ``minirt-test-<pid>``, so leftovers are recognisably ours.
- ``busybox_image``, ``debian_image``: the example images (images/build.py).
- ``docker``, ``podman``: real engines with state of their own (tests/engines.py;
  ``engines`` is that module, for tests that configure their own);
  ``registries``: real registries (tests/image/registry.py).
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRE_PRIVILEGED = os.environ.get("MINIRT_REQUIRE_PRIVILEGED") == "1"
CGROUP_PARENT = f"minirt-test-{os.getpid()}"
os.environ["MINIRT_CGROUP_PARENT"] = CGROUP_PARENT

from minirt.runtime import network as _network  # noqa: E402  (needs the variable above)

NET_PREFIX = _network.prefix()  # this session's bridges, veths and nft table are named after it


def _privileged():
    if os.geteuid() != 0:
        return "needs root"
    r = subprocess.run(["unshare", "--mount", "--pid", "--net", "--fork", "true"], capture_output=True)
    if r.returncode != 0:
        return "namespaces unavailable: " + r.stderr.decode().strip()
    return None


_PRIVILEGE_PROBLEM = None


def pytest_configure(config):
    global _PRIVILEGE_PROBLEM
    _PRIVILEGE_PROBLEM = _privileged()
    config._minirt_baseline = _host_snapshot()
    if os.geteuid() == 0 and not hasattr(config, "workerinput"):
        _sweep_dead_sessions()


def _sweep_dead_sessions():
    """Empty cgroup parents of earlier test sessions that were killed before
    their own leak check (``minirt-test-<pid>`` with that pytest gone)."""
    import glob

    for d in glob.glob("/sys/fs/cgroup/minirt-test-*") + glob.glob("/sys/fs/cgroup/*/minirt-test-*"):
        pid = d.rsplit("-", 1)[1]
        if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        for sub, _dirs, _files in os.walk(d, topdown=False):
            try:
                os.rmdir(sub)  # fails, and stays, while a process is inside
            except OSError:
                pass


def pytest_runtest_setup(item):
    if item.get_closest_marker("privileged") and _PRIVILEGE_PROBLEM:
        pytest.skip(_PRIVILEGE_PROBLEM)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_PRIVILEGED and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under MINIRT_REQUIRE_PRIVILEGED=1: {reason}"


# -- leak check ---------------------------------------------------------------

def _mounts():
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) + " " + line.split(" - ")[1].split()[0] for line in f}


def _our_parent_dirs():
    from minirt.kernel import cgroups
    return [d for d in cgroups.for_container("", CGROUP_PARENT).dirs if os.path.exists(d)]


def _our_cgroups():
    """Container cgroups left under this session's cgroup parent (which itself
    stays between containers, as docker's does, until the end of the session)."""
    return [os.path.join(d, e) for d in _our_parent_dirs() for e in os.listdir(d)
            if os.path.isdir(os.path.join(d, e))]


def _our_processes():
    """Processes still in our cgroups, unreaped children of this pytest, and
    processes started with our environment (minirt's, and what it spawns
    outside any cgroup: slirp4netns)."""
    found = []
    me = str(os.getpid())
    ours = f"MINIRT_CGROUP_PARENT={CGROUP_PARENT}\0".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                in_ours = CGROUP_PARENT in f.read()
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{pid}/environ", "rb") as f:
                in_ours = in_ours or ours in f.read()
        except OSError:
            continue
        if in_ours or ppid == me:
            found.append(pid)
    return found


def _our_links():
    return [link for link in os.listdir("/sys/class/net") if link.startswith(NET_PREFIX)]


def _our_nft_table():
    return subprocess.run(["nft", "list", "table", "ip", NET_PREFIX], capture_output=True).returncode == 0


def _host_snapshot():
    return {"mounts": _mounts()}


def pytest_sessionfinish(session, exitstatus):
    baseline = getattr(session.config, "_minirt_baseline", None)
    if baseline is None or hasattr(session.config, "workerinput"):
        return
    leaks = []
    # Bridges of per-test state roots that were deleted without a prune; and the
    # kernel frees a dead network namespace (with its veth end) asynchronously.
    _network.sweep_orphans()
    for _ in range(40):
        if not _our_links():
            break
        time.sleep(0.05)
    if _our_links():
        leaks.append(f"network links: {_our_links()}")
    if _our_nft_table():
        leaks.append(f"nft table ip {NET_PREFIX}")
    new_mounts = _mounts() - baseline["mounts"]
    if new_mounts:
        leaks.append(f"mounts: {sorted(new_mounts)}")
    if _our_cgroups():
        leaks.append(f"cgroups: {_our_cgroups()}")
    procs = _our_processes()
    if procs:
        leaks.append(f"processes: {procs}")
    if leaks:
        print("\nLEAK CHECK FAILED — the tests left behind:\n  " + "\n  ".join(leaks), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    # Then the session's cgroup parent goes, with whatever a failed run left in it.
    for d in _our_parent_dirs():
        for sub, _dirs, _files in os.walk(d, topdown=False):
            try:
                os.rmdir(sub)
            except OSError:
                pass


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="session")
def state_root():
    """A state root (layer store, containers) shared by the whole session."""
    path = tempfile.mkdtemp(prefix="minirt-test-root-")
    yield path
    from minirt.runtime import prune
    prune.prune(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory):
    """images/busybox.tar built fresh by the project's own image writer."""
    from minirt.image.busybox import build_busybox_image
    path = tmp_path_factory.mktemp("images") / "busybox.tar"
    build_busybox_image(path, form="docker")
    return str(path)


@pytest.fixture(scope="session")
def debian_image():
    """images/debian.tar (Debian's minbase, ``make images``), made here the
    first time if it is missing (root, debootstrap and a Debian mirror); a
    skip saying why it cannot be made (a failure under CI's strict mode)."""
    from minirt.errors import ImageError
    from minirt.image.debian import made_once

    path = os.path.join(REPO, "images", "debian.tar")
    try:
        made_once(path)
    except ImageError as e:
        pytest.skip(f"{path}: {e}")
    return path


class Terminal:
    """``python -m MODULE ARGS`` (this tree's, whatever the directory) with a
    new pseudo-terminal of ``size`` (rows, columns) as its controlling terminal
    and stdin/stdout; we hold the other end, as a person at a keyboard would."""

    def __init__(self, module, args, size=(24, 80), cwd=None):
        import fcntl
        import pty
        import struct
        import termios

        self.pid, self.master = pty.fork()
        if self.pid == 0:
            os.environ["PYTHONPATH"] = os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])
            if cwd:
                os.chdir(cwd)
            os.execv(sys.executable, [sys.executable, "-m", module, *args])
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        self.out = b""  # all read so far
        self._pos = 0   # where the last needle found ends

    def write(self, data):
        os.write(self.master, data)

    def read_until(self, needle, timeout=30):
        """Read until ``needle`` shows up after the last one found; returns
        what came before it."""
        deadline = time.monotonic() + timeout
        start = self._pos
        while (found := self.out.find(needle, self._pos)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {needle!r}; got {self.out[self._pos:]!r}"
            if select.select([self.master], [], [], left)[0]:
                chunk = self._read()
                assert chunk, f"the terminal closed before {needle!r}; got {self.out[self._pos:]!r}"
                self.out += chunk
        self._pos = found + len(needle)
        return self.out[start:found]

    def _read(self):
        try:
            return os.read(self.master, 4096)
        except OSError:  # EIO: the other side has gone
            return b""

    def wait_raw(self, timeout=30):
        """Wait until the program has made the terminal raw (before that, the
        terminal itself would take Ctrl-C and echo)."""
        import termios
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.master)[3] & termios.ICANON:
            assert time.monotonic() < deadline, "the terminal never became raw"
            time.sleep(0.05)

    def wait(self):
        """The program's exit status (the rest of its output is read and kept)."""
        while chunk := self._read():
            self.out += chunk
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return os.waitstatus_to_exitcode(status)

    def interrupt_then_exit(self, code):
        """In a container's shell: Ctrl-C stops a foreground ``sleep`` (it must
        reach the container, not kill minirt), then ``exit CODE`` ends minirt.
        Returns minirt's exit status."""
        self.write(b"sleep 50\n")
        time.sleep(0.5)
        self.write(b"\x03")
        self.write(b"echo after-$((6*7))\n")
        self.read_until(b"after-42")
        self.write(f"exit {code}\n".encode())
        return self.wait()

    def close(self):
        os.close(self.master)
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


def _engines():
    import importlib.util

    spec = importlib.util.spec_from_file_location("engines", os.path.join(REPO, "tests", "engines.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def engines():
    """tests/engines.py itself, for tests that start engines of their own making
    (``engines.Docker(tmp, cgroup_parent, runtimes=...)``, ``engines.Containerd(...)``)."""
    return _engines()


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    """A dockerd of the module's own (tests/engines.py); ``docker(*args)`` is its client."""
    engine = _engines().Docker(tmp_path_factory.mktemp("docker"), CGROUP_PARENT)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """A podman with the module's own storage (tests/engines.py): ``podman(*args)``, ``podman.run(...)``."""
    engine = _engines().Podman(tmp_path_factory.mktemp("podman"), CGROUP_PARENT)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    """``start(auth=None|"basic"|"token", tls=False)``: a real registry (tests/image/registry.py: Debian's
    docker-registry on a free port); ``start.proxy(registry)``: a proxy in front of
    one that notes every request; all stopped at the end of the module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("registry", os.path.join(REPO, "tests", "image", "registry.py"))
    registry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(registry)
    started = []

    def start(auth=None, tls=False):
        started.append(registry.Registry(tmp_path_factory.mktemp("registry"), auth, tls))
        return started[-1]

    def proxy(target):
        started.append(registry.Proxy(target.host))
        return started[-1]

    start.proxy = proxy
    yield start
    for r in started:
        r.stop()


@pytest.fixture(scope="session")
def conformance():
    """../shared/conformance (reference data from other projects: its README;
    $MINIRT_CONFORMANCE for a checkout elsewhere, a git worktree say): the
    folder, or a skip saying it is absent (a failure under CI's strict mode)."""
    folder = os.environ.get("MINIRT_CONFORMANCE") or os.path.join(os.path.dirname(REPO), "shared", "conformance")
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} is absent (reference data the project reads, never copies)")
    return folder


@pytest.fixture
def open_terminal():
    """open_terminal(module, args, size=, cwd=): a Terminal, closed at the end of the test."""
    opened = []

    def start(*how, **options):
        opened.append(Terminal(*how, **options))
        return opened[-1]
    yield start
    for t in opened:
        t.close()


@pytest.fixture
def terminal(open_terminal):
    """terminal(*args, size=(ROWS, COLS)): ``minirt ARGS`` on a pseudo-terminal."""
    return lambda *args, size=(24, 80): open_terminal("minirt", args, size)
