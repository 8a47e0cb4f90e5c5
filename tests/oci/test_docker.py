"""dockerd drives the runtime under test, added with ``--add-runtime oci=PATH``
and chosen with ``docker run --runtime oci`` (tests/engines.py: Docker;
../shared/conformance/engine-argv.txt: what its containerd shim asks of the
runtime).  Each test runs once per runtime (conftest.py)."""

import json
import os

import pytest

pytestmark = pytest.mark.privileged
CGROUP_PARENT = os.environ["MINIRT_CGROUP_PARENT"]  # the session's (tests/conftest.py)


def state_root(runtime_calls):
    """The runtime's --root that dockerd's shim gave it (exec-root/runtime-*/moby)."""
    roots = {words[words.index("--root") + 1] for words in runtime_calls() if "--root" in words}
    assert len(roots) == 1, runtime_calls()
    return roots.pop()


def test_run_gives_output_and_exit_status(oci_docker):
    r = oci_docker("run", "--rm", "--runtime", "oci", "--network", "none", "busybox",
                   "sh", "-c", "echo out; echo err >&2; cat /proc/self/cgroup; exit 3")
    assert r.returncode == 3, r.stderr.decode()
    assert r.stdout.decode().startswith("out\n") and r.stderr == b"err\n"
    assert f"/{CGROUP_PARENT}/" in r.stdout.decode()  # dockerd's --cgroup-parent, honoured


def test_exec_pause_metrics_kill_delete(oci_docker, runtime_state, runtime_calls):
    docker = oci_docker
    r = docker("run", "-d", "--runtime", "oci", "--network", "none", "busybox", "sleep", "1000")
    assert r.returncode == 0, r.stderr.decode()
    cid = r.stdout.decode().strip()
    try:
        assert docker("inspect", "-f", "{{.HostConfig.Runtime}}", cid).stdout == b"oci\n"
        root = state_root(runtime_calls)
        assert root.startswith(docker.exec_root + "/")
        assert runtime_state(root, cid)["status"] == "running"  # this runtime made it

        r = docker("exec", cid, "sh", "-c", "echo $((6*7)); exit 4")
        assert (r.returncode, r.stdout) == (4, b"42\n"), r.stderr.decode()

        assert docker("pause", cid).returncode == 0
        assert docker.status(cid) == "paused" and runtime_state(root, cid)["status"] == "paused"
        assert docker("unpause", cid).returncode == 0
        assert docker.status(cid) == "running"

        stats = json.loads(docker("stats", "--no-stream", "--format", "{{json .}}", cid).stdout)
        assert stats["PIDs"] == "1" and not stats["MemUsage"].startswith("0B"), stats

        assert docker("kill", cid).returncode == 0
        docker.wait_for(cid, "exited")
        assert docker("inspect", "-f", "{{.State.ExitCode}}", cid).stdout == b"137\n"
        assert runtime_state(root, cid) is None  # deleted from the runtime
        assert docker("rm", cid).returncode == 0
    finally:
        docker("rm", "-f", cid)
    # dockerd's shim called the binary added as "oci", as engine-argv.txt has it.
    assert {"create", "start", "exec", "pause", "resume", "kill", "delete"} <= runtime_calls.verbs()
    assert all("--log-format json" in " ".join(words) for words in runtime_calls()), runtime_calls()


def test_limits_at_run_and_by_update(oci_docker, runtime_calls):
    """docker run's limits reach config.json's linux.resources, and docker
    update's the runtime's ``update -r -`` (JSON on stdin)."""
    docker = oci_docker
    r = docker("run", "-d", "--runtime", "oci", "--network", "none", "--memory", "64m", "--cpus", "0.5",
               "--pids-limit", "50", "busybox", "sleep", "1000")
    assert r.returncode == 0, r.stderr.decode()
    cid = r.stdout.decode().strip()
    v1 = docker("exec", cid, "test", "-d", "/sys/fs/cgroup/memory").returncode == 0
    files = ("memory/memory.limit_in_bytes", "pids/pids.max", "cpu/cpu.cfs_quota_us") if v1 else (
        "memory.max", "pids.max", "cpu.max")

    def limits():
        r = docker("exec", cid, "cat", *(f"/sys/fs/cgroup/{f}" for f in files))
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode().split("\n")[:3]

    try:
        assert limits() == [str(64 << 20), "50", "50000" if v1 else "50000 100000"]
        r = docker("update", "--memory", "96m", "--memory-swap", "192m", "--pids-limit", "60", "--cpus", "1", cid)
        assert r.returncode == 0, r.stderr.decode()
        assert limits() == [str(96 << 20), "60", "100000" if v1 else "100000 100000"]
    finally:
        docker("rm", "-f", cid)
    assert "update" in runtime_calls.verbs()
