"""The container's user owns its stdio, as with runc: a terminal as though made
on the bundle's devpts (group tty, mode 620), other stdio with its group kept;
/dev/null is left alone."""

import json
import os
import socket

import pytest

from tests.oci.test_cli import read_terminal

pytestmark = pytest.mark.privileged

SHOW = ["sh", "-c", "stat -c %u:%g:%a $(tty)"]
USER = {"uid": 1000, "gid": 100}


@pytest.mark.parametrize("user, owner", [({"uid": 0, "gid": 0}, "0:5:620"), (USER, "1000:5:620")])
def test_run_with_a_terminal_gives_it_to_the_user_and_group_tty(oci, bundle, user, owner):
    r = oci("run", "--bundle", bundle(SHOW, process__terminal=True, process__user=user), "t1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == owner


def test_exec_with_a_terminal_gives_it_to_the_user_and_group_tty(oci, bundle, tmp_path):
    b = bundle(["sleep", "100"], process__user=USER)
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "t2").returncode == 0
    assert oci("start", "t2").returncode == 0
    r = oci("exec", "-t", "t2", *SHOW)   # (made on the container's devpts: `tty` names it)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1000:5:620"
    assert oci("delete", "--force", "t2").returncode == 0
    oci.reap(int((tmp_path / "pid").read_text()))


def test_other_stdio_goes_to_the_user_with_its_group_and_dev_null_stays(oci, bundle, tmp_path):
    out = tmp_path / "out"
    b = bundle(["sh", "-c", "stat -L -c %u:%g /proc/self/fd/0 /proc/self/fd/1"], process__user=USER)
    with open(out, "w") as f:
        os.fchown(f.fileno(), 0, 7)
        r = oci("run", "--bundle", b, "t3", stdout=f)   # (stdin: /dev/null)
    assert r.returncode == 0, r.stderr
    assert out.read_text().split() == ["0:0", "1000:7"]
    assert os.stat("/dev/null").st_uid == 0


def test_exec_without_flags_runs_as_the_containers_process_does(oci, bundle, tmp_path):
    b = bundle(["sleep", "100"], process__user={**USER, "additionalGids": [7]}, process__cwd="/tmp")
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "t4").returncode == 0
    r = oci("exec", "t4", "sh", "-c", "id -u; id -g; id -G; pwd")
    assert (r.returncode, r.stdout.split()) == (0, ["1000", "100", "100", "7", "/tmp"]), r.stderr
    r = oci("exec", "--user", "5", "--cwd", "/", "t4", "sh", "-c", "id -u; id -g; pwd")   # (as runc: group kept)
    assert (r.returncode, r.stdout.split()) == (0, ["5", "100", "/"]), r.stderr
    assert oci("delete", "--force", "t4").returncode == 0
    oci.reap(int((tmp_path / "pid").read_text()))


def test_exec_detached_sends_the_terminal_made_inside_to_the_console_socket(oci, bundle, tmp_path):
    b = bundle(["sleep", "100"])
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "t5").returncode == 0
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh", "-c", "stty size; tty; echo done"], "terminal": True,
                                   "consoleSize": {"height": 33, "width": 99}, "cwd": "/"}))
    r = oci("exec", "--detach", "--console-socket", path, "--pid-file", str(tmp_path / "exec.pid"),
            "--process", str(process), "t5")
    assert r.returncode == 0, r.stderr
    conn, _ = listener.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    conn.close()
    listener.close()
    size, name, done = read_terminal(fds[0], b"done")[:3]
    oci.reap(int((tmp_path / "exec.pid").read_text()))
    assert (size, done) == (b"33 99", b"done") and name.startswith(b"/dev/pts/")
    assert oci("delete", "--force", "t5").returncode == 0
    oci.reap(int((tmp_path / "pid").read_text()))
