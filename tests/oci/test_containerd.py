"""containerd drives the runtime under test through its runc shim, as a
Kubernetes node would for a RuntimeClass whose handler is that runtime
(tests/engines.py: Containerd; ../shared/conformance/engine-argv.txt: what the
shim asks of the runtime).  Each test runs once per runtime (conftest.py)."""

import os
import time

import pytest

pytestmark = pytest.mark.privileged
CGROUP_PARENT = os.environ["MINIRT_CGROUP_PARENT"]  # the session's (tests/conftest.py)
IMAGE = "busybox:latest"


def tasks(ctr):
    """``ctr tasks list``: container id -> status (RUNNING, PAUSED, STOPPED)."""
    lines = ctr("tasks", "list").stdout.decode().splitlines()[1:]
    return {line.split()[0]: line.split()[2] for line in lines}


def wait_for_status(ctr, cid, status, timeout=20):
    deadline = time.monotonic() + timeout
    while tasks(ctr).get(cid) != status:
        assert time.monotonic() < deadline, f"{cid} is {tasks(ctr).get(cid)}, not {status}"
        time.sleep(0.05)


def test_the_runtime_is_a_handler_the_cri_plugin_accepts(oci_containerd, runtime):
    """The configuration a RuntimeClass needs loads: the CRI plugin checks its
    runtimes (a default handler that is not configured stops it)."""
    plugins = oci_containerd("plugins", "list").stdout.decode().splitlines()
    cri, = [line.split() for line in plugins if " cri " in line]
    assert cri[-1] == "ok", "\n".join(plugins)
    with open(os.path.join(oci_containerd.dir, "config.toml")) as f:
        assert f'BinaryName = "{runtime}"' in f.read()


def test_run_gives_output_and_exit_status(oci_containerd):
    r = oci_containerd.ctr_run("oci", IMAGE, "ctr-run", "sh", "-c", "echo out; echo err >&2; cat /proc/self/cgroup; exit 3")
    assert r.returncode == 3, r.stderr.decode()
    out = r.stdout.decode()
    assert out.startswith("out\n")
    assert f"/{CGROUP_PARENT}/ctr-run" in out  # the cgroup ctr asked for: where the shim reads metrics
    assert "ctr-run" not in oci_containerd("containers", "list", "--quiet").stdout.decode()  # --rm


def test_exec_pause_metrics_kill_delete(oci_containerd, runtime_state, runtime_calls):
    ctr, cid = oci_containerd, "ctr-life"
    r = ctr.ctr_run("oci", IMAGE, cid, "sleep", "1000", detach=True)
    assert r.returncode == 0, r.stderr.decode()
    root = os.path.join(ctr.runtime_root("oci"), ctr.NAMESPACE)
    try:
        wait_for_status(ctr, cid, "RUNNING")
        assert runtime_state(root, cid)["status"] == "running"  # this runtime made it

        r = ctr("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo $((6*7)); exit 4")
        assert (r.returncode, r.stdout) == (4, b"42\n"), r.stderr.decode()

        assert ctr("tasks", "pause", cid).returncode == 0
        wait_for_status(ctr, cid, "PAUSED")
        assert runtime_state(root, cid)["status"] == "paused"
        assert ctr("tasks", "resume", cid).returncode == 0
        wait_for_status(ctr, cid, "RUNNING")

        metrics = ctr("tasks", "metrics", cid).stdout.decode()  # the shim reads the cgroup itself
        pids = [line.split()[1] for line in metrics.splitlines() if line.startswith("pids.current")]
        assert pids and int(pids[0]) >= 1, metrics

        assert ctr("tasks", "kill", "--signal", "SIGKILL", cid).returncode == 0
        wait_for_status(ctr, cid, "STOPPED")
        assert ctr("tasks", "delete", cid).returncode == 0
        assert runtime_state(root, cid) is None
        assert cid not in tasks(ctr)
    finally:
        ctr("tasks", "delete", "--force", cid)
        ctr("containers", "delete", cid)
    assert not [d for d in _cgroup_dirs(cid) if os.path.exists(d)]
    # The shim called the binary it was given, each time with the root it was given.
    assert {"create", "start", "exec", "pause", "resume", "kill", "delete"} <= runtime_calls.verbs()
    assert all(words[:2] == ["--root", root] for words in runtime_calls()), runtime_calls()


def _cgroup_dirs(cid):
    base = "/sys/fs/cgroup"
    if os.path.exists(os.path.join(base, "cgroup.controllers")):
        return [os.path.join(base, CGROUP_PARENT, cid)]
    return [os.path.join(base, c, CGROUP_PARENT, cid) for c in os.listdir(base)]
