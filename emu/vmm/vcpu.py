"""The virtual CPU: the guest's privileged state, and the instructions that
trap, carried out on it.

Lecture idea: trap-and-emulate.  The guest kernel runs on the real CPU in
user mode, so it uses the real general registers and pc directly and its
ordinary instructions run at full speed.  What it may not touch -- status,
epc, cause, badaddr, tvec, scratch, ptbr, the ability to halt, the devices --
lives here instead, as the guest's *virtual* copy, and every instruction that
would touch it traps to the monitor (isa.py's POPEK_GOLDBERG says why every
such instruction does).

Emulating such an instruction means doing what the hardware would have done
had the guest really been in supervisor mode.  The hardware's behaviour is
already written down once, in ``cpu.py``; so the virtual CPU *is* a ``CPU``,
built over the guest's state: the real CPU's general registers (one list,
shared), virtual system registers, the guest's MMU (``shadow.py``) over the
guest's RAM, and the guest's board with its devices.  It never runs a loop of
its own.  The monitor hands it the one instruction that trapped (``emulate``)
or the trap the guest must take (``deliver``), and copies back where the
guest goes next.  A privileged instruction in guest *user* mode, or a device
access from there, raises in it the same trap it would raise on bare
hardware, which the monitor then delivers.
"""

from ..cpu import CPU, Trap
from ..isa import STATUS_U, SREG_STATUS
from ..variant import VariantPCPU


class VirtualCPU(CPU):
    """The guest's CPU as the monitor keeps it, sharing `cpu`'s general
    registers, with `mmu` (the shadow page tables' MMU) and the guest's
    `board`."""

    def __init__(self, cpu, mmu, board):
        super().__init__(mmu.memory, board)
        self.regs = cpu.regs          # before anything is decoded: instructions capture them
        self.mmu = mmu

    @property
    def user(self):
        """The guest's virtual mode: True in guest user mode."""
        return bool(self.sregs[SREG_STATUS] & STATUS_U)

    def emulate(self, pc):
        """Carry out the instruction at `pc` -- fetched through the guest's
        own page tables, decoded, executed on the virtual state -- or the trap
        it raises there.  Returns (next pc, the instruction's cycle cost)."""
        try:
            cycles = self.execute(pc)
        except Trap as trap:
            return self.deliver(trap.cause, trap.badaddr, pc), 1
        return self.pc, cycles

    def deliver(self, cause, badaddr, epc):
        """Enter the guest's trap handler, as the hardware does: virtual epc,
        cause, badaddr and status, then the virtual tvec.  Returns that pc
        (without a handler the guest's machine stops, as on bare hardware)."""
        self.pc = epc
        self.enter_trap(cause, badaddr, epc)
        return self.pc


class VariantVirtualCPU(VirtualCPU, VariantPCPU):
    """The virtual CPU of a guest whose hardware is variant P (variant.py):
    an instruction emulated in guest user mode does what the variant's does."""
