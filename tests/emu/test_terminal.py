"""`emu run` on a terminal, as a person uses it: the terminal is raw, so
every key reaches the guest at once (toyos echoes and edits lines itself),
Ctrl-C is the guest's, and Ctrl-A is the emulator's escape key."""

import os
import re
import termios


def booted(terminal, toyos):
    t = terminal("run", str(toyos))
    t.read_until(b"$ ")
    return t


def test_typed_input_is_echoed_and_never_lost_or_replayed(toyos, terminal):
    t = booted(terminal, toyos)
    t.write(b"hello\n" * 20 + b"x" * 300 + b"\nhello\n")     # typed ahead, faster than it runs
    for _ in range(21):
        t.read_until(b"Hello from user space")
    t.write(b"hellp\x7fo\n")                                 # backspace
    t.read_until(b"hellp\b \bo\r\n")
    t.read_until(b"Hello from user space")
    t.write(b"exit\n")
    assert t.wait() == 0
    assert t.out.count(b"Hello from user space") == 22
    assert t.out.count(b"sh: no such program: x") == 1
    assert termios.tcgetattr(t.master)[3] & termios.ICANON   # the terminal is given back as it was


def test_ctrl_c_kills_the_foreground_program_and_the_shell_carries_on(toyos, terminal):
    t = booted(terminal, toyos)
    t.write(b"loop a &\n")
    t.read_until(b"$ ")
    t.write(b"loop b\n")
    t.read_until(b"loop b\r\n")
    t.read_until(b"bab")                                      # both loops run
    t.write(b"\x03")
    t.read_until(b"^C\r\n")
    t.read_until(b"$ ")
    t.write(b"ps\n")
    table = t.read_until(b"$ ")
    assert table.count(b"\tloop") == 1                       # the background loop lives on
    t.write(b"ech\x03")                                      # at the prompt: the line is dropped,
    t.read_until(b"^C\r\n")                                  # (loop a's output comes in between)
    t.read_until(b"$ ")
    t.write(b"hello\n")
    t.read_until(b"Hello from user space")                   # so this is "hello", not "echhello"
    t.write(b"exit\n")
    assert t.wait() == 0


def test_escape_key_help_snapshot_and_quit(toyos, terminal, tmp_path, cli):
    t = booted(terminal, toyos)
    t.write(b"\x01h")
    assert b"Ctrl-A x" in t.read_until(b"Ctrl-A Ctrl-A")
    t.write(b"\x01s")
    t.read_until(b"emu: snapshot saved to ")
    name = t.read_until(b".snap").decode() + ".snap"
    assert re.fullmatch(r"emu-\d+\.snap", name)
    t.write(b"\x01x")
    assert t.wait() == 0
    r = cli("restore", str(tmp_path / name), input=b"hello\n")
    assert r.returncode == 0 and b"Hello from user space" in r.stdout


def test_ctrl_a_twice_sends_one_ctrl_a(terminal, guest_dir):
    t = terminal("run", os.path.join(guest_dir, "echo.s"))
    t.wait_raw()
    t.write(b"a\x01\x01b\x03c")
    t.read_until(b"a\x01b\x03c")                              # echo.s sends back what it gets
    t.write(b"\x01x")
    assert t.wait() == 0
