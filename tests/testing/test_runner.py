"""The session's container runner (minirt/testing/runner.py): ``minirt.run`` in a
small process of its own, as if it ran in the test's."""

import os
import signal

import pytest

from minirt.errors import CommandNotFound, MinirtError
from minirt.testing.runner import Runner

pytestmark = pytest.mark.privileged


@pytest.fixture
def runner():
    r = Runner()
    yield r
    r.close()
    assert r.process is None


def test_a_container_runs_in_the_runner_not_in_the_test_process(runner, state_root, busybox_image):
    children = _children()
    r = runner.run(busybox_image, ["sh", "-c", "echo out; echo err >&2; cat; exit 3"], root=state_root,
                   network="none", input=b"fed")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\nfed", b"err\n")
    assert _children() == children | {runner.process.pid}  # the runner, and no container of ours
    again = runner.process.pid
    assert runner.run(busybox_image, ["true"], root=state_root, network="none").exit_code == 0
    assert runner.process.pid == again  # one runner for every container


def test_errors_are_the_test_processs_own(runner, state_root, busybox_image):
    with pytest.raises(CommandNotFound, match="no-such-command"):
        runner.run(busybox_image, ["no-such-command"], root=state_root, network="none")
    with pytest.raises(MinirtError, match="no such image"):
        runner.run("/nonexistent.tar", ["true"], root=state_root)
    assert runner.run(busybox_image, ["true"], root=state_root, network="none").exit_code == 0  # still there


def test_the_environment_and_directory_are_the_tests_at_each_request(runner, state_root, busybox_image,
                                                                     monkeypatch, tmp_path):
    assert runner.run(busybox_image, ["true"], root=state_root, network="none").exit_code == 0  # (started)
    monkeypatch.setenv("MINIRT_RUNNER_TEST", "later")
    r = runner.run(busybox_image, ["sh", "-c", "echo $MINIRT_RUNNER_TEST"], root=state_root, network="none",
                   env=["MINIRT_RUNNER_TEST"])
    assert r.stdout == b"later\n"
    monkeypatch.delenv("MINIRT_RUNNER_TEST")
    r = runner.run(busybox_image, ["sh", "-c", "echo ${MINIRT_RUNNER_TEST-unset}"], root=state_root,
                   network="none", env=["MINIRT_RUNNER_TEST"])
    assert r.stdout == b"unset\n"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "note").write_text("here\n")
    monkeypatch.chdir(tmp_path)
    r = runner.run(busybox_image, ["cat", "/mnt/note"], root=state_root, network="none",
                   volumes=[f"{os.path.abspath('data')}:/mnt:ro"])
    assert r.stdout == b"here\n"


def test_a_runner_that_died_is_replaced(runner, state_root, busybox_image):
    assert runner.run(busybox_image, ["true"], root=state_root, network="none").exit_code == 0
    first = runner.process.pid
    os.kill(first, signal.SIGKILL)
    with pytest.raises(MinirtError, match=r"runner died \(killed by signal 9\)"):
        runner.run(busybox_image, ["true"], root=state_root, network="none")
    assert runner.process is None  # (reaped)
    assert runner.run(busybox_image, ["true"], root=state_root, network="none").exit_code == 0
    assert runner.process.pid != first


def _children():
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as f:
        return set(map(int, f.read().split()))
