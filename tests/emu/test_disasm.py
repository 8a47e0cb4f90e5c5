"""Disassembly re-assembles to the same bytes: for the example programs, and
for random valid instructions at random addresses (hypothesis)."""

import glob
import os

from hypothesis import given, settings, strategies as st

from emu import isa
from emu.asm import assemble, assemble_file
from emu.disasm import disassemble
from emu.image import Image

OPERAND = {
    "reg": st.integers(0, 15),
    "sreg": st.sampled_from(sorted(isa.SREG_NAMES)),
    "simm": st.integers(-0x8000, 0x7FFF),
    "uimm": st.integers(0, 0xFFFF),
    "shamt": st.integers(0, 31),
    "mem": st.tuples(st.integers(0, 15), st.integers(-0x8000, 0x7FFF)),
}


@st.composite
def instruction(draw, pc):
    insn = draw(st.sampled_from(isa.INSTRUCTIONS))
    operands = {}
    for name, kind, field in isa.FORMATS[insn.format]:
        if kind == "target":
            bits = isa.FIELDS[field][1]
            # Stay inside the 32-bit address space; the disassembler prints
            # absolute addresses.
            low = max(-(1 << (bits - 1)), -pc // 4)
            high = min((1 << (bits - 1)) - 1, (isa.WORD - pc) // 4)
            operands[name] = draw(st.integers(low, high)) * 4
        else:
            operands[name] = draw(OPERAND[kind])
    return isa.encode(insn.mnemonic, **operands)


@st.composite
def program(draw):
    # Programs live in RAM, which ends where the devices start.
    pc = draw(st.integers(0, isa.MMIO_BASE // 4 - 16)) * 4
    words = draw(st.lists(instruction(pc), min_size=1, max_size=12))
    return pc, words


@settings(max_examples=300, deadline=None)
@given(program())
def test_random_instructions_round_trip(prog):
    pc, words = prog
    image = Image([(pc, b"".join(w.to_bytes(4, "little") for w in words))], pc)
    again = assemble(disassemble(image))
    assert again.segments == image.segments


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, isa.WORD), min_size=1, max_size=8), st.binary(max_size=3))
def test_any_words_round_trip(words, tail):
    # Words that are not instructions come out as .word; odd bytes as .byte.
    data = b"".join(w.to_bytes(4, "little") for w in words) + tail
    image = Image([(0x1000, data)], 0x1000)
    assert assemble(disassemble(image)).segments == image.segments


def test_guest_programs_round_trip_with_symbols(guest_dir):
    for path in glob.glob(os.path.join(guest_dir, "*.s")):
        if path.endswith("lib.s"):
            continue
        image = assemble_file(path)
        text = disassemble(image)
        again = assemble(text)
        assert again.segments == image.segments, path
        assert again.symbols == image.symbols and again.entry == image.entry, path


def test_symbols_are_shown(guest_dir):
    text = disassemble(assemble_file(os.path.join(guest_dir, "hello.s")))
    assert "_start:" in text and "call puts" in text


def test_cli_disasm(cli, guest_dir, tmp_path):
    src = os.path.join(guest_dir, "fibonacci.s")
    assert cli("asm", src, "-o", str(tmp_path / "f.img")).returncode == 0
    r = cli("disasm", str(tmp_path / "f.img"))
    assert r.returncode == 0 and b"call print_uint" in r.stdout
    (tmp_path / "f2.s").write_bytes(r.stdout)
    assert cli("asm", str(tmp_path / "f2.s"), "-o", str(tmp_path / "f2.img")).returncode == 0
    assert (tmp_path / "f.img").read_bytes() == (tmp_path / "f2.img").read_bytes()
