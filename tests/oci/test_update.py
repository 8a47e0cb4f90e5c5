"""minirt-runc update, and delete --force, as runc's: each limit set alone
and the others left as they are, runc's flags and JSON, its refusals (which
change nothing), and a forced delete that kills everything."""

import json
import os
import subprocess

import pytest

from minirt.kernel import cgroups

V1 = cgroups.detect() == "v1"
# Each limit's file: v1 (controller, file), v2 file.
FILES = {
    "memory": (("memory", "memory.limit_in_bytes"), "memory.max"),
    "swap": (("memory", "memory.memsw.limit_in_bytes"), "memory.swap.max"),
    "reservation": (("memory", "memory.soft_limit_in_bytes"), "memory.low"),
    "pids": (("pids", "pids.max"), "pids.max"),
    "quota": (("cpu", "cpu.cfs_quota_us"), None),
    "period": (("cpu", "cpu.cfs_period_us"), None),
    "cpu.max": (None, "cpu.max"),
    "shares": (("cpu", "cpu.shares"), "cpu.weight"),
    "cpus": (("cpuset", "cpuset.cpus"), "cpuset.cpus"),
}


class Limits:
    """The limits of a container's cgroup, read from the kernel."""

    def __init__(self, cgroup):
        self.cgroup = cgroup

    def path(self, key):
        v1, v2 = FILES[key]
        if V1:
            return v1 and f"/sys/fs/cgroup/{v1[0]}{self.cgroup}/{v1[1]}"
        return v2 and f"/sys/fs/cgroup{self.cgroup}/{v2}"

    def __getitem__(self, key):
        with open(self.path(key)) as f:
            return f.read().strip()

    def all(self):
        return {key: self[key] for key in FILES if self.path(key) and os.path.exists(self.path(key))}


@pytest.fixture
def running(detached):
    """A running container whose config.json sets runc's bats' starting limits."""
    cid, cgroup = detached(linux__resources={
        "memory": {"limit": 33554432, "reservation": 25165824},
        "cpu": {"shares": 100, "quota": 500000, "period": 1000000}, "pids": {"limit": 20}})
    return cid, Limits(cgroup)


@pytest.mark.parametrize("args, message", [
    (["--cpu-period", "abc"], "invalid value for cpu-period: 'abc' is not an unsigned number"),
    (["--cpu-quota", "1.5"], "invalid value for cpu-quota: '1.5' is not a whole number"),
    (["--cpu-period", "100"], "cpu.period must be an integer from 1000 to 1000000, not 100"),
    (["--cpu-quota", "999"], "cpu.quota must be -1 (unlimited) or at least 1000"),
    (["--cpu-share", "1"], "cpu.shares must be an integer from 2 to 262144, not 1"),
    (["--memory", "lots"], "invalid --memory 'lots'"),
    (["--memory", "64m", "--memory-swap", "32m"], "memory+swap limit should be >= memory limit"),
    (["--blkio-weight", "5"], "blockIO.weight must be an integer from 10 to 1000, not 5"),
    (["--cpuset-cpus", "1-0"], "must be a list such as \"0-1,3\", not '1-0'"),
    (["--l3-cache-schema", "L3:0=f"], "Intel RDT/CAT: l3 cache schema is not enabled"),
    (["--frobnicate", "1"], "flag provided but not defined: -frobnicate"),
    # the kernel refuses the last (no memory node 99): the pids limit already written is put back
    (["--pids-limit", "7", "--cpuset-mems", "99"], "cannot set cgroup limit cpuset.mems=99"),
])
def test_bad_values_are_one_line_and_change_nothing(oci, running, args, message):
    cid, limits = running
    before = limits.all()
    r = oci("update", *args, cid)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert limits.all() == before


def test_a_bad_resources_file_changes_nothing(oci, running, tmp_path):
    cid, limits = running
    before = limits.all()
    for text, message in (("{", "--resources"), ('{"cpu": {"quota": "1"}}', "cpu.quota must be an integer"),
                          ('{"cpu": {"idle": 1}}', "linux.resources.cpu.idle is not supported")):
        (tmp_path / "r.json").write_text(text)
        r = oci("update", "-r", str(tmp_path / "r.json"), cid)
        assert r.returncode == 1 and message in r.stderr, r.stderr
    assert limits.all() == before


def test_each_limit_alone_the_others_stay(oci, running):
    cid, limits = running
    assert (limits["memory"], limits["reservation"], limits["pids"]) == ("33554432", "25165824", "20")
    cpu = (lambda: (limits["quota"], limits["period"])) if V1 else (lambda: tuple(limits["cpu.max"].split()))
    assert cpu() == ("500000", "1000000")
    assert oci("update", cid, "--cpu-period", "900000").returncode == 0  # (flags after the id, as runc's)
    assert cpu() == ("500000", "900000")
    assert oci("update", "--cpu-quota", "600000", cid).returncode == 0
    assert cpu() == ("600000", "900000")
    assert oci("update", "--cpu-quota", "-1", cid).returncode == 0
    assert cpu() == ("-1" if V1 else "max", "900000")
    assert oci("update", "--memory", "50M", "--memory-reservation", "32m", cid).returncode == 0
    assert (limits["memory"], limits["reservation"], limits["pids"]) == ("52428800", "33554432", "20")
    assert oci("update", "--pids-limit", "-1", cid).returncode == 0
    assert limits["pids"] == "max"


@pytest.mark.skipif(V1 and not os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
                    reason="this kernel does not account swap")
def test_memory_and_swap_up_and_down_in_either_order(oci, running):
    """v1 wants memory <= memory+swap after each write: runc orders the two."""
    cid, limits = running
    swap = (lambda m, s: str(s)) if V1 else (lambda m, s: str(s - m))
    for memory, total in ((30 << 20, 50 << 20), (60 << 20, 80 << 20), (20 << 20, 30 << 20)):
        r = oci("update", "--memory", str(memory), "--memory-swap", str(total), cid)
        assert r.returncode == 0, r.stderr
        assert (limits["memory"], limits["swap"]) == (str(memory), swap(memory, total))
    assert oci("update", "--memory", "-1", cid).returncode == 0  # (lifts the swap limit as well)
    unlimited = open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read().strip() if V1 else "max"
    assert limits["memory"] == limits["swap"] == unlimited


def test_resources_from_stdin_with_gos_case_blind_keys(oci, running, runtime_path):
    cid, limits = running
    r = subprocess.run([runtime_path, "--root", oci.root, "update", "-r", "-", cid], text=True, capture_output=True,
                       input=json.dumps({"CPU": {"Cpus": "0", "Shares": 200}, "Pids": {"LIMIT": 30}}))
    assert r.returncode == 0, r.stderr
    assert (limits["cpus"], limits["pids"]) == ("0", "30")
    assert limits["shares"] == ("200" if V1 else str(1 + (198 * 9999) // 262142))


def test_a_paused_container_is_updated_and_stays_paused(oci, running):
    cid, limits = running
    assert oci("pause", cid).returncode == 0
    assert oci("update", "--pids-limit", "30", cid).returncode == 0
    assert limits["pids"] == "30"
    assert oci.state(cid)["status"] == "paused"
    assert oci("resume", cid).returncode == 0


def test_delete_force_kills_an_init_that_left_its_cgroup(oci, running):
    """PID 1 moved out of the container's cgroup in every tree: --force
    signals it too (it survived, and delete said it was gone)."""
    cid, limits = running
    pid = oci.state(cid)["pid"]
    for tree in cgroups.hierarchies():
        with open(os.path.join(tree.mountpoint, "cgroup.procs"), "w") as f:
            f.write(str(pid))
    assert oci("delete", "--force", cid).returncode == 0
    with open(f"/proc/{pid}/stat") as f:  # (a zombie: ours to reap, the test process is its subreaper)
        assert f.read().rpartition(")")[2].split()[0] == "Z"
    oci.reap(pid)
    assert cid not in oci.ids()
