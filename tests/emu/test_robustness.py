"""A guest can never crash the emulator: any word, any address, any device
access is a guest trap or a documented device result.  Bad input files get
one-line errors.

The fuzz tests (generators in fuzz.py) throw random instruction words,
random programs with paging, timers, user mode and trap handlers, images,
crafted snapshots, assembly source, debugger sessions and toyos sessions at
emu: nothing may raise a Python exception or run past its step bound, and
the interpreter and the translator must end every random program in the same
state.  `make fuzz` runs them much longer."""

import io
import os
import re
import shutil
import tempfile
from pathlib import Path

import hypothesis
import pytest
from hypothesis import given, strategies as st

from emu import isa, snapshot
from emu.asm import AsmError, Assembler, assemble, assemble_file
from emu.debugger import Debugger
from emu.devices.console import Console
from emu.devices.disk import Disk
from emu.disasm import disassemble
from emu.image import Image, ImageError
from emu.machine import Machine
from emu.snapshot import SnapshotError
from tests.emu import fuzz
from tests.emu.conftest import GUEST, machine_state

rngs = st.randoms(use_true_random=False)


def note(case):
    """Show the case itself when a test fails (a program is its reproducer)."""
    hypothesis.note(case if isinstance(case, str) else repr(case))
    return case


def run_both(image, steps, memory=fuzz.MEMORY, input_bytes=b"", disk=None, setup=None):
    """Run `image` on each engine (each with a fresh copy of the disk) and
    check that both end in the same state."""
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "disk.img")
        for engine in ("interpret", "translate"):
            if disk is not None:
                with open(path, "wb") as f:
                    f.write(disk)
            machine = Machine(memory, console=Console(input_bytes=input_bytes), engine=engine,
                              disk=path if disk is not None else None)
            machine.load(image)
            if setup:
                setup(machine)
            with fuzz.no_hang(f"{engine}, {steps} steps"):
                machine.run(steps)
            assert machine.cpu.steps <= steps
            results.append((machine_state(machine), Path(path).read_bytes() if disk else None))
    assert results[0] == results[1], "the interpreter and the translator disagree"


@fuzz.fuzz(30)
@given(rngs)
def test_fuzz_random_words_both_engines_agree(rng):
    """Any words at all, in either mode, with or without a handler."""
    words = note(fuzz.words(rng, rng.randrange(1, 64)))
    tvec = rng.choice([0, 0x80, 0x3, 0xFFC])
    status = rng.choice([0, isa.STATUS_U, isa.STATUS_IE])

    def setup(machine):
        machine.cpu.sregs[isa.SREG_TVEC] = tvec
        machine.cpu.sregs[isa.SREG_STATUS] = status
    data = b"".join(w.to_bytes(4, "little") for w in words)
    run_both(Image([(0, data)], 0), 1000, memory=1 << 12, input_bytes=b"xyz", setup=setup)


@fuzz.fuzz(20)
@given(rngs)
def test_fuzz_random_programs_both_engines_agree(rng):
    """Valid random programs with paging, the timer, the console, the disk,
    user mode and trap handlers: no exception, no hang, and the two engines
    agree on registers, memory, devices and instruction counts."""
    source = note(fuzz.program(rng))
    image = assemble(source, "case.s")
    run_both(image, 2000, input_bytes=fuzz.console_input(rng), disk=fuzz.disk_bytes(rng))


@fuzz.fuzz(20)
@given(rngs)
def test_fuzz_paged_programs_both_engines_agree(rng):
    """The same with paging always on: loads and stores through the TLB's
    pre-checked pages (both engines have a fast path there), the page tables
    edited under a stale TLB, faults, mode changes by traps and eret."""
    source = note(fuzz.program(rng, paging=True))
    run_both(assemble(source, "case.s"), 2000, input_bytes=fuzz.console_input(rng))


@fuzz.fuzz(60)
@given(rngs)
def test_fuzz_random_images(rng):
    """An image file of any shape is an image or a one-line ImageError; one
    that loads runs, and disassembles."""
    blob = note(fuzz.image_blob(rng))
    try:
        image = Image.from_bytes(blob)
    except ImageError as e:
        fuzz.one_line(e)
        return
    disassemble(image)
    try:
        Machine(fuzz.MEMORY).load(image)
    except ValueError as e:             # a segment that does not fit: `emu run` says so
        fuzz.one_line(e)
        return
    run_both(image, 1000)


@fuzz.fuzz(15)
@given(rngs, st.booleans())
def test_fuzz_snapshots_of_random_programs(rng, verify):
    """A snapshot taken anywhere in a random program continues exactly as
    the program would have.  Rewritten with its checksum recomputed, it
    restores or is refused in one line, and a restored machine runs within
    its step bound, the same on both engines."""
    source = note(fuzz.program(rng))
    with tempfile.TemporaryDirectory() as scratch, fuzz.no_hang("run, save, craft, restore, run"):
        # A read-only disk: every restore here must find it as it was.
        disk, disk_path = fuzz.disk_bytes(rng), os.path.join(scratch, "disk.img")
        if disk is not None:
            with open(disk_path, "wb") as f:
                f.write(disk)
        machine = Machine(fuzz.MEMORY, console=Console(input_bytes=fuzz.console_input(rng)),
                          disk=Disk(disk_path, readonly=True) if disk is not None else None)
        machine.load(assemble(source, "case.s"))
        machine.run(rng.randrange(1, 500))
        base, path = os.path.join(scratch, "base.snap"), os.path.join(scratch, "case.snap")
        snapshot.save(machine, base)
        printed, steps = len(machine.console.output), rng.randrange(1, 500)
        machine.run(steps)
        again = snapshot.restore(base, console=Console())
        again.run(steps)
        assert (again.save_state(), bytes(again.memory.ram), again.console.output) == \
            (machine.save_state(), bytes(machine.memory.ram), machine.console.output[printed:])
        snapshot.save_diff(again, path)             # a diff of a restored machine restores too
        assert machine_state(snapshot.restore(path, console=Console()))[:2] == machine_state(again)[:2]
        if rng.random() < 0.5:
            snapshot.save_diff(machine, path)
        else:
            shutil.copy(base, path)
        fuzz.craft_snapshot(rng, path)
        results = []
        for engine in ("interpret", "translate"):
            try:
                restored = snapshot.restore(path, console=Console(), engine=engine, verify=verify)
            except SnapshotError as e:
                fuzz.one_line(e)
                return
            restored.run(1000)
            results.append(machine_state(restored))
        assert results[0] == results[1], "the engines disagree on a restored machine"


@fuzz.fuzz(100)
@given(rngs)
def test_fuzz_random_assembly(rng):
    """Any source assembles or gets one `file:line:col: message`."""
    source = note(fuzz.asm_source(rng))
    with fuzz.no_hang("assembling"):
        try:
            image = Assembler().assemble_text(source, "fuzz.s")
        except AsmError as e:
            assert re.match(r"[^:]+:\d+:\d+: ", fuzz.one_line(e))
            return
    assert Image.from_bytes(image.to_bytes()).segments == image.segments


@fuzz.fuzz(20)
@given(rngs, st.sampled_from(["hello.s", "fibonacci.s", "timer.s", None]))
def test_fuzz_debugger_sessions(rng, program):
    """Random debugger commands never escape as Python exceptions, and
    their errors are the debugger's own words."""
    with tempfile.TemporaryDirectory() as scratch:
        if program:
            image = assemble_file(os.path.join(GUEST, program))
        else:
            image = assemble(note(fuzz.program(rng, rng.randrange(4, 16))), "case.s")
        machine = Machine(fuzz.MEMORY, console=Console(), engine="interpret")
        machine.load(image)
        commands = note(fuzz.debugger_commands(rng, may_continue=program is not None,
                                               snapshot_dir=scratch))
        out = io.StringIO()
        with fuzz.no_hang(f"debugger: {commands}"):
            Debugger(machine, stdin=io.StringIO("\n".join(commands) + "\n"), stdout=out).cmdloop()
    # Errors speak of the command, not of Python's int().
    assert "invalid literal" not in out.getvalue()


@fuzz.fuzz(3)
@given(rng=rngs)
def test_fuzz_toyos_sessions(rng, toyos):
    """Whatever is typed at toyos's shell, the kernel neither panics nor
    faults, and emu neither raises nor hangs."""
    typed = note(fuzz.shell_session(rng))
    machine = Machine(console=Console(input_bytes=typed), disk=str(toyos))
    machine.boot()
    with fuzz.no_hang(f"toyos with {typed!r}"):
        machine.run(3_000_000)
    # A kernel panic powers off with 99, a kernel fault with 128 + cause.
    assert not machine.stopped or machine.exit_status == 0, (typed, machine.stop_reason,
                                                              bytes(machine.console.output)[-300:])


# -- what the fuzz tests found ------------------------------------------------------------

def test_debugger_disas_stops_at_the_end_of_the_address_space():
    """`disas` near the top of memory went on past 0xfffffffc, to
    0x100000000 and beyond, an address no 32-bit CPU has."""
    machine = Machine(fuzz.MEMORY, console=Console(), engine="interpret")
    machine.load(assemble("halt\n"))
    out = io.StringIO()
    Debugger(machine, stdin=io.StringIO("disas 0xfffffff8 8\n"), stdout=out).cmdloop()
    addresses = [int(a, 16) for a in re.findall(r"(0x[0-9a-f]+): ", out.getvalue())]
    assert addresses and max(addresses) == 0xFFFFFFFC


def test_snapshot_or_base_that_is_a_directory_is_refused_in_one_line(cli, tmp_path):
    """A diff snapshot naming a directory as its base raised IsADirectoryError,
    and `emu restore DIR` said `emu: 3: Is a directory` (a descriptor)."""
    machine = Machine(fuzz.MEMORY, console=Console())
    machine.load(assemble("loop: addi a0, a0, 1\n jmp loop\n"))
    snapshot.save(machine, tmp_path / "a.snap")
    snapshot.save_diff(machine, tmp_path / "b.snap")
    head, meta, memory = fuzz.read_snapshot(tmp_path / "b.snap")
    fuzz.write_snapshot(tmp_path / "b.snap", head, {**meta, "base": ".."}, memory)
    with pytest.raises(SnapshotError, match="not a regular file"):
        snapshot.restore(tmp_path / "b.snap")
    r = cli("restore", str(tmp_path))
    assert (r.returncode, r.stderr.decode()) == (125, f"emu: {tmp_path}: not a regular file\n")


def test_cli_negative_steps_are_refused(cli, guest_dir):
    """`--steps -1` ran nothing and exited 0, as if the run had gone as asked."""
    r = cli("run", os.path.join(guest_dir, "hello.s"), "--steps", "-1")
    assert r.returncode == 2 and r.stdout == b""
    assert "--steps: not a number of steps: '-1'" in r.stderr.decode()


def test_cli_malformed_image_one_line(cli, tmp_path):
    bad = tmp_path / "bad.img"
    bad.write_bytes(b"EMUIMG\x01\x00garbage")
    r = cli("run", str(bad))
    assert r.returncode == 125 and r.stderr.decode().count("\n") == 1
    assert r.stderr.decode().startswith(f"emu: {bad}: ")


def test_cli_missing_file_and_bad_memory_size(cli, tmp_path):
    r = cli("run", str(tmp_path / "nope.s"))
    assert r.returncode == 125 and r.stderr.decode() == f"emu: {tmp_path / 'nope.s'}: No such file or directory\n"
    src = tmp_path / "p.s"
    src.write_text("halt\n")
    r = cli("run", str(src), "--mem", "1000")
    assert r.returncode == 125 and "memory size must be a multiple of 4096" in r.stderr.decode()
    r = cli("run", str(src), "--mem", "lots")
    assert r.returncode == 2 and b"not a size" in r.stderr


def test_cli_unhandled_trap_reports_and_exits_128_plus_cause(cli, tmp_path):
    src = tmp_path / "p.s"
    src.write_text(".word 0\n")
    r = cli("run", str(src))
    assert r.returncode == 128 + isa.TRAP_ILLEGAL
    assert r.stderr.decode() == f"emu: {src}: unhandled trap: illegal instruction at pc 0x00000000 (badaddr 0x00000000)\n"


def test_trace_never_changes_behaviour(cli, guest_dir, tmp_path):
    import os
    program = os.path.join(guest_dir, "timer.s")
    plain = cli("run", program, "--snapshot-at", "9000", str(tmp_path / "x.snap"))
    traced = cli("run", program, "--trace")
    assert traced.stdout == plain.stdout and traced.returncode == plain.returncode
    lines = traced.stderr.decode().splitlines()
    assert len(lines) > 9000 and "<_start>" in lines[0]


def test_snapshot_refuses_to_replace_something_that_is_not_a_file(tmp_path):
    import os

    from emu import snapshot
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(snapshot.SnapshotError, match="not a regular file"):
        snapshot.save(Machine(), fifo)
    assert fifo.is_fifo()


def test_empty_segments_load_anywhere(cli, tmp_path):
    """An empty segment holds nothing to put in RAM: at the very end of RAM
    (where `.org` after the last byte leaves one) or past it, it loads."""
    program = Image([(0, isa.encode("halt").to_bytes(4, "little")), (1 << 16, b""), (isa.WORD, b"")], 0)
    machine = Machine(1 << 16, console=Console())
    machine.load(program)
    assert machine.run(10) and machine.exit_status == 0
    path = tmp_path / "empty.img"
    program.write(path)
    r = cli("run", str(path), "--mem", "64K")
    assert (r.returncode, r.stderr) == (0, b"")


def test_cli_mkfs_help(cli):
    r = cli("mkfs", "-h")
    assert r.returncode == 0 and r.stdout.startswith(b"usage: emu mkfs") and b"--kernel" in r.stdout
    r = cli("mkfs")
    assert r.returncode == 2 and b"the following arguments are required: output" in r.stderr


def test_cli_run_of_a_snapshot_says_to_restore_it(cli, tmp_path):
    from emu import snapshot
    path = tmp_path / "x.snap"
    snapshot.save(Machine(1 << 16, console=Console()), path)
    for command in ("run", "disasm"):
        r = cli(command, str(path))
        assert r.returncode == 125
        assert r.stderr.decode() == f"emu: {path}: a snapshot, not a program: continue it with `emu restore {path}`\n"


def test_cli_output_to_a_closed_pipe_ends_quietly(guest_dir):
    """`emu run prog | head -1`: like any Unix filter, emu ends with the
    status of SIGPIPE and says nothing (it printed `emu: : Broken pipe`)."""
    import os
    import subprocess
    import sys
    read_end, write_end = os.pipe()
    os.close(read_end)
    r = subprocess.run([sys.executable, "-m", "emu", "run", os.path.join(guest_dir, "sieve.s")],
                       stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    os.close(write_end)
    assert (r.returncode, r.stderr) == (141, b"")


def test_cli_disasm_of_a_disk_image_says_to_boot_it(cli, tmp_path):
    from emu.machine import BOOT_SIGNATURE
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(510) + BOOT_SIGNATURE + bytes(512))
    for args in (["disasm", str(disk)], ["run", "--disk", str(disk), str(disk)]):
        r = cli(*args)
        assert r.returncode == 125
        assert r.stderr.decode() == f"emu: {disk}: a disk image, not a program: boot it with `emu run {disk}`\n"


def test_cli_asm_changes_nothing_when_the_listing_cannot_be_written(cli, guest_dir, tmp_path):
    out = tmp_path / "h.img"
    r = cli("asm", os.path.join(guest_dir, "hello.s"), "-o", str(out), "-l", str(tmp_path))
    assert r.returncode == 125 and r.stderr.decode().count("\n") == 1, r.stderr
    assert os.listdir(tmp_path) == []
