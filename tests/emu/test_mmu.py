"""The paging MMU: translation, permissions, page faults, the TLB, and the
translator agreeing with the interpreter while paging is on."""

import random

import pytest

from emu import isa, snapshot
from emu.asm import assemble
from emu.devices.console import Console
from emu.image import Image
from emu.isa import PTE_P, PTE_R, PTE_W, PTE_X, PTE_U
from emu.machine import Machine

RWX = PTE_P | PTE_R | PTE_W | PTE_X
DIRECTORY = 0x8000          # physical page directory for these tests
ENGINES = ["interpret", "translate"]
# The supervisor sees all 64 KiB of RAM at the same addresses (page tables included).
IDENTITY = [(page << 12, page << 12, RWX) for page in range(16)]


def map_pages(machine, maps, directory=DIRECTORY):
    """Write page tables: maps is [(virtual, physical, flags)], one page each."""
    memory = machine.memory
    next_table = [directory + 0x1000]
    for vaddr, paddr, flags in maps:
        pde_at = directory + (vaddr >> 22) * 4
        pde = memory.load_word(pde_at)
        if not pde & PTE_P:
            pde = next_table[0] | PTE_P
            next_table[0] += 0x1000
            memory.store_word(pde_at, pde)
        memory.store_word((pde & ~0xFFF) + ((vaddr >> 12) & 0x3FF) * 4, paddr | flags)


# The kernel of these tests: code and data identity-mapped for the supervisor,
# a trap handler that records cause, badaddr and epc and stops.
KERNEL = """
_start:
    la   t0, handler
    mtsr tvec, t0
    li   t0, {directory} | 1
    mtsr ptbr, t0
    {body}
    halt
handler:
    mfsr s0, cause
    mfsr s1, badaddr
    mfsr s2, epc
    halt
"""


def kernel(body, maps=(), engine="interpret", memory=1 << 16, steps=10_000):
    machine = Machine(memory, console=Console(), engine=engine)
    machine.load(assemble(KERNEL.format(directory=DIRECTORY, body=body)))
    map_pages(machine, IDENTITY + list(maps))
    machine.run(steps)
    return machine


@pytest.mark.parametrize("engine", ENGINES)
def test_translation_sends_a_virtual_page_to_its_physical_page(engine):
    m = kernel("""
        li   t1, 0x00400000
        li   t2, 1234
        stw  t2, [t1 + 8]
        ldw  a0, [t1 + 8]
        li   t1, 0x00401000       ; a second virtual page on the same physical one
        ldw  a1, [t1 + 8]
    """, [(0x00400000, 0x3000, RWX), (0x00401000, 0x3000, PTE_P | PTE_R)], engine)
    assert m.cpu.regs[1] == m.cpu.regs[2] == 1234
    assert m.memory.load_word(0x3008) == 1234
    assert m.cpu.regs[10] == 0                        # no trap


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("body, cause, bad", [
    ("li t1, 0x00500000\n ldw a0, [t1 + 4]", isa.TRAP_LOAD_FAULT, 0x00500004),     # not mapped
    ("li t1, 0x00400000\n stw a0, [t1]", isa.TRAP_STORE_FAULT, 0x00400000),        # read-only
    ("li t1, 0x00400000\n jr t1", isa.TRAP_FETCH_FAULT, 0x00400000),               # not executable
    ("li t1, 0x00402000\n ldw a0, [t1]", isa.TRAP_LOAD_FAULT, 0x00402000),         # frame past RAM
    ("li t1, 0x00400002\n ldw a0, [t1]", isa.TRAP_MISALIGNED, 0x00400002),         # alignment first
])
def test_page_faults_name_the_access_and_the_virtual_address(engine, body, cause, bad):
    m = kernel(body, [(0x00400000, 0x3000, PTE_P | PTE_R), (0x00402000, 0x40000, RWX)], engine)
    assert (m.cpu.regs[10], m.cpu.regs[11]) == (cause, bad)


def run_user(user_source, engine, kernel_source=""):
    """Run `user_source` (at virtual 0x400000, on a U page) in user mode,
    after `kernel_source` in supervisor mode."""
    m = Machine(1 << 16, console=Console(), engine=engine)
    m.load(assemble(KERNEL.format(directory=DIRECTORY, body=kernel_source + """
        li   t0, 0x00400000
        mtsr epc, t0
        li   t0, 0b1000           ; PU: eret into user mode
        mtsr status, t0
        eret
    """)))
    user = assemble(".org 0x00400000\n" + user_source)
    m.memory.write_bytes(0x3000, user.segments[0][1])
    map_pages(m, IDENTITY + [(0x00400000, 0x3000, RWX | PTE_U)])
    m.run(1000)
    return m


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("access, cause", [("ldw a1, [t0]", isa.TRAP_LOAD_FAULT),
                                           ("stw t0, [t0]", isa.TRAP_STORE_FAULT)])
def test_what_the_supervisor_cached_stays_out_of_user_reach(engine, access, cause):
    # The kernel has just read and written page 2, so the TLB holds it (for
    # the supervisor): user mode must still fault there, TLB hit or not.
    m = run_user(f"li t0, 0x2000\n {access}", engine,
                 kernel_source="li t1, 0x2000\n stw t1, [t1]\n ldw t1, [t1]\n")
    assert (m.cpu.regs[10], m.cpu.regs[11]) == (cause, 0x2000)


@pytest.mark.parametrize("engine", ENGINES)
def test_supervisor_pages_are_invisible_to_user_mode(engine):
    # The kernel's page at 0 is present, but not U: to user mode it is a
    # load fault, exactly as if nothing were mapped there.
    m = run_user("ldw a1, [zero + 0x40]", engine)
    assert (m.cpu.regs[10], m.cpu.regs[11], m.cpu.regs[12]) == (isa.TRAP_LOAD_FAULT, 0x40, 0x00400000)
    assert m.cpu.sregs[isa.SREG_STATUS] & isa.STATUS_PU
    m = run_user("li t0, 0x00400000\n ldw a2, [t0]\n syscall", engine)
    assert m.cpu.regs[10] == isa.TRAP_SYSCALL and m.cpu.regs[3] == m.memory.load_word(0x3000)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_tlb_keeps_old_translations_until_flushed(engine):
    # Remap virtual 0x400000 from physical 0x3000 to 0x4000 by editing its PTE.
    pte_at = DIRECTORY + 0x2000     # the second table map_pages makes: pde 1
    machine = Machine(1 << 16, console=Console(), engine=engine)
    machine.load(assemble(KERNEL.format(directory=DIRECTORY, body=f"""
        li   t1, 0x00400000
        ldw  a0, [t1]
        li   t2, {pte_at}
        li   t3, 0x4000 | {RWX}
        stw  t3, [t2]
        ldw  a1, [t1]
        tlbflush
        ldw  a2, [t1]
        li   t3, 0x3000 | {RWX}
        stw  t3, [t2]
        li   t0, {DIRECTORY} | 1
        mtsr ptbr, t0
        ldw  a3, [t1]
    """)))
    map_pages(machine, IDENTITY + [(0x00400000, 0x3000, RWX)])
    machine.memory.store_word(0x3000, 111)
    machine.memory.store_word(0x4000, 222)
    machine.run(1000)
    assert machine.cpu.regs[1:5] == [111, 111, 222, 111]
    assert machine.cpu.regs[10] == 0


def test_the_device_region_is_never_translated():
    m = kernel("""
        li   t0, 0xF0000000
        li   t1, 'k'
        stw  t1, [t0]
    """)
    assert bytes(m.console.output) == b"k" and m.cpu.regs[10] == 0


# -- the translator agrees with the interpreter --------------------------------------

LOOP = """
    li   s0, 0x00400000           ; sum the words of two virtual pages, then
    li   s1, 2048                 ; write the running sums back, page by page
    li   a0, 0
sum:
    ldw  t0, [s0]
    add  a0, a0, t0
    stw  a0, [s0]
    ldb  t1, [s0 + 1]
    add  a1, a1, t1
    addi s0, s0, 4
    addi s1, s1, -1
    bnez s1, sum
    li   s0, 0x00402000           ; read-only: the first store here faults
    stw  a0, [s0]
"""


def test_translated_paging_matches_the_interpreter_at_any_step(state):
    maps = [(0x00400000, 0x5000, RWX), (0x00401000, 0x3000, RWX), (0x00402000, 0x4000, PTE_P | PTE_R)]
    results = {}
    for engine in ENGINES:
        machine = Machine(1 << 16, console=Console(), engine=engine)
        machine.load(assemble(KERNEL.format(directory=DIRECTORY, body=LOOP)))
        map_pages(machine, IDENTITY + maps)
        for page in (0x3000, 0x5000):
            for i in range(1024):
                machine.memory.store_word(page + 4 * i, (i * 2654435761) & isa.WORD)
        stops = []
        for steps in (1, 5, 100, 3333, 20_000):
            machine.run(steps)
            stops.append(state(machine))
        results[engine] = (stops, machine)
    assert results["interpret"][0] == results["translate"][0]
    translated = results["translate"][1]
    assert translated.cpu.regs[10] == isa.TRAP_STORE_FAULT
    assert any(key >> 64 for key in translated.engine.blocks), "no block ran with paging on"


def test_snapshot_carries_the_tlb(tmp_path, state):
    # A stale TLB entry (the page table changed, no flush) must survive restore.
    pte_at = DIRECTORY + 0x2000     # the second table map_pages makes: pde 1
    source = KERNEL.format(directory=DIRECTORY, body=f"""
        li   t1, 0x00400000
        ldw  a0, [t1]
        li   t2, {pte_at}
        li   t3, 0x4000 | {RWX}
        stw  t3, [t2]
        nop
        ldw  a1, [t1]
    """)
    machine = Machine(1 << 16, console=Console())
    machine.load(assemble(source))
    map_pages(machine, IDENTITY + [(0x00400000, 0x3000, RWX)])
    machine.memory.store_word(0x3000, 111)
    machine.memory.store_word(0x4000, 222)
    machine.run(12)                    # up to the nop: the TLB is stale now
    snapshot.save(machine, tmp_path / "m.snap")
    restored = snapshot.restore(tmp_path / "m.snap", console=Console())
    machine.run(100)
    restored.run(100)
    assert restored.cpu.regs[2] == machine.cpu.regs[2] == 111
    assert state(restored) == state(machine)


@pytest.mark.parametrize("seed", range(6))
def test_random_programs_with_paging_agree_on_both_engines(seed, state):
    """Random valid instructions in user and supervisor mode, run from a
    virtual page, with loads and stores aimed at mapped, read-only,
    supervisor-only and unmapped pages."""
    rng = random.Random(seed)
    words = []
    for _ in range(200):
        insn = rng.choice([i for i in isa.INSTRUCTIONS if i.mnemonic not in ("halt",)])
        ops = {}
        for name, kind, _ in isa.FORMATS[insn.format]:
            ops[name] = {"reg": lambda: rng.randrange(1, 8), "sreg": lambda: rng.choice([4, 5]),
                         "simm": lambda: rng.randrange(-64, 64) * 4, "uimm": lambda: rng.randrange(0x10000),
                         "shamt": lambda: rng.randrange(32), "mem": lambda: (rng.randrange(8, 13), rng.randrange(-8, 8) * 4),
                         "target": lambda: rng.randrange(-16, 16) * 4}[kind]()
        words.append(isa.encode(insn.mnemonic, **ops))
    code = b"".join(w.to_bytes(4, "little") for w in words)
    maps = [(0x00400000, 0x3000, RWX | PTE_U), (0x00401000, 0x4000, PTE_P | PTE_R | PTE_U),
            (0x00402000, 0x5000, RWX), (0x00403000, 0x6000, PTE_P | PTE_W | PTE_U)]
    tvec = 0x00400000 + 4 * rng.randrange(64)
    finals = []
    for engine in ENGINES:
        machine = Machine(1 << 16, console=Console(), engine=engine)
        machine.load(Image([(0x3000, code)], 0x00400000))
        map_pages(machine, IDENTITY + maps)
        cpu = machine.cpu
        for r, base in zip(range(8, 13), (0x00400000, 0x00401000, 0x00402000, 0x00403000, 0x00404000)):
            cpu.regs[r] = base + 64
        cpu.sregs[isa.SREG_TVEC] = tvec
        cpu.sregs[isa.SREG_STATUS] = isa.STATUS_U if seed % 2 else 0
        cpu.sregs[isa.SREG_PTBR] = DIRECTORY | 1
        cpu.mmu.set_ptbr(DIRECTORY | 1)
        machine.run(5000)
        finals.append(state(machine))
    assert finals[0] == finals[1]


# -- a page directory outside RAM ------------------------------------------------------

OUTSIDE = """
_start:
    la   t0, 0x00200001           ; paging on, with the directory past 1 MiB of RAM
    mtsr ptbr, t0
    nop
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_page_directory_outside_ram_is_a_page_fault(engine):
    # No handler: the fetch of the nop stops the machine with cause 7, as the
    # ISA says of "a page table or page outside RAM".
    machine = Machine(1 << 20, console=Console(), engine=engine)
    machine.load(assemble(OUTSIDE))
    assert machine.run(100)
    assert machine.exit_status == 128 + isa.TRAP_FETCH_FAULT
    assert "page fault on instruction fetch at pc 0x0000000c" in machine.stop_reason
    # With a handler the guest sees the fault -- and, its handler being
    # unreachable through the same directory, faults there again each step.
    machine = Machine(1 << 16, console=Console(), engine=engine)
    machine.load(assemble(KERNEL.format(directory=0x00200000, body="nop")))
    assert not machine.run(1000) and machine.cpu.steps == 1000
    handler = machine.symbols["handler"]
    assert machine.cpu.sregs[isa.SREG_CAUSE] == isa.TRAP_FETCH_FAULT
    assert machine.cpu.sregs[isa.SREG_BADADDR] == machine.cpu.sregs[isa.SREG_EPC] == handler


def test_the_debugger_steps_into_a_page_directory_outside_ram():
    import io

    from emu.debugger import Debugger
    machine = Machine(1 << 20, console=Console(), engine="interpret")
    machine.load(assemble(OUTSIDE))
    out = io.StringIO()
    Debugger(machine, stdin=io.StringIO("step 4\nmem pc 4\npt pc\nquit\n"), stdout=out).cmdloop()
    text = out.getvalue()
    assert "machine stopped: unhandled trap: page fault on instruction fetch" in text
    assert "directory 0x00200000 is outside RAM\n0x0000000c -> fault" in text


@pytest.mark.parametrize("entry", [(0x400, 0x00200000 | RWX),     # a frame past RAM
                                   (0x400, 0x3000 | PTE_R),       # not present
                                   (1 << 20, 0x3000 | RWX),       # no such virtual page
                                   (isa.MMIO_BASE >> 12, 0x3000 | RWX),  # devices are never paged
                                   (0x400, "0x3000"), (0x400,)])
def test_a_restored_tlb_holds_only_what_a_walk_could_have_cached(entry):
    """A TLB entry is used without a walk: one from a snapshot that no walk
    could have produced would send the CPU outside RAM.  Restore refuses it
    (snapshot.restore turns that into its one-line error)."""
    machine = kernel("nop")
    state = machine.save_state()
    state["cpu"]["tlb"] = [entry]
    with pytest.raises(ValueError, match="TLB entry"):
        Machine(1 << 16, console=Console()).restore_state(state)
