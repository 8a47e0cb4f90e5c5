"""``minirt-runc events [--stats] [--interval D]``: a container's usage from its
cgroup in runc's JSON shapes (minirt/oci/stats.py)."""

import json
import os
import time

import pytest

from minirt.kernel import cgroups
from minirt.oci import stats

pytestmark = pytest.mark.privileged

MIB = 1 << 20


def started(oci, bundle, tmp_path, cid, args, **changes):
    assert oci("create", "--bundle", bundle(args, **changes), "--pid-file", str(tmp_path / cid), cid).returncode == 0
    assert oci("start", cid).returncode == 0
    return int((tmp_path / cid).read_text())


def test_stats_once_in_runcs_shape(oci, bundle, tmp_path):
    spin = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 100 & wait"
    pid = started(oci, bundle, tmp_path, "e1", ["sh", "-c", spin],
                  linux__resources={"memory": {"limit": 64 * MIB}, "pids": {"limit": 50}})
    r = oci("events", "--stats", "e1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert (event["type"], event["id"]) == ("stats", "e1")
    data = event["data"]
    assert set(data) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"}
    assert data["network_interfaces"] is None and data["intel_rdt"] == {} and data["hugetlb"] == {}
    usage = data["cpu"]["usage"]
    assert usage["total"] > 0 and {"kernel", "user"} <= set(usage)
    memory = data["memory"]
    assert memory["usage"]["limit"] == 64 * MIB and 0 < memory["usage"]["usage"] < 64 * MIB
    assert memory["usage"]["failcnt"] == 0 and memory["raw"]
    assert data["pids"] == {"current": 2, "limit": 50}  # sh and sleep
    assert oci("delete", "--force", "e1").returncode == 0
    oci.reap(pid)


def test_events_every_interval_until_the_container_stops_with_its_oom(oci, bundle, tmp_path):
    # tail looks for the end of a line in an endless file: it grows until the OOM killer takes it
    pid = started(oci, bundle, tmp_path, "e2", ["sh", "-c", "sleep 0.3; tail /dev/zero; sleep 0.5"],
                  linux__resources={"memory": {"limit": 16 * MIB, "swap": 16 * MIB}})
    r = oci("events", "--interval", "100ms", "e2")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds.count("oom") == 1 and kinds.count("stats") >= 3
    assert all(e["id"] == "e2" for e in events)
    assert os.WEXITSTATUS(oci.reap(pid)) == 0
    r = oci("events", "--stats", "e2")
    assert r.returncode == 1 and "container with id e2 is not running" in r.stderr
    assert oci("delete", "e2").returncode == 0


@pytest.mark.parametrize("interval", ["0s", "x", "5", "-1s", "1s5"])
def test_a_bad_interval_is_refused(oci, interval):
    r = oci("events", "--interval", interval, "nope")
    assert r.returncode == 1 and f"invalid value {interval!r} for --interval" in r.stderr


def test_no_events_of_a_container_not_started_or_not_there(oci, bundle, tmp_path):
    assert oci("create", "--bundle", bundle(["true"]), "--pid-file", str(tmp_path / "pid"), "e3").returncode == 0
    r = oci("events", "--stats", "e3")
    assert r.returncode == 1 and "container with id e3 is not running" in r.stderr
    assert oci("delete", "--force", "e3").returncode == 0
    oci.reap(int((tmp_path / "pid").read_text()))
    r = oci("events", "nope")
    assert r.returncode == 1 and "container does not exist: nope" in r.stderr


def test_cgroup_v2_files_read_as_runc_reads_them(tmp_path):
    """cgroup v2's names and units (this host's cgroup2 tree has no controllers
    to show them: its files are laid out here as the kernel writes them)."""
    files = {"cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\n"
                         "throttled_usec 20\n",
             "memory.current": "4096\n", "memory.max": "max\n", "memory.peak": "8192\n",
             "memory.swap.current": "0\n", "memory.swap.max": "1048576\n", "memory.stat": "anon 1024\nfile 2048\n",
             "pids.current": "3\n", "pids.max": "max\n", "io.stat": "8:0 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    data = stats.read(cgroups.CgroupV2(str(tmp_path), [cgroups.Hierarchy("/", "v2", frozenset())]))
    assert data["cpu"] == {"usage": {"total": 1500000, "kernel": 500000, "user": 1000000},
                           "throttling": {"periods": 4, "throttledPeriods": 1, "throttledTime": 20000}}
    assert data["memory"]["cache"] == 2048 and data["memory"]["raw"] == {"anon": 1024, "file": 2048}
    assert data["memory"]["usage"] == {"limit": stats.MAX, "usage": 4096, "max": 8192, "failcnt": 0}
    assert data["memory"]["swap"] == {"limit": stats.MAX, "usage": 4096, "failcnt": 0}  # + memory, as v1 counts
    assert data["pids"] == {"current": 3}
    assert data["blkio"] == {"ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 512},
                                                         {"major": 8, "op": "Write"}],
                             "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 1},
                                                     {"major": 8, "op": "Write"}]}


def test_a_live_cgroup2_directory_reads_too(oci, bundle, tmp_path):
    """On this hybrid host the container's cgroup2 directory has cpu.stat (a
    core file): read through the v2 driver, it counts the same CPU time."""
    trees = cgroups.hierarchies()
    unified = [t for t in trees if t.version == "v2"]
    # Busy long enough for the tick-sampled user/system split to see it (a few
    # ms of shell can all be counted as system time).
    b = bundle(["sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 100"])
    path = json.loads(open(os.path.join(b, "config.json")).read())["linux"]["cgroupsPath"]
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "e4").returncode == 0
    assert oci("start", "e4").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    try:
        deadline = time.monotonic() + 20
        while True:
            usage = stats.read(cgroups.CgroupV2(path, unified[:1]))["cpu"]["usage"]
            if usage["user"] > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert usage["total"] > 0 and usage["user"] > 0
    finally:
        assert oci("delete", "--force", "e4").returncode == 0
        oci.reap(pid)
