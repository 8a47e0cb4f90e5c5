"""The pieces of make conformance that make test can check quickly: the TAP
reader and the apt sources of tests/conformance/runc_suite.py, and recvtty.py,
the console-socket end runc's tests need (the whole suite: make conformance)."""

import importlib.util
import os
import pty
import select
import socket
import subprocess
import sys
import termios
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _module(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runc_suite = _module("runc_suite")


def test_tap_lines_become_verdicts_with_reasons():
    tap = "\n".join(["1..5", "ok 1 runc run", "ok 2 runc run --keep # skip test requires cgroups_v2",
                     "not ok 3 events oom", "# (in test file events.bats, line 84)", "ok 4 bare skip # skip",
                     "not ok 5 stuck # timeout after 120s"])
    assert runc_suite.parse_tap(tap) == {
        "runc run": ("passed", ""), "runc run --keep": ("skipped", "test requires cgroups_v2"),
        "events oom": ("failed", ""), "bare skip": ("skipped", ""), "stuck": ("failed", "timeout after 120s")}


def test_deb_src_lines_come_from_the_hosts_debian_entries_only():
    """make install's apt-get reads the host's Debian entries: their deb-src twins,
    and nothing for another distribution's suite (a vendor's, say)."""
    with open("/etc/os-release") as f:
        codename = dict(line.strip().split("=", 1) for line in f if "=" in line)["VERSION_CODENAME"].strip('"')
    lines = runc_suite.source_lines(codename)
    assert lines and all(line.startswith("deb-src ") for line in lines)
    for line in lines:
        assert [w for w in line.split() if w == codename or w.startswith(codename + "-")], line
    assert runc_suite.source_lines("no-such-codename") == []


def _recvtty(tmp_path, *args):
    sock = str(tmp_path / "console.sock")
    pid_file = tmp_path / "pid"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "recvtty.py"), "--pid-file", str(pid_file), *args,
                             sock], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and os.path.exists(sock)):  # (the pid file is written first, as runc's)
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.01)
    assert int(pid_file.read_text()) == proc.pid
    return proc, sock


def _send_terminal(sock):
    """Open a pty, send its master over ``sock`` as a runtime does; return the other end."""
    master, slave = pty.openpty()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        deadline = time.monotonic() + 10
        while True:
            try:
                s.connect(sock)
                break
            except ConnectionRefusedError:  # bound, not yet listening
                assert time.monotonic() < deadline
                time.sleep(0.01)
        socket.send_fds(s, [b"/dev/pts/x"], [master])
    os.close(master)
    return slave


def test_recvtty_joins_one_terminal_to_its_stdout(tmp_path):
    proc, sock = _recvtty(tmp_path, "--no-stdin")
    slave = _send_terminal(sock)
    deadline = time.monotonic() + 10
    while termios.tcgetattr(slave)[1] & termios.ONLCR:  # as runc's: output as written, no \r added
        assert time.monotonic() < deadline, "recvtty left ONLCR on"
        time.sleep(0.01)
    os.write(slave, b"hello\nworld\n")
    os.close(slave)  # the container's end closes: recvtty is done
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out) == (0, b"hello\nworld\n"), err


def test_recvtty_null_mode_drains_every_terminal(tmp_path):
    proc, sock = _recvtty(tmp_path, "--mode", "null")
    try:
        slaves = [_send_terminal(sock) for _ in range(3)]
        for slave in slaves:  # more than a pty buffer each: gets through only if someone reads
            _write_all(slave, b"x" * (256 * 1024))
            os.close(slave)
        assert proc.poll() is None  # it serves on until killed
    finally:
        proc.kill()
        proc.communicate()


def _write_all(fd, data, timeout=10):
    os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    while data:
        assert select.select([], [fd], [], max(0, deadline - time.monotonic()))[1], "nobody reads the terminal"
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            pass


def test_recvtty_refuses_a_socket_path_it_cannot_bind(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(HERE, "recvtty.py"), str(tmp_path / "no" / "such" / "sock")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "No such file or directory" in r.stderr
