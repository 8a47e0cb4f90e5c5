"""A guest can never crash the emulator: any word, any address, any device
access is a guest trap or a documented device result.  Bad input files get
one-line errors."""

import random

from hypothesis import given, settings, strategies as st

from emu import isa
from emu.devices.console import Console
from emu.image import Image
from emu.machine import Machine

HANDLER = 0x80


def run_words(words, engine, steps=2000, tvec=HANDLER, user=False):
    machine = Machine(1 << 12, console=Console(input_bytes=b"xyz"), engine=engine)
    data = b"".join(w.to_bytes(4, "little") for w in words)
    machine.load(Image([(0, data[:machine.memory.size])], 0))
    machine.cpu.sregs[isa.SREG_TVEC] = tvec
    if user:
        machine.cpu.sregs[isa.SREG_STATUS] = isa.STATUS_U
    machine.run(steps)            # must not raise
    return machine


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, isa.WORD), min_size=1, max_size=64), st.booleans(),
       st.sampled_from(["interpret", "translate"]))
def test_random_words_never_raise(words, user, engine):
    machine = run_words(words, engine, user=user)
    assert machine.cpu.steps <= 2000


def test_random_programs_with_devices_and_traps_never_raise():
    """Random *valid* instructions, with base registers aimed at RAM edges and
    at the device region, in both modes, on both engines."""
    rng = random.Random(7)
    bases = [0, 0xFFC, 0x1000, isa.MMIO_BASE, isa.MMIO_BASE + 0x100, isa.MMIO_BASE + 0x200,
             isa.MMIO_BASE + 0x300, isa.WORD - 3]
    for trial in range(60):
        words = []
        for _ in range(48):
            insn = rng.choice(isa.INSTRUCTIONS)
            ops = {}
            for name, kind, _ in isa.FORMATS[insn.format]:
                ops[name] = {"reg": lambda: rng.randrange(16), "sreg": lambda: rng.choice(list(isa.SREG_NAMES)),
                             "simm": lambda: rng.randrange(-0x8000, 0x8000), "uimm": lambda: rng.randrange(0x10000),
                             "shamt": lambda: rng.randrange(32), "mem": lambda: (rng.randrange(16), rng.randrange(-16, 16) * 4),
                             "target": lambda: rng.randrange(-16, 16) * 4}[kind]()
            words.append(isa.encode(insn.mnemonic, **ops))
        for engine in ("interpret", "translate"):
            machine = Machine(1 << 13, console=Console(input_bytes=b"in"), engine=engine)
            machine.load(Image([(0, b"".join(w.to_bytes(4, "little") for w in words))], 0))
            for r in range(1, 16):
                machine.cpu.regs[r] = rng.choice(bases)
            machine.cpu.sregs[isa.SREG_TVEC] = rng.choice([0, 0x40, 0x3])
            machine.cpu.sregs[isa.SREG_STATUS] = rng.choice([0, isa.STATUS_U, isa.STATUS_IE])
            machine.run(3000)


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

    import pytest

    from emu import snapshot
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(snapshot.SnapshotError, match="not a regular file"):
        snapshot.save(Machine(), fifo)
    assert fifo.is_fifo()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, isa.WORD), min_size=1, max_size=48),
       st.lists(st.integers(0, isa.WORD), min_size=4, max_size=4), st.booleans())
def test_random_page_tables_never_crash_and_both_engines_agree(words, entries, user):
    """Paging on with page-table entries made of random words (some present,
    some pointing past RAM or into the tables themselves), random code: every
    outcome is a guest trap, and the two engines agree on it."""
    from tests.emu.conftest import machine_state
    results = []
    for engine in ("interpret", "translate"):
        machine = Machine(1 << 14, console=Console(input_bytes=b"xy"), engine=engine)
        data = b"".join(w.to_bytes(4, "little") for w in words)
        machine.load(Image([(0, data)], 0))
        memory = machine.memory
        memory.store_word(0x2000, 0x3000 | isa.PTE_P)                 # directory[0] -> table
        memory.store_word(0x2000 + 4 * (entries[0] >> 22), entries[1])   # and one random entry
        memory.store_word(0x3000, 0 | isa.PTE_P | isa.PTE_R | isa.PTE_X | isa.PTE_U)  # code page
        for i, pte in enumerate(entries[2:], 1):
            memory.store_word(0x3000 + 4 * i, pte)
        machine.cpu.sregs[isa.SREG_TVEC] = HANDLER
        machine.cpu.sregs[isa.SREG_STATUS] = isa.STATUS_U if user else 0
        machine.cpu.sregs[isa.SREG_PTBR] = 0x2000 | 1
        machine.cpu.mmu.set_ptbr(0x2000 | 1)
        machine.run(1500)
        results.append(machine_state(machine))
    assert results[0] == results[1]


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
