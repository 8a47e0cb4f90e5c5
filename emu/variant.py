"""Variant P: a CPU with a sensitive instruction that does not trap.

Lecture idea: why the x86 before VT-x could not be virtualised by
trap-and-emulate (Popek and Goldberg's condition, isa.py's POPEK_GOLDBERG).
On it `pushf` let user mode read the real flags and `popf` silently ignored
an attempt to change the interrupt flag: sensitive, yet unprivileged.  This
CPU does the same with `status` (docs/isa.md, "Variant P"): in user mode
`mfsr status` reads the real register and `mtsr status` writes nothing, and
neither traps.  A kernel in supervisor mode cannot tell the difference; a
kernel deprivileged under a monitor goes wrong, and the monitor never sees
why (tests/emu/test_vmm.py).  The repair is binary translation
(``vmm/monitor.py``): the guest's sensitive instructions are rewritten into
calls to the monitor before they run.

A subclass, so the standard CPU carries no check of it.
"""

from .cpu import CPU
from .isa import SREG_STATUS, STATUS_U, unprivileged_in_variant_p


class VariantPCPU(CPU):
    """A CPU on which user mode reads `status` and fails to write it, silently."""

    def system_op(self, word, d):
        if not unprivileged_in_variant_p(d):
            return super().system_op(word, d)
        mnemonic, sregs, regs = d.insn.mnemonic, self.sregs, self.regs

        def run(pc):
            if sregs[SREG_STATUS] & STATUS_U:
                if mnemonic == "mfsr" and d.rd:
                    regs[d.rd] = sregs[SREG_STATUS]      # pushf: the real mode, revealed
                return pc + 4                             # popf: the write silently dropped
            return self.system(mnemonic, d, pc)
        return run
