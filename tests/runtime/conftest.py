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
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import minirt.api
from minirt.kernel import cgroups
from minirt.runtime import capture
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
            _, out, err = capture.captured(c.start, None)
            result = capture.Result(c.wait(), out, err, c.id)
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


