"""minirt-runc exec --cgroup (runc 1.1): a process run in a cgroup below the
container's, in one tree ([CONTROLLER[,...]:]PATH) or in all of them."""

import os

import pytest

from minirt.kernel import cgroups

TREES = cgroups.hierarchies()
V1 = cgroups.detect(TREES) == "v1"


@pytest.fixture
def running(detached):
    cid, path = detached()
    return cid, cgroups.at(path)


@pytest.mark.parametrize("args, message", [
    (["--cgroup", ".."], ".. is not a sub cgroup path"),
    (["--cgroup", "nonexistent"], "/nonexistent/cgroup.procs: no such file or directory"),
    (["--cgroup", "whaaat:/"], "unknown controller whaaat in SubCgroupPaths"),
    (["--cgroup", "a:b:c"], "invalid --cgroup argument: a:b:c"),
    (["--cgroup", "x", "--cgroup", "y"], "invalid --cgroup argument: x (missing <controller>: prefix)"),
])
def test_a_bad_cgroup_is_one_line_and_runs_nothing(oci, running, args, message):
    cid, _ = running
    r = oci("exec", *args, cid, "touch", "/ran")
    assert r.returncode == 255
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert oci("exec", cid, "test", "!", "-e", "/ran").returncode == 0


def test_exec_joins_the_cgroups_named(oci, running):
    cid, cgroup = running
    for d in cgroup.dirs:
        os.mkdir(os.path.join(d, "sub"))  # (removed with the container's cgroup)
        for name in ("cpuset.cpus", "cpuset.mems"):  # (v1 cpuset: empty, until filled in)
            if os.path.exists(os.path.join(d, name)):
                with open(os.path.join(d, name)) as parent, open(os.path.join(d, "sub", name), "w") as f:
                    f.write(parent.read())
    r = oci("exec", "--cgroup", "sub", cid, "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    assert {line.split(":", 2)[2] for line in r.stdout.splitlines()} == {cgroup.path + "/sub"}
    if V1:
        r = oci("exec", "--cgroup", "memory:sub", "--cgroup", "pids,cpu:/sub", cid, "cat", "/proc/self/cgroup")
        assert r.returncode == 0, r.stderr
        paths = {tuple(line.split(":", 2)[1:]) for line in r.stdout.splitlines()}
        assert ("memory", cgroup.path + "/sub") in paths and ("pids", cgroup.path + "/sub") in paths
        assert ("devices", cgroup.path) in paths  # (a tree not named: the container's own)
