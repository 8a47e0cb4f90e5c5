"""Extended BPF: the virtual machine the kernel runs programs on for cgroup v2.

Lecture idea: a container runtime does not only *configure* the kernel, it can
hand it small programs to run at chosen points.  Classic BPF (``bpf.py``) is
one such machine, used by seccomp; *extended* BPF is its 2014 successor, and
cgroup v2 relies on it: there is no ``devices.allow`` file in v2, instead a
program attached to the cgroup is run on every device access (see
``devicefilter.py``).  This module is the machine alone, knowing nothing of
devices: opcodes, an assembler with labels, encoding, an interpreter and a
disassembler for the few instructions minirt uses, and the bpf(2) calls that
load a program and attach it.

What changed from classic BPF:

- eleven 64-bit registers instead of one accumulator: on entry ``r1`` points
  at the *context* (the input, a C struct), ``r0`` holds the verdict at
  ``exit``, ``r10`` is a read-only frame pointer, the rest are scratch;
- 32-bit ("``w``" in the listing) and 64-bit arithmetic; a 32-bit result
  clears the upper half of its register;
- loads go through a register (``r2 = *(u32 *)(r1 + 4)``), jumps compare a
  register with a constant or another register and take one target (signed
  16-bit offset) or fall through;
- before a program runs, the kernel's *verifier* walks every path and refuses
  what it cannot prove safe: reading a register never written, a context field
  that does not exist, an instruction no path reaches, a path without ``exit``.
  On success the JIT turns it into machine code.

An instruction is 8 bytes, ``struct bpf_insn`` in <linux/bpf.h>:

    u8  code       class | operation | source, OR-ed bits
    u8  dst_reg:4  the register written (or compared)
        src_reg:4  the register read, when the source is X
    s16 off        a load's displacement, a jump's distance
    s32 imm        the constant operand, when the source is K

Read first: Documentation/bpf/standardization/instruction-set.rst and bpf(2).
"""

import errno
import os
import struct
from collections import namedtuple

from minirt.kernel.bpf import Label  # a jump target, as in classic BPF's assembler
from minirt.kernel.libc import ffi
from minirt.kernel.syscalls_x86_64 import SYSCALLS

_lib = ffi.dlopen(None)

# The low three bits of an opcode: its class.
LDX = 0x01     # dst <- memory at src + off
ALU = 0x04     # 32-bit arithmetic
JMP = 0x05     # compare 64-bit values, jump; also exit
ALU64 = 0x07   # 64-bit arithmetic
# For loads: a size and a mode (MEM: the address is a register plus off).
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
MEM = 0x60
# For ALU and JMP: the source of the second operand ...
K = 0x00       # the constant imm
X = 0x08       # the register src
# ... and the operation (the high four bits).
OR, AND, LSH, RSH, MOV = 0x40, 0x50, 0x60, 0x70, 0xB0
JA, JEQ, JGT, JGE, JSET, JNE, EXIT = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x90

_SIZES = {W: 4, H: 2, B: 1, DW: 8}
_SIZE_NAMES = {W: "u32", H: "u16", B: "u8", DW: "u64"}
_ALU_OPS = {OR: "|=", AND: "&=", LSH: "<<=", RSH: ">>=", MOV: "="}
_JUMP_OPS = {JEQ: "==", JGT: ">", JGE: ">=", JSET: "&", JNE: "!="}
_BPF_INSN = struct.Struct("<BBhi")   # code, dst | src << 4, off, imm
MAX_INSNS = 4096                      # what an unprivileged loader may pass; plenty here
_U32, _U64 = (1 << 32) - 1, (1 << 64) - 1


class Reg(int):
    """A register number that prints as ``r3``; an operand that is a ``Reg``
    is read from that register, any other int is a constant."""

    def __repr__(self):
        return f"r{int(self)}"

    __str__ = __repr__


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = (Reg(n) for n in range(11))

Insn = namedtuple("Insn", "code dst src off imm")


class Assembler:
    """Builds a program with symbolic jumps, then resolves them to offsets.

    The method names say what the instruction does; the register width is in
    the name where it matters (``mov32`` clears the upper half, ``mov`` copies
    all 64 bits).  Comparisons are unsigned and 64 bits wide.
    """

    def __init__(self):
        self._insns = []   # Insn, with a Label in ``off`` for jumps until assembled

    def label(self, name="L"):
        return Label(name)

    def place(self, label):
        label.index = len(self._insns)

    def __len__(self):
        return len(self._insns)

    def load(self, dst, base, offset, size=W):
        """dst <- the ``size`` bytes at ``base + offset`` (zero-extended)."""
        self._insns.append(Insn(LDX | size | MEM, dst, base, offset, 0))

    def alu(self, op, dst, operand, wide):
        """dst <- dst op operand, in 64 bits if ``wide`` else in 32."""
        source, src, imm = _operand(operand)
        self._insns.append(Insn((ALU64 if wide else ALU) | op | source, dst, src, 0, imm))

    def mov(self, dst, operand):
        self.alu(MOV, dst, operand, wide=True)

    def mov32(self, dst, operand):
        self.alu(MOV, dst, operand, wide=False)

    def and32(self, dst, operand):
        self.alu(AND, dst, operand, wide=False)

    def rsh32(self, dst, operand):
        self.alu(RSH, dst, operand, wide=False)

    def jump_if(self, op, dst, operand, target):
        """Go to ``target`` if ``dst op operand``, else on to the next instruction."""
        source, src, imm = _operand(operand)
        self._insns.append(Insn(JMP | op | source, dst, src, target, imm))

    def goto(self, target):
        self._insns.append(Insn(JMP | JA, 0, 0, target, 0))

    def exit(self):
        """Stop; the verdict is in r0."""
        self._insns.append(Insn(JMP | EXIT, 0, 0, 0, 0))

    def assemble(self):
        """The finished program as a list of ``Insn``."""
        program = []
        for here, insn in enumerate(self._insns):
            if isinstance(insn.off, Label):
                target = insn.off
                if target.index is None:
                    raise ValueError(f"label {target.name} never placed")
                distance = target.index - here - 1
                if not -0x8000 <= distance <= 0x7FFF:
                    raise ValueError(f"jump from {here} to {target.name}@{target.index} out of range")
                insn = insn._replace(off=distance)
            program.append(insn)
        if len(program) > MAX_INSNS:
            raise ValueError(f"program has {len(program)} instructions, more than {MAX_INSNS}")
        return program


def _operand(operand):
    """(source bit, src register, imm) for a register or a constant operand."""
    if isinstance(operand, Reg):
        return X, operand, 0
    if not -(1 << 31) <= operand < (1 << 31):
        raise ValueError(f"constant {operand:#x} does not fit the 32-bit imm field")
    return K, 0, operand


def encode(program):
    """Instructions -> the bytes of a ``struct bpf_insn`` array."""
    return b"".join(_BPF_INSN.pack(i.code, i.dst | i.src << 4, i.off, i.imm) for i in program)


def decode(blob):
    return [Insn(code, Reg(regs & 0xF), Reg(regs >> 4), off, imm)
            for code, regs, off, imm in _BPF_INSN.iter_unpack(blob)]


# -- the interpreter --------------------------------------------------------------

CONTEXT = "ctx"   # what r1 holds on entry: a pointer, which is not a number here


def run(program, context, max_steps=100_000):
    """Execute ``program`` with r1 pointing at the bytes ``context``; return r0.

    Does in Python what the kernel does, for the instructions above, and
    refuses (ValueError) some of what the verifier would: reading a register
    never written, loading through anything but the context pointer, reading
    past the context, doing arithmetic on the pointer.
    """
    regs = [None] * 11
    regs[1] = CONTEXT
    pc = 0
    for _ in range(max_steps):
        if not 0 <= pc < len(program):
            raise ValueError(f"execution runs off the program, to instruction {pc}")
        code, dst, src, off, imm = program[pc]
        cls = code & 0x07
        pc += 1
        if cls == LDX:
            size = _SIZES[code & 0x18]
            if regs[src] is not CONTEXT:
                raise ValueError(f"instruction {pc - 1}: load through r{int(src)}, which is not the context")
            if not 0 <= off <= len(context) - size:
                raise ValueError(f"instruction {pc - 1}: read of {size} bytes at context+{off}")
            regs[dst] = int.from_bytes(context[off:off + size], "little")
        elif cls in (ALU, ALU64):
            mask = _U64 if cls == ALU64 else _U32
            op = code & 0xF0
            if code == ALU64 | MOV | X and regs[src] is CONTEXT:
                regs[dst] = CONTEXT   # a pointer may be copied, not computed with
                continue
            b = _value(regs, src, pc) if code & X else imm & mask   # imm is sign-extended
            if op == MOV:
                regs[dst] = b & mask
                continue
            a = _value(regs, dst, pc) & mask
            shift = b & (63 if cls == ALU64 else 31)
            result = {OR: a | b, AND: a & b, LSH: a << shift, RSH: a >> shift}.get(op)
            if result is None:
                raise ValueError(f"instruction {pc - 1}: opcode {code:#x} not supported")
            regs[dst] = result & mask
        elif cls == JMP:
            op = code & 0xF0
            if op == EXIT:
                return _value(regs, 0, pc)
            if op == JA:
                pc += off
                continue
            a = _value(regs, dst, pc)
            b = _value(regs, src, pc) if code & X else imm & _U64
            taken = {JEQ: a == b, JNE: a != b, JGT: a > b, JGE: a >= b, JSET: bool(a & b)}.get(op)
            if taken is None:
                raise ValueError(f"instruction {pc - 1}: opcode {code:#x} not supported")
            if taken:
                pc += off
        else:
            raise ValueError(f"instruction {pc - 1}: opcode {code:#x} not supported")
    raise ValueError(f"no exit after {max_steps} instructions")


def _value(regs, r, pc):
    value = regs[r]
    if value is None:
        raise ValueError(f"instruction {pc - 1}: r{int(r)} is read before it is written")
    if value is CONTEXT:
        raise ValueError(f"instruction {pc - 1}: r{int(r)} is a pointer, not a number")
    return value


# -- the disassembler ---------------------------------------------------------------

def disassemble(program, comment=lambda pc, insn: ""):
    """One line per instruction in the kernel's own notation (the verifier log
    and ``bpftool prog dump xlated`` print the same): ``w`` names the 32-bit
    half of a register, jump targets are absolute indices.

    ``comment(pc, insn)`` may explain constants or fields for the reader.
    """
    lines = []
    for pc, insn in enumerate(program):
        code, dst, src, off, imm = insn
        dst, src, cls, op = int(dst), int(src), code & 0x07, code & 0xF0
        if cls == LDX:
            text = f"r{dst} = *({_SIZE_NAMES[code & 0x18]} *)(r{src} {'-' if off < 0 else '+'} {abs(off)})"
        elif cls in (ALU, ALU64):
            reg = "r" if cls == ALU64 else "w"
            b = f"{reg}{src}" if code & X else _number(imm)
            text = f"{reg}{dst} {_ALU_OPS.get(op, f'?{op:#x}')} {b}"
        elif cls == JMP and op == EXIT:
            text = "exit"
        elif cls == JMP and op == JA:
            text = f"goto {pc + 1 + off}"
        elif cls == JMP:
            b = f"r{src}" if code & X else _number(imm)
            text = f"if r{dst} {_JUMP_OPS.get(op, f'?{op:#x}')} {b} goto {pc + 1 + off}"
        else:
            text = f"? opcode {code:#x}"
        note = comment(pc, insn)
        lines.append(f"{pc:4}: {text:<30}" + (f"; {note}" if note else ""))
    return "\n".join(line.rstrip() for line in lines)


def _number(n):
    """Masks in hex, counts and device numbers in decimal."""
    return hex(n) if abs(n) >= 0x1000 else str(n)


# -- the kernel's side: bpf(2) ---------------------------------------------------------

BPF_PROG_LOAD = 5              # enum bpf_cmd
BPF_PROG_ATTACH = 8
PROG_TYPE_CGROUP_DEVICE = 15   # enum bpf_prog_type
ATTACH_CGROUP_DEVICE = 6       # enum bpf_attach_type
F_ALLOW_OVERRIDE = 1           # attach flags: a sub-cgroup's program replaces this one
F_ALLOW_MULTI = 2              # ... or runs as well as this one
_LOG_SIZE = 1 << 16

# The start of union bpf_attr for BPF_PROG_LOAD; the kernel zero-fills the rest.
#   u32 prog_type, insn_cnt; u64 insns, license; u32 log_level, log_size;
#   u64 log_buf; u32 kern_version, prog_flags; char prog_name[16];
#   u32 prog_ifindex, expected_attach_type
_PROG_LOAD = struct.Struct("<IIQQIIQII16sII")
# ... and for BPF_PROG_ATTACH: u32 target_fd, attach_bpf_fd, attach_type, attach_flags
_PROG_ATTACH = struct.Struct("<IIII")


def load(program, prog_type, name="", attach_type=0, license="GPL"):
    """Hand ``program`` to the kernel's verifier; return the new program's fd.

    On refusal, OSError carries the verifier's explanation (its log is asked
    for only then: a successful load should not pay for it).  Needs
    CAP_SYS_ADMIN (or CAP_BPF) for every program type but socket filters.
    """
    try:
        return _prog_load(program, prog_type, name, attach_type, license, log=False)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EACCES):   # not the verifier's doing
            raise
    return _prog_load(program, prog_type, name, attach_type, license, log=True)


def _prog_load(program, prog_type, name, attach_type, license, log):
    insns = ffi.from_buffer("char[]", encode(program))
    lic = ffi.new("char[]", license.encode())
    log_buf = ffi.new("char[]", _LOG_SIZE) if log else ffi.NULL
    attr = _PROG_LOAD.pack(
        prog_type, len(program), _address(insns), _address(lic),
        1 if log else 0, _LOG_SIZE if log else 0, _address(log_buf),
        0, 0, name.encode()[:15], 0, attach_type)
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        if not log:
            raise
        lines = ffi.string(log_buf).decode(errors="replace").strip().splitlines()
        raise OSError(e.errno, f"{e.strerror}; the verifier says: {' / '.join(lines[-3:])}") from None


def attach(prog_fd, target_fd, attach_type, flags=0):
    """Attach a loaded program to ``target_fd`` (for cgroups: an open cgroup
    directory).  The attachment holds its own reference: ``prog_fd`` may be
    closed afterwards, and removing the cgroup detaches the program."""
    _bpf(BPF_PROG_ATTACH, _PROG_ATTACH.pack(target_fd, prog_fd, attach_type, flags))


def _address(cdata):
    return int(ffi.cast("uintptr_t", cdata))


def _bpf(cmd, attr):
    """bpf(cmd, &attr, sizeof attr), which returns a new fd or 0, or fails."""
    result = _lib.syscall(ffi.cast("long", SYSCALLS["bpf"]), ffi.cast("int", cmd),
                          ffi.from_buffer("char[]", attr), ffi.cast("unsigned int", len(attr)))
    if result == -1:
        err = ffi.errno
        raise OSError(err, os.strerror(err))
    return result
