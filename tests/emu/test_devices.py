"""The interrupt controller, the disk and booting from a disk."""

import os

import pytest

from emu import isa, snapshot
from emu.asm import assemble
from emu.devices.console import Console
from emu.devices.disk import SECTOR_SIZE, DiskError
from emu.machine import Machine

DEVICES = """
.equ TIMER, 0xF0000100
.equ PIC,   0xF0000300
.equ DISK,  0xF0000400
.equ POWER, 0xF0000200
"""


@pytest.fixture
def disk_image(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"".join(bytes([n]) * SECTOR_SIZE for n in range(8)))
    return path


# With s0 = DISK: wait until the transfer is done (STATUS in a0), then power off.
AWAIT_DISK_THEN_OFF = """
    poll:
        ldw  a0, [s0 + 0x10]       ; STATUS
        andi t0, a0, 1             ; BUSY
        bnez t0, poll
        li   t0, POWER
        stw  zero, [t0]
"""


def machine_with(source, disk=None, engine="interpret"):
    m = Machine(1 << 16, console=Console(), engine=engine, disk=disk)
    m.load(assemble(DEVICES + source))
    return m


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_masked_interrupt_waits_until_enabled(engine):
    m = machine_with("""
        la   t0, handler
        mtsr tvec, t0
        li   s0, PIC
        stw  zero, [s0 + 4]        ; mask every line
        li   t0, TIMER
        li   t1, 100
        stw  t1, [t0 + 4]
        li   t1, 1
        stw  t1, [t0 + 8]          ; the timer fires after 100 cycles ...
        li   t0, 1
        mtsr status, t0
        li   s1, 0
    spin:
        addi s1, s1, 1             ; ... but nothing arrives while masked
        li   t0, 300
        bne  s1, t0, spin
        ldw  a1, [s0]              ; PENDING shows the raised line anyway
        li   t0, 1
        stw  t0, [s0 + 4]          ; unmask line 0: the interrupt is taken now
        nop
    handler:
        mfsr a0, cause
        exit_:
        li   t0, POWER
        stw  zero, [t0]
    """, engine=engine)
    m.run(10_000)
    assert m.cpu.regs[1] == isa.IRQ_BASE + 0 and m.cpu.regs[2] == 1
    assert m.cpu.regs[11] == 300          # the loop ran to the end, uninterrupted


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_disk_read_and_write_by_dma_with_completion_interrupt(disk_image, engine):
    m = machine_with("""
        la   t0, handler
        mtsr tvec, t0
        li   s0, DISK
        li   t0, 1
        stw  t0, [s0 + 0x14]       ; CTRL.IRQ
        li   t0, 2
        stw  t0, [s0]              ; sector 2
        li   t0, 0x2000
        stw  t0, [s0 + 4]          ; into RAM at 0x2000
        li   t0, 3
        stw  t0, [s0 + 8]          ; three sectors
        li   t0, 1
        stw  t0, [s0 + 0xC]        ; read
        ldw  s1, [s0 + 0x10]       ; BUSY
        li   t0, 1
        mtsr status, t0
    wait:
        halt                       ; sleep until the disk interrupts
        b    wait
    handler:
        mfsr a0, cause
        ldw  a1, [s0 + 0x10]       ; DONE
        li   t0, 2
        stw  t0, [s0 + 0x10]       ; acknowledge
        ldw  a2, [s0 + 0x10]
        li   t0, 7                 ; now write RAM 0x2000 (sector 2's bytes) to sector 7
        stw  t0, [s0]
        li   t0, 1
        stw  t0, [s0 + 8]
        stw  zero, [s0 + 0x14]     ; no interrupt this time: poll
        li   t0, 2
        stw  t0, [s0 + 0xC]
    poll:
        ldw  t0, [s0 + 0x10]
        andi t0, t0, 1
        bnez t0, poll
        ldw  a3, [s0 + 0x18]       ; SIZE
        li   t0, POWER
        stw  zero, [t0]
    """, disk=disk_image, engine=engine)
    m.run(10_000)
    assert m.stopped and m.exit_status == 0
    assert m.cpu.regs[11] == 1                                   # BUSY right after the command
    assert m.cpu.regs[1] == isa.IRQ_BASE + 2 and m.cpu.regs[2] == 2 and m.cpu.regs[3] == 0
    assert m.cpu.regs[4] == 8
    assert m.memory.read_bytes(0x2000, 3 * SECTOR_SIZE) == bytes([2] * 512 + [3] * 512 + [4] * 512)
    assert disk_image.read_bytes()[7 * SECTOR_SIZE:] == bytes([2]) * SECTOR_SIZE


def test_disk_errors_move_nothing(disk_image):
    m = machine_with("""
        li   s0, DISK
        li   t0, 7
        stw  t0, [s0]              ; sectors 7 and 8: past the end
        li   t0, 2
        stw  t0, [s0 + 8]
        li   t0, 1
        stw  t0, [s0 + 0xC]
    """ + AWAIT_DISK_THEN_OFF, disk=disk_image)
    m.run(10_000)
    assert m.cpu.regs[1] == 2 | 4 and m.memory.read_bytes(0, 4) != bytes([7] * 4)


# Write sector 0 from RAM at 0, then report STATUS as the exit status.
WRITE_SECTOR_0 = """
        li   s0, DISK
        stw  zero, [s0]
        stw  zero, [s0 + 4]
        li   t0, 1
        stw  t0, [s0 + 8]
        li   t0, 2
        stw  t0, [s0 + 0xC]
    poll:
        ldw  a0, [s0 + 0x10]
        andi t0, a0, 1
        bnez t0, poll
        li   t0, POWER
        stw  a0, [t0]
"""


def test_disk_readonly_refuses_guest_writes(disk_image, cli, tmp_path):
    source = tmp_path / "w.s"
    source.write_text(DEVICES + WRITE_SECTOR_0)
    before = disk_image.read_bytes()
    for engine in ("interpret", "translate"):
        r = cli("run", str(source), "--disk", str(disk_image), "--disk-readonly", "--engine", engine)
        assert r.returncode == 2 | 4 and r.stderr == b""          # DONE | ERROR, seen by the guest
        assert disk_image.read_bytes() == before
    r = cli("run", str(source), "--disk", str(disk_image))
    assert r.returncode == 2 and disk_image.read_bytes() != before
    r = cli("run", str(source), "--disk-readonly")
    assert r.returncode == 125 and r.stderr == b"emu: --disk-readonly needs a disk (--disk, or a disk image to boot)\n"


def test_a_failing_host_write_is_a_disk_error(disk_image, monkeypatch):
    """The host's disk may be full or broken: the guest sees ERROR, emu goes on."""
    def full(fd, data, offset):
        raise OSError(28, "No space left on device")
    m = machine_with(WRITE_SECTOR_0, disk=disk_image)
    monkeypatch.setattr(os, "pwrite", full)
    assert m.run(10_000) and m.exit_status == 2 | 4


def test_no_disk_reads_size_zero_and_fails_transfers():
    m = machine_with("""
        li   s0, DISK
        ldw  a1, [s0 + 0x18]
        li   t0, 1
        stw  t0, [s0 + 8]
        stw  t0, [s0 + 0xC]
    """ + AWAIT_DISK_THEN_OFF)
    m.run(10_000)
    assert m.cpu.regs[2] == 0 and m.cpu.regs[1] == 2 | 4


def test_disk_image_must_be_whole_sectors(tmp_path):
    bad = tmp_path / "odd.img"
    bad.write_bytes(b"x" * 100)
    with pytest.raises(DiskError, match="whole number of 512-byte sectors"):
        Machine(disk=bad)


def test_firmware_boots_sector_zero(tmp_path):
    boot = assemble("""
        li   t0, 0xF0000000
        li   t1, 'B'
        stw  t1, [t0]
        li   t0, 0xF0000200
        li   t1, 7
        stw  t1, [t0]
    """).segments[0][1]
    sector = boot.ljust(510, b"\0") + b"\x55\xaa"
    image = tmp_path / "boot.img"
    image.write_bytes(sector + bytes(SECTOR_SIZE))
    m = Machine(disk=image, console=Console())
    m.boot()
    m.run()
    assert bytes(m.console.output) == b"B" and m.exit_status == 7
    image.write_bytes(bytes(2 * SECTOR_SIZE))
    with pytest.raises(DiskError, match="not bootable"):
        Machine(disk=image).boot()


def test_snapshot_during_a_transfer_and_a_changed_disk_is_refused(disk_image, tmp_path, state):
    source = """
        li   s0, DISK
        li   t0, 1
        stw  t0, [s0]
        li   t0, 0x3000
        stw  t0, [s0 + 4]
        li   t0, 4
        stw  t0, [s0 + 8]
        li   t0, 1
        stw  t0, [s0 + 0xC]
    """ + AWAIT_DISK_THEN_OFF
    straight = machine_with(source, disk=disk_image)
    straight.run()
    m = machine_with(source, disk=disk_image)
    m.run(12)                          # the transfer is under way
    assert m.disk.status & 1
    snapshot.save(m, tmp_path / "m.snap")
    restored = snapshot.restore(tmp_path / "m.snap", console=Console(), engine="interpret")
    restored.run()
    assert restored.memory.read_bytes(0x3000, 4 * SECTOR_SIZE) == straight.memory.read_bytes(0x3000, 4 * SECTOR_SIZE)
    assert state(restored) == state(straight)
    disk_image.write_bytes(bytes(8 * SECTOR_SIZE))
    with pytest.raises(snapshot.SnapshotError, match="has changed since the snapshot"):
        snapshot.restore(tmp_path / "m.snap")


# -- a halted machine that nothing can wake --------------------------------------------

@pytest.fixture
def watchdog():
    """Fail a test that hangs (the defect these tests guard against) instead
    of hanging the suite.  Not a time limit on the emulator: a hang is forever."""
    import signal

    def expire(signum, frame):
        raise AssertionError("hung")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# The timer runs, but every line is masked at the controller: IE is set, yet
# no interrupt can ever reach the halted CPU.
MASKED_HALT = """
    li   t0, PIC
    stw  zero, [t0 + 4]
    li   t0, TIMER
    li   t1, 100
    stw  t1, [t0 + 4]
    li   t1, 1
    stw  t1, [t0 + 8]
    mtsr status, t1
    halt
"""


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_halt_with_every_line_masked_stops_the_machine(engine, watchdog):
    m = machine_with(MASKED_HALT, engine=engine)
    assert m.run(10_000)
    assert (m.exit_status, m.stop_reason) == (0, "halted with nothing left to wake it")
    # The console's line masked too: input on a host file cannot wake it
    # either, so emu must not wait for any.
    import os
    read_end, write_end = os.pipe()
    try:
        m = Machine(1 << 16, console=Console(input_fd=read_end), engine=engine)
        m.load(assemble(DEVICES + "li t0, 0xF0000000\n li t1, 1\n stw t1, [t0 + 8]\n" + MASKED_HALT))
        assert m.run(10_000) and m.stop_reason == "halted with nothing left to wake it"
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_steps_bound_halted_time(engine, watchdog):
    # The timer would wake the CPU after 2**32 - 1 cycles: a run of 500 steps
    # ends long before that, still halted.  Each wait for a device event counts.
    m = machine_with("""
        la   t0, handler
        mtsr tvec, t0
        li   t0, TIMER
        li   t1, 0xFFFFFFFF
        stw  t1, [t0 + 4]
        li   t1, 1
        stw  t1, [t0 + 8]
        mtsr status, t1
        halt
    handler:
        li   t0, POWER
        stw  zero, [t0]
    """, engine=engine)
    assert not m.run(500)
    assert m.cpu.halted and m.cpu.steps == 500


def test_a_restored_machine_halted_with_interrupts_off_stops(tmp_path, cli):
    m = machine_with("""
        li   t0, TIMER
        li   t1, 100
        stw  t1, [t0 + 4]
        li   t1, 1
        stw  t1, [t0 + 8]
    """)
    m.run(5)
    m.cpu.halted = True           # a state `halt` never leaves, but a snapshot can say
    path = tmp_path / "halted.snap"
    snapshot.save(m, path)
    for engine in ("interpret", "translate"):
        r = cli("restore", str(path), "--steps", "100000", "--engine", engine)
        assert r.returncode == 0, r.stderr
        assert r.stderr.decode() == f"emu: {path}: halted with nothing left to wake it\n"


def test_cli_masked_halt_stops_within_steps(tmp_path, cli):
    source = tmp_path / "masked.s"
    source.write_text(DEVICES + MASKED_HALT)
    for engine in ("interpret", "translate"):
        r = cli("run", str(source), "--steps", "1000", "--engine", engine)
        assert r.returncode == 0
        assert r.stderr.decode() == f"emu: {source}: halted with nothing left to wake it\n"


def test_console_takes_from_the_host_only_what_its_buffer_holds():
    # Back-pressure: what the guest has not read stays with the host (here
    # in a pipe), so nothing is ever dropped or overwritten.
    from emu.devices.console import DATA, RX_BUFFER, RX_EOF, RX_READY, STATUS
    data = bytes(range(256)) * 40                   # 10 KiB, more than the buffer holds
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    console = Console(input_fd=r)
    assert console.read(STATUS) & RX_READY and len(console.rx) == RX_BUFFER < len(data)
    got = bytearray()
    while not console.read(STATUS) & RX_EOF:
        got.append(console.read(DATA))
        assert len(console.rx) <= RX_BUFFER
    os.close(r)
    assert bytes(got) == data


@pytest.mark.parametrize("typed, delivered, keys", [
    (b"a\x01xb", b"ab", ["x"]),
    (b"a\x01\x01b", b"a\x01b", []),                  # Ctrl-A Ctrl-A: one literal Ctrl-A
    (b"\x03\x01", b"\x03", []),                      # Ctrl-C is the guest's; an escape may
    (b"\x01", b"", []),                              #   end one read and finish in the next
])
def test_console_escape_key(typed, delivered, keys):
    from emu.devices.console import DATA, RX_READY, STATUS
    seen = []
    r, w = os.pipe()
    os.write(w, typed)
    console = Console(input_fd=r, escape=seen.append)
    got = bytearray()
    while console.read(STATUS) & RX_READY:
        got.append(console.read(DATA))
    assert bytes(got) == delivered and seen == keys
    os.write(w, b"h")
    console.read(STATUS)
    assert seen == keys + ["h"] * typed.endswith(b"\x01")
    os.close(w)
    os.close(r)
