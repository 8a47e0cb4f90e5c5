"""podman (through conmon) drives the runtime under test, given as
``--runtime PATH`` and listed in ``runtime_supports_json`` of the
containers.conf the engine writes (tests/engines.py: Podman;
../shared/conformance/engine-argv.txt: what conmon asks of the runtime).
Each test runs once per runtime (conftest.py)."""

import json
import os

import pytest

pytestmark = pytest.mark.privileged
CGROUP_PARENT = os.environ["MINIRT_CGROUP_PARENT"]  # the session's (tests/conftest.py)


def test_run_gives_output_and_exit_status(oci_podman, runtime):
    r = oci_podman.run("busybox", "sh", "-c", "echo out; echo err >&2; cat /proc/self/cgroup; exit 3")
    assert r.returncode == 3, r.stderr.decode()
    assert r.stdout.decode().startswith("out\n") and r.stderr == b"err\n"
    assert f"/{CGROUP_PARENT}/" in r.stdout.decode()


def test_exec_pause_metrics_kill_delete(oci_podman, runtime, runtime_state, runtime_calls):
    podman = oci_podman
    r = podman.run("busybox", "sleep", "1000", detach=True)
    assert r.returncode == 0, r.stderr.decode()
    cid = r.stdout.decode().strip()
    try:
        assert podman("inspect", "-f", "{{.OCIRuntime}}", cid).stdout.decode().strip() == runtime
        assert runtime_state(None, cid)["status"] == "running"  # this runtime made it (conmon passes no --root)

        r = podman("exec", cid, "sh", "-c", "echo $((6*7)); exit 4")
        assert (r.returncode, r.stdout) == (4, b"42\n"), r.stderr.decode()

        assert podman("pause", cid).returncode == 0
        assert podman.status(cid) == "paused" and runtime_state(None, cid)["status"] == "paused"
        assert podman("unpause", cid).returncode == 0
        assert podman.status(cid) == "running"

        stats = json.loads(podman("stats", "--no-stream", "--format", "json", cid).stdout)
        assert stats[0]["pids"] == "1", stats

        assert podman("kill", cid).returncode == 0
        podman.wait_for(cid, "exited")
        assert podman("inspect", "-f", "{{.State.ExitCode}}", cid).stdout == b"137\n"
        assert podman("rm", cid).returncode == 0
        assert runtime_state(None, cid) is None  # deleted from the runtime
    finally:
        podman("rm", "-f", cid)
    # conmon called the path given, with JSON errors: runtime_supports_json took.
    assert {"create", "start", "exec", "pause", "resume", "kill", "delete"} <= runtime_calls.verbs()
    create, = [words for words in runtime_calls() if "create" in words and cid in words]
    assert "--log-format=json" in create, create
