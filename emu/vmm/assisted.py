"""The monitor with hardware assistance: the guest in guest mode, memory in
two stages.

Lecture idea: the hypervisor's cost, cut down by the hardware -- what VT-x
with EPT (and AMD-V with NPT, and RISC-V's H extension) did for the classic
monitor of ``monitor.py``.  The CPU has ISA extension H (``guestmode.py``,
docs/isa.md): the guest kernel runs in its *own* supervisor mode, so reading
and writing its system registers, ``eret``, its TLB flushes and its own
traps and page faults never leave the guest; and the CPU walks the guest's
page tables itself, then the host's second-level table, so no shadow is
kept and a page-table edit costs nothing.  What still exits, counted by
cause as under trap-and-emulate: a device access (the devices are the
host's virtual ones), ``halt`` (waiting is the host's), an interrupt (the
host's device raised it; the CPU injects it), and the first touch of a
guest-physical page the second-level table does not map yet (``2nd-level
fill``: the host maps it, at the same address, and the access goes on).

Everything else is the trap monitor's: the guest's RAM and nothing past it
(``ram.py``), the board (``GuestMachine``, whose snapshots are a bare
machine's), exits by cause (``exits.py``).  Guest time runs as on bare
emu -- an exit costs the guest nothing -- so the same toyos session gives the
same output, instruction for instruction (tests/emu/test_vmm.py).
"""

from ..guestmode import GuestModeCPU, SecondLevelMMU
from ..isa import PAGE_SIZE, PTE_P, PTE_R, PTE_W, PTE_X
from ..machine import DEFAULT_MEMORY
from ..mmu import FRAME_MASK
from .exits import Exits
from .monitor import GuestMachine, check_size, restore_into
from .ram import GuestRAM


class AssistedMachine(GuestMachine):
    """The guest's board, on a CPU with extension H."""

    cpu_class = GuestModeCPU


class AssistedMonitor:
    """A guest machine of `memory_size` bytes in guest mode; as ``Monitor``,
    boot, load and run ``monitor.machine``."""

    virtualization = "hw"

    def __init__(self, memory_size=DEFAULT_MEMORY, console=None, engine="translate", disk=None):
        check_size(memory_size)
        # The real machine: the guest's RAM, then the second-level table's
        # directory and a table for each 4 MiB of it.
        tables = -(-memory_size // (PAGE_SIZE << 10))
        machine = AssistedMachine(self, memory_size + (1 + tables) * PAGE_SIZE, console=console,
                                  engine=engine, disk=disk)
        self.machine, self.cpu = machine, machine.cpu
        self.host = machine.memory
        machine.memory = self.ram = GuestRAM(self.host, memory_size)
        self.root = memory_size         # the second-level directory, host-physical
        self.mapped = 0                 # guest pages the second level maps (statistics)
        self.exits = Exits()
        self.cpu.enter(SecondLevelMMU(self.host, memory_size, self.root, self.fill), self.exits)

    def fill(self, gpa):
        """An exit: guest-physical page `gpa` is not mapped at the second
        level.  Map it to the same host-physical page (guest RAM sits at
        host-physical 0, ``ram.py``); the table for its 4 MiB is the
        directory's neighbour number `gpa` >> 22."""
        if gpa >= self.ram.size:
            return False
        self.exits.count("2nd-level fill")
        slot = self.root + (gpa >> 22) * 4
        table = self.root + (1 + (gpa >> 22)) * PAGE_SIZE
        self.host.store_word(slot, table | PTE_P)
        self.host.store_word(table + ((gpa >> 12) & 0x3FF) * 4,
                             (gpa & FRAME_MASK) | PTE_R | PTE_W | PTE_X | PTE_P)
        self.mapped += 1
        return True

    # -- snapshots: the real CPU holds the guest's own state ------------------------

    def save_cpu(self):
        return self.cpu.save()

    def restore_cpu(self, state):
        """``Machine.restore_state`` has given the CPU the guest's state,
        which in guest mode is all its own; the second level stays as it is."""

    @classmethod
    def restore(cls, path, console=None, engine="translate", verify=True, disk=None):
        """A monitor running the guest saved in snapshot `path`."""
        return restore_into(cls, path, console, engine, verify, disk)

    # -- statistics -------------------------------------------------------------------

    @property
    def traps(self):
        return self.cpu.traps

    def report(self, seconds=None):
        """Exits by cause; device exits by device; the second level's pages;
        the guest's own steps and traps."""
        devices = ", ".join(f"{name} {count}" for name, count in sorted(self.machine.exits.items()))
        return (self.exits.table(seconds) +
                f"\ndevice exits: {devices or 'none'}"
                f"\nsecond-level page table: {self.mapped} pages mapped"
                f"\nguest: {self.cpu.steps} steps, {sum(self.cpu.traps.values())} traps taken")
