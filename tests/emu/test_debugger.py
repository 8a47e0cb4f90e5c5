"""The debugger, driven by a script of commands."""

import io
import os

from emu import snapshot
from emu.asm import assemble_file
from emu.debugger import Debugger
from emu.devices.console import Console
from emu.machine import Machine


def session(guest_dir, commands, name="hello.s"):
    machine = Machine(console=Console(), engine="interpret")
    machine.load(assemble_file(os.path.join(guest_dir, name)))
    out = io.StringIO()
    Debugger(machine, stdin=io.StringIO("\n".join(commands) + "\n"), stdout=out).cmdloop()
    return machine, out.getvalue()


def test_breakpoint_on_symbol_registers_and_memory(guest_dir):
    machine, out = session(guest_dir, ["break puts_next", "continue", "regs", "mem greeting 16", "quit"])
    assert "breakpoint at 0x00000018 <puts_next>" in out
    assert "=> 0x00000018 <puts_next>" in out and "ldbu t1, [a0]" in out
    assert "pc=00000018" in out and "mode=supervisor" in out
    assert "Hello, world!" in out
    assert bytes(machine.console.output) == b""


def test_step_disas_and_breakpoint_on_address(guest_dir):
    machine, out = session(guest_dir, ["step 2", "disas pc 3", "break 0x20", "c", "info"])
    assert machine.cpu.pc == 0x20 and machine.cpu.steps > 2
    assert "breakpoint 1: 0x00000020" in out
    assert out.count("   0x") + out.count("=> 0x") >= 3


def test_watchpoint_stops_after_the_write(guest_dir):
    machine, out = session(guest_dir, ["watch ticks", "c", "regs"], name="timer.s")
    assert "watchpoint: write to" in out and "<ticks>" in out
    assert machine.memory.load_word(machine.symbols["ticks"]) == 1


def test_continue_to_the_end_and_tracing_changes_nothing(guest_dir):
    plain, _ = session(guest_dir, ["c"])
    traced, out = session(guest_dir, ["trace on", "c"])
    assert bytes(plain.console.output) == bytes(traced.console.output) == b"Hello, world!\n"
    assert plain.cpu.steps == traced.cpu.steps
    assert "machine stopped: powered off with status 0" in out
    assert "ldbu t1, [a0]" in out


def test_snapshot_from_the_debugger_restores(guest_dir, tmp_path):
    path = tmp_path / "d.snap"
    machine, out = session(guest_dir, ["break puts_next", "c", "step 5", f"snapshot {path}", "q"])
    assert f"saved {path}" in out
    restored = snapshot.restore(path, console=Console(), engine="interpret")
    assert restored.cpu.pc == machine.cpu.pc and restored.cpu.regs == machine.cpu.regs
    restored.run()
    assert bytes(restored.console.output) == b"ello, world!\n"


def test_bad_commands_do_not_kill_the_session(guest_dir):
    _, out = session(guest_dir, ["break nowhere", "mem", "trace sideways", "frobnicate", "regs"])
    assert "error: unknown symbol 'nowhere'" in out
    assert "Unknown syntax: frobnicate" in out and "pc=" in out


def test_cli_debug(cli, guest_dir):
    r = cli("debug", os.path.join(guest_dir, "hello.s"), input=b"break puts\ncontinue\nquit\n")
    assert r.returncode == 0 and b"breakpoint at 0x00000010 <puts>" in r.stdout


def test_debugger_sees_through_the_page_tables(tmp_path):
    """Under toyos, addresses are virtual: disas at a user pc, mem of user
    memory, and the page-table walk for both halves of an address space."""
    from emu import mkfs
    image = tmp_path / "toyos.img"
    mkfs.build_toyos(str(image))
    machine = Machine(console=Console(input_bytes=b"hello\n"), engine="interpret", disk=str(image))
    machine.boot()
    machine.run(60_000)                   # the shell is running, in user mode
    assert machine.cpu.mmu.enabled
    out = io.StringIO()
    commands = ["break 0x40000000", "c", "regs", "disas pc 1", "mem 0x40000000 8", "pt pc", "pt 0x1000", "pt 0"]
    Debugger(machine, stdin=io.StringIO("\n".join(commands) + "\n"), stdout=out).cmdloop()
    text = out.getvalue()
    assert "breakpoint at 0x40000000" in text and "mode=user" in text
    assert "=> 0x40000000: " in text and "call 0x" in text           # _start: call main
    assert "40000000  " in text and "(not in RAM" not in text
    assert "-> 0x00050000" in text and "P R W X U" in text             # slot 1: hello
    assert "0x00001000 -> 0x00001000" in text and "P R X\n" in text    # kernel code: no W, no U
    assert "0x00000000 -> fault" in text
