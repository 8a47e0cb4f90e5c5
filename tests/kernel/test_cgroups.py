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
CLONE_NEWPID = 0x20000000

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


def _scratch_cgroup(scratch_v2, name):
    cg = cgroups.for_container(name, "minirt", [Hierarchy(str(scratch_v2), "v2", frozenset())])
    cg.create()
    return cg, scratch_v2 / "minirt" / name


def test_v2_runc_conversions(scratch_v2):
    """OCI's v1 terms onto v2 files as runc converts them: swap alone, not
    memory+swap; shares and blkio weight linearly onto cpu.weight and
    io.weight; a reservation is memory.low; unified files are written last."""
    cg, d = _scratch_cgroup(scratch_v2, "c5")
    cg.set_limits(Resources(memory=52428800, memory_swap=96468992, memory_reservation=25165824, cpu_shares=100,
                            cpu_quota=500000, cpu_period=1000000, cpuset_mems="0", blkio_weight=333,
                            unified={"pids.max": "10"}))
    assert (d / "memory.swap.max").read_text() == str(96468992 - 52428800)
    assert (d / "memory.low").read_text() == "25165824"
    assert (d / "cpu.weight").read_text() == "4"  # (runc's bats: shares 100 is weight 4)
    assert (d / "cpu.max").read_text() == "500000 1000000"
    assert (d / "cpuset.mems").read_text() == "0"
    assert (d / "io.weight").read_text() == str(1 + (333 - 10) * 9999 // 990)
    assert (d / "pids.max").read_text() == "10"
    assert "+io" in (scratch_v2 / "minirt" / "cgroup.subtree_control").read_text()


def test_v2_cpu_max_keeps_the_half_not_given(scratch_v2):
    cg, d = _scratch_cgroup(scratch_v2, "c6")
    cg.set_limits(Resources(cpu_period=50000))  # (no cpu.max yet: the kernel's "max 100000")
    assert (d / "cpu.max").read_text() == "max 50000"
    (d / "cpu.max").write_text("500000 1000000")
    cg.set_limits(Resources(cpu_period=900000))
    assert (d / "cpu.max").read_text() == "500000 900000"
    cg.set_limits(Resources(cpu_quota=600000))
    assert (d / "cpu.max").read_text() == "600000 900000"
    cg.set_limits(Resources(cpu_quota=-1))
    assert (d / "cpu.max").read_text() == "max 900000"


def test_v2_memory_unlimited_lifts_swap_too_and_bfq_takes_device_weights(scratch_v2):
    cg, d = _scratch_cgroup(scratch_v2, "c7")
    (d / "io.bfq.weight").write_text("default 100\n")
    cg.set_limits(Resources(memory=-1, blkio_weight_device=((7, 0, 444),)))
    assert (d / "memory.max").read_text() == (d / "memory.swap.max").read_text() == "max"
    assert (d / "io.bfq.weight").read_text() == "7:0 444"  # (the kernel's file keeps each line)
    assert not (d / "io.weight").exists()


@pytest.mark.parametrize("limits, message", [
    ({"memory_swap": 64 << 20}, "unable to set swap limit without memory limit"),
    ({"memory": 64 << 20, "memory_swap": 32 << 20}, "memory+swap limit should be >= memory limit"),
    ({"cpu_rt_runtime": 500}, "realtime CPU limits"),
])
def test_v2_refusals_are_runcs_and_write_nothing(scratch_v2, limits, message):
    cg, d = _scratch_cgroup(scratch_v2, "c8")
    before = sorted(os.listdir(d))
    with pytest.raises(RuntimeFailure, match=message.replace("+", r"\+")):
        cg.set_limits(Resources(**limits))
    assert sorted(os.listdir(d)) == before


def test_v2_controller_not_delegated_is_a_clear_error(scratch_v2):
    (scratch_v2 / "minirt" / "cgroup.controllers").write_text("cpu\n")
    cg = cgroups.for_container("c3", "minirt", [Hierarchy(str(scratch_v2), "v2", frozenset())])
    cg.create()
    with pytest.raises(RuntimeFailure, match="memory not delegated"):
        cg.set_limits(Resources(memory=1 << 20))


def test_v1_driver_fills_in_cpuset_only_in_a_v1_cpuset_tree(tmp_path, scratch_v2):
    """A v1 cpuset cgroup starts empty and must copy its parent's cpus and
    mems; a cgroup2 tree that offers cpuset (a hybrid host booted with
    cgroup_no_v1=cpuset, or a pure v2 host seen by the v1 driver) needs
    nothing of the kind and has no such files until cpuset is enabled."""
    v1 = tmp_path / "cpuset"
    (v1 / "minirt" / "c4").mkdir(parents=True)  # with the empty files the kernel makes
    for name, value in (("cpuset.cpus", "0-1"), ("cpuset.mems", "0")):
        (v1 / name).write_text(value)
        (v1 / "minirt" / name).write_text("")
        (v1 / "minirt" / "c4" / name).write_text("")
    cg = cgroups.CgroupV1("/minirt/c4", [Hierarchy(str(v1), "v1", frozenset({"cpuset"})),
                                         Hierarchy(str(scratch_v2), "v2", frozenset({"cpuset", "pids"}))])
    cg.create()
    assert (v1 / "minirt" / "c4" / "cpuset.cpus").read_text() == "0-1"
    assert (v1 / "minirt" / "c4" / "cpuset.mems").read_text() == "0"
    assert os.listdir(scratch_v2 / "minirt" / "c4") == []


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


# -- entering by oneself: clone3(CLONE_INTO_CGROUP) and `tasks` <- 0 ---------------

def _own_cgroups():
    """This process's cgroup in each tree, as /proc/self/cgroup lists them."""
    with open("/proc/self/cgroup") as f:
        return {line.split(":", 2)[1]: line.rstrip("\n").split(":", 2)[2] for line in f}


def _in_child(entry, then=lambda: None, flags=0):
    """clone_into(entry, flags) from a freshly forked, single-threaded process (as
    the container's helper is); the child runs ``then``.  Returns (born_inside,
    the child's cgroups at birth, its cgroups after ``then``, its pid)."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(r)
            pid, born_inside = cgroups.clone_into(entry, flags)
            if pid == 0:
                before = _own_cgroups()
                then()
                os.write(w, repr((born_inside, before, _own_cgroups(), os.getpid())).encode())
                os._exit(0)
            os._exit(os.waitpid(pid, 0)[1])
        finally:
            os._exit(1)
    os.close(w)
    with os.fdopen(r) as f:
        report = f.read()
    _, status = os.waitpid(middle, 0)
    assert status == 0 and report, "the child failed"
    return eval(report)  # noqa: S307 (our own child's repr of a bool, two dicts and an int)


@pytest.mark.privileged
@pytest.mark.parametrize("flags", [0, CLONE_NEWPID], ids=["same-pid-ns", "new-pid-ns"])
def test_a_child_is_born_in_its_cgroup2_cgroup_and_enters_its_v1_cgroups(flags):
    cg = cgroups.for_container("born", PARENT)
    cg.create()
    entry = cg.open_entry()
    try:
        born_inside, before, after, pid = _in_child(entry, then=lambda: cgroups.enter(entry), flags=flags)
    finally:
        entry.close()
        cg.remove()
    assert (pid == 1) == bool(flags)  # PID 1 of its own pid namespace, if asked
    expected = f"/{PARENT}/born"
    if any(t.version == "v2" for t in cg.trees):
        assert born_inside  # this host has clone3 and a cgroup2 mount
        assert before[""] == expected  # before the child did anything itself
    v1 = {name for name in after if name}
    assert all(after[name] == expected for name in v1)
    if cg.version == "v1":
        assert v1 and all(before[name] != expected for name in v1)  # it was enter() that moved it


@pytest.mark.privileged
@pytest.mark.parametrize("flags", [0, CLONE_NEWPID], ids=["same-pid-ns", "new-pid-ns"])
def test_without_clone3_into_the_cgroup_it_is_a_plain_clone(tmp_path, flags):
    """A descriptor that is no cgroup2 directory: clone3 refuses, clone_into
    falls back to clone(2) (a fork, without flags) and says so, so that the
    caller moves the child the slow way.  A new pid namespace still works."""
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        born_inside, before, _, pid = _in_child(cgroups.Entry([], fd), flags=flags)
    finally:
        os.close(fd)
    assert born_inside is False
    assert before == _own_cgroups()
    assert (pid == 1) == bool(flags)


def test_no_entry_is_a_plain_fork():
    born_inside, before, _, pid = _in_child(None)
    assert born_inside is False and before == _own_cgroups() and pid != 1


@pytest.mark.privileged
def test_the_parent_stays_between_containers_and_prune_removes_it_once_empty():
    parent = f"{PARENT}/prunable"
    first, second = cgroups.for_container("one", parent), cgroups.for_container("two", parent)
    first.create()
    second.create()
    first.remove()
    parent_dirs = cgroups.for_container("", parent).dirs
    assert all(os.path.isdir(d) for d in parent_dirs)       # the parent stays
    assert cgroups.remove_empty_parent(parent) is False     # "two" is still in it
    assert second.exists()
    second.remove()
    assert cgroups.remove_empty_parent(parent) is True
    assert not any(os.path.isdir(d) for d in parent_dirs)
    assert cgroups.remove_empty_parent(parent) is False     # nothing (left) to remove
    assert cgroups.remove_empty_parent("/") is False        # never the root
