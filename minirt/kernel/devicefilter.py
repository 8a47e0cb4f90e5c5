"""The cgroup v2 device filter: which device files a container may use.

Lecture idea: a device file is a door to hardware and into the host's kernel:
a process that can open the host's disk (``b 8:0``) or its memory (``c 1:1``)
owns the host.  Root in a container keeps CAP_MKNOD (images carry device
nodes), so file permissions cannot be the guard; the kernel itself must refuse.
cgroup v1 keeps an allow list in files (``devices.allow``, see ``cgroups.py``).
cgroup v2 has no such files: instead a program, an eBPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE, is attached to the cgroup, and the kernel runs it
whenever a process in that cgroup (or below) opens a device node or makes one
with mknod.  Its input (context) is

    struct bpf_cgroup_dev_ctx {
        u32 access_type;   offset 0   low 16 bits: the device's type, BLOCK 1 or CHAR 2
                                      high 16 bits: what is asked, MKNOD 1 | READ 2 | WRITE 4
        u32 major;         offset 4
        u32 minor;         offset 8
    };

and it returns 1 to allow or 0 to refuse (the call fails with EPERM).  Every
program attached to the cgroup and to its ancestors must allow.

This module compiles minirt's allow list (``cgroups.DEVICE_ALLOW``, the list
the v1 driver writes into ``devices.allow``) into such a program, the way runc
does, one block of tests per rule:

          r2 = type, r3 = access, r4 = major, r5 = minor
    rule: if r2 != TYPE goto next         no test for type "a" (any)
          if r3 & REFUSED goto next       asks for an access the rule does not
                                          give; no test when it gives "rwm"
          if r4 != MAJOR goto next        no test for "*"
          if r5 != MINOR goto next        no test for "*"
          r0 = 1; exit                    allowed
    next: ... the next rule ...
          r0 = 0; exit                    no rule allowed it

As in v1, one rule must grant *all* that is asked: opening /dev/null for
reading and writing needs a rule with both "r" and "w".

Read first: ``ebpf.py``; Documentation/admin-guide/cgroup-v2.rst, "Device
controller".
"""

import os
import struct

from minirt.kernel import ebpf
from minirt.kernel.ebpf import JNE, JSET, R0, R1, R2, R3, R4, R5

# struct bpf_cgroup_dev_ctx: the offsets of its fields, and its layout.
ACCESS_TYPE, MAJOR, MINOR = 0, 4, 8
_CONTEXT = struct.Struct("<III")
# <linux/bpf.h>: BPF_DEVCG_DEV_* and BPF_DEVCG_ACC_*, by the letters of v1's lists.
DEVICE_TYPES = {"b": 1, "c": 2}
ACCESSES = {"m": 1, "r": 2, "w": 4}
_ALL_ACCESS = 0b111


def compile_filter(allow):
    """The program for an allow list of (type, major, minor, access) rules:
    type "c", "b" or "a" (both), major and minor a number or "*" (any), access
    some of "rwm"."""
    asm = ebpf.Assembler()
    asm.load(R2, R1, ACCESS_TYPE)
    asm.mov32(R3, R2)
    asm.and32(R2, 0xFFFF)
    asm.rsh32(R3, 16)
    asm.load(R4, R1, MAJOR)
    asm.load(R5, R1, MINOR)
    for rule in allow:
        kind, major, minor, access = _checked(rule)
        next_rule = asm.label("next")
        tests = len(asm)
        if kind != "a":
            asm.jump_if(JNE, R2, DEVICE_TYPES[kind], next_rule)
        refused = _ALL_ACCESS & ~_access_bits(access)
        if refused:
            asm.jump_if(JSET, R3, refused, next_rule)
        if major != "*":
            asm.jump_if(JNE, R4, major, next_rule)
        if minor != "*":
            asm.jump_if(JNE, R5, minor, next_rule)
        unconditional = len(asm) == tests
        asm.mov(R0, 1)
        asm.exit()
        if unconditional:
            # Everything is allowed; the verifier refuses code that no path
            # reaches, so the rules after this one must not be emitted.
            return asm.assemble()
        asm.place(next_rule)
    asm.mov(R0, 0)
    asm.exit()
    return asm.assemble()


def _checked(rule):
    kind, major, minor, access = rule
    if kind not in ("a", "b", "c"):
        raise ValueError(f"device rule {rule}: type must be a, b or c")
    for number in (major, minor):
        if number != "*" and not (isinstance(number, int) and 0 <= number < 1 << 31):
            raise ValueError(f"device rule {rule}: {number!r} is not a device number or '*'")
    if not access or set(access) - set(ACCESSES):
        raise ValueError(f"device rule {rule}: access must be some of r, w, m")
    return kind, major, minor, access


def _access_bits(access):
    bits = 0
    for letter in access:
        bits |= ACCESSES[letter]
    return bits


def context(kind, major, minor, access):
    """The ``struct bpf_cgroup_dev_ctx`` the kernel passes for one request:
    ``kind`` "b" or "c", ``access`` e.g. "rw" for an O_RDWR open."""
    return _CONTEXT.pack(DEVICE_TYPES[kind] | _access_bits(access) << 16, major, minor)


def evaluate(program, kind, major, minor, access):
    """Would ``program`` allow this request?  (Runs it in ``ebpf.run``.)"""
    return ebpf.run(program, context(kind, major, minor, access)) == 1


def disassemble(program):
    """The program with the context's fields and the constants named."""
    type_names = {v: k for k, v in DEVICE_TYPES.items()}
    fields = {ACCESS_TYPE: "access_type", MAJOR: "major", MINOR: "minor"}

    def comment(pc, insn):
        code, dst, _src, off, imm = insn
        cls, op = code & 0x07, code & 0xF0
        if cls == ebpf.LDX:
            return fields.get(off, "")
        if cls == ebpf.ALU and op == ebpf.AND:
            return "r2: the device's type"
        if cls == ebpf.ALU and op == ebpf.RSH:
            return "r3: the access asked for"
        if cls == ebpf.JMP and op == JNE and dst == R2:
            return f"not {type_names.get(imm, imm)}"
        if cls == ebpf.JMP and op == JSET:
            return "asks for " + " or ".join(k for k, bit in ACCESSES.items() if imm & bit)
        if cls == ebpf.ALU64 and op == ebpf.MOV and dst == R0:
            return "allow" if imm else "deny"
        return ""

    return ebpf.disassemble(program, comment)


def install(cgroup_dir, allow):
    """Load the program for ``allow`` and attach it to the cgroup v2 directory
    ``cgroup_dir``.  Raises OSError (PermissionError without CAP_SYS_ADMIN).

    It is attached with BPF_F_ALLOW_MULTI, as runc does: a program that a
    nested runtime attaches to a child cgroup then runs *in addition* to this
    one (both must allow), so the container cannot widen its own list.  Removing
    the cgroup detaches and frees the program.
    """
    program = compile_filter(allow)
    prog_fd = ebpf.load(program, ebpf.PROG_TYPE_CGROUP_DEVICE, name="minirt_devices",
                        attach_type=ebpf.ATTACH_CGROUP_DEVICE)
    try:
        cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            ebpf.attach(prog_fd, cgroup_fd, ebpf.ATTACH_CGROUP_DEVICE, ebpf.F_ALLOW_MULTI)
        finally:
            os.close(cgroup_fd)
    finally:
        os.close(prog_fd)   # the attachment keeps the program alive
