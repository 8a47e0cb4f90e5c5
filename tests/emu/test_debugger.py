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


def debug(machine, commands):
    out = io.StringIO()
    Debugger(machine, stdin=io.StringIO("\n".join(commands) + "\n"), stdout=out).cmdloop()
    return out.getvalue()


def test_watchpoints_take_virtual_addresses():
    """With paging on, `watch` means the address as the CPU sees it -- at the
    time of each write, so a watchpoint set before paging is on (or before
    the page is mapped) fires once a write reaches it through the tables."""
    from emu.asm import assemble
    from tests.emu.test_mmu import DIRECTORY, IDENTITY, KERNEL, RWX, map_pages
    machine = Machine(1 << 16, console=Console(), engine="interpret")
    machine.load(assemble(KERNEL.format(directory=DIRECTORY, body="""
        li   t1, 0x3008
        stw  t1, [t1 + 0x10]     ; physical 0x3018: not watched
        li   t1, 0x00400000
        li   t2, 77
        stw  t2, [t1 + 8]        ; virtual 0x00400008 = physical 0x3008
        nop
    """)))
    map_pages(machine, IDENTITY + [(0x00400000, 0x3000, RWX)])
    out = debug(machine, ["watch 0x00400008", "c", "watch 0x00500000 8"])
    assert "watchpoint 1: 4 bytes at 0x00400008 <handler+4194256> (not in RAM now)" in out
    assert "watchpoint: write to 0x00400008" in out
    assert machine.memory.load_word(0x3008) == 77 and machine.memory.load_word(0x3018) == 0x3008
    assert "watchpoint 2: 8 bytes at 0x00500000 <handler+5242824> (not in RAM or not mapped now)" in out
    assert machine.cpu.pc == machine.symbols["handler"] - 8     # just after the store: at the nop
    # A physical address that equals the watched virtual one is not it.
    machine = Machine(1 << 16, console=Console(), engine="interpret")
    machine.load(assemble(KERNEL.format(directory=DIRECTORY, body="""
        li   t1, 0x3000
        stw  t1, [t1]            ; virtual 0x3000 -> physical 0x3000
    """)))
    map_pages(machine, IDENTITY[:3] + [(0x3000, 0x4000, RWX), (0x4000, 0x3000, RWX)] + IDENTITY[5:])
    out = debug(machine, ["watch 0x4000", "c"])
    assert "watchpoint 1: 4 bytes at 0x00004000 <handler+16348>\n" in out   # in RAM: no note
    assert "watchpoint: write" not in out and "machine stopped" in out
    assert machine.memory.load_word(0x4000) == 0x3000


def test_step_stops_at_power_off(guest_dir):
    machine, out = session(guest_dir, ["c", "step 3", "step"])
    steps = machine.cpu.steps
    assert out.count("machine stopped: powered off with status 0") == 3
    machine, _ = session(guest_dir, ["c"])
    assert machine.cpu.steps == steps


def test_debugger_numbers_are_checked(guest_dir):
    machine, out = session(guest_dir, ["step abc", "disas 0 -5", "disas pc 0", "mem 0 -1", "watch 0 0",
                                       "delete x", "step 0x2"])
    errors = [line for line in out.splitlines() if "error" in line]
    assert errors == ["(emu) error: step: 'abc' is not a number",
                      "(emu) error: disas: N must be at least 1, not -5",
                      "(emu) error: disas: N must be at least 1, not 0",
                      "(emu) error: mem: LEN must be at least 1, not -1",
                      "(emu) error: watch: LEN must be at least 1, not 0",
                      "(emu) error: delete: 'x' is not a number"]
    assert machine.cpu.steps == 2 and "   0x" not in out          # no disassembly printed


def test_continue_on_a_machine_nothing_can_wake(tmp_path):
    from emu.asm import assemble
    from tests.emu.test_devices import DEVICES, MASKED_HALT
    machine = Machine(1 << 16, console=Console(), engine="interpret")
    machine.load(assemble(DEVICES + MASKED_HALT))
    assert "machine stopped: halted with nothing left to wake it" in debug(machine, ["c"])
