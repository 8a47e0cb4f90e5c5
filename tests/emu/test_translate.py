"""The block translator must agree with the interpreter exactly: same output,
same registers, same memory, same cycle and step counts, at any stop point."""

import os

import pytest

from emu import isa
from emu.asm import assemble, assemble_file
from emu.devices.console import Console
from emu.machine import Machine
from emu.memory import MIGRATION, SNAPSHOT, WRITTEN

GUESTS = ["hello.s", "fibonacci.s", "sieve.s", "echo.s", "timer.s"]


def both(image, steps, input_bytes=b"", memory=1 << 20, tvec=None, paging=False):
    results = []
    for engine in ("interpret", "translate"):
        machine = Machine(memory, console=Console(input_bytes=input_bytes), engine=engine)
        machine.load(image)
        if tvec is not None:
            machine.cpu.sregs[isa.SREG_TVEC] = tvec
        if paging:
            identity_paging(machine)
        machine.run(steps)
        results.append(machine)
    return results


@pytest.mark.parametrize("name", GUESTS)
def test_guest_programs_identical(guest_dir, name, state):
    image = assemble_file(os.path.join(guest_dir, name))
    interpreted, translated = both(image, 3_000_000, input_bytes=b"some input\n" * 4)
    assert interpreted.stopped and translated.stopped
    assert state(interpreted) == state(translated)
    # hello prints one line: too little code runs often enough to compile.
    assert translated.engine.translated > 0 or name == "hello.s"


@pytest.mark.parametrize("steps", [1, 7, 100, 1234, 15_001])
def test_stopping_at_any_step_gives_the_same_state(guest_dir, steps, state):
    image = assemble_file(os.path.join(guest_dir, "timer.s"))
    interpreted, translated = both(image, steps)
    assert interpreted.cpu.steps == translated.cpu.steps == steps
    assert state(interpreted) == state(translated)


def test_self_modifying_code_is_retranslated(state):
    # The loop rewrites its own addi's immediate each time round.
    image = assemble("""
        li   s0, 0
        li   s1, 5
        la   t0, patch
    loop:
    patch:
        addi s0, s0, 1
        ldw  t1, [t0]
        li   t2, 0x10000
        add  t1, t1, t2        ; immediate + 1
        stw  t1, [t0]
        addi s1, s1, -1
        bnez s1, loop
        halt
    """)
    interpreted, translated = both(image, 10_000)
    assert interpreted.cpu.regs[10] == 1 + 2 + 3 + 4 + 5
    assert state(interpreted) == state(translated)


def test_faults_inside_blocks_are_taken_precisely(state):
    image = assemble("""
        la t0, handler
        mtsr tvec, t0
        li s0, 0
    loop:
        addi s0, s0, 4
        ldw a0, [s0]             ; eventually runs off the end of RAM
        jmp loop
    handler:
        mfsr s1, epc
        mfsr s2, badaddr
        halt
    """)
    interpreted, translated = both(image, 100_000, memory=1 << 14)
    assert interpreted.cpu.regs[12] == 1 << 14
    assert state(interpreted) == state(translated)


# A string reversed in place, again and again: the data right after the code,
# as in every example program, or on a line of its own.
REVERSE = """
    li   s2, 20
again:
    la   t0, text
    la   t1, text_end - 1
swap:
    ldbu t2, [t0]
    ldbu t3, [t1]
    stb  t3, [t0]
    stb  t2, [t1]
    addi t0, t0, 1
    addi t1, t1, -1
    bltu t0, t1, swap
    addi s2, s2, -1
    bnez s2, again
    halt
{align}
text:
    .ascii "The quick brown fox jumps over the lazy dog"
text_end:
"""


def test_data_next_to_code_costs_no_retranslation(state):
    counts = []
    for align in ("", ".align 256"):
        interpreted, translated = both(assemble(REVERSE.format(align=align)), 100_000)
        assert translated.stopped
        assert state(interpreted) == state(translated)
        counts.append(translated.engine.translated)
    adjacent, apart = counts
    assert adjacent == apart


# A loop that the first loop's block only runs into on its way out: the
# second loop's head is inside that block's first piece, never the start of a
# block, and the first loop never runs again to bring its block back.
LOOP_AFTER_LOOP = """
_start:
    li   t0, 0x4000
    li   t1, 0x8000
fill:
    stw  t1, [t0]
    addi t0, t0, 4
    bne  t0, t1, fill
again:
    li   t0, 0x4000
second:
    ldw  t3, [t0]
    add  s0, s0, t3
    addi t0, t0, 64
    bltu t0, t1, second
    b    again
"""


def test_a_loop_reached_only_out_of_another_block_is_translated(state):
    program = assemble(LOOP_AFTER_LOOP)
    interpreted, translated = both(program, 200_000)
    assert state(interpreted) == state(translated)
    second = program.symbols["second"]
    assert translated.engine.blocks.get(second) or translated.engine.blocks.get(program.symbols["again"]), \
        "the second loop is interpreted for ever"


def identity_paging(machine, directory=0x8000):
    """Paging on, the first 32 KiB mapped to themselves for the supervisor."""
    memory = machine.memory
    memory.store_word(directory, (directory + 0x1000) | isa.PTE_P)
    for page in range(8):
        memory.store_word(directory + 0x1000 + 4 * page,
                          page << 12 | isa.PTE_P | isa.PTE_R | isa.PTE_W | isa.PTE_X)
    machine.cpu.sregs[isa.SREG_PTBR] = directory | isa.PTBR_ENABLE
    machine.cpu.mmu.set_ptbr(directory | isa.PTBR_ENABLE)


# Each round adds 1 to the immediate of `patch` just before it runs: in the
# block doing the store, in the block after it, or a page away.
PATCHED = {
    "same block": """
    loop:
        ldw  t1, [t0]
        add  t1, t1, t2
        stw  t1, [t0]
    patch:
        addi s0, s0, 1
        addi s1, s1, -1
        bnez s1, loop
        halt
    """,
    "next block": """
    loop:
        ldw  t1, [t0]
        add  t1, t1, t2
        stw  t1, [t0]
        jmp  next
    next:
    patch:
        addi s0, s0, 1
        addi s1, s1, -1
        bnez s1, loop
        halt
    """,
    "a page away": """
    loop:
        ldw  t1, [t0]
        add  t1, t1, t2
        stw  t1, [t0]
        call far
        addi s1, s1, -1
        bnez s1, loop
        halt
        .org 0x1000
    far:
    patch:
        addi s0, s0, 1
        ret
    """,
}


@pytest.mark.parametrize("paging", [False, True], ids=["physical", "paged"])
@pytest.mark.parametrize("where", PATCHED)
def test_code_patched_anywhere_runs_as_patched(where, paging, state):
    image = assemble("""
        li   s0, 0
        li   s1, 40                ; rounds: enough for the translator to compile them
        la   t0, patch
        li   t2, 0x10000          ; 1 in the immediate field
    """ + PATCHED[where])
    interpreted, translated = both(image, 10_000, memory=1 << 16, paging=paging)
    assert interpreted.cpu.regs[isa.REGISTERS["s0"]] == sum(range(2, 42))
    assert state(interpreted) == state(translated)
    assert translated.engine.translated > 0


# Operands at the edges of Python's quick small ints (2**30) and of 32-bit
# signed and unsigned arithmetic: the translator writes wrap-around and sign
# extension its own way (quicker in Python than the ISA table's expressions).
EDGES = [0, 1, 2, 31, 32, 0x7FFF, 0x8000, 0xFFFF, 0x3FFFFFFF, 0x40000000,
         0x7FFFFFFF, 0x80000000, 0x80000001, 0xC0000000, 0xFFFFFFFE, 0xFFFFFFFF]
IMMEDIATES = {"I": [-32768, -2, -1, 0, 1, 31, 32767], "IU": [0, 1, 0x8000, 0xFFFF],
              "SH": [0, 1, 2, 30, 31]}


def edge_program():
    """Every ALU operation and conditional branch on every pair of EDGES
    (loaded from memory, so that no result is known when the code is
    compiled), and byte loads of them, each result stored in turn after
    `results`."""
    body = []
    for load in ("ldb a2, [t3]", "ldb a2, [t3 + 3]", "ldbu a2, [t3 + 3]", "ldw a2, [t3 - 4]"):
        body += [load, "stw a2, [s0]", "addi s0, s0, 4"]
    for insn in isa.INSTRUCTIONS:
        if insn.kind == "alu" and insn.format == "R":
            body.append(f"{insn.mnemonic} a2, a0, a1")
        elif insn.kind == "alu" and insn.format in IMMEDIATES:
            body += [f"{insn.mnemonic} a2, a0, {imm}" for imm in IMMEDIATES[insn.format]]
        elif insn.kind == "branch":
            body += ["li a2, 1", f"{insn.mnemonic} a0, a1, taken_{insn.mnemonic}", "li a2, 2",
                     f"taken_{insn.mnemonic}:"]
        else:
            continue
        body += ["stw a2, [s0]", "addi s0, s0, 4"]
    return "\n".join(["la s0, results", "la s1, edges", f"li t0, {4 * len(EDGES)}", "li t1, 0",
                      "first:", "li t2, 0",
                      "second:", "add t3, s1, t1", "ldw a0, [t3]", "add t3, s1, t2", "ldw a1, [t3]",
                      *body,
                      "addi t2, t2, 4", "bltu t2, t0, second",
                      "addi t1, t1, 4", "bltu t1, t0, first",
                      "halt",
                      "edges:", *(f".word {value:#x}" for value in EDGES),
                      "results:"])


def test_arithmetic_at_the_edges_as_interpreted(state):
    interpreted, translated = both(assemble(edge_program()), 1_000_000)
    assert interpreted.stopped and translated.stopped
    assert state(interpreted) == state(translated)
    assert translated.engine.translated > 0


@pytest.mark.parametrize("reader", [SNAPSHOT, MIGRATION], ids=["snapshot", "migration"])
def test_translated_stores_mark_their_pages_dirty_after_every_copy(reader):
    # A translated store marks its page dirty once per copy (memory.py:
    # plain lines); the next snapshot or migration round needs it marked
    # again, and the other reader's log is left as it is.
    image = assemble("""
        la   t0, buffer
    loop:
        addi t1, t1, 1
        stw  t1, [t0]
        jmp  loop
        .align 4096
    buffer:
        .word 0
    """)
    dirty = []
    for engine in ("interpret", "translate"):
        machine = Machine(1 << 16, console=Console(), engine=engine)
        machine.load(image)
        epochs = []
        for _ in range(3):
            memory = machine.memory
            memory.mark_copied(memory.dirty_pages(reader), reader)
            machine.run(1000)
            epochs.append(memory.dirty_pages(reader))
        assert memory.dirty_pages(WRITTEN - reader) == [0, 1]        # since the load
        dirty.append(epochs)
    assert dirty[0] == dirty[1] == [[1], [1], [1]]


@pytest.mark.parametrize("paging", [False, True], ids=["physical", "paged"])
def test_addresses_that_wrap_round_reach_the_same_memory(paging, state):
    # base + offset past 2**32 wraps to a small address, in RAM: each
    # access goes back to the interpreter, with the register wrapped.
    image = assemble("""
        li   s0, 0xFFFFF000
        la   s1, buffer + 0x1000
        li   s2, 40                ; rounds: enough for the translator to compile them
    loop:
        add  t2, s0, s1            ; = buffer
        ldw  t3, [t2]
        addi t3, t3, 3
        add  t2, s0, s1
        stw  t3, [t2]
        addi s2, s2, -1
        bnez s2, loop
        halt
    buffer:
        .word 0
    """)
    interpreted, translated = both(image, 10_000, memory=1 << 16, paging=paging)
    assert interpreted.cpu.regs[isa.REGISTERS["t3"]] == 3 * 40
    assert state(interpreted) == state(translated)
    assert translated.engine.translated > 0
