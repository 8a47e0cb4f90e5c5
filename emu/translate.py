"""The block translator: guest code compiled to Python, the fast path.

Lecture idea: "each environment communicates to resources through the
hypervisor ... can significantly impact performance".  Emulation is slow
because every guest instruction costs dozens of host operations; the classic
answer (QEMU's TCG, VirtualBox's recompiler, VMware's binary translation) is
to translate a whole *basic block* -- straight-line guest code up to a jump --
into host code once, and then run the translation many times.

Here the host "code" is Python source.  A block such as::

    loop: addi t0, t0, 1
          bne  t0, t1, loop

becomes, roughly::

    def block(budget):
        r5 = R[5]; r6 = R[6]
        it = 0
        while True:
            it += 1
            r5 = (r5 + 1) & WORD
            if r5 != r6:
                if it < budget: continue        # the loop stays in Python
                R[5] = r5; return 0x100, it * 2, it * 3, False
            R[5] = r5; return 0x108, it * 2, it * 3, False

Registers live in Python locals inside the block, decoding happens once, and
a block that branches to itself loops without coming back out.  The
semantics come from the same ``op`` expressions in ``isa.py`` that the
interpreter uses.

The translator only handles the common case and hands everything else to the
interpreter (``cpu.py``): system instructions, illegal words, any load or
store that would trap or reach a device or overwrite translated code, and the
moment a device event or interrupt is due.  A block runs only if it cannot
cross a device event or the step limit, so translated and interpreted runs
are identical, instruction for instruction; ``tests/emu/test_translate.py``
checks exactly that.
"""

import re

from . import isa
from .isa import WORD, STATUS_IE, SREG_STATUS
from .memory import CODE_SHIFT

MAX_BLOCK = 64                     # instructions; long enough for any loop body here
_MISSING = object()
_TERMINATORS = {"branch", "jump", "call", "jr", "callr"}


class Translator:
    """Runs a CPU with translated blocks; same interface as ``CPU.run``."""

    def __init__(self, cpu):
        self.cpu = cpu
        self.memory = cpu.memory
        self.blocks = {}           # pc -> (function, instructions, cycles), or None: interpret
        self.lines = {}            # code line -> pcs of the blocks that read it
        self.memory.on_code_write = self.invalidate
        self.translated = 0        # blocks compiled so far (for the curious and the benchmark)

    def run(self, steps):
        cpu = self.cpu
        if cpu.trace is not None or self.memory.watch is not None:
            # Tracing and watchpoints need to see every instruction: interpret.
            return cpu.run(steps)
        board, blocks, sregs = cpu.board, self.blocks, cpu.sregs
        limit = cpu.steps + steps
        while cpu.steps < limit and not board.stopped:
            pc = cpu.pc
            block = blocks.get(pc, _MISSING)
            if block is _MISSING:
                block = self.translate(pc)
            if (block is None or cpu.cycles >= cpu.next_event or cpu.halted
                    or (cpu.irq_pending and sregs[SREG_STATUS] & STATUS_IE)):
                cpu.step()
                continue
            function, count, cycles = block
            # How many times the block may run without passing a device event
            # or the step limit; a block that loops on itself uses all of it.
            budget = min((limit - cpu.steps) // count, (cpu.next_event - cpu.cycles) // cycles)
            if budget <= 0:
                cpu.step()
                continue
            cpu.pc, done, done_cycles, bailed = function(budget)
            cpu.steps += done
            cpu.cycles += done_cycles
            if bailed:
                cpu.step()         # the instruction the block could not do

    def invalidate(self, line):
        """Guest code in `line` was overwritten: forget every block that read it."""
        self.memory.code[line] = 0
        for pc in self.lines.pop(line, ()):
            self.blocks.pop(pc, None)

    # -- translation -------------------------------------------------------------------

    def translate(self, pc):
        memory = self.memory
        insns = []
        addr = pc
        while len(insns) < MAX_BLOCK and not addr & 3 and addr + 4 <= memory.size:
            decoded = isa.decode(memory.load_word(addr))
            if decoded is None or decoded.insn.kind == "system":
                break
            insns.append((addr, decoded))
            addr += 4
            if decoded.insn.kind in _TERMINATORS:
                break
        if not insns:
            self.blocks[pc] = None
            return None
        source = block_source(pc, insns, memory.size)
        namespace = dict(isa.OP_NAMESPACE)
        exec(compile(source, f"<block {pc:#010x}>", "exec"), namespace)
        function = namespace["make"](self.cpu.regs, memory.words, memory.ram, memory.dirty, memory.code)
        block = (function, len(insns), sum(d.insn.cycles for _, d in insns))
        self.blocks[pc] = block
        for line in range(pc >> CODE_SHIFT, ((addr - 1) >> CODE_SHIFT) + 1):
            memory.code[line] = 1
            self.lines.setdefault(line, set()).add(pc)
        self.translated += 1
        return block


def _reg(n):
    return f"r{n}" if n else "0"


def _substitute(op, a, b):
    return re.sub(r"\bB\b", b, re.sub(r"\bA\b", a, op))


def block_source(start, insns, memory_size):
    """Python source for one block (see the module docstring for its shape)."""
    used = sorted({r for _, d in insns for r in (d.rd, d.rs1, d.rs2) if r} | {isa.LR})
    written = sorted({d.rd for _, d in insns if d.rd and d.insn.kind in ("alu", "load")}
                     | ({isa.LR} if any(d.insn.kind in ("call", "callr") for _, d in insns) else set()))
    count = len(insns)
    cycles = sum(d.insn.cycles for _, d in insns)
    writeback = "".join(f"R[{r}] = r{r}; " for r in written)

    def leave(pc, done, done_cycles, bailed=False):
        return f"{writeback}return {pc}, {done}, {done_cycles}, {bailed}"

    body = ["def make(R, W, M, D, C):",
            "  def block(budget):"]
    body += [f"    r{r} = R[{r}]" for r in used]
    body += ["    it = 0", "    while True:", "      it += 1"]
    spent = 0
    for k, (pc, d) in enumerate(insns):
        insn = d.insn
        kind = insn.kind
        pad = "      "
        # Everything up to here, in this iteration, has been done:
        bail = leave(pc, f"(it - 1) * {count} + {k}", f"(it - 1) * {cycles} + {spent}", True)
        rd, a = d.rd, _reg(d.rs1)
        if kind == "alu":
            b = _reg(d.rs2) if insn.format == "R" else str(d.imm & WORD)
            if rd:
                body.append(f"{pad}r{rd} = {_substitute(insn.op, a, b)}")
        elif kind in ("load", "store"):
            body.append(f"{pad}a = ({a} + {d.imm}) & WORD" if d.imm else f"{pad}a = {a}")
            # Anything unusual -- misaligned, past RAM (devices), translated
            # code being overwritten -- goes back to the interpreter.
            checks = ["a & 3"] if insn.width == 4 else []
            checks.append(f"a >= {memory_size}")
            if kind == "store":
                checks.append(f"C[a >> {CODE_SHIFT}]")
            body.append(f"{pad}if {' or '.join(checks)}: {bail}")
            if kind == "load" and rd:
                if insn.width == 4:
                    body.append(f"{pad}r{rd} = W[a >> 2]")
                elif insn.signed:
                    body.append(f"{pad}v = M[a]; r{rd} = (v | 0xFFFFFF00) if v & 0x80 else v")
                else:
                    body.append(f"{pad}r{rd} = M[a]")
            elif kind == "store":
                value = _reg(d.rs2)
                if insn.width == 4:
                    body.append(f"{pad}W[a >> 2] = {value}")
                else:
                    body.append(f"{pad}M[a] = {value} & 0xFF")
                body.append(f"{pad}D[a >> {isa.PAGE_SIZE.bit_length() - 1}] = 1")
        spent += insn.cycles
        done, done_cycles = f"it * {count}", f"it * {cycles}"
        loop = f"if it < budget: continue"
        next_pc = (pc + 4) & WORD
        if kind == "branch":
            target = (pc + d.imm) & WORD
            body.append(f"{pad}if {_substitute(insn.op, _reg(d.rs1), _reg(d.rs2))}:")
            if target == start:
                body.append(f"{pad}  {loop}")
            body.append(f"{pad}  {leave(target, done, done_cycles)}")
            body.append(f"{pad}{leave(next_pc, done, done_cycles)}")
        elif kind in ("jump", "call"):
            target = (pc + d.imm) & WORD
            if kind == "call":
                body.append(f"{pad}r{isa.LR} = {next_pc}")
            if target == start:
                body.append(f"{pad}{loop}")
            body.append(f"{pad}{leave(target, done, done_cycles)}")
        elif kind in ("jr", "callr"):
            body.append(f"{pad}t = {_reg(d.rs1)}")       # before lr changes: `callr lr`
            if kind == "callr":
                body.append(f"{pad}r{isa.LR} = {next_pc}")
            body.append(f"{pad}{leave('t', done, done_cycles)}")
        elif k == count - 1:
            body.append(f"{pad}{leave(next_pc, done, done_cycles)}")
    body.append("  return block")
    return "\n".join(body) + "\n"
