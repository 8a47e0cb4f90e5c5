"""Shared test set-up: privileged-test policy, the leak check, common fixtures.

- ``@pytest.mark.privileged`` tests need root with working namespaces.  Where
  that is missing they skip — except under ``MINIRT_REQUIRE_PRIVILEGED=1``
  (set by ``.ci/run``), where *every* skip is turned into a failure, so CI can
  never go green by silently not running something.
- At the end of the session the suite fails if anything it created on the host
  is left: a mount, a cgroup, a process.  Containers made by the tests use the
  cgroup parent ``minirt-test-<pid>``, so leftovers are recognisably ours.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

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
