"""The plugin's tests drive inner pytest sessions: ``inner`` writes test files
(after a prelude that marks them with the busybox image and notes each run's
name) into a directory of its own, runs ``pytest -p minirt.testing`` there with
a ``--minirt-root`` of its own, and checks at the end that none of the inner
runs left a run directory, a cgroup or a process.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Prepended to every inner test file: the image, and a test-side note of the run.
PRELUDE = """\
import errno, os, time
import pytest
from minirt.testing.assertions import *

IMAGE = {image!r}
pytestmark = pytest.mark.minirt(image=IMAGE)


def address_of(c):  # the container's address on its network, as its /etc/hosts says
    r = c.exec("hostname", "-i")
    assert r.exit_code == 0 and r.stdout.split(), (r, c.exec("cat", "/etc/hosts"), c.exec("ip", "-o", "addr"))
    return r.stdout.decode().split()[0]


@pytest.fixture(autouse=True)
def _noted(minirt_run):
    with open("runs.txt", "a") as f:
        f.write(minirt_run.name + "\\n")
"""


class Inner:
    """A directory with test files, and ``pytest -p minirt.testing`` run in it."""

    def __init__(self, directory, image):
        self.dir, self.image = directory, image
        self.base = os.path.join(directory, "minirt-base")

    def write(self, name, body):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(PRELUDE.format(image=self.image) + textwrap.dedent(body))

    def argv(self, *args):
        return [sys.executable, "-m", "pytest", "-p", "minirt.testing", "-p", "no:cacheprovider",
                "--minirt-root", self.base, "-q", "-rA", *args]

    def env(self):
        return {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}

    def run(self, *args, timeout=300):
        r = subprocess.run(self.argv(*args), cwd=self.dir, env=self.env(), capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode() + r.stderr.decode()

    def runs(self):
        try:
            with open(os.path.join(self.dir, "runs.txt")) as f:
                return sorted(set(f.read().split()))
        except FileNotFoundError:
            return []

    def leftovers(self):
        """Run directories (and their containers' in RAM), cgroups and processes of the inner
        sessions still on the host."""
        left = [d for d in glob.glob(os.path.join(self.base, "runs", "*"))]
        for name in self.runs():
            parent = f"minirt-pytest-{name}"
            left += glob.glob(f"/sys/fs/cgroup/{parent}") + glob.glob(f"/sys/fs/cgroup/*/{parent}")
            left += glob.glob(f"/dev/shm/{parent}-*")
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/cgroup") as f:
                        ours = parent in f.read()
                    with open(f"/proc/{pid}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue
                # A killed session's foreground container was its child: once
                # dead, the host's init reaps it (a zombie holds no cgroup).
                if ours and stat.rsplit(")", 1)[1].split()[0] != "Z":
                    left.append(f"process {stat}")
        return left


@pytest.fixture
def inner(tmp_path, busybox_image):
    made = Inner(str(tmp_path), busybox_image)
    yield made
    assert made.leftovers() == []


@pytest.fixture
def world_inner(busybox_image):
    """An ``inner`` whose directory (and image) another user may enter, not under
    pytest's private temporary directory; removed at the end."""
    d = tempfile.mkdtemp(prefix="minirt-pytest-inner-")
    try:
        os.chmod(d, 0o755)
        image = os.path.join(d, "busybox.tar")
        shutil.copyfile(busybox_image, image)
        made = Inner(d, image)
        yield made
        assert made.leftovers() == []
    finally:
        shutil.rmtree(d, ignore_errors=True)
