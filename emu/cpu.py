"""The CPU: registers, privilege modes, traps, and the fetch-decode-execute loop.

Lecture idea: "a software layer emulates the underlying hardware".  This is the
heart of that software layer, written as plainly as possible: fetch a word,
look it up in the ISA table (``isa.py``), do what the table says, repeat.  Two
things keep it from being needlessly slow, and both are what real emulators'
interpreters do: each distinct instruction word is decoded only once, into a
small function that executes it (``predecode``), and ``run`` goes from one
instruction to the next without stopping to look at devices and interrupts
when none can be due (``burst``).  It stays the reference that the fast block
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


class DeviceAccess(Exception):
    """Raised by `CPU.burst` instead of touching a device: a device access may
    move the next event or raise an interrupt, which a burst does not expect.
    `step` then makes the access."""


# Decoding a word costs more than executing it, so each distinct instruction
# word is decoded once, into a closure that executes it on one CPU and returns
# the next pc.  These are the closures' bodies, by kind, over the decoded
# fields; the ALU and branch operations are the ISA table's `op` expressions
# with A and B filled in.  `set` is "R[rd] = ", or nothing for r0, which stays
# zero whatever is written to it.  A pc is below MMIO_BASE (code runs from
# RAM), so pc + 4 cannot wrap.
SEMANTICS = {
    "alu":    "{set}{op}\n"
              "return pc + 4",
    "branch": "return (pc + imm) & WORD if {op} else pc + 4",
    "jump":   "return (pc + imm) & WORD",
    "call":   "R[LR] = pc + 4\n"
              "return (pc + imm) & WORD",
    "jr":     "return R[rs1]",
    "callr":  "target = R[rs1]\n"         # before lr changes: `callr lr` must work
              "R[LR] = pc + 4\n"
              "return target",
    # Loads and stores to RAM are done right here: with paging on, through
    # the TLB's pre-checked pages for the current mode (mmu.py: `fast`; a
    # page it does not hold counts as past RAM).  Anything else (misaligned,
    # a TLB miss or fault, a device, memory a restore has not checked yet)
    # takes the CPU's full path.
    "load":   "a = (R[rs1] + imm) & WORD\n"
              "if a < size and not mmu.enabled and not memory.unchecked_left{aligned}: {set}{fast_a}\n"
              "elif mmu.enabled and (p := {paged}) < size"
              " and not memory.unchecked_left{aligned}: {set}{fast_p}\n"
              "else: {set}cpu.load(a, width, signed)\n"
              "return pc + 4",
    "store":  "a = (R[rs1] + imm) & WORD\n"
              "if a < size and not mmu.enabled{aligned}: memory.store_{unit}(a, R[rs2])\n"
              "elif mmu.enabled and (p := {paged}) < size{aligned}: memory.store_{unit}(p, R[rs2])\n"
              "else: cpu.store(a, width, R[rs2])\n"
              "return pc + 4",
}
_PAGED = "fast[1 if S[STATUS] & USER else 0][{access}].get(a >> 12, MMIO_BASE) | a & 4095"
_FAST_LOAD = {(4, False): "W[{a} >> 2]", (1, False): "M[{a}]", (1, True): "((M[{a}] ^ 0x80) - 0x80) & WORD"}


def _maker(insn, writes):
    """A function (cpu, decoded) -> closure executing that instruction."""
    b = "imm" if insn.kind == "alu" and insn.format != "R" else "R[rs2]"
    load = _FAST_LOAD.get((insn.width, insn.signed), "")
    body = SEMANTICS[insn.kind].format(
        set="R[rd] = " if writes else "", op=insn.op and isa.substitute(insn.op, "R[rs1]", b),
        aligned=" and not a & 3" if insn.width == 4 else "",
        fast_a=load.format(a="a"), fast_p=load.format(a="p"), unit="word" if insn.width == 4 else "byte",
        paged=_PAGED.format(access="WRITE" if insn.kind == "store" else "READ"))
    source = ("def make(cpu, d):\n"
              "    R, S, mmu, memory = cpu.regs, cpu.sregs, cpu.mmu, cpu.memory\n"
              "    width, signed, fast = d.insn.width, d.insn.signed, mmu.fast\n"
              "    W, M, size = memory.words, memory.ram, memory.size\n"
              "    rd, rs1, rs2 = d.rd, d.rs1, d.rs2\n"
              f"    imm = d.imm & WORD if {insn.kind == 'alu'} else d.imm\n"
              "    def run(pc):\n" + "".join(f"        {line}\n" for line in body.split("\n")) +
              "    return run\n")
    namespace = dict(isa.OP_NAMESPACE, LR=isa.LR, STATUS=SREG_STATUS, USER=STATUS_U,
                     READ=READ, WRITE=WRITE, MMIO_BASE=MMIO_BASE)
    exec(compile(source, f"<{insn.mnemonic}>", "exec"), namespace)
    return namespace["make"]


MAKERS = {(insn.mnemonic, writes): _maker(insn, writes)
          for insn in isa.INSTRUCTIONS if insn.kind != "system" for writes in (False, True)}
# An entry of CPU.decoded: (run, cycles, system); this one stands for "not decoded yet".
_UNDECODED = (None, 0, True)
_CACHE_LIMIT = 1 << 16       # distinct words; random code must not grow it without bound


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
        self.decoded = {}        # instruction word -> (run(pc) -> next pc, cycles, system)
        self.bursting = False    # inside `burst`: devices are out of bounds
        self.traps = {}          # cause -> traps taken (statistics, not machine state)

    # -- the loop -----------------------------------------------------------------

    def run(self, steps):
        """Execute until `steps` more instructions have run or the machine stops."""
        limit = self.steps + steps
        board, sregs = self.board, self.sregs
        while self.steps < limit and not board.stopped:
            # A burst fetches around the checks of memory a restore has not
            # checked yet (memory.py).
            if not (self.cycles >= self.next_event or self.halted or self.trace is not None
                    or self.memory.unchecked_left
                    or (self.irq_pending and sregs[SREG_STATUS] & STATUS_IE)):
                self.burst(limit)
                if self.steps >= limit or board.stopped:
                    break
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

    def burst(self, limit):
        """`step`, over and over, for as long as only registers and RAM
        change: no device event or interrupt can be due, so the loop need not
        look for one.  It stops at the step limit, at the next device event,
        and before anything that needs `step` (a system instruction, a device
        access, an instruction fetch the TLB cannot answer); then `run` steps."""
        decoded, words, size, mmu = self.decoded, self.memory.words, self.memory.size, self.mmu
        # Only system instructions change the mode or paging: fixed for the burst.
        fetchable = (mmu.fast[1 if self.sregs[SREG_STATUS] & STATUS_U else 0][EXECUTE]
                     if mmu.enabled else None)
        pc, steps, cycles, event = self.pc, self.steps, self.cycles, self.next_event
        trapped = None
        self.bursting = True
        try:
            while steps < limit and cycles < event:
                if pc & 3:
                    break
                if fetchable is None:
                    if pc >= size:
                        break
                    word = words[pc >> 2]
                else:
                    frame = fetchable.get(pc >> 12)
                    if frame is None:
                        break
                    word = words[(frame | (pc & 0xFFF)) >> 2]
                run, cost, system = decoded.get(word, _UNDECODED)
                if system:
                    break
                pc = run(pc)
                steps += 1
                cycles += cost
        except DeviceAccess:
            pass
        except Trap as trap:
            trapped = trap
        finally:
            self.bursting = False
            self.pc, self.steps, self.cycles = pc, steps, cycles
        if trapped is not None:           # as in `step`
            self.enter_trap(trapped.cause, trapped.badaddr, pc)
            self.steps += 1
            self.cycles += 1

    def execute(self, pc):
        """Execute the instruction at `pc`; return its cycle cost."""
        word = self.fetch(pc)
        if self.trace is not None:
            self.trace(pc, word)
        run, cycles, _system = self.decoded.get(word) or self.predecode(word)
        self.pc = run(pc)
        return cycles

    def predecode(self, word):
        d = isa.decode(word)
        if d is None:
            raise Trap(TRAP_ILLEGAL, word)
        insn = d.insn
        if insn.kind == "system":
            entry = (self.system_op(word, d), insn.cycles, True)
        else:
            entry = (MAKERS[insn.mnemonic, d.rd != 0](self, d), insn.cycles, False)
        if len(self.decoded) >= _CACHE_LIMIT:
            self.decoded.clear()
        self.decoded[word] = entry
        return entry

    def system_op(self, word, d):
        mnemonic, privileged = d.insn.mnemonic, d.insn.privileged

        def run(pc):
            if privileged and self.sregs[SREG_STATUS] & STATUS_U:
                raise Trap(TRAP_PRIVILEGED, word)
            return self.system(mnemonic, d, pc)
        return run

    def system(self, mnemonic, d, pc):
        """Execute a system instruction; return the next pc."""
        if mnemonic == "syscall":
            raise Trap(TRAP_SYSCALL)
        if mnemonic == "brk":
            raise Trap(TRAP_BREAKPOINT)
        if mnemonic == "mfsr":
            if d.rd:
                self.regs[d.rd] = self.sregs[d.sreg]
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
        return pc + 4

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
        if self.bursting:
            raise DeviceAccess(addr)
        self._check_device_access(addr)
        try:
            return self.board.mmio_read(addr, width)
        except BusError:
            raise Trap(TRAP_BAD_ADDRESS, addr) from None

    def mmio_write(self, addr, width, value):
        if self.bursting:
            raise DeviceAccess(addr)
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
        self.traps[cause] = self.traps.get(cause, 0) + 1
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
