"""The block translator must agree with the interpreter exactly: same output,
same registers, same memory, same cycle and step counts, at any stop point."""

import os
import random

import pytest

from emu import isa
from emu.asm import assemble, assemble_file
from emu.devices.console import Console
from emu.machine import Machine

GUESTS = ["hello.s", "fibonacci.s", "sieve.s", "echo.s", "timer.s"]


def both(image, steps, input_bytes=b"", memory=1 << 20, tvec=None):
    results = []
    for engine in ("interpret", "translate"):
        machine = Machine(memory, console=Console(input_bytes=input_bytes), engine=engine)
        machine.load(image)
        if tvec is not None:
            machine.cpu.sregs[isa.SREG_TVEC] = tvec
        machine.run(steps)
        results.append(machine)
    return results


@pytest.mark.parametrize("name", GUESTS)
def test_guest_programs_identical(guest_dir, name, state):
    image = assemble_file(os.path.join(guest_dir, name))
    interpreted, translated = both(image, 3_000_000, input_bytes=b"some input\n")
    assert interpreted.stopped and translated.stopped
    assert state(interpreted) == state(translated)
    assert translated.engine.translated > 0


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


def test_random_programs_agree(state):
    rng = random.Random(1234)
    valid = [i for i in isa.INSTRUCTIONS if i.mnemonic not in ("halt",)]
    for trial in range(40):
        code = []
        for _ in range(64):
            insn = rng.choice(valid)
            operands = {}
            for name, kind, _field in isa.FORMATS[insn.format]:
                operands[name] = {"reg": lambda: rng.randrange(16), "sreg": lambda: rng.randrange(7),
                                  "simm": lambda: rng.randrange(-64, 64), "uimm": lambda: rng.randrange(1 << 16),
                                  "shamt": lambda: rng.randrange(32), "mem": lambda: (rng.randrange(16), rng.randrange(-64, 64) * 4),
                                  "target": lambda: rng.randrange(-8, 8) * 4}[kind]()
            code.append(isa.encode(insn.mnemonic, **operands))
        from emu.image import Image
        image = Image([(0, b"".join(w.to_bytes(4, "little") for w in code))], 0)
        interpreted, translated = both(image, 3000, memory=1 << 12, tvec=0x40)
        assert state(interpreted) == state(translated), f"trial {trial}"
