"""The assembler: directives, expressions, macros, includes, pseudo-instructions,
and errors that name file:line:column."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu import asm, isa
from emu.asm import AsmError, Assembler, assemble
from emu.image import Image, ImageError


def words(image, addr=0):
    for start, data in image.segments:
        if start == addr:
            return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data) - 3, 4)]
    raise AssertionError(f"no segment at {addr:#x}")


def test_labels_forward_and_backward_branches():
    img = assemble("""
    top:  beq a0, zero, end
          jmp top
    end:  halt
    """)
    assert img.symbols == {"top": 0, "end": 8}
    b, j, h = (isa.decode(w) for w in words(img))
    assert b.imm == 8 and j.imm == -4 and h.insn.mnemonic == "halt"


def test_expressions_have_c_precedence_and_rounding():
    img = assemble("""
    .equ A, 3
    .equ B, A * 4 + 1 << 1        ; (3 * 4 + 1) << 1 = 26
    .word B, -7 / 2, -7 % 2, 1 | 2 ^ 3 & 1, ~0 & 0xff, 'A', '\\n', hi(0x12345678), lo(0x12345678)
    .word (1 + 2) * 3, 0b1010, 1_000, .   ; '.' is the address of the line
    """)
    assert words(img) == [26, -3 & isa.WORD, -1 & isa.WORD, 1 | (2 ^ (3 & 1)), 255, 65, 10,
                          0x1234, 0x5678, 9, 10, 1000, 36]


def test_data_directives_org_align_space():
    img = assemble("""
    .org 0x100
    s: .ascii "ab"
       .asciz "c\\x41\\t"
       .byte 1, 255, -1
       .align 8
    w: .word w, s
       .space 3, 0xAA
    e:
    """)
    (addr, data), = img.segments
    assert addr == 0x100
    assert data[:6] == b"abcA\t\0" and data[6:9] == b"\x01\xff\xff"
    assert img.symbols["w"] == 0x110 and data[16:24] == (0x110).to_bytes(4, "little") + (0x100).to_bytes(4, "little")
    assert data[24:] == b"\xaa" * 3 and img.symbols["e"] == 0x11B


def test_org_makes_separate_segments_and_entry_is_start():
    img = assemble("""
    .org 0x40
    _start: halt
    .org 0x10
    .word 7
    """)
    assert [a for a, _ in img.segments] == [0x10, 0x40]
    assert img.entry == 0x40


def test_li_is_one_word_when_it_can_be_and_two_otherwise():
    img = assemble("""
        li a0, 5
        li a1, -32768
        li a2, 0x12345678
        li a3, later            ; a label not yet known: always two words
        la t0, 4
    later:
    """)
    ws = words(img)
    assert len(ws) == 1 + 1 + 2 + 2 + 2
    assert isa.decode(ws[0]).insn.mnemonic == "addi"
    assert [isa.decode(w).insn.mnemonic for w in ws[2:4]] == ["lui", "ori"]
    assert img.symbols["later"] == 32


def test_pseudo_instructions_expand_to_real_ones():
    img = assemble("nop\nmov a0, a1\nret\npush s0\npop s1\nbgt a0, a1, 0\nnot t0, t1")
    mnemonics = [isa.decode(w).insn.mnemonic for w in words(img)]
    assert mnemonics == ["addi", "add", "jr", "addi", "stw", "ldw", "addi", "blt", "sub", "addi"]


def test_macros_with_arguments_and_unique_labels():
    img = assemble("""
    .macro twice reg, amount
        addi \\reg, \\reg, \\amount
        addi \\reg, \\reg, \\amount
    .endm
    .macro spin
    l\\@: jmp l\\@
    .endm
        twice a0, 3
        spin
        spin
    """)
    ws = words(img)
    assert [isa.decode(w).imm for w in ws[:2]] == [3, 3]
    assert len({name for name in img.symbols if name.startswith("l")}) == 2


def test_include_is_relative_to_the_including_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "defs.s").write_text(".equ ANSWER, 42\n")
    (tmp_path / "main.s").write_text('.include "sub/defs.s"\n.word ANSWER\n')
    img = Assembler().assemble_file(str(tmp_path / "main.s"))
    assert words(img) == [42]


def test_listing_shows_addresses_words_and_source():
    a = Assembler()
    a.assemble_text("start: addi a0, zero, 1\n.word 0xdeadbeef\n", "p.s")
    listing = a.listing()
    assert "00000000  00010110" in listing and "p.s:1" in listing and "addi a0, zero, 1" in listing
    assert "deadbeef" in listing and "00000000  start" in listing


def test_image_keeps_the_symbol_table_and_checks_itself():
    img = assemble("a: .word 1\nb: .word a")
    blob = img.to_bytes()
    back = Image.from_bytes(blob)
    assert back.symbols == {"a": 0, "b": 4} and back.segments == img.segments
    with pytest.raises(ImageError, match="checksum"):
        Image.from_bytes(blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:])
    with pytest.raises(ImageError, match="bad magic"):
        Image.from_bytes(b"hello")
    with pytest.raises(ImageError, match="version"):
        Image.from_bytes(blob[:6] + b"\x09\x00" + blob[8:])


@pytest.mark.parametrize("source, where, message", [
    ("  add a0, a1", "t.s:1:3", "add takes 3 operands"),
    ("  frob a0", "t.s:1:3", "unknown instruction 'frob'"),
    ("\n  addi a0, a0, 70000", "t.s:2:16", "immediate 70000 out of range"),
    ("  addi a0, q9, 1", "t.s:1:12", "expected a register, got 'q9'"),
    ("  jmp nowhere", "t.s:1:7", "undefined symbol 'nowhere'"),
    ("  .word 1 +", "t.s:1:12", "expression expected"),
    ("x: nop\nx: nop", "t.s:2:1", "'x' is already defined"),
    ("  .org later\nlater:", "t.s:1:8", "'later' must be defined before it is used in .org"),
    ("  ldw a0, sp", "t.s:1:11", "expected a memory operand"),
    ("  .byte 256", "t.s:1:9", "does not fit in 1 byte"),
    ("  .macro m\n  nop", "t.s:1:3", "macro 'm' has no .endm"),
    ('  .include "missing.s"', "t.s:1", "cannot read"),
    ("  .byte 1\n  halt", "t.s:2:3", "unaligned address"),
    ("  mfsr a0, cr3", "t.s:1:12", "expected a system register"),
    ("  .word 1/0", "t.s:1:10", "division by zero"),
    ("  .equ A, A + 1\n  .word A", "t.s:1", "defined in terms of itself"),
])
def test_errors_name_file_line_column(source, where, message):
    with pytest.raises(AsmError) as info:
        assemble(source, "t.s")
    text = str(info.value)
    assert text.startswith(where) and message in text and "\n" not in text


def test_error_inside_a_macro_names_the_call_site():
    with pytest.raises(AsmError) as info:
        assemble(".macro bad\n  addi a0, a0, 99999\n.endm\n  bad\n", "m.s")
    assert str(info.value).startswith("m.s:2:") and "called at m.s:4" in str(info.value)


def test_cli_asm_writes_image_and_listing(cli, tmp_path):
    src = tmp_path / "p.s"
    src.write_text("_start: halt\n")
    r = cli("asm", str(src), "-o", str(tmp_path / "p.img"), "-l")
    assert r.returncode == 0 and b"halt" in r.stdout
    assert Image.read(str(tmp_path / "p.img")).entry == 0


def test_cli_asm_error_is_one_line(cli, tmp_path):
    src = tmp_path / "bad.s"
    src.write_text("nop\n  addi a0, a0\n")
    r = cli("asm", str(src))
    assert r.returncode != 0 and r.stdout == b""
    assert r.stderr.decode().count("\n") == 1
    assert r.stderr.decode().startswith(f"emu: {src}:2:3: addi takes 3 operands")


# -- malformed sources: one located error each, never a Python exception ------------------

@pytest.mark.parametrize("source, where, message", [
    ("  li a0, 010", "t.s:1:10", "leading zero"),
    ("  li a0, 08", "t.s:1:10", "leading zero"),
    ("  .word " + "9" * 5000, "t.s:1:9", "too large"),
    ('  .asciz "unterminated', "t.s:1:10", "unterminated string"),
    ('  .ascii "a\\"', "t.s:1:10", "unterminated string"),
    ("  li a0, '", "t.s:1:10", "unterminated character"),
    ('  .ascii "a" "b"', "t.s:1:10", "one quoted string"),
    ('  .ascii "\u20ac"', "t.s:1:10", "not a byte"),
    ("  .word (1", "t.s:1:9", "unbalanced"),
    ("  .word 1)", "t.s:1:10", "unbalanced"),
    ("  ldw a0, [a0", "t.s:1:11", "unbalanced"),
    ("  nop\n  .align 0x80000000", "t.s:2:3", "image larger than"),
    ("  .space 0x3000000\n  .space 0x3000000", "t.s:2:3", "image larger than"),
    ("  .org 0xF0000000\n  .word 1", "t.s:2:3", "above RAM"),
    ("  .word " + "-" * 3000 + "1", "t.s:1:", "nested too deeply"),
    ("  .word " + "(" * 3000 + "1" + ")" * 3000, "t.s:1:", "nested too deeply"),
    ("  .word " + "hi(" * 3000 + "1" + ")" * 3000, "t.s:1:", "nested too deeply"),
    (".equ A, 1 << 40\n.equ B, A*A*A*A*A*A*A*A*A*A*A*A*A*A*A*A*A*A*A*A\n  .word B", "t.s:2:", "too large"),
])
def test_malformed_sources_name_file_line_column(source, where, message):
    with pytest.raises(AsmError) as info:
        assemble(source, "t.s")
    text = str(info.value)
    assert text.startswith(where) and message in text and "\n" not in text, text


def test_long_expressions_and_chains_of_constants_assemble():
    chain = "\n".join(f".equ A{i}, A{i - 1} + 1" if i else ".equ A0, 1" for i in range(3000))
    assert words(assemble(chain + "\n.word A2999, " + "+".join(["1"] * 3000))) == [3000, 3000]


def test_constants_defined_in_terms_of_later_ones_are_bounded():
    chain = "\n".join(f".equ A{i}, A{i + 1} + 1" for i in range(3000))
    with pytest.raises(AsmError, match="constants nested too deeply"):
        assemble(chain + "\n.equ A3000, 0\n.word A0", "t.s")


def test_macro_expansion_is_bounded(monkeypatch):
    # Each macro calls the one before it twice: 2**30 lines if expanded.
    monkeypatch.setattr(asm, "MAX_LINES", 1000)       # the same check, sooner
    source = ".macro m0\n nop\n.endm\n" + "".join(
        f".macro m{i}\n m{i - 1}\n m{i - 1}\n.endm\n" for i in range(1, 31)) + " m30\n"
    with pytest.raises(AsmError, match="too many lines"):
        assemble(source, "t.s")


def test_include_refuses_what_is_not_a_regular_file(tmp_path):
    main = tmp_path / "main.s"
    main.write_text('  .include "/dev/zero"\n')
    with pytest.raises(AsmError, match=r"main.s:1:12: cannot read /dev/zero: not a regular file"):
        Assembler().assemble_file(str(main))


def test_non_utf8_source_names_the_line_and_column(tmp_path):
    src = tmp_path / "bad.s"
    src.write_bytes(b"nop\n  .ascii \"\xff\"\n")
    with pytest.raises(AsmError) as info:
        Assembler().assemble_file(str(src))
    assert str(info.value).startswith(f"{src}:2:11: not UTF-8 text")


@pytest.mark.parametrize("source", ["  li a0, 010\n", "  .asciz \"unterminated\n", "  nop\n  .align 0x80000000\n"])
@pytest.mark.parametrize("command", ["asm", "run"])
def test_cli_malformed_source_is_one_line(cli, tmp_path, source, command):
    src = tmp_path / "bad.s"
    src.write_text(source)
    r = cli(command, str(src))
    err = r.stderr.decode()
    assert r.returncode == 125 and err.count("\n") == 1 and err.startswith(f"emu: {src}:"), err
    assert not (tmp_path / "bad.img").exists()


# Pieces that real sources are made of, and pieces that break them.
_PIECES = ["nop", "halt", "add a0, a1, a2", "addi", "ldw a0, [sp + 4]", "li a0, ", "la t0, x",
           "beq a0, zero, x", ".word", ".byte", ".ascii", ".asciz", ".space", ".align", ".org",
           ".equ", ".macro m a", ".endm", "m", "\\a", "\\@", ".include", "x:", "y:", "hi(", "lo(",
           "(", ")", "[", "]", '"', "'", ",", ";", "+", "-", "*", "/", "%", "<<", ">>", "~", "&",
           "0", "010", "0x", "0xFFFFFFFF", "0b1", "1_0", "'a'", "'\\n'", "\\x41", "x", ".", " ",
           "\n", "\t", "\\", "\u20ac", "\0", "99999999999", "1 << 63", "0x80000000"]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_random_sources_assemble_or_fail_with_a_located_error(pieces):
    try:
        assemble(" ".join(pieces), "f.s")
    except AsmError as e:
        text = str(e)
        assert text.startswith("f.s:") and "\n" not in text
