"""cgroups: detection, the v2 driver on a scratch tree and on the real cgroup2
mount, the v1 driver on the real host."""

import os
import signal
import time

import pytest

from minirt.errors import RuntimeFailure
from minirt.kernel import cgroups
from minirt.kernel.cgroups import Hierarchy, Resources

PARENT = os.environ.get("MINIRT_CGROUP_PARENT", "minirt-test")

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:38 / /mnt/again rw,relatime - cgroup2 cgroup2 rw
"""
PURE_V2 = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_detects_hybrid_as_v1_and_joins_the_unified_tree_too(tmp_path):
    (tmp_path / "mi").write_text(HYBRID)
    trees = cgroups.hierarchies(str(tmp_path / "mi"))
    assert cgroups.detect(trees) == "v1"
    assert [t.mountpoint for t in trees] == ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory",
                                            "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"]
    cg = cgroups.for_container("abc", "minirt", trees)
    assert cg.version == "v1"
    assert cg.dirs[-1] == "/sys/fs/cgroup/unified/minirt/abc"


def test_detects_pure_v2(tmp_path):
    (tmp_path / "mi").write_text(PURE_V2)
    trees = cgroups.hierarchies(str(tmp_path / "mi"))
    assert cgroups.detect(trees) == "v2"
    assert cgroups.for_container("abc", "minirt", trees).dirs == ["/sys/fs/cgroup/minirt/abc"]


@pytest.fixture
def scratch_v2(tmp_path):
    """A directory tree shaped like a cgroup2 root with every controller offered."""
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "minirt").mkdir()
    (root / "minirt" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "minirt" / "cgroup.subtree_control").write_text("")
    return root


def test_v2_limit_files(scratch_v2):
    cg = cgroups.for_container("c1", "minirt", [Hierarchy(str(scratch_v2), "v2", frozenset())])
    cg.create()
    cg.set_limits(Resources(memory=64 << 20, memory_swap=96 << 20, pids_limit=20, cpus=1.5,
                            cpu_shares=512, cpuset_cpus="0"))
    d = scratch_v2 / "minirt" / "c1"
    assert (d / "memory.max").read_text() == str(64 << 20)
    assert (d / "memory.swap.max").read_text() == str(32 << 20)
    assert (d / "pids.max").read_text() == "20"
    assert (d / "cpu.max").read_text() == "150000 100000"
    assert (d / "cpu.weight").read_text() == str(1 + (510 * 9999) // 262142)
    assert (d / "cpuset.cpus").read_text() == "0"
    for level in (scratch_v2, scratch_v2 / "minirt"):
        assert (level / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory +pids"


def test_v2_unlimited_values(scratch_v2):
    cg = cgroups.for_container("c2", "minirt", [Hierarchy(str(scratch_v2), "v2", frozenset())])
    cg.create()
    cg.set_limits(Resources(memory=1 << 20, memory_swap=-1, pids_limit=0))
    d = scratch_v2 / "minirt" / "c2"
    assert (d / "memory.swap.max").read_text() == "max"
    assert (d / "pids.max").read_text() == "max"


def test_v2_controller_not_delegated_is_a_clear_error(scratch_v2):
    (scratch_v2 / "minirt" / "cgroup.controllers").write_text("cpu\n")
    cg = cgroups.for_container("c3", "minirt", [Hierarchy(str(scratch_v2), "v2", frozenset())])
    cg.create()
    with pytest.raises(RuntimeFailure, match="memory not delegated"):
        cg.set_limits(Resources(memory=1 << 20))


def _child_in(cg):
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    cg.add(pid)
    return pid


@pytest.mark.privileged
def test_v2_placement_on_the_real_cgroup2_mount():
    v2 = [t for t in cgroups.hierarchies() if t.version == "v2"]
    if not v2:
        pytest.skip("no cgroup2 mount on this host")
    cg = cgroups.CgroupV2(f"/{PARENT}/v2-place", v2)
    cg.create()
    pid = _child_in(cg)
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"0::/{PARENT}/v2-place\n" in f.read()
        assert cg.pids() == [pid]
    finally:
        cg.remove()
        os.waitpid(pid, 0)
    assert not cg.exists()


@pytest.mark.privileged
def test_host_driver_limits_and_removal():
    cg = cgroups.for_container("limits", PARENT)
    cg.create()
    pid = _child_in(cg)
    try:
        cg.set_limits(Resources(memory=32 << 20, pids_limit=7, cpus=0.5, cpu_shares=256))
        if cg.version == "v1":
            assert open(os.path.join(cg._dir_for("memory"), "memory.limit_in_bytes")).read().strip() == str(32 << 20)
            assert open(os.path.join(cg._dir_for("pids"), "pids.max")).read().strip() == "7"
            assert open(os.path.join(cg._dir_for("cpu"), "cpu.cfs_quota_us")).read().strip() == "50000"
        else:
            assert open(os.path.join(cg.dirs[0], "memory.max")).read().strip() == str(32 << 20)
        assert cg.oom_killed() is False
    finally:
        cg.remove()  # kills the child first
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert not cg.exists()
