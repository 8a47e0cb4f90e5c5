"""The CPU: registers, privilege modes, traps, and the fetch-decode-execute loop.

Lecture idea: "a software layer emulates the underlying hardware".  This is the
heart of that software layer, written as plainly as possible: fetch a word,
look it up in the ISA table (``isa.py``), do what the table says, repeat.  It is
slow -- a dictionary lookup and a dozen Python operations per guest
instruction -- and that is the point: it is the reference that the fast block
translator (``translate.py``) must agree with, instruction for instruction.

Read ``isa.py`` first.  The CPU knows no device by name: loads and stores at
or above ``MMIO_BASE`` go to the *board* (``machine.py``), which also tells it
when devices next need attention (``next_event``) and which interrupt lines
are raised (``irq_pending``).  Every other address goes through the MMU
(``mmu.py``) when paging is on: the CPU asks it for a physical address and
turns a refusal into a page fault.
"""

from . import isa
from .isa import (WORD, MMIO_BASE, STATUS_IE, STATUS_U, STATUS_PIE, STATUS_PU, STATUS_MASK,
                  SREG_STATUS, SREG_EPC, SREG_CAUSE, SREG_BADADDR, SREG_TVEC, SREG_PTBR,
                  IRQ_BASE, TRAP_ILLEGAL, TRAP_PRIVILEGED, TRAP_BAD_ADDRESS, TRAP_MISALIGNED,
                  TRAP_SYSCALL, TRAP_BREAKPOINT, TRAP_FETCH_FAULT, TRAP_LOAD_FAULT,
                  TRAP_STORE_FAULT, PTBR_ENABLE)
from .mmu import MMU, READ, WRITE, EXECUTE

# The page fault for each kind of access, indexed like mmu.READ, WRITE, EXECUTE.
PAGE_FAULT = (TRAP_LOAD_FAULT, TRAP_STORE_FAULT, TRAP_FETCH_FAULT)


class Trap(Exception):
    """Raised inside an instruction that cannot complete; `step` turns it into
    a guest trap.  It never escapes the CPU."""

    def __init__(self, cause, badaddr=0):
        super().__init__(cause, badaddr)
        self.cause, self.badaddr = cause, badaddr


class BusError(Exception):
    """Raised by the board for an address in the device region that no
    device answers; the CPU turns it into a bad-address trap."""


def _compile(expr):
    # The ISA table states each operation once, as an expression over A and B;
    # the interpreter turns it into a function, the translator inlines it.
    return eval(f"lambda A, B: {expr}", dict(isa.OP_NAMESPACE))


ALU = {i.mnemonic: _compile(i.op) for i in isa.INSTRUCTIONS if i.kind == "alu"}
CONDITION = {i.mnemonic: _compile(i.op) for i in isa.INSTRUCTIONS if i.kind == "branch"}


class CPU:
    def __init__(self, memory, board):
        self.memory = memory
        self.board = board
        self.mmu = MMU(memory)
        self.regs = [0] * 16
        self.pc = 0
        self.sregs = [0] * len(isa.SYSTEM_REGISTERS)
        self.cycles = 0          # what the timer counts: each instruction costs its table cycles
        self.steps = 0           # instructions executed (trapped ones too), and waits while halted
        self.halted = False      # inside `halt`, waiting for an interrupt
        self.irq_pending = 0     # bit n set: interrupt line n is raised
        self.next_event = 0      # at this cycle count the board wants to run its devices
        self.trace = None        # a callable(pc, word) that sees every instruction, or None

    # -- the loop -----------------------------------------------------------------

    def run(self, steps):
        """Execute until `steps` more instructions have run or the machine stops."""
        limit = self.steps + steps
        board = self.board
        while self.steps < limit and not board.stopped:
            self.step()

    def step(self):
        """One turn of the loop: let devices catch up, take an interrupt if one
        is due, then execute one instruction (or idle, if halted)."""
        if self.cycles >= self.next_event:
            self.board.service()
        if self.irq_pending and self.sregs[SREG_STATUS] & STATUS_IE:
            self.interrupt()
            if self.board.stopped:
                return
        if self.halted:
            self.board.idle()
            return
        pc = self.pc
        cycles = 1                        # what an instruction that traps costs
        try:
            cycles = self.execute(pc)
        except Trap as trap:
            self.enter_trap(trap.cause, trap.badaddr, pc)
        self.steps += 1
        self.cycles += cycles

    def execute(self, pc):
        """Execute the instruction at `pc`; return its cycle cost."""
        word = self.fetch(pc)
        if self.trace is not None:
            self.trace(pc, word)
        d = isa.decode(word)
        if d is None:
            raise Trap(TRAP_ILLEGAL, word)
        insn = d.insn
        if insn.privileged and self.sregs[SREG_STATUS] & STATUS_U:
            raise Trap(TRAP_PRIVILEGED, word)
        regs = self.regs
        next_pc = (pc + 4) & WORD
        kind = insn.kind

        if kind == "alu":
            b = regs[d.rs2] if insn.format == "R" else d.imm & WORD
            self.set(d.rd, ALU[insn.mnemonic](regs[d.rs1], b))
        elif kind == "load":
            self.set(d.rd, self.load((regs[d.rs1] + d.imm) & WORD, insn.width, insn.signed))
        elif kind == "store":
            self.store((regs[d.rs1] + d.imm) & WORD, insn.width, regs[d.rs2])
        elif kind == "branch":
            if CONDITION[insn.mnemonic](regs[d.rs1], regs[d.rs2]):
                next_pc = (pc + d.imm) & WORD
        elif kind in ("jump", "call"):
            if kind == "call":
                regs[isa.LR] = next_pc
            next_pc = (pc + d.imm) & WORD
        elif kind in ("jr", "callr"):
            target = regs[d.rs1]          # read before lr changes: `callr lr` must work
            if kind == "callr":
                regs[isa.LR] = next_pc
            next_pc = target
        else:
            next_pc = self.system(insn.mnemonic, d, pc, next_pc)
        self.pc = next_pc
        return insn.cycles

    def system(self, mnemonic, d, pc, next_pc):
        if mnemonic == "syscall":
            raise Trap(TRAP_SYSCALL)
        if mnemonic == "brk":
            raise Trap(TRAP_BREAKPOINT)
        if mnemonic == "mfsr":
            self.set(d.rd, self.sregs[d.sreg])
        elif mnemonic == "mtsr":
            value = self.regs[d.rs1]
            if d.sreg == SREG_STATUS:
                value &= STATUS_MASK
            elif d.sreg == SREG_PTBR:
                value &= (WORD & ~0xFFF) | PTBR_ENABLE
                self.mmu.set_ptbr(value)
            self.sregs[d.sreg] = value
        elif mnemonic == "eret":
            status = self.sregs[SREG_STATUS]
            ie = STATUS_IE if status & STATUS_PIE else 0
            user = STATUS_U if status & STATUS_PU else 0
            self.sregs[SREG_STATUS] = (status & ~(STATUS_IE | STATUS_U)) | ie | user
            return self.sregs[SREG_EPC]
        elif mnemonic == "halt":
            if not self.sregs[SREG_STATUS] & STATUS_IE:
                # Nothing can ever wake a CPU that waits with interrupts off.
                self.board.power_off(0)
            else:
                self.halted = True
        elif mnemonic == "tlbflush":
            self.mmu.flush()
        return next_pc

    def set(self, rd, value):
        if rd:                            # r0 stays zero, whatever is written to it
            self.regs[rd] = value

    # -- memory ---------------------------------------------------------------------

    def fetch(self, pc):
        if pc & 3:
            raise Trap(TRAP_MISALIGNED, pc)
        if self.mmu.enabled and pc < MMIO_BASE:
            pc = self.translate(pc, EXECUTE)
        elif pc >= self.memory.size:
            raise Trap(TRAP_BAD_ADDRESS, pc)      # code runs from RAM only
        return self.memory.load_word(pc)

    def translate(self, vaddr, access):
        """Virtual to physical through the MMU, or a page fault."""
        paddr = self.mmu.translate(vaddr, access, self.sregs[SREG_STATUS] & STATUS_U)
        if paddr is None:
            raise Trap(PAGE_FAULT[access], vaddr)
        return paddr

    def load(self, addr, width, signed=False):
        if width == 4 and addr & 3:
            raise Trap(TRAP_MISALIGNED, addr)
        if self.mmu.enabled and addr < MMIO_BASE:
            addr = self.translate(addr, READ)     # always lands in RAM
        if addr + width <= self.memory.size:
            value = self.memory.load_word(addr) if width == 4 else self.memory.load_byte(addr)
        else:
            value = self.mmio_read(addr, width)
        if signed and value & 0x80:
            value |= 0xFFFFFF00
        return value

    def store(self, addr, width, value):
        if width == 4 and addr & 3:
            raise Trap(TRAP_MISALIGNED, addr)
        if self.mmu.enabled and addr < MMIO_BASE:
            addr = self.translate(addr, WRITE)
        if addr + width <= self.memory.size:
            if width == 4:
                self.memory.store_word(addr, value)
            else:
                self.memory.store_byte(addr, value)
        else:
            self.mmio_write(addr, width, value)

    def mmio_read(self, addr, width):
        self._check_device_access(addr)
        try:
            return self.board.mmio_read(addr, width)
        except BusError:
            raise Trap(TRAP_BAD_ADDRESS, addr) from None

    def mmio_write(self, addr, width, value):
        self._check_device_access(addr)
        try:
            self.board.mmio_write(addr, width, value)
        except BusError:
            raise Trap(TRAP_BAD_ADDRESS, addr) from None

    def _check_device_access(self, addr):
        # Devices are machine state: from user mode they are out of reach, so a
        # hypervisor running a guest kernel in user mode sees every access.
        if addr < MMIO_BASE or self.sregs[SREG_STATUS] & STATUS_U:
            raise Trap(TRAP_BAD_ADDRESS, addr)

    # -- traps and interrupts ----------------------------------------------------------

    def enter_trap(self, cause, badaddr, epc):
        """Switch to the supervisor's trap handler, remembering where we were."""
        tvec = self.sregs[SREG_TVEC]
        if tvec == 0:
            self.board.unhandled_trap(cause, epc, badaddr)
            return
        status = self.sregs[SREG_STATUS]
        previous = (STATUS_PIE if status & STATUS_IE else 0) | (STATUS_PU if status & STATUS_U else 0)
        self.sregs[SREG_STATUS] = previous
        self.sregs[SREG_EPC] = epc
        self.sregs[SREG_CAUSE] = cause
        self.sregs[SREG_BADADDR] = badaddr
        self.pc = tvec

    def interrupt(self):
        """Take the lowest-numbered raised interrupt line.  Interrupts arrive
        between instructions, so the handler returns to the next one."""
        line = (self.irq_pending & -self.irq_pending).bit_length() - 1
        self.halted = False
        self.enter_trap(IRQ_BASE + line, 0, self.pc)

    # -- snapshot ---------------------------------------------------------------------

    def save(self):
        return {"regs": list(self.regs), "pc": self.pc, "sregs": list(self.sregs),
                "cycles": self.cycles, "steps": self.steps, "halted": self.halted,
                "irq_pending": self.irq_pending, "tlb": self.mmu.save()}

    def restore(self, state):
        # In place: the translator's compiled blocks hold on to these lists.
        self.regs[:] = state["regs"]
        self.pc = state["pc"]
        self.sregs[:] = state["sregs"]
        self.cycles, self.steps = state["cycles"], state["steps"]
        self.halted, self.irq_pending = state["halted"], state["irq_pending"]
        self.mmu.restore(self.sregs[SREG_PTBR], state.get("tlb", []))
