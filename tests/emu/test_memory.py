"""RAM: fresh memory costs nothing until the guest uses it, and pages written
are tracked for snapshots."""

import os

from emu import isa
from emu.devices.console import Console
from emu.machine import Machine
from emu.memory import MIGRATION, SNAPSHOT, Memory


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_fresh_memory_is_allocated_when_the_guest_uses_it(run):
    # Its bookkeeping too: a byte per page (dirty and present bits, 512 KiB
    # for 1 GiB) is all it holds up front; the translator's per-line flags
    # (4 MiB each) cost only where lines are used.
    before = resident_bytes()
    machine = Machine(1 << 30, console=Console())
    assert resident_bytes() - before < 2 << 20
    machine.memory.mark_snapshot()
    assert resident_bytes() - before < 2 << 20
    machine = run("""
    _start:
        li   t0, 0x3FFFFFF0
        ldw  a0, [t0]           ; never written: reads as zero
        li   a1, 0x12345678
        stw  a1, [t0]
        ldw  a2, [t0]
        halt
    """, memory=1 << 30, engine="translate")
    regs = machine.cpu.regs
    assert regs[isa.REGISTERS["a0"]] == 0 and regs[isa.REGISTERS["a2"]] == 0x12345678
    assert machine.memory.dirty_pages() == [0, (1 << 30) // 4096 - 1]
    assert resident_bytes() - before < 8 << 20


def test_untouched_memory_reads_as_zeros():
    memory = Memory(1 << 24)
    assert memory.read_bytes(0x800000, 16) == bytes(16) and memory.load_word(0xFFFFFC) == 0
    memory.store_word(0x800000, 0xFFFFFFFF)
    assert memory.read_bytes(0x7FFFFE, 8) == bytes(2) + b"\xff" * 4 + bytes(2)
    assert memory.dirty_pages() == [0x800]


def test_every_write_is_logged_for_every_reader_until_it_copies_the_page():
    # Snapshots and live migration each read the log and clear their own bit.
    memory = Memory(1 << 16)
    memory.store_word(0x1000, 1)
    memory.store_byte(0x2001, 2)
    memory.write_bytes(0x3FFE, b"dma!")          # the disk's DMA, the loader, a restore
    assert memory.dirty_pages(SNAPSHOT) == memory.dirty_pages(MIGRATION) == [1, 2, 3, 4]
    memory.mark_copied([1, 2], MIGRATION)
    assert memory.dirty_pages(MIGRATION) == [3, 4] and memory.dirty_pages(SNAPSHOT) == [1, 2, 3, 4]
    memory.mark_snapshot()
    assert memory.dirty_pages(SNAPSHOT) == [] and memory.dirty_pages(MIGRATION) == [3, 4]
    assert memory.used_pages() == [1, 2, 3, 4]
    memory.store_word(0x1004, 3)
    assert memory.dirty_pages(SNAPSHOT) == [1] and memory.dirty_pages(MIGRATION) == [1, 3, 4]
