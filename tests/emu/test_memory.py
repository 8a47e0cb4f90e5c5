"""RAM: fresh memory costs nothing until the guest uses it, and pages written
are tracked for snapshots."""

import os

from emu import isa
from emu.devices.console import Console
from emu.machine import Machine
from emu.memory import Memory


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_fresh_memory_is_allocated_when_the_guest_uses_it(run):
    before = resident_bytes()
    machine = Machine(1 << 30, console=Console())
    assert resident_bytes() - before < 32 << 20          # not the 1 GiB
    machine = run("""
    _start:
        li   t0, 0x3FFFFFF0
        ldw  a0, [t0]           ; never written: reads as zero
        li   a1, 0x12345678
        stw  a1, [t0]
        ldw  a2, [t0]
        halt
    """, memory=1 << 30)
    regs = machine.cpu.regs
    assert regs[isa.REGISTERS["a0"]] == 0 and regs[isa.REGISTERS["a2"]] == 0x12345678
    assert machine.memory.dirty_pages() == [0, (1 << 30) // 4096 - 1]
    assert resident_bytes() - before < 64 << 20


def test_untouched_memory_reads_as_zeros():
    memory = Memory(1 << 24)
    assert memory.read_bytes(0x800000, 16) == bytes(16) and memory.load_word(0xFFFFFC) == 0
    memory.store_word(0x800000, 0xFFFFFFFF)
    assert memory.read_bytes(0x7FFFFE, 8) == bytes(2) + b"\xff" * 4 + bytes(2)
    assert memory.dirty_pages() == [0x800]
