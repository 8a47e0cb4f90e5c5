"""docs/asm.md cannot drift from the assembler: every example in it is
assembled and its listing compared, and every directive is described.
`python tests/emu/test_asm_doc.py` rewrites the listings after a change."""

import os
import re
import sys

import pytest

from emu.asm import DIRECTIVES, AsmError, Assembler, assemble

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "asm.md")
EXAMPLE = re.compile(r"```asm\n(.*?)```\n(?:\nListing:\n\n```\n(.*?)```\n)?", re.S)


def listing(source):
    assembler = Assembler()
    assembler.assemble_text(source, "example.s")
    return assembler.listing()


def render(doc):
    """The doc with the listing of each example written after it."""
    return EXAMPLE.sub(lambda m: f"```asm\n{m.group(1)}```\n\nListing:\n\n```\n{listing(m.group(1))}```\n", doc)


def read_doc():
    with open(DOC) as f:
        return f.read()


def test_every_example_assembles_to_the_listing_shown():
    doc = read_doc()
    examples = EXAMPLE.findall(doc)
    assert len(examples) >= 5
    for source, shown in examples:
        assert shown == listing(source), source


@pytest.mark.parametrize("directive", DIRECTIVES)
def test_every_directive_is_described_and_known(directive):
    table = [line for line in read_doc().splitlines() if line.startswith("| `")]
    assert any(re.search(rf"`{re.escape(directive)}\b", row) for row in table)
    try:
        assemble(f"  {directive}", "t.s")
    except AsmError as e:
        assert "unknown directive" not in str(e)


def test_a_directive_not_in_the_list_is_unknown():
    with pytest.raises(AsmError, match="unknown directive .frob"):
        assemble("  .frob 1", "t.s")


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    text = render(read_doc())
    with open(DOC, "w") as f:
        f.write(text)
