"""The ISA table is the one source of truth; the reference manual follows it."""

import os

import pytest

from emu import isa, manual

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "isa.md")


def test_docs_isa_md_is_generated_from_the_table():
    with open(DOC) as f:
        on_disk = f.read()
    assert on_disk == manual.manual(), "docs/isa.md is stale: run python -m emu.manual > docs/isa.md"


def test_every_instruction_is_in_the_manual():
    text = isa.markdown()
    for insn in isa.INSTRUCTIONS:
        assert f"| {insn.mnemonic} |" in text


def test_opcodes_and_mnemonics_are_unique_and_zero_is_illegal():
    assert len(isa.BY_OPCODE) == len(isa.INSTRUCTIONS) == len(isa.BY_MNEMONIC)
    assert 0 not in isa.BY_OPCODE
    assert isa.decode(0) is None


def test_all_sensitive_instructions_are_privileged():
    # Popek and Goldberg: whatever reads or changes the mode, the trap state or
    # the power must trap in user mode.
    sensitive = {"mfsr", "mtsr", "eret", "halt", "tlbflush"}
    assert {i.mnemonic for i in isa.INSTRUCTIONS if i.privileged} == sensitive


@pytest.mark.parametrize("insn", isa.INSTRUCTIONS, ids=lambda i: i.mnemonic)
def test_encode_decode_round_trip(insn):
    operands = {}
    for name, kind, _field in isa.FORMATS[insn.format]:
        operands[name] = {"reg": 7, "sreg": 4, "simm": -3, "uimm": 0xBEEF, "shamt": 31,
                          "mem": (14, -8), "target": -64}[kind]
    word = isa.encode(insn.mnemonic, **operands)
    d = isa.decode(word)
    assert d.insn is insn
    assert isa.encode(insn.mnemonic, **{n: _back(d, n, k) for n, k, _ in isa.FORMATS[insn.format]}) == word


def _back(d, name, kind):
    if kind == "mem":
        return (d.rs1, d.imm)
    if kind in ("simm", "uimm", "shamt", "target"):
        return d.imm
    if kind == "sreg":
        return d.sreg
    return getattr(d, name)


def test_reserved_bits_make_a_word_illegal():
    add = isa.encode("add", rd=1, rs1=2, rs2=3)
    assert isa.decode(add) is not None
    assert isa.decode(add | 1 << 20) is None
    assert isa.decode(isa.encode("halt") | 1 << 8) is None
    shift = isa.encode("shli", rd=1, rs1=1, imm=31)
    assert isa.decode(shift + (1 << 16)) is None        # a shift by 32 is not an instruction
    assert isa.decode(isa.BY_MNEMONIC["mfsr"].opcode | 15 << 16) is None   # no such sreg


def test_encoding_errors_name_the_problem():
    with pytest.raises(isa.EncodingError, match="immediate 40000 out of range"):
        isa.encode("addi", rd=1, rs1=1, imm=40000)
    with pytest.raises(isa.EncodingError, match="not word-aligned"):
        isa.encode("jmp", target=6)


def test_signed_division_rounds_toward_zero_and_never_traps():
    assert isa.div(-7 & isa.WORD, 2) == -3 & isa.WORD
    assert isa.rem(-7 & isa.WORD, 2) == -1 & isa.WORD
    assert isa.div(5, 0) == isa.WORD and isa.rem(5, 0) == 5
    assert isa.div(0x80000000, isa.WORD) == 0x80000000      # INT_MIN / -1 wraps
