"""The extended BPF machine: assembler, encoding, interpreter, disassembler, and
the kernel's verifier on the same programs."""

import errno
import os
import struct

import pytest

from minirt.kernel import ebpf
from minirt.kernel.ebpf import JEQ, JGT, JNE, JSET, R0, R1, R2, R3


def _exit_with(value):
    asm = ebpf.Assembler()
    asm.mov(R0, value)
    asm.exit()
    return asm.assemble()


def test_an_instruction_is_eight_bytes_like_struct_bpf_insn():
    asm = ebpf.Assembler()
    asm.load(R2, R1, 4)
    asm.mov32(R3, R2)
    asm.mov(R0, -1)
    asm.exit()
    program = asm.assemble()
    blob = ebpf.encode(program)
    # code, then dst in the low nibble and src in the high one, off, imm
    assert blob[:8] == struct.pack("<BBhi", ebpf.LDX | ebpf.W | ebpf.MEM, 0x12, 4, 0)
    assert blob[8:16] == struct.pack("<BBhi", ebpf.ALU | ebpf.MOV | ebpf.X, 0x23, 0, 0)
    assert blob[16:24] == struct.pack("<BBhi", ebpf.ALU64 | ebpf.MOV | ebpf.K, 0x00, 0, -1)
    assert blob[24:] == bytes([ebpf.JMP | ebpf.EXIT]) + bytes(7)
    assert ebpf.decode(blob) == program


def test_labels_become_signed_offsets():
    asm = ebpf.Assembler()
    top, out = asm.label("top"), asm.label("out")
    asm.mov(R0, 1)
    asm.place(top)
    asm.jump_if(JGT, R0, 4, out)
    asm.alu(ebpf.LSH, R0, 1, wide=True)
    asm.goto(top)
    asm.place(out)
    asm.exit()
    program = asm.assemble()
    assert program[1].off == 2 and program[3].off == -3
    assert ebpf.run(program, b"") == 8


def test_unplaced_label_and_far_jump_are_errors():
    asm = ebpf.Assembler()
    asm.goto(asm.label("nowhere"))
    with pytest.raises(ValueError, match="never placed"):
        asm.assemble()

    asm = ebpf.Assembler()
    far = asm.label("far")
    asm.goto(far)
    for _ in range(0x8000):
        asm.mov(R0, 0)
    asm.place(far)
    with pytest.raises(ValueError, match="out of range"):
        asm.assemble()


def test_constants_must_fit_the_imm_field():
    with pytest.raises(ValueError, match="32-bit imm"):
        ebpf.Assembler().mov(R0, 1 << 31)


def test_32_bit_arithmetic_clears_the_upper_half():
    asm = ebpf.Assembler()
    asm.mov(R0, -1)             # 64 bits of ones: the imm is sign-extended
    asm.mov32(R2, -1)           # 32 bits of ones
    asm.rsh32(R2, 16)
    asm.and32(R0, R2)           # and the upper half of r0 goes
    asm.exit()
    assert ebpf.run(asm.assemble(), b"") == 0xFFFF


def test_loads_read_the_context_little_endian():
    asm = ebpf.Assembler()
    asm.load(R0, R1, 2, size=ebpf.H)
    asm.exit()
    assert ebpf.run(asm.assemble(), bytes([1, 2, 3, 4])) == 0x0403


def test_jumps_compare_unsigned_and_test_bits():
    def program(op, k):
        asm = ebpf.Assembler()
        yes = asm.label("yes")
        asm.load(R2, R1, 0)
        asm.mov(R0, 1)
        asm.jump_if(op, R2, k, yes)
        asm.mov(R0, 0)
        asm.place(yes)
        asm.exit()
        return asm.assemble()

    def run(op, k, value):
        return ebpf.run(program(op, k), struct.pack("<I", value))

    assert [run(JEQ, 7, v) for v in (7, 8)] == [1, 0]
    assert [run(JNE, 7, v) for v in (7, 8)] == [0, 1]
    assert [run(JSET, 6, v) for v in (1, 2, 4, 9)] == [0, 1, 1, 0]
    assert run(JGT, 5, 0xFFFFFFFF) == 1     # no sign: 0xffffffff is large


@pytest.mark.parametrize("build, message", [
    (lambda a: (a.exit(),), "r0 is read before it is written"),
    (lambda a: (a.load(R0, R2, 0), a.exit()), "not the context"),
    (lambda a: (a.load(R0, R1, 12), a.exit()), "read of 4 bytes at context\\+12"),
    (lambda a: (a.mov(R0, R1), a.and32(R0, 1), a.exit()), "r0 is a pointer"),
])
def test_interpreter_refuses_what_the_verifier_refuses(build, message):
    asm = ebpf.Assembler()
    build(asm)
    with pytest.raises(ValueError, match=message):
        ebpf.run(asm.assemble(), bytes(12))


def test_a_program_without_exit_is_stopped():
    asm = ebpf.Assembler()
    top = asm.label("top")
    asm.place(top)
    asm.goto(top)
    with pytest.raises(ValueError, match="no exit"):
        ebpf.run(asm.assemble(), b"", max_steps=100)


def test_disassembly_in_the_kernels_notation():
    asm = ebpf.Assembler()
    no = asm.label("no")
    asm.load(R2, R1, 4)
    asm.mov32(R3, R2)
    asm.rsh32(R3, 16)
    asm.jump_if(JNE, R2, 136, no)
    asm.jump_if(JSET, R3, 0xFFFF, no)
    asm.mov(R0, 1)
    asm.exit()
    asm.place(no)
    asm.mov(R0, 0)
    asm.exit()
    text = ebpf.disassemble(asm.assemble(), lambda pc, insn: "major" if pc == 0 else "")
    assert text.splitlines() == [
        "   0: r2 = *(u32 *)(r1 + 4)         ; major",
        "   1: w3 = w2",
        "   2: w3 >>= 16",
        "   3: if r2 != 136 goto 7",
        "   4: if r3 & 0xffff goto 7",
        "   5: r0 = 1",
        "   6: exit",
        "   7: r0 = 0",
        "   8: exit",
    ]


# -- the kernel ---------------------------------------------------------------------

@pytest.mark.privileged
def test_the_kernel_loads_a_program_and_returns_an_fd():
    fd = ebpf.load(_exit_with(1), ebpf.PROG_TYPE_CGROUP_DEVICE, name="minirt_test",
                   attach_type=ebpf.ATTACH_CGROUP_DEVICE)
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-prog"
        with open(f"/proc/self/fdinfo/{fd}") as f:
            assert "prog_type:\t15" in f.read()
    finally:
        os.close(fd)


@pytest.mark.privileged
def test_the_verifier_explains_a_refusal():
    asm = ebpf.Assembler()
    asm.exit()                  # r0 never written: the interpreter refuses it too
    with pytest.raises(OSError) as refused:
        ebpf.load(asm.assemble(), ebpf.PROG_TYPE_CGROUP_DEVICE)
    assert refused.value.errno == errno.EACCES
    assert "R0 !read_ok" in refused.value.strerror
