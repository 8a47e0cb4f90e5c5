"""The classic BPF machine: assembler, encoding, interpreter, disassembler."""

import struct

import pytest

from minirt.kernel import bpf


def _data(*words):
    return struct.pack(f"<{len(words)}I", *words)


def test_an_instruction_is_eight_bytes_like_struct_sock_filter():
    asm = bpf.Assembler()
    asm.ret(0x7FFF0000)
    program = asm.assemble()
    assert bpf.encode(program) == struct.pack("<HBBI", bpf.RET | bpf.K, 0, 0, 0x7FFF0000)
    assert bpf.decode(bpf.encode(program)) == program


def test_labels_become_forward_offsets():
    asm = bpf.Assembler()
    yes, no = asm.label("yes"), asm.label("no")
    asm.load(0)
    asm.jump_if(bpf.JEQ, 7, yes, no)
    asm.place(no)
    asm.ret(1)
    asm.place(yes)
    asm.ret(2)
    program = asm.assemble()
    assert program[1] == bpf.Insn(bpf.JMP | bpf.JEQ | bpf.K, 1, 0, 7)
    assert bpf.run(program, _data(7)) == 2
    assert bpf.run(program, _data(8)) == 1


def test_jumps_cannot_go_backwards_or_too_far():
    asm = bpf.Assembler()
    back = asm.label("back")
    asm.place(back)
    asm.ret(0)
    asm.jump_if(bpf.JEQ, 1, back, None)
    with pytest.raises(ValueError, match="out of range"):
        asm.assemble()

    asm = bpf.Assembler()
    far = asm.label("far")
    asm.jump_if(bpf.JEQ, 1, far, None)
    for _ in range(256):
        asm.ret(0)
    asm.place(far)
    asm.ret(1)
    with pytest.raises(ValueError, match="out of range"):
        asm.assemble()


def test_unplaced_label_is_an_error():
    asm = bpf.Assembler()
    asm.jump_if(bpf.JEQ, 1, asm.label("nowhere"), None)
    asm.ret(0)
    with pytest.raises(ValueError, match="never placed"):
        asm.assemble()


def test_interpreter_comparisons_are_unsigned():
    asm = bpf.Assembler()
    big = asm.label("big")
    asm.load(4)
    asm.and_(0xFFFF0000)
    asm.jump_if(bpf.JGE, 0x80000000, big, None)
    asm.ret(0)
    asm.place(big)
    asm.ret(1)
    program = asm.assemble()
    assert bpf.run(program, _data(0, 0xFFFF1234)) == 1
    assert bpf.run(program, _data(0, 0x7FFFFFFF)) == 0


def test_ja_and_jset():
    asm = bpf.Assembler()
    end, bit = asm.label("end"), asm.label("bit")
    asm.load(0)
    asm.jump_if(bpf.JSET, 0x4, bit, None)
    asm.goto(end)
    asm.place(bit)
    asm.ret(4)
    asm.place(end)
    asm.ret(0)
    program = asm.assemble()
    assert [bpf.run(program, _data(v)) for v in (4, 5, 3)] == [4, 4, 0]


def test_disassembly_shows_absolute_targets():
    asm = bpf.Assembler()
    yes = asm.label("yes")
    asm.load(0)
    asm.jump_if(bpf.JEQ, 7, yes, None)
    asm.ret(1)
    asm.place(yes)
    asm.ret(2)
    text = bpf.disassemble(asm.assemble(), lambda pc, insn: "seven" if insn.k == 7 else "")
    assert text.splitlines() == [
        "   0: ld   [0]",
        "   1: jeq  #0x7, 3, 2               ; seven",
        "   2: ret  #0x1",
        "   3: ret  #0x2",
    ]
