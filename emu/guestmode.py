"""Extension H: a guest mode and a second-level page table, as VT-x with EPT
and the RISC-V H extension give.

Lecture idea: the hypervisor's cost is the guest's trips "through the
hypervisor" -- and hardware can make most of them unnecessary.  Under
trap-and-emulate (``vmm/monitor.py``) the guest kernel runs deprivileged, so
every system-register access, every ``eret`` and every page-table change
costs an exit.  With this extension the CPU itself keeps the guest apart
instead: in *guest mode* the guest kernel runs in its own supervisor mode,
on system registers and a TLB that are its own, and only what the host must
own -- the devices, waiting, interrupts, and host memory -- leaves guest mode
(docs/isa.md, "Extension H").

Memory is where the hardware does the most: *two-stage* translation.  The
guest's page tables map guest-virtual to guest-physical addresses, and are
walked in guest-physical memory; a second-level table, the host's, maps
guest-physical to host-physical pages.  ``SecondLevelMMU`` is the first
stage as ``mmu.py`` has it (the same walk, the same TLB, which a snapshot
saves), over a memory whose every word is reached through the second stage
(``GuestPhysical``); a guest-physical page the second level does not map
yet is an exit, after which the host has mapped it and the access goes on.
The guest edits its own tables as on bare hardware: no exit, no shadow.

This lives apart from ``cpu.py`` and ``mmu.py`` so that a bare machine's
CPU carries no check of it: the guest-mode CPU is a subclass, and every
difference is on the paths the fast ones already leave for (a TLB miss, a
device access, a system instruction, an interrupt).
"""

from .cpu import CPU, Trap
from .isa import MMIO_BASE, PTBR_ENABLE, PTE_P, SREG_PTBR, SREG_STATUS, STATUS_U, TRAP_BAD_ADDRESS
from .mmu import MMU, FRAME_MASK, PAGE_MASK


class GuestPhysical:
    """Guest-physical memory as the first stage's walk reads it: `size`
    bytes, each word found through the second level (`stage2`)."""

    def __init__(self, host, size, stage2):
        self.host, self.size, self.stage2 = host, size, stage2

    def load_word(self, addr):
        return self.host.load_word(self.stage2(addr & FRAME_MASK) | (addr & PAGE_MASK))


class SecondLevelMMU(MMU):
    """Two-stage translation for a guest of `size` bytes of guest-physical
    memory.  The second-level table is in `host` memory at `root` (the
    format of the first: a directory of 1024 entries, each a table of 1024;
    a present entry maps the page); `on_fault(gpa)` is the exit taken for a
    page it does not map, and returns whether the host mapped it."""

    def __init__(self, host, size, root, on_fault):
        super().__init__(GuestPhysical(host, size, self.stage2))
        self.host, self.root, self.on_fault = host, root, on_fault
        self.guest_paging = False   # bit 0 of the guest's ptbr
        self.enabled = True         # every access goes through the second stage at least

    def set_ptbr(self, value):
        self.guest_paging = bool(value & PTBR_ENABLE)
        self.directory = value & FRAME_MASK
        self.flush()

    def stage2(self, gpa):
        """The host-physical page of guest-physical page `gpa`, exiting to
        the host to map it if need be; None past the guest's memory."""
        for _ in range(2):              # the walk, and after an exit the walk again
            pde = self.host.load_word(self.root + (gpa >> 22) * 4)
            if pde & PTE_P:
                pte = self.host.load_word((pde & FRAME_MASK) + ((gpa >> 12) & 0x3FF) * 4)
                if pte & PTE_P:
                    return pte & FRAME_MASK
            if gpa >= self.memory.size or not self.on_fault(gpa):
                return None
        return None

    def translate(self, vaddr, access, user):
        if not self.guest_paging:
            # The guest's paging off: guest-virtual is guest-physical, all of it allowed.
            if vaddr >= self.memory.size:
                return None
            frame = self.stage2(vaddr & FRAME_MASK)
            if frame is None:
                return None
            for by_access in self.fast:
                for table in by_access:
                    table[vaddr >> 12] = frame
            return frame | (vaddr & PAGE_MASK)
        gpa = super().translate(vaddr, access, user)
        return None if gpa is None else self.stage2(gpa & FRAME_MASK) | (gpa & PAGE_MASK)

    def allow(self, vpn, pte, frame):
        # The translator's pre-checked pages hold host-physical pages.
        frame = self.stage2(frame)
        if frame is not None:
            super().allow(vpn, pte, frame)


class GuestModeCPU(CPU):
    """A CPU in guest mode.  Until ``enter`` it is a bare CPU; after it,
    its system registers and TLB are the guest's, memory is translated in
    two stages by `mmu` (a ``SecondLevelMMU``), and every exit is counted
    in `exits` (``vmm/exits.py``) as the host handles it."""

    def __init__(self, memory, board):
        super().__init__(memory, board)
        self.exits = None

    def enter(self, mmu, exits):
        """Guest mode, before the guest's first instruction is decoded (a
        decoded instruction holds on to the MMU it was decoded for)."""
        self.mmu, self.exits = mmu, exits
        mmu.set_ptbr(self.sregs[SREG_PTBR])

    def translate(self, vaddr, access):
        if not self.mmu.guest_paging and vaddr >= self.mmu.memory.size:
            raise Trap(TRAP_BAD_ADDRESS, vaddr)     # past the guest's RAM, as on bare hardware
        return super().translate(vaddr, access)

    # -- exits: what leaves guest mode ---------------------------------------------------

    def system(self, mnemonic, d, pc):
        if mnemonic == "halt":
            self.exits.count("halt")    # waiting is the host's: its devices wake the guest
        return super().system(mnemonic, d, pc)

    def interrupt(self):
        self.exits.count("interrupt")   # the host's line, injected into the guest
        super().interrupt()

    def mmio_read(self, addr, width):
        self._count_device(addr)
        return super().mmio_read(addr, width)

    def mmio_write(self, addr, width, value):
        self._count_device(addr)
        super().mmio_write(addr, width, value)

    def _count_device(self, addr):
        # From guest user mode a device is a bad address, the guest's own trap.
        if not self.bursting and addr >= MMIO_BASE and not self.sregs[SREG_STATUS] & STATUS_U:
            self.exits.count("device")

