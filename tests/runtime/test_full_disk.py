"""A container that fills the state root's file system.

Its writable layer lives in the state root, so a container can fill the disk
minirt keeps its state on.  Then reading state must not need a byte (``ps``,
``inspect``), removing must work, and a foreground run still reports the
container's exit code.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from minirt.kernel import libc

pytestmark = pytest.mark.privileged

FILL = "dd if=/dev/zero of=/fill bs=64k 2>/dev/null; echo full; exit 3"


@pytest.fixture
def small_root():
    """A state root on an 8 MB tmpfs of its own."""
    d = tempfile.mkdtemp(prefix="minirt-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", d], check=True)
    try:
        yield d
    finally:
        left = [c for c in os.listdir(os.path.join(d, "containers")) if not c.startswith(".")] \
            if os.path.isdir(os.path.join(d, "containers")) else []
        if left:
            minirt(d, "rm", "-f", *left)
        minirt(d, "system", "prune")
        libc.umount(d, 0)
        shutil.rmtree(d)


def minirt(root, *args):
    return subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args],
                          capture_output=True, timeout=60)


def test_a_container_that_fills_the_disk_stays_visible_and_removable(small_root, busybox_image):
    r = minirt(small_root, "run", "--name", "filler", busybox_image, "sh", "-c", FILL)
    assert (r.returncode, r.stdout) == (3, b"full\n"), r.stderr
    with open(os.path.join(small_root, "probe"), "wb") as f:  # the disk is still full
        with pytest.raises(OSError):
            f.write(b"x" * 65536)
            f.flush()
    os.unlink(os.path.join(small_root, "probe"))

    r = minirt(small_root, "ps", "-a")
    assert r.returncode == 0 and b"filler" in r.stdout and b"Exited (3)" in r.stdout, r
    r = minirt(small_root, "inspect", "filler")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["State"]["ExitCode"] == 3
    r = minirt(small_root, "rm", "-f", "filler")
    assert r.returncode == 0, r.stderr
    assert minirt(small_root, "ps", "-aq").stdout == b""


def test_a_running_container_on_a_full_disk_is_listed_inspected_and_removed(small_root, busybox_image):
    r = minirt(small_root, "run", "-d", "--name", "filler", busybox_image, "sh", "-c",
               "dd if=/dev/zero of=/fill bs=64k 2>/dev/null; touch /done; sleep 60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    upper = os.path.join(small_root, "containers", cid, "upper")
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(upper, "done")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(os.path.join(upper, "done"))

    r = minirt(small_root, "ps")
    assert r.returncode == 0 and b"filler" in r.stdout and b"Up " in r.stdout, r
    r = minirt(small_root, "inspect", "filler")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["State"]["Running"], r.stderr
    r = minirt(small_root, "rm", "-f", "filler")
    assert r.returncode == 0, r.stderr
    assert minirt(small_root, "ps", "-aq").stdout == b""
    assert os.listdir(os.path.join(small_root, "containers")) == []
