"""The instruction set: one table that the assembler, the disassembler, the CPU
and the block translator all read.

Lecture idea: a virtual machine is "software that emulates the underlying
hardware".  Before anything can be emulated there must be hardware to emulate,
and the contract of a piece of hardware is its instruction set.  This file *is*
that contract for emu's toy machine.  Read it first; ``docs/isa.md`` is generated
from it (``python -m emu.isa > docs/isa.md``) and a test fails if they disagree.

The machine in one paragraph: sixteen 32-bit registers (``r0`` reads as zero),
fixed-width 32-bit instructions, byte-addressed little-endian memory, two
privilege modes.  Supervisor mode may do anything; user mode may not touch the
system registers, return from a trap, halt, or reach the device region.  Those
are exactly the instructions that read or change state that isolation depends
on, so the ISA meets Popek and Goldberg's condition for trap-and-emulate
virtualisation (see ``POPEK_GOLDBERG`` below).
"""

import re
from collections import namedtuple

WORD = 0xFFFFFFFF        # every register and every address is 32 bits wide
PAGE_SIZE = 4096         # the unit of paging, dirty tracking and snapshots
MMIO_BASE = 0xF0000000   # from here up: devices.  RAM starts at 0 and stays below.


def sx(value, bits=32):
    """Read the low `bits` of `value` as a two's-complement signed number."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# -- registers ----------------------------------------------------------------

# The names are the calling convention: arguments and the result in a0..a3,
# t0..t4 may be clobbered by a call, s0..s2 and fp must survive one, the stack
# grows down from sp, and `call` leaves the return address in lr.
REGISTER_NAMES = ["zero", "a0", "a1", "a2", "a3", "t0", "t1", "t2", "t3", "t4",
                  "s0", "s1", "s2", "fp", "sp", "lr"]
ZERO, A0, SP, LR = 0, 1, 14, 15

REGISTERS = {f"r{i}": i for i in range(16)}
REGISTERS.update({name: i for i, name in enumerate(REGISTER_NAMES)})

# System registers, reachable only through the privileged mfsr/mtsr.
SYSTEM_REGISTERS = {
    "status":  (0, "mode and interrupt bits, see STATUS_* below"),
    "epc":     (1, "where the last trap happened (or where to resume after an interrupt)"),
    "cause":   (2, "why the last trap happened: a TRAP_* or IRQ_BASE + line"),
    "badaddr": (3, "the faulting address of a bad-address, misaligned or page-fault trap; "
                   "the instruction word of an illegal- or privileged-instruction trap"),
    "tvec":    (4, "trap handler address; 0 means no handler: a trap stops the machine"),
    "scratch": (5, "free for the kernel, typically its stack pointer while user code runs"),
    "ptbr":    (6, "page-table base: physical address of the page directory, bit 0 turns "
                   "paging on; writing it flushes the TLB"),
}
SREG_NAMES = {num: name for name, (num, _) in SYSTEM_REGISTERS.items()}
SREG_STATUS, SREG_EPC, SREG_CAUSE, SREG_BADADDR, SREG_TVEC, SREG_SCRATCH, SREG_PTBR = range(7)

STATUS_IE = 1 << 0    # interrupts enabled
STATUS_U = 1 << 1     # user mode (clear: supervisor)
STATUS_PIE = 1 << 2   # IE before the last trap, restored by eret
STATUS_PU = 1 << 3    # U before the last trap, restored by eret
STATUS_MASK = STATUS_IE | STATUS_U | STATUS_PIE | STATUS_PU

# -- traps --------------------------------------------------------------------

TRAP_ILLEGAL = 1      # no such instruction, or reserved bits set
TRAP_PRIVILEGED = 2   # a privileged instruction in user mode
TRAP_BAD_ADDRESS = 3  # outside RAM and devices, or a device from user mode
TRAP_MISALIGNED = 4   # a word access (or fetch) not on a multiple of 4
TRAP_SYSCALL = 5
TRAP_BREAKPOINT = 6
# With paging on, an access the page tables do not allow.  One cause per kind
# of access, as on RISC-V, so a kernel can tell a bad jump from a bad store.
TRAP_FETCH_FAULT = 7
TRAP_LOAD_FAULT = 8
TRAP_STORE_FAULT = 9
IRQ_BASE = 16         # an external interrupt on line n has cause IRQ_BASE + n

TRAP_NAMES = {TRAP_ILLEGAL: "illegal instruction",
              TRAP_PRIVILEGED: "privileged instruction in user mode",
              TRAP_BAD_ADDRESS: "bad address",
              TRAP_MISALIGNED: "misaligned access",
              TRAP_SYSCALL: "system call",
              TRAP_BREAKPOINT: "breakpoint",
              TRAP_FETCH_FAULT: "page fault on instruction fetch",
              TRAP_LOAD_FAULT: "page fault on load",
              TRAP_STORE_FAULT: "page fault on store"}

# -- paging -------------------------------------------------------------------

# Virtual addresses are split 10 + 10 + 12: an index into the page directory,
# an index into a page table, and the offset in the page.  Directory entries
# and page-table entries have the same shape: a physical page address in bits
# 31..12 and flag bits below.  A directory entry only needs PTE_P; the
# permission bits count in the page-table entry (the leaf) alone.
PTE_P = 1 << 0        # present: the entry is valid
PTE_R = 1 << 1        # the page may be read
PTE_W = 1 << 2        # the page may be written
PTE_X = 1 << 3        # the page may be executed
PTE_U = 1 << 4        # user mode may use the page (supervisor mode always may)
PTE_BITS = {"P": (PTE_P, "present: the entry is valid; otherwise any access through it faults"),
            "R": (PTE_R, "readable"),
            "W": (PTE_W, "writable"),
            "X": (PTE_X, "executable"),
            "U": (PTE_U, "user: user mode may use the page. Without it the page is the "
                         "supervisor's, and to user mode it looks exactly like a page that is not there")}
PTBR_ENABLE = 1       # bit 0 of ptbr: paging on


def cause_name(cause):
    if cause >= IRQ_BASE:
        return f"interrupt {cause - IRQ_BASE}"
    return TRAP_NAMES.get(cause, f"cause {cause}")


# -- encoding -----------------------------------------------------------------

# Every instruction is one little-endian word.  The low byte is the opcode; the
# rest is cut into fields.  A format says which operand lives in which field;
# any bit that no operand uses must be zero, or the word is illegal.  That rule
# keeps "one word, one meaning", which the disassembler's round trip relies on.
#
#   31              16 15   12 11    8 7      0
#  +------------------+-------+-------+--------+
#  |       imm16      |   b   |   a   | opcode |
#  +------------+-----+-------+-------+--------+
#  |  (unused)  |  c  |
#  +------------+-----+      (c overlaps the low bits of imm16)
#  |              imm24               |
#  +----------------------------------+
FIELDS = {              # name: (shift, width)
    "a": (8, 4),
    "b": (12, 4),
    "c": (16, 4),
    "imm16": (16, 16),
    "imm24": (8, 24),
}

# Operand kinds, as written in assembly:
#   reg     a register                         r3, a0, sp
#   simm    a signed 16-bit constant           -4
#   uimm    an unsigned 16-bit constant        0xffff
#   shamt   a shift amount 0..31               5
#   mem     base register plus signed offset   [sp + 8], [a0], [t0 - 4]
#   target  a code address; encoded as a signed word offset from this instruction
#   sreg    a system register                  status, epc, ...
FORMATS = {             # name: ((operand, kind, field), ...)
    "R":  (("rd", "reg", "a"), ("rs1", "reg", "b"), ("rs2", "reg", "c")),
    "I":  (("rd", "reg", "a"), ("rs1", "reg", "b"), ("imm", "simm", "imm16")),
    "IU": (("rd", "reg", "a"), ("rs1", "reg", "b"), ("imm", "uimm", "imm16")),
    "SH": (("rd", "reg", "a"), ("rs1", "reg", "b"), ("imm", "shamt", "imm16")),
    "U":  (("rd", "reg", "a"), ("imm", "uimm", "imm16")),
    "L":  (("rd", "reg", "a"), ("mem", "mem", "b+imm16")),
    "S":  (("rs2", "reg", "a"), ("mem", "mem", "b+imm16")),
    "B":  (("rs1", "reg", "a"), ("rs2", "reg", "b"), ("target", "target", "imm16")),
    "J":  (("target", "target", "imm24"),),
    "JR": (("rs1", "reg", "b"),),
    "MF": (("rd", "reg", "a"), ("sreg", "sreg", "c")),
    "MT": (("sreg", "sreg", "c"), ("rs1", "reg", "b")),
    "N":  (),
}

# -- the table ----------------------------------------------------------------

# kind says how the CPU executes the instruction:
#   alu     rd = f(A, B) with A = rs1 and B = rs2 or the immediate; `op` is f
#           as a Python expression, shared by the interpreter and the translator
#   load    rd = memory[A + imm], `width` bytes, `signed` or not
#   store   memory[A + imm] = rs2, `width` bytes
#   branch  if `op` (over A = rs1, B = rs2) then pc = target
#   jump, call, jr, callr   unconditional control transfer; the call forms
#           leave the address of the next instruction in lr
#   system  a trap or a privileged operation; see the CPU
Insn = namedtuple("Insn", "opcode mnemonic format kind cycles privileged op width signed summary")


def _insn(opcode, mnemonic, fmt, kind, cycles, summary, op=None, width=0,
          signed=False, privileged=False):
    return Insn(opcode, mnemonic, fmt, kind, cycles, privileged, op, width, signed, summary)


INSTRUCTIONS = [
    # Opcode 0 is deliberately not an instruction: running into zeroed memory
    # traps at once instead of sliding silently onwards.
    _insn(0x01, "add",  "R", "alu", 1, "rd = rs1 + rs2", "(A + B) & WORD"),
    _insn(0x02, "sub",  "R", "alu", 1, "rd = rs1 - rs2", "(A - B) & WORD"),
    _insn(0x03, "and",  "R", "alu", 1, "rd = rs1 & rs2", "A & B"),
    _insn(0x04, "or",   "R", "alu", 1, "rd = rs1 | rs2", "A | B"),
    _insn(0x05, "xor",  "R", "alu", 1, "rd = rs1 ^ rs2", "A ^ B"),
    _insn(0x06, "shl",  "R", "alu", 1, "shift left by rs2 mod 32", "(A << (B & 31)) & WORD"),
    _insn(0x07, "shr",  "R", "alu", 1, "logical shift right by rs2 mod 32", "A >> (B & 31)"),
    _insn(0x08, "sar",  "R", "alu", 1, "arithmetic shift right by rs2 mod 32",
          "(sx(A) >> (B & 31)) & WORD"),
    _insn(0x09, "slt",  "R", "alu", 1, "rd = 1 if rs1 < rs2 (signed) else 0", "int(sx(A) < sx(B))"),
    _insn(0x0A, "sltu", "R", "alu", 1, "rd = 1 if rs1 < rs2 (unsigned) else 0", "int(A < B)"),
    _insn(0x0B, "mul",  "R", "alu", 3, "low 32 bits of rs1 * rs2", "(A * B) & WORD"),
    # Division never traps: like RISC-V, dividing by zero has a defined result
    # (all ones, remainder = dividend), so the guest can check afterwards.
    _insn(0x0C, "div",  "R", "alu", 10, "signed quotient, rounded toward zero", "div(A, B)"),
    _insn(0x0D, "divu", "R", "alu", 10, "unsigned quotient", "(A // B) if B else WORD"),
    _insn(0x0E, "rem",  "R", "alu", 10, "signed remainder, sign of the dividend", "rem(A, B)"),
    _insn(0x0F, "remu", "R", "alu", 10, "unsigned remainder", "(A % B) if B else A"),

    _insn(0x10, "addi",  "I",  "alu", 1, "rd = rs1 + imm", "(A + B) & WORD"),
    _insn(0x11, "andi",  "IU", "alu", 1, "rd = rs1 & imm (zero-extended)", "A & B"),
    _insn(0x12, "ori",   "IU", "alu", 1, "rd = rs1 | imm (zero-extended)", "A | B"),
    _insn(0x13, "xori",  "IU", "alu", 1, "rd = rs1 ^ imm (zero-extended)", "A ^ B"),
    _insn(0x14, "shli",  "SH", "alu", 1, "shift left by imm", "(A << B) & WORD"),
    _insn(0x15, "shri",  "SH", "alu", 1, "logical shift right by imm", "A >> B"),
    _insn(0x16, "sari",  "SH", "alu", 1, "arithmetic shift right by imm", "(sx(A) >> B) & WORD"),
    _insn(0x17, "slti",  "I",  "alu", 1, "rd = 1 if rs1 < imm (signed) else 0", "int(sx(A) < sx(B))"),
    _insn(0x18, "sltiu", "I",  "alu", 1, "rd = 1 if rs1 < imm (unsigned, imm sign-extended) else 0",
          "int(A < B)"),
    # lui and ori together build any 32-bit constant: `li` and `la` do just that.
    _insn(0x19, "lui",   "U",  "alu", 1, "rd = imm << 16", "(B << 16) & WORD"),

    _insn(0x20, "ldw",  "L", "load", 2, "rd = word at rs1 + imm", width=4),
    _insn(0x21, "ldb",  "L", "load", 2, "rd = byte at rs1 + imm, sign-extended", width=1, signed=True),
    _insn(0x22, "ldbu", "L", "load", 2, "rd = byte at rs1 + imm, zero-extended", width=1),
    _insn(0x28, "stw",  "S", "store", 2, "word at rs1 + imm = rs2", width=4),
    _insn(0x29, "stb",  "S", "store", 2, "byte at rs1 + imm = low byte of rs2", width=1),

    _insn(0x30, "beq",  "B", "branch", 2, "branch if rs1 == rs2", "A == B"),
    _insn(0x31, "bne",  "B", "branch", 2, "branch if rs1 != rs2", "A != B"),
    _insn(0x32, "blt",  "B", "branch", 2, "branch if rs1 < rs2 (signed)", "sx(A) < sx(B)"),
    _insn(0x33, "bge",  "B", "branch", 2, "branch if rs1 >= rs2 (signed)", "sx(A) >= sx(B)"),
    _insn(0x34, "bltu", "B", "branch", 2, "branch if rs1 < rs2 (unsigned)", "A < B"),
    _insn(0x35, "bgeu", "B", "branch", 2, "branch if rs1 >= rs2 (unsigned)", "A >= B"),
    _insn(0x38, "jmp",   "J",  "jump",  2, "pc = target"),
    _insn(0x39, "call",  "J",  "call",  2, "lr = pc + 4; pc = target"),
    _insn(0x3A, "jr",    "JR", "jr",    2, "pc = rs1 (`ret` is `jr lr`)"),
    _insn(0x3B, "callr", "JR", "callr", 2, "lr = pc + 4; pc = rs1"),

    _insn(0x40, "syscall", "N", "system", 1, "trap with cause system call"),
    _insn(0x41, "brk",     "N", "system", 1, "trap with cause breakpoint"),
    _insn(0x48, "mfsr",    "MF", "system", 1, "rd = system register", privileged=True),
    _insn(0x49, "mtsr",    "MT", "system", 1, "system register = rs1", privileged=True),
    _insn(0x4A, "eret",    "N", "system", 2, "return from trap: pc = epc, IE = PIE, U = PU",
          privileged=True),
    _insn(0x4B, "halt",    "N", "system", 1,
          "wait for an interrupt; with interrupts disabled, power off", privileged=True),
    # Changing a page-table entry in memory does not change the translations
    # the TLB already holds; the kernel must say so.  (Writing ptbr flushes too.)
    _insn(0x4C, "tlbflush", "N", "system", 1, "forget every translation the TLB holds",
          privileged=True),
]

BY_OPCODE = {insn.opcode: insn for insn in INSTRUCTIONS}
BY_MNEMONIC = {insn.mnemonic: insn for insn in INSTRUCTIONS}


def div(a, b):
    """Signed division rounding toward zero, the way C and every CPU do it."""
    if b == 0:
        return WORD
    a, b = sx(a), sx(b)
    q = abs(a) // abs(b)
    return (q if (a < 0) == (b < 0) else -q) & WORD


def rem(a, b):
    if b == 0:
        return a
    a, b = sx(a), sx(b)
    r = abs(a) % abs(b)
    return (-r if a < 0 else r) & WORD


# The names an `op` expression may use, for whoever compiles them.
OP_NAMESPACE = {"WORD": WORD, "sx": sx, "div": div, "rem": rem}


def substitute(op, a, b):
    """An `op` expression with the source texts `a` and `b` for A and B."""
    return re.sub(r"\bB\b", b, re.sub(r"\bA\b", a, op))


# -- pseudo-instructions --------------------------------------------------------

# Conveniences the assembler expands into real instructions.  The expansions of
# `li` and `la` depend on the value, so the assembler handles those two itself.
PSEUDO = {
    "nop":  ("",            ["addi zero, zero, 0"]),
    "mov":  ("rd, rs",      ["add {rd}, {rs}, zero"]),
    # ~x == -x - 1; xori cannot do it, because its immediate is zero-extended.
    "not":  ("rd, rs",      ["sub {rd}, zero, {rs}", "addi {rd}, {rd}, -1"]),
    "neg":  ("rd, rs",      ["sub {rd}, zero, {rs}"]),
    "ret":  ("",            ["jr lr"]),
    "b":    ("target",      ["jmp {target}"]),
    "beqz": ("rs, target",  ["beq {rs}, zero, {target}"]),
    "bnez": ("rs, target",  ["bne {rs}, zero, {target}"]),
    "bgt":  ("rs, rt, target", ["blt {rt}, {rs}, {target}"]),
    "ble":  ("rs, rt, target", ["bge {rt}, {rs}, {target}"]),
    "push": ("rs",          ["addi sp, sp, -4", "stw {rs}, [sp]"]),
    "pop":  ("rd",          ["ldw {rd}, [sp]", "addi sp, sp, 4"]),
    "li":   ("rd, value",   None),   # addi if the value fits 16 signed bits, else lui + ori
    "la":   ("rd, address", None),   # always lui + ori, so the size is known before the address
}


# -- encode and decode ------------------------------------------------------------

class EncodingError(ValueError):
    """An operand does not fit its field (the assembler adds file:line:column)."""


Decoded = namedtuple("Decoded", "insn rd rs1 rs2 imm sreg")


def _field(word, name):
    shift, width = FIELDS[name]
    return (word >> shift) & ((1 << width) - 1)


def _used_mask(fmt):
    mask = 0xFF
    for _name, _kind, field in FORMATS[fmt]:
        for part in field.split("+"):
            shift, width = FIELDS[part]
            mask |= ((1 << width) - 1) << shift
    return mask


USED_BITS = {fmt: _used_mask(fmt) for fmt in FORMATS}


def decode(word):
    """Split a word into its instruction and operands, or return None if the
    word is not a valid instruction (the CPU then raises an illegal-instruction
    trap).  Immediates come back as Python ints with their sign applied; branch
    and jump targets as signed byte offsets from the instruction."""
    insn = BY_OPCODE.get(word & 0xFF)
    if insn is None or word & ~USED_BITS[insn.format] & WORD:
        return None
    rd = rs1 = rs2 = imm = sreg = 0
    for name, kind, field in FORMATS[insn.format]:
        if kind == "mem":
            rs1, imm = _field(word, "b"), sx(_field(word, "imm16"), 16)
        elif kind == "reg":
            value = _field(word, field)
            if name == "rd":
                rd = value
            elif name == "rs1":
                rs1 = value
            else:
                rs2 = value
        elif kind == "simm":
            imm = sx(_field(word, field), 16)
        elif kind == "uimm":
            imm = _field(word, field)
        elif kind == "shamt":
            imm = _field(word, field)
            if imm > 31:
                return None
        elif kind == "target":
            bits = FIELDS[field][1]
            imm = sx(_field(word, field), bits) * 4
        elif kind == "sreg":
            sreg = _field(word, field)
            if sreg not in SREG_NAMES:
                return None
    return Decoded(insn, rd, rs1, rs2, imm, sreg)


def encode(mnemonic, **operands):
    """Build the word for `mnemonic` from operand values: registers and system
    registers as numbers, `imm` as an int, `mem` as (base register, offset),
    `target` as a byte offset from the instruction.  Raises EncodingError when
    a value does not fit."""
    insn = BY_MNEMONIC[mnemonic]
    word = insn.opcode
    for name, kind, field in FORMATS[insn.format]:
        value = operands[name]
        if kind == "mem":
            base, offset = value
            word |= _put(base, "b", 0, 15, "register")
            word |= _put(offset, "imm16", -0x8000, 0x7FFF, "offset")
        elif kind in ("reg", "sreg"):
            word |= _put(value, field, 0, 15, kind)
        elif kind == "simm":
            word |= _put(value, field, -0x8000, 0x7FFF, "immediate")
        elif kind == "uimm":
            word |= _put(value, field, 0, 0xFFFF, "immediate")
        elif kind == "shamt":
            word |= _put(value, field, 0, 31, "shift amount")
        elif kind == "target":
            if value % 4:
                raise EncodingError(f"branch target is not word-aligned (offset {value})")
            bits = FIELDS[field][1]
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            word |= _put(value // 4, field, lo, hi, "branch offset (in words)")
    return word


def _put(value, field, lo, hi, what):
    if not lo <= value <= hi:
        raise EncodingError(f"{what} {value} out of range {lo}..{hi}")
    shift, width = FIELDS[field]
    return (value & ((1 << width) - 1)) << shift


def format_operands(decoded, pc, symbol_for=None):
    """Operands of a decoded instruction as assembly text.  `symbol_for(addr)`
    may name branch targets; otherwise they are printed as absolute addresses,
    which the assembler turns back into the same offsets."""
    insn = decoded.insn
    parts = []
    for name, kind, _field_name in FORMATS[insn.format]:
        if kind == "reg":
            parts.append(REGISTER_NAMES[getattr(decoded, name)])
        elif kind == "mem":
            base, off = REGISTER_NAMES[decoded.rs1], decoded.imm
            parts.append(f"[{base}]" if off == 0 else f"[{base} {'-' if off < 0 else '+'} {abs(off)}]")
        elif kind in ("simm", "shamt"):
            parts.append(str(decoded.imm))
        elif kind == "uimm":
            parts.append(hex(decoded.imm))
        elif kind == "target":
            addr = (pc + decoded.imm) & WORD
            name_ = symbol_for(addr) if symbol_for else None
            parts.append(name_ or f"0x{addr:08x}")
        elif kind == "sreg":
            parts.append(SREG_NAMES[decoded.sreg])
    return ", ".join(parts)


def disassemble_word(word, pc=0, symbol_for=None):
    """One word as one line of assembly; data that is not an instruction
    comes out as a `.word` directive, so the result always re-assembles."""
    decoded = decode(word)
    if decoded is None:
        return f".word 0x{word:08x}"
    operands = format_operands(decoded, pc, symbol_for)
    return f"{decoded.insn.mnemonic} {operands}".rstrip()


# -- why the ISA can be virtualised -------------------------------------------------

POPEK_GOLDBERG = """\
Popek and Goldberg (1974) split instructions into three sets. *Privileged*
instructions trap when run in user mode. *Sensitive* instructions either change
the machine's configuration (the mode, the trap vector, memory mapping,
interrupts, the power) or behave differently depending on it. A machine can be
virtualised by trap-and-emulate -- run the guest kernel in user mode, let every
sensitive instruction trap into the hypervisor, emulate it there on the guest's
*virtual* copy of the state -- if every sensitive instruction is privileged.

Here the sensitive state is: the status register (mode and interrupt enable),
the trap registers (epc, cause, badaddr, tvec, scratch), the MMU register
(ptbr, and the TLB that caches its page tables), the ability to stop the CPU,
and the devices. The only instructions that touch the first four are `mfsr`,
`mtsr`, `eret`, `halt` and `tlbflush`, and all five are privileged. The page
tables themselves are ordinary memory, and the kernel keeps them out of user
mode's reach with the very mappings they define. The devices are reached only through memory at `MMIO_BASE` and
above, and a user-mode access there is a bad-address trap, so a hypervisor
sees every device access too. Nothing else reveals the mode: there is no
user-readable status bit, no unprivileged instruction that behaves one way in
supervisor mode and another in user mode.

The classic counter-example is the x86 before VT-x: `popf` in user mode silently
ignored the interrupt-enable flag instead of trapping, and `pushf` let a
deprivileged kernel read the real flags. A guest kernel could not tell that its
`cli` had not happened, and the hypervisor never found out it was tried. That
is why VMware had to rewrite guest code on the fly. This ISA has no such
instruction, so emu's hypervisor (`emu/vmm/`, `emu run --virtualization trap`)
is a plain trap-and-emulate monitor. Variant P, below, adds one on purpose,
to show what goes wrong and how binary translation repairs it.
"""

def unprivileged_in_variant_p(decoded):
    """Whether a decoded instruction is one that variant P lets user mode
    run without a trap: `mfsr` or `mtsr` of `status`."""
    return decoded.insn.mnemonic in ("mfsr", "mtsr") and decoded.sreg == SREG_STATUS


# Extension H: what the CPU of a hardware-assisted monitor adds (emu/guestmode.py).
EXTENSION_H = """\
An optional extension, as VT-x with EPT and the RISC-V H extension add to
their ISAs, for a hypervisor: a *guest mode* and a *second-level page table*.
A bare machine does not have it; `emu run --virtualization hw` runs its guest
on a CPU that does (emu/guestmode.py), with emu's monitor as the host
(emu/vmm/assisted.py). The guest sees the ISA above, unchanged.

**Guest mode.** The host enters it, with the guest's registers, system
registers and TLB, and the root of the second-level table (below). In guest
mode the guest kernel runs in its own supervisor mode: `mfsr`, `mtsr`,
`eret`, `tlbflush`, its traps (system calls, faults, privileged instructions
in its user mode) and its page-table walks are carried out by the CPU on the
guest's state, exactly as the sections above say, and never leave guest
mode. These leave it -- an *exit*, taken by the host, which then resumes the
guest after the instruction as the ISA says it completes:

| exit | when |
| --- | --- |
| device | a load or store in the device region from the guest's supervisor mode (the devices are the host's: it emulates the access) |
| halt | `halt` (waiting for an interrupt is the host's) |
| interrupt | an interrupt line raised while the guest's IE is set (the host's device raised it; it is taken by the guest as the ISA says) |
| 2nd-level fill | a guest-physical page the second-level table does not map (the host maps it; the access goes on) |

An exit costs the guest no cycles: guest time is the guest's instructions
only, so a guest in guest mode runs cycle for cycle as on bare hardware.
The host's own state (its system registers, and how it enters guest mode)
is not part of this extension: emu's host is the emulator itself.

**Second-level page table.** Every guest address below the device region
-- with the guest's paging on, each guest page-table entry the walk reads
too -- is a *guest-physical* address, and is translated again, to a
host-physical one, through a two-level table in host memory of the format
of Paging above: the directory at the root, indexed by guest-physical bits
31..22, its tables by bits 21..12. A present entry maps its page for every
kind of access (the host gives a guest its RAM whole; R, W, X and U are the
guest's own, in its own tables). A guest-physical address past the guest's
RAM is what it is on bare hardware: with the guest's paging off, a
bad-address trap; with it on, a frame the walk treats as not present.

The TLB keeps the guest's own entries (virtual page to guest page-table
entry, as above), and what the second stage made of them beside; the guest's
`tlbflush` or write to `ptbr` empties both.
"""

# Variant P: the x86 story, for the lecture (emu/variant.py).
VARIANT_P = """\
A variant of the CPU that breaks Popek and Goldberg's condition on purpose, as
the x86 did before VT-x: in user mode, `mfsr rd, status` does not trap but
reads the real status register (like `pushf`), and `mtsr status, rs` does
not trap but changes nothing (like `popf`, which silently kept the
interrupt flag). Both are sensitive and no longer privileged. Every other
instruction, and both in supervisor mode, are as above, so a kernel runs on
it exactly as on the standard CPU -- until a trap-and-emulate monitor runs it
deprivileged: its trap handler reads the real mode instead of its own, and
its writes of `status` vanish, without the monitor ever being told. Binary
translation repairs it: the monitor rewrites the guest's sensitive
instructions into calls to itself before they run (emu/vmm/monitor.py,
`translate_sensitive`), as VMware did.
"""


# -- the reference manual -------------------------------------------------------------

def markdown():
    """docs/isa.md, generated from the tables above so it cannot drift."""
    out = ["# The emu instruction set", "",
           "<!-- Generated by `python -m emu.manual > docs/isa.md` from emu/isa.py and the "
           "device modules. Do not edit by hand: tests/emu/test_isa.py fails when this file "
           "and the code disagree. -->",
           "",
           "32-bit words, fixed-width 32-bit instructions, byte-addressed little-endian "
           "memory, sixteen general registers, two privilege modes.", "",
           "## Registers", "",
           "| register | name | convention |", "| --- | --- | --- |"]
    roles = {0: "always reads 0; writes are ignored", 1: "first argument and return value",
             14: "stack pointer; the stack grows down, sp points at the last word pushed",
             15: "link register: return address left by `call`/`callr`", 13: "frame pointer, preserved"}
    for i, name in enumerate(REGISTER_NAMES):
        role = roles.get(i) or ("argument, not preserved by a call" if name.startswith("a") else
                                "temporary, not preserved by a call" if name.startswith("t") else
                                "saved: a callee that uses it restores it")
        out.append(f"| r{i} | {name} | {role} |")
    out += ["", "## System registers", "",
            "Reachable only with the privileged `mfsr` and `mtsr`. Numbers not listed "
            "here are illegal.", "", "| number | name | meaning |", "| --- | --- | --- |"]
    for name, (num, meaning) in SYSTEM_REGISTERS.items():
        out.append(f"| {num} | {name} | {meaning} |")
    out += ["", "`status` bits (others read as 0 and ignore writes):", "",
            "| bit | name | meaning |", "| --- | --- | --- |",
            "| 0 | IE | interrupts enabled |",
            "| 1 | U | user mode; clear means supervisor mode |",
            "| 2 | PIE | IE before the last trap |",
            "| 3 | PU | U before the last trap |",
            "", "## Encoding", "",
            "Every instruction is one little-endian word; bits 0-7 are the opcode. "
            "Bits that the instruction's format does not use must be zero, otherwise the "
            "word is an illegal instruction.", "",
            "| field | bits |", "| --- | --- |"]
    for name, (shift, width) in FIELDS.items():
        out.append(f"| {name} | {shift + width - 1}..{shift} |")
    out += ["", "| format | operands (operand: kind in field) |", "| --- | --- |"]
    for fmt, operands in FORMATS.items():
        desc = ", ".join(f"{n}: {k} in {f}" for n, k, f in operands) or "none"
        out.append(f"| {fmt} | {desc} |")
    out += ["", "Operand kinds: `reg` a register (`r3`, `a0`); `simm` a signed and `uimm` an "
            "unsigned 16-bit constant; `shamt` 0..31; `mem` a base register plus a signed 16-bit "
            "offset, written `[sp + 8]`; `target` a code address, encoded as a signed word offset "
            "from the instruction itself; `sreg` a system register name.",
            "", "## Instructions", "",
            "Cycles are what the timer counts. In the semantics, A is rs1 and B is rs2 or the "
            "immediate (sign- or zero-extended as the kind says); `sx` reads a word as signed.", "",
            "| opcode | mnemonic | format | cycles | privileged | operation | semantics |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for insn in INSTRUCTIONS:
        sem = f"`{insn.op}`" if insn.op else ""
        out.append(f"| 0x{insn.opcode:02x} | {insn.mnemonic} | {insn.format} | {insn.cycles} | "
                   f"{'yes' if insn.privileged else ''} | {insn.summary} | {sem} |")
    out += ["", "`div` and `rem` round toward zero. Division by zero does not trap: the "
            "quotient is all ones and the remainder is the dividend.", "",
            "## Pseudo-instructions", "",
            "| pseudo | expands to |", "| --- | --- |"]
    for name, (operands, expansion) in PSEUDO.items():
        if expansion is None:
            expansion = (["addi rd, zero, value  (if it fits 16 signed bits)", "lui rd, hi; ori rd, rd, lo"]
                         if name == "li" else ["lui rd, hi; ori rd, rd, lo"])
        out.append(f"| `{name} {operands}`".rstrip() + " | " + "; ".join(f"`{e}`" for e in expansion) + " |")
    out += ["", "## Traps and interrupts", "",
            "A trap saves the pc in `epc` (the faulting instruction's own address, so a "
            "system-call handler adds 4 before `eret`; for an interrupt, the address of the "
            "next instruction), the reason in `cause`, a faulting address in `badaddr` (after an "
            "illegal or privileged instruction: the instruction word itself, so a handler "
            "can emulate it without reading memory; otherwise 0); copies "
            "IE to PIE and U to PU; clears IE and U (so the handler runs in supervisor mode "
            "with interrupts off); and jumps to `tvec`. `eret` undoes the mode change. "
            "An instruction that traps still counts as a step and costs one cycle.", "",
            "If `tvec` is 0 there is no handler: the machine stops, like a triple fault on a "
            "PC, and `emu run` exits with status 128 + cause.", "",
            "| cause | meaning |", "| --- | --- |"]
    for cause, name in TRAP_NAMES.items():
        out.append(f"| {cause} | {name} |")
    out += [f"| {IRQ_BASE} + n | external interrupt on line n, taken between instructions while IE is set |",
            "", "## Memory", "",
            f"RAM starts at physical address 0. From 0x{MMIO_BASE:08x} up lies the device region "
            "(see Devices below); anything else is a bad-address trap. "
            "Word accesses and instruction fetches must be 4-byte aligned (checked before "
            "translation). In user mode the device region is out of reach (bad address).", "",
            "## Paging", "",
            "With bit 0 of `ptbr` clear, addresses are physical. With it set, every "
            "instruction fetch, load and store below the device region -- in both modes -- "
            "goes through a two-level page table in RAM, whose directory is the page at "
            "`ptbr & ~0xfff`. A virtual address splits into a directory index (bits 31..22), "
            "a page-table index (bits 21..12) and an offset (bits 11..0):", "",
            "```",
            "pde = word at (ptbr & ~0xfff) + 4 * va[31:22]     must have P",
            "pte = word at (pde  & ~0xfff) + 4 * va[21:12]     must have P and allow the access",
            "pa  = (pte & ~0xfff) | va[11:0]",
            "```", "",
            "| bit | name | meaning (in a page-table entry) |", "| --- | --- | --- |"]
    for name, (bit, meaning) in PTE_BITS.items():
        out.append(f"| {bit.bit_length() - 1} | {name} | {meaning} |")
    out += ["",
            "Bits 11..5 are ignored. In a directory entry only P counts. Supervisor mode may "
            "use any present page its R/W/X bits allow; user mode also needs U. A fetch needs "
            "X, a load R, a store W. An access that is not allowed -- entry not present, "
            "permission missing, a page table or page outside RAM -- is a page fault: cause "
            f"{TRAP_FETCH_FAULT}, {TRAP_LOAD_FAULT} or {TRAP_STORE_FAULT} by the kind of "
            "access, with the virtual address in `badaddr`. The device region is never "
            "translated: from supervisor mode those addresses always reach the devices.", "",
            "The TLB caches page-table entries, by virtual page, from the first walk that finds "
            "them present. It holds any number of them, and keeps them until `tlbflush` or a "
            "write to `ptbr` empties it, so a kernel that changes a present entry must flush. "
            "There are no accessed or dirty bits: the walk never writes memory.", "",
            "## Reset", "",
            "The loader copies the image into RAM and starts at its entry point (`_start` if "
            "defined, otherwise the lowest address) in supervisor mode with interrupts off and "
            "paging off, every register 0 except `sp`, which holds the top of RAM. Booting "
            "from a disk instead, the firmware copies sector 0 to address 0 and starts there "
            "(see the disk below).", "",
            "## Why every sensitive instruction is privileged", "",
            POPEK_GOLDBERG.rstrip(), "",
            "## Extension H: guest mode and second-level paging", "",
            EXTENSION_H.rstrip(), "",
            "## Variant P: a sensitive instruction that does not trap", "",
            VARIANT_P.rstrip()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    # The manual also documents the devices, which this root module must not import.
    from .manual import manual
    print(manual(), end="")
