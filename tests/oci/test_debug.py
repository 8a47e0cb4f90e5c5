"""--debug: runc's debug lines (level=debug), on stderr or in the --log file in
its format, naming runc's steps with what minirt did in each."""

import json

import pytest

pytestmark = pytest.mark.privileged

RUN_STEPS = ["nsexec container setup", "child process in init()", "init: closing the pipe to signal completion"]


def test_debug_lines_go_to_stderr_without_a_log(oci, bundle):
    r = oci("--debug", "run", "--bundle", bundle(["echo", "hello"]), "d1")
    assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr
    lines = [line for line in r.stderr.splitlines() if " level=debug " in line]
    assert all(line.startswith('time="') and ' msg="' in line for line in lines)
    assert all(any(step in line for line in lines) for step in RUN_STEPS), r.stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_debug_lines_go_to_the_log_only(oci, bundle, tmp_path, fmt):
    log = tmp_path / "log.out"
    r = oci("--log", str(log), "--log-format", fmt, "--debug", "run", "--bundle", bundle(["echo", "hello"]), "d2")
    assert (r.returncode, r.stdout) == (0, "hello\n") and "debug" not in r.stderr, r.stderr
    if fmt == "json":
        messages = [json.loads(line) for line in log.read_text().splitlines()]
        assert {m["level"] for m in messages} == {"debug"}
        messages = [m["msg"] for m in messages]
    else:
        messages = log.read_text().splitlines()
        assert all(" level=debug msg=" in line for line in messages)
    assert all(any(step in m for m in messages) for step in RUN_STEPS), messages


def test_debug_exec(oci, bundle, tmp_path):
    assert oci("create", "--bundle", bundle(["sleep", "100"]), "--pid-file", str(tmp_path / "pid"), "d3").returncode == 0
    r = oci("--debug", "exec", "d3", "true")
    assert r.returncode == 0, r.stderr
    for step in ("nsexec container setup", "child process in init()", "setns_init: about to exec"):
        assert any(step in line and "level=debug" in line for line in r.stderr.splitlines()), r.stderr
    r = oci("exec", "d3", "true")   # (without --debug: nothing)
    assert (r.returncode, r.stderr) == (0, "")
    assert oci("delete", "--force", "d3").returncode == 0
    oci.reap(int((tmp_path / "pid").read_text()))
