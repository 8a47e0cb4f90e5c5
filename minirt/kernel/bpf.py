"""Classic BPF: the tiny virtual machine the kernel runs on every system call.

Lecture idea: seccomp lets a process hand the kernel a *program* that inspects
each of its future system calls and returns a verdict.  That program is written
for classic BPF, the Berkeley Packet Filter machine of 1992 (tcpdump uses it to
pick packets): one 32-bit accumulator ``A``, read-only input data, forward
jumps only (so every program ends), and a return instruction that yields the
verdict.  For seccomp the input is ``struct seccomp_data`` (see ``seccomp.py``).

An instruction is 8 bytes, ``struct sock_filter`` in <linux/filter.h>:

    u16 code    what to do: class | size | mode | operation, OR-ed bits
    u8  jt      for conditional jumps: how many instructions to skip if true
    u8  jf      ... and if false
    u32 k       the constant operand (an offset, a value, a return code)

This module is the machine alone, knowing nothing of seccomp: the opcodes, an
assembler with labels, a disassembler, and ``run``, an interpreter that does in
Python what the kernel does, so that compiled filters can be tested without
installing them.  Only the instructions seccomp filters need are here.

Read first: Documentation/networking/filter.rst in the kernel source.
"""

import struct
from collections import namedtuple

# <linux/bpf_common.h>: an opcode is an instruction class ...
LD = 0x00     # A <- data
ALU = 0x04    # A <- A op k
JMP = 0x05    # pc <- pc + 1 + (jt or jf), or pc + 1 + k for ja
RET = 0x06    # stop with verdict k
# ... a size and a mode for loads ...
W = 0x00      # 32-bit word
ABS = 0x20    # data[k]: an absolute offset into the input
# ... and an operation for ALU and jumps, with K: the operand is k.
AND = 0x50
JA = 0x00
JEQ = 0x10
JGT = 0x20
JGE = 0x30
JSET = 0x40
K = 0x00

_JUMP_NAMES = {JA: "ja", JEQ: "jeq", JGT: "jgt", JGE: "jge", JSET: "jset"}
_SOCK_FILTER = struct.Struct("<HBBI")   # the 8 bytes of one instruction
MAX_INSNS = 4096                        # BPF_MAXINSNS: the kernel refuses longer


Insn = namedtuple("Insn", "code jt jf k")


class Label:
    """A position in a program under construction; ``Assembler.place`` fixes it."""

    __slots__ = ("name", "index")

    def __init__(self, name):
        self.name, self.index = name, None

    def __repr__(self):
        return f"<{self.name}@{self.index}>"


class Assembler:
    """Builds a program with symbolic forward jumps, then resolves them.

    Conditional jumps take a ``Label`` or ``None`` (meaning "the next
    instruction") for each of the true and false cases.  Their offsets are only
    8 bits, so a target more than 255 instructions ahead is an error: the
    seccomp compiler lays its code out so that this never happens.
    """

    def __init__(self):
        self._insns = []   # (code, jt, jf, k) with jt/jf still Labels or None

    def label(self, name="L"):
        return Label(name)

    def place(self, label):
        label.index = len(self._insns)

    def load(self, offset):
        """A <- the 32-bit word at byte ``offset`` of the input."""
        self._insns.append((LD | W | ABS, None, None, offset))

    def and_(self, mask):
        self._insns.append((ALU | AND | K, None, None, mask))

    def jump_if(self, op, k, jt=None, jf=None):
        """Go to ``jt`` if ``A op k`` (unsigned), else to ``jf``."""
        self._insns.append((JMP | op | K, jt, jf, k))

    def goto(self, label):
        self._insns.append((JMP | JA, None, None, label))

    def ret(self, verdict):
        self._insns.append((RET | K, None, None, verdict))

    def __len__(self):
        return len(self._insns)

    def assemble(self):
        """The finished program as a list of ``Insn``."""
        def distance(here, target, limit):
            if target is None:
                return 0
            if target.index is None:
                raise ValueError(f"label {target.name} never placed")
            offset = target.index - here - 1
            if not 0 <= offset <= limit:
                raise ValueError(f"jump from {here} to {target.name}@{target.index} out of range")
            return offset

        program = []
        for here, (code, jt, jf, k) in enumerate(self._insns):
            if code == JMP | JA:
                program.append(Insn(code, 0, 0, distance(here, k, 0xFFFFFFFF)))
            else:
                program.append(Insn(code, distance(here, jt, 255), distance(here, jf, 255), k))
        if len(program) > MAX_INSNS:
            raise ValueError(f"program has {len(program)} instructions, the kernel allows {MAX_INSNS}")
        return program


def encode(program):
    """Instructions -> the bytes of a ``struct sock_filter`` array."""
    return b"".join(_SOCK_FILTER.pack(*insn) for insn in program)


def decode(blob):
    return [Insn(*fields) for fields in _SOCK_FILTER.iter_unpack(blob)]


def run(program, data):
    """Execute ``program`` on the input bytes ``data``, as the kernel would.

    Returns the verdict (the ``k`` of the ``ret`` reached).  This is the
    reference for what a filter *means*; the tests compare against it.
    """
    a, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        cls = code & 0x07
        if cls == RET:
            return k
        if cls == LD:
            (a,) = struct.unpack_from("<I", data, k)
            pc += 1
        elif cls == ALU and code & 0xF0 == AND:
            a &= k
            pc += 1
        elif cls == JMP:
            op = code & 0xF0
            if op == JA:
                pc += 1 + k
                continue
            taken = {JEQ: a == k, JGT: a > k, JGE: a >= k, JSET: bool(a & k)}[op]
            pc += 1 + (jt if taken else jf)
        else:
            raise ValueError(f"instruction {pc}: opcode {code:#x} not supported")


def disassemble(program, comment=lambda pc, insn: ""):
    """One line per instruction, jump targets as absolute indices.

    ``comment(pc, insn)`` may name constants (offsets, verdicts) for the reader.
    """
    lines = []
    for pc, insn in enumerate(program):
        code, jt, jf, k = insn
        cls = code & 0x07
        if cls == RET:
            text = f"ret  #{k:#x}"
        elif cls == LD:
            text = f"ld   [{k}]"
        elif cls == ALU:
            text = f"and  #{k:#x}"
        elif code & 0xF0 == JA:
            text = f"ja   {pc + 1 + k}"
        else:
            name = _JUMP_NAMES[code & 0xF0]
            text = f"{name:<4} #{k:#x}, {pc + 1 + jt}, {pc + 1 + jf}"
        note = comment(pc, insn)
        lines.append(f"{pc:4}: {text:<30}" + (f"; {note}" if note else ""))
    return "\n".join(line.rstrip() for line in lines)
