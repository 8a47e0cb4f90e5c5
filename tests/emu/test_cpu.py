"""The CPU: what each kind of instruction does, and every kind of trap.

Every test runs on the plain interpreter; test_translate.py checks the
translator against it."""

import pytest

from emu import isa

HANDLER = """
    .org 0x400
handler:                     ; record cause/epc/badaddr/status, then power off
    mfsr s0, cause
    mfsr s1, epc
    mfsr s2, badaddr
    mfsr fp, status
    li   t0, 0xF0000200
    stw  zero, [t0]
"""


def regs(machine, *names):
    return [machine.cpu.regs[isa.REGISTERS[n]] for n in names]


def test_arithmetic_logic_and_shifts(run):
    m = run("""
        li   a0, -5
        li   a1, 3
        add  t0, a0, a1      ; -2
        sub  t1, a1, a0      ; 8
        mul  t2, a0, a1      ; -15
        div  t3, a0, a1      ; -1
        rem  t4, a0, a1      ; -2
        divu s0, a0, a1
        sar  s1, a0, a1      ; -1
        shr  s2, a0, a1
        slt  fp, a0, a1      ; 1
        sltu lr, a0, a1      ; 0
        halt
    """)
    w = isa.WORD
    assert regs(m, "t0", "t1", "t2", "t3", "t4", "s0", "s1", "s2", "fp", "lr") == [
        -2 & w, 8, -15 & w, -1 & w, -2 & w, (-5 & w) // 3, w, (-5 & w) >> 3, 1, 0]


def test_immediates_sign_and_zero_extension(run):
    m = run("""
        addi a0, zero, -1    ; sign-extended
        ori  a1, zero, 0xffff ; zero-extended
        lui  a2, 0x8000
        xori a3, a0, 0xff
        slti t0, a0, 0
        sltiu t1, zero, -1   ; 0 < 0xffffffff
        shli t2, a1, 16
        addi zero, zero, 5   ; r0 stays 0
        halt
    """)
    assert regs(m, "a0", "a1", "a2", "a3", "t0", "t1", "t2", "zero") == [
        isa.WORD, 0xFFFF, 0x80000000, 0xFFFFFF00, 1, 1, 0xFFFF0000, 0]


def test_loads_stores_little_endian(run):
    m = run("""
        la   t0, data
        ldw  a0, [t0]
        ldb  a1, [t0 + 3]     ; 0x80 sign-extends
        ldbu a2, [t0 + 3]
        li   t1, 0x11223344
        stw  t1, [t0 + 4]
        stb  t1, [t0 + 8]
        ldw  a3, [t0 + 4]
        halt
        .align 4
    data: .word 0x80000001, 0, 0
    """)
    assert regs(m, "a0", "a1", "a2", "a3") == [0x80000001, 0xFFFFFF80, 0x80, 0x11223344]
    data = m.symbols["data"]
    assert m.memory.read_bytes(data + 4, 5) == bytes([0x44, 0x33, 0x22, 0x11, 0x44])


def test_call_return_and_stack(run):
    m = run("""
    _start:
        li   a0, 5
        call square
        mov  s0, a0
        la   t0, square
        li   a0, 7
        callr t0
        halt
    square:
        push lr
        mul  a0, a0, a0
        pop  lr
        ret
    """)
    assert regs(m, "s0", "a0") == [25, 49]
    assert m.cpu.regs[isa.SP] == m.memory.size


def test_branches(run):
    m = run("""
        li a0, -1
        li a1, 1
        li s0, 0
        blt a0, a1, ok1
        halt
    ok1:
        addi s0, s0, 1
        bltu a0, a1, bad      ; unsigned: 0xffffffff is not < 1
        bge a1, a0, ok2
        halt
    ok2: addi s0, s0, 1
        bgeu a0, a1, ok3
        halt
    ok3: addi s0, s0, 1
        bne a0, a0, bad
        beq a0, a0, ok4
    bad: halt
    ok4: addi s0, s0, 1
        halt
    """)
    assert regs(m, "s0") == [4]


@pytest.mark.parametrize("setup, faulting, cause, badaddr", [
    ("", ".word 0", isa.TRAP_ILLEGAL, 0),
    ("", ".word 0xffffffff", isa.TRAP_ILLEGAL, 0xFFFFFFFF),
    ("li t0, 0x10000", "ldw a0, [t0]", isa.TRAP_BAD_ADDRESS, 0x10000),
    ("li t0, 0xF0000F00", "ldw a0, [t0]", isa.TRAP_BAD_ADDRESS, 0xF0000F00),
    ("li t0, 2", "ldw a0, [t0]", isa.TRAP_MISALIGNED, 2),
    ("li t0, 6", "stw a0, [t0]", isa.TRAP_MISALIGNED, 6),
    ("", "syscall", isa.TRAP_SYSCALL, 0),
    ("", "brk", isa.TRAP_BREAKPOINT, 0),
])
def test_synchronous_traps(run, setup, faulting, cause, badaddr):
    m = run(f"""
    _start:
        la t0, handler
        mtsr tvec, t0
        {setup}
    fault:
        {faulting}
        halt
    {HANDLER}
    """)
    assert regs(m, "s0", "s1", "s2") == [cause, m.symbols["fault"], badaddr]


def test_jump_to_a_misaligned_address_traps_at_the_fetch(run):
    m = run(f"""
        la t0, handler
        mtsr tvec, t0
        li t0, 6
        jr t0
    {HANDLER}
    """)
    assert regs(m, "s0", "s1", "s2") == [isa.TRAP_MISALIGNED, 6, 6]


def test_user_mode_cannot_run_privileged_instructions_or_reach_devices(run):
    for insn, cause in [("halt", isa.TRAP_PRIVILEGED), ("mfsr a0, status", isa.TRAP_PRIVILEGED),
                        ("mtsr tvec, zero", isa.TRAP_PRIVILEGED), ("eret", isa.TRAP_PRIVILEGED),
                        ("li t0, 0xF0000200\n stw zero, [t0]", isa.TRAP_BAD_ADDRESS)]:
        m = run(f"""
        _start:
            la t0, handler
            mtsr tvec, t0
            la t0, user
            mtsr epc, t0
            li t0, 0b1000          ; PU: eret enters user mode
            mtsr status, t0
            eret
        user:
            {insn}
            halt
        {HANDLER}
        """)
        s0, fp = regs(m, "s0", "fp")
        assert s0 == cause, insn
        assert fp == isa.STATUS_PU          # the trap recorded "came from user mode"
        assert not m.cpu.sregs[0] & isa.STATUS_U


def test_syscall_round_trip_through_eret(run):
    m = run("""
    _start:
        la t0, handler
        mtsr tvec, t0
        la t0, user
        mtsr epc, t0
        li t0, 0b1000
        mtsr status, t0
        eret
    user:
        li a0, 20
        syscall
        syscall
        brk
    handler:
        mfsr t0, cause
        li t1, 5
        bne t0, t1, stop
        addi a0, a0, 1       ; the "kernel" does the work
        mfsr t0, epc
        addi t0, t0, 4
        mtsr epc, t0
        eret
    stop:
        mfsr s0, status
        halt
    """)
    assert regs(m, "a0") == [22]
    assert m.cpu.sregs[isa.SREG_CAUSE] == isa.TRAP_BREAKPOINT


def test_unhandled_trap_stops_the_machine_with_128_plus_cause(run):
    m = run(".word 0x12345600")
    assert m.stopped and m.exit_status == 128 + isa.TRAP_ILLEGAL
    assert "illegal instruction at pc 0x00000000" in m.stop_reason


def test_halt_with_interrupts_off_powers_off_and_power_device_sets_status(run):
    assert run("halt").exit_status == 0
    assert run("li t0, 0xF0000200\n li t1, 0x12A\n stw t1, [t0]").exit_status == 0x2A


def test_timer_interrupt_wakes_halt_and_arrives_between_instructions(run):
    m = run("""
    _start:
        la t0, handler
        mtsr tvec, t0
        li t0, 0xF0000100
        li t1, 100
        stw t1, [t0 + 4]       ; period
        li t1, 1
        stw t1, [t0 + 8]       ; enable
        mtsr status, t1        ; IE
    wait:
        halt
        jmp wait
    handler:
        mfsr s0, cause
        mfsr s1, epc
        li t0, 0xF0000100
        ldw s2, [t0]           ; the count when the interrupt arrived
        li t0, 0xF0000200
        stw zero, [t0]
    """)
    s0, s1, s2 = regs(m, "s0", "s1", "s2")
    assert s0 == isa.IRQ_BASE + 0
    assert s1 == m.symbols["wait"] + 4      # resumes after the halt
    assert 100 <= s2 < 120                  # idle time was skipped, not spent


def test_device_byte_access_and_unknown_registers(run):
    m = run("""
        li t0, 0xF0000000
        li a0, 'h'
        stb a0, [t0]           ; console DATA
        stb a0, [t0 + 1]       ; middle of a register: ignored
        ldw s0, [t0 + 0x40]    ; no register there: reads 0
        ldbu s1, [t0 + 4]      ; STATUS low byte
        halt
    """)
    assert bytes(m.console.output) == b"h"
    assert regs(m, "s0", "s1") == [0, 6]    # TX_READY | RX_EOF (no input)


def test_console_input_is_read_by_the_guest(run):
    m = run("""
        li t0, 0xF0000000
    next:
        ldw t1, [t0 + 4]
        andi t2, t1, 1
        beqz t2, done
        ldw a0, [t0]
        addi a0, a0, -32       ; upper-case it
        stw a0, [t0]
        jmp next
    done:
        halt
    """, input_bytes=b"abc")
    assert bytes(m.console.output) == b"ABC"


def test_steps_and_cycles_follow_the_table(run):
    m = run("addi a0, zero, 1\nmul a0, a0, a0\nldw a1, [zero]\nhalt")
    assert m.cpu.steps == 4
    assert m.cpu.cycles == 1 + 3 + 2 + 1


def step_by_step(machine, steps):
    """What `Machine.run` does, one `CPU.step` at a time: no bursts."""
    while steps > 0 and not machine.stopped:
        machine.cpu.step()
        steps -= 1
    machine.console.flush()


def bursts_and_steps(make, steps, state):
    ran, stepped = make(), make()
    ran.run(steps)
    step_by_step(stepped, steps)
    assert ran.cpu.steps == stepped.cpu.steps
    assert state(ran) == state(stepped)


@pytest.mark.parametrize("name", ["hello.s", "fibonacci.s", "sieve.s", "echo.s", "timer.s"])
def test_bursts_do_exactly_what_single_steps_do(guest_dir, name, state):
    # run() executes runs of instructions without stopping between them to
    # look for device events and interrupts; the timer program has plenty.
    import os
    from emu.asm import assemble_file
    from emu.devices.console import Console
    from emu.machine import Machine

    def make():
        machine = Machine(1 << 16, console=Console(input_bytes=b"some input\n"), engine="interpret")
        machine.load(assemble_file(os.path.join(guest_dir, name)))
        return machine
    bursts_and_steps(make, 200_000, state)


def test_bursts_do_exactly_what_single_steps_do_in_toyos(tmp_path, state):
    # Paging, user mode, system calls, the disk and timer interrupts.
    from emu import mkfs
    from emu.devices.console import Console
    from emu.machine import Machine
    image = str(tmp_path / "toyos.img")
    mkfs.build_toyos(image)

    def make():
        machine = Machine(console=Console(input_bytes=b"hello\nloop 2\n", hold_open=True),
                          engine="interpret", disk=image)
        machine.boot()
        return machine
    bursts_and_steps(make, 150_000, state)


def test_bursts_see_devices_as_single_steps_do(state):
    # A device access in the middle of straight-line code: the timer's count
    # must be the cycle count of that very instruction, and a timer started
    # there must interrupt on time.
    from emu.asm import assemble
    from emu.devices.console import Console
    from emu.machine import Machine

    def make():
        machine = Machine(1 << 16, console=Console(), engine="interpret")
        machine.load(assemble("""
            la   t0, handler
            mtsr tvec, t0
            li   t0, 1
            mtsr status, t0          ; interrupts on
            li   t1, 0xF0000100      ; the timer
            li   t2, 500
            stw  t2, [t1 + 4]        ; period
            li   t2, 1
            stw  t2, [t1 + 8]        ; enable: a tick 500 cycles from now
        spin:
            ldw  t3, [t1]            ; count
            add  s1, s1, t3
            addi s0, s0, 1
            jmp  spin
        handler:
            li   t0, 0xF0000200
            stw  s0, [t0]            ; power off
        """))
        return machine
    bursts_and_steps(make, 10_000, state)


def test_the_interpreter_reads_no_page_a_restore_has_not_checked(tmp_path):
    # A restored machine's pages are checked on first touch (memory.py); the
    # interpreter's quick loads must not read around that check.
    import pytest
    from emu import snapshot
    from emu.asm import assemble
    from emu.devices.console import Console
    from emu.machine import Machine
    from emu.snapshot import SnapshotError
    machine = Machine(2 << 20, console=Console(), engine="interpret")
    machine.load(assemble("li t0, 0x12c000\nldw a0, [t0]\nhalt"))
    for page in range(1, 301):            # more pages than the board checks up front
        machine.memory.store_word(page << 12, page)
    path = tmp_path / "m.snap"
    snapshot.save(machine, path)
    data = bytearray(path.read_bytes())
    data[snapshot.HEADER.unpack(data[:64])[5] + (300 << 12)] ^= 0xFF
    path.write_bytes(bytes(data))
    restored = snapshot.restore(path, console=Console(), engine="interpret")
    with pytest.raises(SnapshotError, match="memory page 0x12c fails its checksum"):
        restored.run(3)
    assert restored.cpu.regs[isa.A0] == 0
