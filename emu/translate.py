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

    def block(slack):
        r5 = R[5]; r6 = R[6]
        x = 0                                   # cycles << 16 | instructions
        try:
            while True:
                r5 = r5 + 1
                if r5 > 4294967295: r5 -= 4294967296
                if r5 != r6:
                    x += (3 << 16 | 2)          # one more trip round the loop
                    if x <= slack: continue
                    return 0x100, x, False
                return 0x108, x + (3 << 16 | 2), False
        finally:
            R[5] = r5

Registers live in Python locals inside the block, decoding happens once, a
conditional branch that is not taken falls through into the rest of the
block, and a block that branches to its own start loops without coming back
out.  A block also takes in the straight-line code at the places its
branches and jumps reach (a few pieces, on the same page): a local ``L``
says which piece runs next, and a short piece is copied in where it is gone
to, so a loop whose body has an ``if`` in it -- two pieces -- stays inside
one Python ``while``.  A block that ends where another compiled block starts
goes straight on to it.  The semantics come from the same ``op`` expressions
in ``isa.py`` that the interpreter uses, the most common ones rewritten for
the way Python computes quickest (``alu_source``).

The translator only handles the common case and hands everything else to the
interpreter (``cpu.py``): system instructions, illegal words, any load or
store that would trap or reach a device or overwrite translated code, and the
moment a device event or interrupt is due.  A block runs only if it cannot
cross a device event or the step limit, so translated and interpreted runs
are identical, instruction for instruction; ``tests/emu/test_translate.py``
checks exactly that.

With paging on (``mmu.py``), a block is found by its virtual *and* physical
address: the code comes from a physical page, but its branch targets are
virtual.  A block never runs past the end of its page (the next virtual page
may map anywhere), and each load or store looks its page up in the MMU's
pre-checked TLB (``mmu.fast``) -- one dictionary lookup -- and goes back to
the interpreter on a miss, which walks the page tables and may fault exactly
as it would have without the translator.  Because the lookup happens at run
time, a TLB flush or a new page table needs no retranslation; only stores
that change the code itself throw blocks away.  A translated store looks at
its line's store flags (``memory.py``): on most lines that is all; on a line
holding code it checks the very bytes blocks were made from, so data next to
code costs nothing.  A store the interpreter makes is checked by comparing
the blocks of its line with the bytes they were made from.
"""

from . import isa
from .isa import WORD, STATUS_IE, STATUS_U, SREG_STATUS
from .memory import CODE, CODE_SHIFT, MARKED, PAGE_SHIFT, WRITTEN
from .mmu import READ, WRITE, EXECUTE

MAX_BLOCK = 64                     # instructions; long enough for any loop body here
MAX_SEQUENCES = 8                  # straight-line pieces of code in one block
MAX_COPIED = 16                    # instructions: a piece this short is copied where it is gone to
HOT = 16                           # times a pc is reached before its block is compiled
HOT_INSIDE = 256                   # the same, inside another block's piece (see run)
_MISSING = object()
# Unconditional jumps end a block; conditional branches only leave it when taken.
_TERMINATORS = {"jump", "call", "jr", "callr"}
# Block keys: the pc with paging off; with it on, this bit, the physical pc and the pc.
_PAGED = 1 << 64


def _key(pc, phys, paged):
    return _PAGED | phys << 32 | pc if paged else pc


class Translator:
    """Runs a CPU with translated blocks; same interface as ``CPU.run``."""

    def __init__(self, cpu):
        self.cpu = cpu
        self.memory = cpu.memory
        self.blocks = {}           # pc -> (function, instructions, cycles), or None: interpret
        self.sources = {}          # pc -> [(physical address, the code bytes it was made from)]
        self.heat = {}             # pc -> times reached, until it has a block
        self.lines = {}            # code line -> pcs of the blocks that read it
        # Physical address of a byte of code -> how many blocks read it.  A
        # translated store into a line that holds code checks this, so that
        # data next to code costs nothing.
        self.code_bytes = {}
        # Key of an instruction inside a piece (not its first) -> how many
        # blocks hold it: where the interpreter may be, but code does not start.
        self.inside = {}
        self.covers = {}           # pc -> the keys inside its pieces
        self.memory.on_code_write = self.invalidate
        self.translated = 0        # blocks compiled so far (for the curious and the benchmark)

    def run(self, steps):
        cpu = self.cpu
        if cpu.trace is not None or self.memory.watch is not None:
            # Tracing and watchpoints need to see every instruction: interpret.
            return cpu.run(steps)
        board, blocks, sregs, mmu = cpu.board, self.blocks, cpu.sregs, cpu.mmu
        limit = cpu.steps + steps
        left_block = False         # the pc is where a block ended
        while cpu.steps < limit and not board.stopped:
            pc = cpu.pc
            came_from_block, left_block = left_block, False
            if mmu.enabled:
                # Where is the code?  A page the TLB does not (yet) let us
                # execute is the interpreter's business: it walks or faults.
                fast = mmu.fast[1 if sregs[SREG_STATUS] & STATUS_U else 0]
                frame = fast[EXECUTE].get(pc >> 12)
                if frame is None:
                    cpu.step()
                    continue
                phys = frame | (pc & 0xFFF)
                key = _key(pc, phys, True)
            else:
                key = phys = pc
                fast = None
            block = blocks.get(key, _MISSING)
            if block is _MISSING:
                # Compiling costs as much as interpreting the code a few
                # hundred times: only code that runs again and again is worth
                # it.  The middle of a piece where the interpreter stepped to
                # (up to a device event, or back from an interrupt) usually
                # reaches the start of a block in a moment, so it must be
                # much hotter -- but not never: a loop that another block
                # only ran into on its way out is reached nowhere else.
                # Where a block ends (after an instruction it could not do),
                # code does start.
                heat = self.heat.get(key, 0) + 1
                if heat < (HOT_INSIDE if key in self.inside and not came_from_block else HOT):
                    self.heat[key] = heat
                    cpu.step()
                    continue
                block = self.translate(pc, phys, key, fast is not None)
            if (block is None or cpu.cycles >= cpu.next_event or cpu.halted
                    or (cpu.irq_pending and sregs[SREG_STATUS] & STATUS_IE)):
                cpu.step()
                continue
            _, count, cycles = block
            # A block may only start if even its longest piece cannot pass
            # the step limit or the next device event; it checks again each
            # time it goes on to another piece.
            steps_left, cycles_left = limit - cpu.steps, cpu.next_event - cpu.cycles
            if steps_left < count or cycles_left < cycles:
                cpu.step()
                continue
            left_block = True
            if self.chain(block, steps_left, cycles_left, fast):
                cpu.step()         # the instruction the block could not do

    def chain(self, block, steps_left, cycles_left, fast):
        """Run `block`, then the block where it ends, and so on, for as long
        as the next one is compiled and fits in what is left of the budgets.
        Blocks change nothing but registers and RAM, so nothing else `run`
        looks at -- a device event, an interrupt, the mode, paging -- can
        change meanwhile.  Returns True if the last block bailed out."""
        cpu, blocks = self.cpu, self.blocks
        reads = writes = execute = None
        if fast is not None:
            reads, writes, execute = fast[READ], fast[WRITE], fast[EXECUTE]
        steps_before, cycles_before = steps_left, cycles_left
        while True:
            function, count, cycles = block
            slack = min(steps_left - count, cycles_left - cycles, MAX_SLACK)
            pc, done, bailed = function(slack << COUNT_BITS | COUNT_MASK, reads, writes)
            steps_left -= done & COUNT_MASK
            cycles_left -= done >> COUNT_BITS
            if bailed:
                break
            if execute is None:
                key = pc
            else:
                frame = execute.get(pc >> 12)
                if frame is None:
                    break
                key = _key(pc, frame | (pc & 0xFFF), True)
            block = blocks.get(key)
            if block is None or steps_left < block[1] or cycles_left < block[2]:
                break
        cpu.pc = pc
        cpu.steps += steps_before - steps_left
        cpu.cycles += cycles_before - cycles_left
        return bailed

    def invalidate(self, line):
        """Something was stored into `line`, which holds translated code:
        forget the blocks whose code it changed.  The memory only says which
        line, and most stores there are to data beside the code."""
        ram = self.memory.ram
        for key in list(self.lines.get(line, ())):
            if any(ram[start:start + len(code)] != code for start, code in self.sources[key]):
                self.forget(key)

    def forget(self, key):
        del self.blocks[key]
        for start, code in self.sources.pop(key):
            end = start + len(code)
            for line in range(start >> CODE_SHIFT, ((end - 1) >> CODE_SHIFT) + 1):
                keys = self.lines.get(line)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self.lines[line]
                        self.memory.code[line] = 0
                        self.memory.store_flags[line] &= ~CODE
            for byte in range(start, end):
                self.code_bytes[byte] -= 1
                if not self.code_bytes[byte]:
                    del self.code_bytes[byte]
        for inner in self.covers.pop(key):
            self.inside[inner] -= 1
            if not self.inside[inner]:
                del self.inside[inner]

    # -- translation -------------------------------------------------------------------

    def translate(self, pc, phys, key, paged):
        """Compile the block at virtual `pc`, whose code is at physical `phys`:
        the straight-line code from there, and from every place it branches
        or jumps to or its calls return to (on the same page, with paging),
        up to MAX_SEQUENCES."""
        memory = self.memory
        self.heat.pop(key, None)
        # With paging, the next virtual page may be anywhere: stay on this one.
        end = min(((phys >> 12) + 1) << 12, memory.size) if paged else memory.size
        sequences, waiting = {}, [pc]
        while waiting and len(sequences) < MAX_SEQUENCES:
            start = waiting.pop(0)
            if start in sequences or (paged and start >> 12 != pc >> 12):
                continue
            insns = self.sequence(start, phys + start - pc, end)
            if not insns:
                if start == pc:
                    break
                continue
            sequences[start] = insns
            waiting += [(addr + d.imm) & WORD for addr, d in insns if d.insn.kind in ("branch", "jump")]
            waiting += [addr + 4 for addr, d in insns if d.insn.kind in ("call", "callr")]
        if not sequences:
            self.blocks[key] = None
            return None
        source = block_source(list(sequences.items()), memory.size, paged)
        namespace = dict(isa.OP_NAMESPACE)
        exec(compile(source, f"<block {pc:#010x}>", "exec"), namespace)
        function = namespace["make"](self.cpu.regs, memory.words, memory.ram, memory.dirty,
                                     memory.store_flags, self.code_bytes)
        block = (function, max(len(insns) for insns in sequences.values()),
                 max(sum(d.insn.cycles for _, d in insns) for insns in sequences.values()))
        self.blocks[key] = block
        self.sources[key] = []
        self.covers[key] = [_key(addr, phys + addr - pc, paged)
                            for insns in sequences.values() for addr, _ in insns[1:]]
        for inner in self.covers[key]:
            self.inside[inner] = self.inside.get(inner, 0) + 1
        for start, insns in sequences.items():
            first = phys + start - pc
            last = first + 4 * len(insns)
            self.sources[key].append((first, bytes(memory.ram[first:last])))
            for line in range(first >> CODE_SHIFT, ((last - 1) >> CODE_SHIFT) + 1):
                memory.code[line] = 1
                memory.store_flags[line] |= CODE
                self.lines.setdefault(line, set()).add(key)
            for byte in range(first, last):
                self.code_bytes[byte] = self.code_bytes.get(byte, 0) + 1
        self.translated += 1
        return block

    def sequence(self, addr, at, end):
        """The straight-line code at virtual `addr`, physical `at`: up to
        an unconditional jump, a system instruction or `end`."""
        insns = []
        while len(insns) < MAX_BLOCK and not at & 3 and at + 4 <= end:
            decoded = isa.decode(self.memory.load_word(at))
            if decoded is None or decoded.insn.kind == "system":
                break
            insns.append((addr, decoded))
            addr += 4
            at += 4
            if decoded.insn.kind in _TERMINATORS:
                break
        return insns


def _literal(text):
    return text.lstrip("-").isdigit()


def signed(x):
    """Source text reading the register text or literal `x` as signed."""
    if _literal(x):
        return str(isa.sx(int(x)))
    return f"({x} - 4294967296 if {x} > 2147483647 else {x})"


# Python computes quickest with ints below 2**30 (one internal "digit"):
# WORD = 2**32 - 1 is two, so the ISA table's `(A + B) & WORD` costs twice
# an addition, and a call to sx() many times one.  The most common ALU
# operations are written here as the same arithmetic with the wrap-around a
# test that is almost never true; tests/emu/test_translate.py checks them
# against the interpreter on the operands where they could differ.
WRAP_UP = "if {d} > 4294967295: {d} -= 4294967296"
WRAP_DOWN = "if {d} < 0: {d} += 4294967296"
TRUNCATE = "if {d} > 4294967295: {d} &= 4294967295"


def alu_source(d, a, b, dest):
    """Statements setting `dest` to ALU instruction `d` applied to the
    operand texts `a` and `b` (b is the immediate, sign applied, for the
    I formats), or None when the ISA table's expression will do."""
    mnemonic = d.insn.mnemonic
    if mnemonic in ("add", "addi") and (b == "0" or a == "0"):
        return [f"{dest} = {b if a == '0' else a}"]           # mov, li
    if mnemonic in ("add", "addi"):
        if b.startswith("-"):
            return [f"{dest} = {a} - {b[1:]}", WRAP_DOWN.format(d=dest)]
        return [f"{dest} = {a} + {b}", WRAP_UP.format(d=dest)]
    if mnemonic == "sub":
        return [f"{dest} = {a} - {b}", WRAP_DOWN.format(d=dest)]
    if mnemonic in ("mul", "shli"):
        return [f"{dest} = {a} {'*' if mnemonic == 'mul' else '<<'} {b}", TRUNCATE.format(d=dest)]
    if mnemonic in ("slt", "slti"):
        return [f"{dest} = 1 if {signed(a)} < {signed(b)} else 0"]
    if mnemonic in ("sltu", "sltiu"):
        return [f"{dest} = 1 if {a} < {b if mnemonic == 'sltu' else int(b) & WORD} else 0"]
    return None


def branch_condition(d, a, b):
    if d.insn.mnemonic in ("blt", "bge"):
        return f"{signed(a)} {'<' if d.insn.mnemonic == 'blt' else '>='} {signed(b)}"
    return isa.substitute(d.insn.op, a, b)


# A block counts what it has run in one int, x: cycles in the high bits,
# instructions in the low COUNT_BITS -- one addition and one comparison a
# loop trip instead of two each.  Each instruction takes at least a cycle,
# so the cycle budget bounds the instructions too.
COUNT_BITS = 16
COUNT_MASK = (1 << COUNT_BITS) - 1
# The most cycles one call may run (a piece is 64 instructions of at most 10
# cycles beyond that): x then stays a quick small int.
MAX_SLACK = (1 << (30 - COUNT_BITS)) - 1024


def counted(instructions, cycles):
    # (Python folds the constant expression when it compiles the block.)
    return f"({cycles} << {COUNT_BITS} | {instructions})" if instructions else ""


def block_source(sequences, memory_size, paged=False):
    """Python source for one block (see the module docstring for its shape):
    `sequences` is [(pc, [(pc, decoded), ...])], straight-line pieces of
    code, the first where the block starts; a branch or jump from one to the
    start of another goes there without leaving the block.  With `paged`,
    every load and store translates its address through the dictionaries TR
    (readable pages) and TW (writable pages) it is called with."""
    insns = [insn for _, piece in sequences for insn in piece]
    written = sorted({d.rd for _, d in insns if d.rd and d.insn.kind in ("alu", "load")}
                     | ({isa.LR} if any(d.insn.kind in ("call", "callr") for _, d in insns) else set()))
    # Load every register the block names, and every one it writes back
    # (a bail-out before the write must write back the old value).
    used = sorted({r for _, d in insns for r in (d.rd, d.rs1, d.rs2) if r} | set(written))
    writeback = "; ".join(f"R[{r}] = r{r}" for r in written)
    labels = {pc: k for k, (pc, _) in enumerate(sequences)}
    # Where the block's calls return to, if it holds that code: a `ret`
    # (or any jr) to one of these goes there without leaving the block.
    returns = [pc + 4 for pc, d in insns if d.insn.kind in ("call", "callr") and pc + 4 in labels]

    def leave(pc, done, bailed=False):
        # x counts the pieces run before this one; `done` adds this one's.
        return f"return {pc}, x{done and ' + ' + done}, {bailed}"

    def go_to(target, done, here, copied=False):
        # On to another piece (or round this one again) only if even the
        # longest piece still fits: the slack is what the budget allows
        # beyond it.  Each piece loops in a `while` of its own, so going
        # round it again costs no look at L.  A short piece is copied in
        # where it is gone to (not again inside a copy), so that a loop
        # with an `if` in it -- two pieces going to each other -- goes
        # round one `while`.
        if target not in labels:
            return [leave(target, done)]
        label = labels[target]
        if label == here:
            return [f"x += {done}", "if x <= slack: continue", leave(target, "")]
        piece = sequences[label][1]
        if not copied and len(piece) <= MAX_COPIED:
            return [f"x += {done}", f"if x > slack: {leave(target, '')}",
                    *piece_source(piece, memory_size, paged, "", leave,
                                  lambda target, done: go_to(target, done, here, copied=True), returns)]
        return [f"x += {done}", f"if x <= slack: L = {label}; break", leave(target, "")]

    # Registers, memory, dirty bits and store flags, code bytes as default
    # arguments: locals of the block, quicker to reach than closure cells.
    body = ["def make(R, W, M, D, S, C):",
            "  def block(slack, TR, TW, R=R, W=W, M=M, D=D, S=S, C=C):"]
    body += [f"    r{r} = R[{r}]" for r in used]
    # However the block returns, `finally` writes the registers back:
    # written once, not at each of its many ways out.
    body += ["    x = L = 0", "    try:", "      while True:"]
    for label, (_, piece) in enumerate(sequences):
        pad = "        "
        if len(sequences) > 1:
            body += [f"{pad}{'if' if label == 0 else 'elif'} L == {label}:", f"{pad}  while True:"]
            pad += "    "
        body += piece_source(piece, memory_size, paged, pad, leave,
                             lambda target, done, here=label: go_to(target, done, here), returns)
    body += ["    finally:", f"      {writeback or 'pass'}", "  return block"]
    return "\n".join(body) + "\n"


def piece_source(insns, memory_size, paged, pad, leave, go_to, returns):
    body = []
    spent = 0
    # Registers whose value is known here, from constants (`li`, `la`):
    # their uses are compiled as literals, and operations on literals
    # only are done now.  A piece can be entered only at its start.
    known = {}

    def operand(r):
        return "0" if r == 0 else str(known[r]) if r in known else f"r{r}"

    def emit(*lines):
        body.extend(pad + line for line in lines)

    unwrapped = None
    for k, (pc, d) in enumerate(insns):
        insn = d.insn
        kind = insn.kind
        bail = leave(pc, counted(k, spent), True)      # everything before this one is done
        if unwrapped:
            bail = f"{unwrapped} &= 4294967295; {bail}"
            unwrapped = None
        rd, a = d.rd, operand(d.rs1)
        if kind == "alu" and rd:
            dest = f"r{rd}"
            signed_b = operand(d.rs2) if insn.format == "R" else str(d.imm)
            b = signed_b if insn.format == "R" else str(d.imm & WORD)
            if a.isdigit() and b.isdigit():
                known[rd] = eval(isa.substitute(insn.op, a, b), dict(isa.OP_NAMESPACE))
                emit(f"{dest} = {known[rd]}")
            else:
                known.pop(rd, None)
                lines = alu_source(d, a, signed_b, dest) or [f"{dest} = {isa.substitute(insn.op, a, b)}"]
                # An address summed just before a load or store through it
                # (`add t2, s0, t0` / `stb t3, [t2]`) need not wrap round:
                # past WORD, it is past RAM too, and the access goes back
                # to the interpreter -- wrapped then.
                following = insns[k + 1][1] if k + 1 < len(insns) else None
                if (lines[-1] == WRAP_UP.format(d=dest) and following is not None
                        and following.insn.kind in ("load", "store")
                        and following.rs1 == rd and following.imm >= 0):
                    lines, unwrapped = lines[:-1], dest
                emit(*lines)
        elif kind in ("load", "store"):
            # The address, in a local unless it is a register as it is.
            if a.isdigit():
                address = str((int(a) + d.imm) & WORD)
            elif d.imm:
                emit(f"a = {a} {'-' if d.imm < 0 else '+'} {abs(d.imm)}")
                address = "a"
            else:
                address = a
            # Anything unusual -- misaligned, past RAM (devices), a page the
            # TLB does not allow, translated code being overwritten -- goes
            # back to the interpreter.  So does an address that wrapped
            # round (below 0 or past WORD): the interpreter wraps it.
            checks = [f"{address} & 3"] if insn.width == 4 else []
            if paged:
                table = "TW" if kind == "store" else "TR"
                if checks:
                    emit(f"if {checks[0]}: {bail}")
                emit(f"f = {table}.get({address} >> 12)", f"if f is None: {bail}",
                     f"a = f | ({address} & 4095)")
                address, checks = "a", []
            else:
                checks += [f"{address} < 0"] if d.imm < 0 else []
                checks.append(f"{address} >= {memory_size}")
            if checks:
                emit(f"if {' or '.join(checks)}: {bail}")
            if kind == "store":
                # Most lines need nothing more (memory.py: store flags); on
                # one that holds code, the bytes written must not be code.
                # (Comparisons, not `&`: Python has quicker ones for them.)
                line = f"{address} >> {CODE_SHIFT}"
                emit(f"if (s := S[{line}]) != {MARKED}:",
                     f"  if s >= {CODE} and {address} in C: {bail}",
                     f"  if s != {MARKED | CODE}: D[{address} >> {PAGE_SHIFT}] = {WRITTEN}; S[{line}] = s + {MARKED}")
            if kind == "load" and rd:
                known.pop(rd, None)
                if insn.width == 4:
                    emit(f"r{rd} = W[{address} >> 2]")
                else:
                    emit(f"r{rd} = M[{address}]")
                    if insn.signed:
                        emit(f"if r{rd} > 127: r{rd} += 0xFFFFFF00")
            elif kind == "store":
                value = operand(d.rs2)
                if insn.width == 4:
                    emit(f"W[{address} >> 2] = {value}")
                else:
                    emit(f"M[{address}] = {int(value) & 255 if _literal(value) else value + ' & 255'}")
        spent += insn.cycles
        done = counted(k + 1, spent)
        next_pc = (pc + 4) & WORD
        if kind == "branch":
            # A conditional branch leaves the piece when taken and falls
            # through into the rest of it when not.
            target = (pc + d.imm) & WORD
            emit(f"if {branch_condition(d, a, operand(d.rs2))}:")
            emit(*(f"  {line}" for line in go_to(target, done)))
        elif kind in ("jump", "call"):
            target = (pc + d.imm) & WORD
            if kind == "call":
                emit(f"r{isa.LR} = {next_pc}")
            emit(*go_to(target, done))
        elif kind in ("jr", "callr"):
            emit(f"t = {a}")                       # before lr changes: `callr lr`
            if kind == "callr":
                emit(f"r{isa.LR} = {next_pc}")
            for site in returns:
                emit(f"if t == {site}:", *(f"  {line}" for line in go_to(site, done)))
            emit(leave("t", done))
        if k == len(insns) - 1 and kind not in _TERMINATORS:
            emit(leave(next_pc, done))
    return body
