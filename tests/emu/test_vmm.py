"""The trap-and-emulate monitor (emu/vmm/): unmodified guests, deprivileged,
behave exactly as on bare emu; only what is sensitive exits; the guest
cannot reach past its own RAM."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import hypothesis
import pytest
from hypothesis import given, strategies as st

from emu import isa
from emu.asm import assemble
from emu.devices.console import Console
from emu.image import Image
from emu.machine import Machine
from emu.vmm import AssistedMonitor, Monitor
from emu.variant import VariantPCPU
from emu.vmm.exits import CAUSES
from emu.vmm.shadow import RESERVED
from tests.emu import fuzz
from tests.emu.conftest import REPO

rngs = st.randoms(use_true_random=False)


def boot_both(image, typed, engine, hold_open=False):
    """The toyos disk booted on bare emu and under the monitor."""
    bare = Machine(console=Console(input_bytes=typed, hold_open=hold_open), engine=engine,
                   disk=str(image))
    monitor = Monitor(console=Console(input_bytes=typed, hold_open=hold_open), engine=engine,
                      disk=str(image))
    for machine in (bare, monitor.machine):
        machine.boot()
    return bare, monitor


def guest_state(machine, ram, cpu=None):
    """What the guest can observe of itself: registers, pc, time, system
    registers and TLB (the virtual ones, under the monitor: `cpu`), its RAM,
    its devices, what it printed."""
    state = machine.save_state()
    cpu = cpu or machine.cpu
    return (dict(state["cpu"], sregs=list(cpu.sregs), tlb=cpu.mmu.save()), state["devices"],
            state["stop_reason"], bytes(ram), bytes(machine.console.output))


def guest_cpu(monitor):
    """The CPU whose system registers and TLB are the guest's: the virtual
    one under trap-and-emulate, the real one in guest mode."""
    return getattr(monitor, "vcpu", monitor.cpu)


def same_guest(monitor, bare):
    """The guest under `monitor` is where the one on `bare` is, to the bit."""
    assert guest_state(monitor.machine, monitor.ram.ram, guest_cpu(monitor)) == \
        guest_state(bare, bare.memory.ram)
    assert monitor.traps == bare.cpu.traps               # the guest took the same traps


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_a_toyos_session_is_identical_on_bare_emu_and_under_the_monitor(toyos, engine):
    typed = b"ls\ncat motd\nbad\nbad peek\nbad jump\ncounter 2\nps\nhello\n"
    bare, monitor = boot_both(toyos, typed, engine)
    bare.run(20_000_000)
    monitor.machine.run(20_000_000)
    out = bytes(monitor.machine.console.output).decode()
    assert "killed: page fault on store at 0x00001000\n" in out   # kept from the kernel
    assert "killed: page fault on instruction fetch at 0x00001000\n" in out
    assert monitor.machine.stop_reason == "powered off with status 0"
    # Byte for byte, instruction for instruction, cycle for cycle.
    same_guest(monitor, bare)
    assert monitor.cpu.sregs[isa.SREG_STATUS] & isa.STATUS_U    # the real CPU: in user mode


def test_pre_emption_and_background_jobs_run_the_same_under_the_monitor(toyos):
    typed = b"loop a &\nloop b &\ncounter 3 &\necho still here\nps\n"
    bare, monitor = boot_both(toyos, typed, "translate", hold_open=True)
    bare.run(3_000_000)
    monitor.machine.run(3_000_000)
    out = bytes(monitor.machine.console.output).decode()
    assert "ab" in out and "ba" in out and "still here" in out
    same_guest(monitor, bare)
    assert monitor.exits.counts["interrupt"] > 10               # the timer, injected


def test_exits_are_counted_by_cause_and_toyos_makes_each_kind(toyos):
    _, monitor = boot_both(toyos, b"hello\nbad\n", "translate", hold_open=True)
    monitor.machine.run(20_000_000)       # until the shell waits for more input
    counts = monitor.exits.counts
    for cause in ("sysreg read", "sysreg write", "eret", "halt", "device", "shadow fill",
                  "guest fault", "guest trap", "interrupt"):
        assert counts[cause] > 0, cause
    assert counts["tlbflush"] == 0                     # toyos switches ptbr instead
    assert counts["guest trap"] == monitor.vcpu.traps[5]     # each one a system call
    assert monitor.shadow.flushes >= 3                 # a ptbr write per address space switch
    report = monitor.report()
    assert report.splitlines()[0].split() == ["exit", "count"]
    assert f"total{monitor.exits.total:>21}" in report


# A tiny kernel: into user mode at `user`, which computes for a while and
# makes a system call; the handler powers off with the result.
LOOP = """
_start:
    la   t0, on_trap
    mtsr tvec, t0
    la   t0, user
    mtsr epc, t0
    li   t0, 0b1000          ; PU: eret goes to user mode
    mtsr status, t0
    eret
on_trap:
    mfsr t0, cause
    li   t1, 0xF0000200      ; power: exit status = the cause
    stw  t0, [t1]
user:
    li   a0, 0
    li   t2, {count}
again:
    addi a0, a0, 3
    xori a0, a0, 0x55
    mul  a1, a0, a0
    addi t2, t2, -1
    bnez t2, again
    syscall
"""


def run_monitor(source, memory=1 << 16, engine="translate", steps=10_000_000, kind=Monitor, **kw):
    monitor = kind(memory, console=Console(), engine=engine, **kw)
    monitor.machine.load(assemble(source, "test.s"))
    monitor.machine.run(steps)
    return monitor


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_a_user_loop_makes_no_exits(engine):
    short = run_monitor(LOOP.format(count=10), engine=engine)
    long = run_monitor(LOOP.format(count=20_000), engine=engine)
    assert long.machine.exit_status == short.machine.exit_status == 5     # the system call
    assert long.cpu.steps > short.cpu.steps + 90_000
    # 100,000 more instructions, not one more exit: 3 mtsr, eret, mfsr, the
    # power device, the system call, and a shadow fill for the one page in
    # each mode's shadow.
    assert long.exits.counts == short.exits.counts
    assert long.exits.total == 9 and long.exits.counts["shadow fill"] == 2


# A guest kernel that tries to reach past its RAM, which ends at RAM_END:
# with paging off, by address; with paging on, through a page-table entry
# whose frame is past its RAM; and by DMA.  Each attempt's trap is counted in
# `traps`, and the handler skips the instruction.  It powers off with the
# count, plus 16 if the disk reported the error.
REACH = """
.equ RAM_END, {ram_end}
.equ MARK, 0x5EC12E7
_start:
    la   t0, on_trap
    mtsr tvec, t0
    li   t0, RAM_END
    li   t1, MARK
    ldw  t2, [t0]             ; bad address
    stw  t1, [t0]             ; bad address
    li   t2, 0x8000           ; page directory; its table at 0x9000
    li   t3, 0x9000 | 1
    stw  t3, [t2]
    li   t2, 0x9000
    li   t3, 0 | 0b1111       ; page 0 (this code): identity, P R W X
    stw  t3, [t2]
    li   t3, RAM_END | 0b1111 ; page 5: the frame at RAM_END
    stw  t3, [t2 + 20]
    li   t2, 0x8000 | 1
    mtsr ptbr, t2             ; paging on
    li   t0, 0x5000
    stw  t1, [t0]             ; page fault: the walk finds the frame past RAM
    li   t0, 0xF0000400       ; disk: sector 0, to the last 256 bytes of RAM and past them
    li   t2, RAM_END - 256
    stw  t2, [t0 + 4]
    li   t2, 1
    stw  t2, [t0 + 8]
    stw  t2, [t0 + 12]        ; read
wait:
    ldw  t2, [t0 + 16]
    andi t2, t2, 1
    bnez t2, wait
    ldw  t2, [t0 + 16]        ; DONE | ERROR?
    andi t2, t2, 4
    shli t2, t2, 2
    la   t0, traps
    ldw  t0, [t0]
    add  t0, t0, t2
    li   t1, 0xF0000200
    stw  t0, [t1]
on_trap:
    mtsr scratch, t0
    la   t0, saved_t1
    stw  t1, [t0]
    la   t0, traps
    ldw  t1, [t0]
    addi t1, t1, 1
    stw  t1, [t0]
    mfsr t0, epc
    addi t0, t0, 4
    mtsr epc, t0
    la   t0, saved_t1
    ldw  t1, [t0]
    mfsr t0, scratch
    eret
traps:
    .word 0
saved_t1:
    .word 0
"""


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_a_guest_cannot_reach_past_its_own_memory(engine, tmp_path):
    disk = tmp_path / "mark.img"
    disk.write_bytes(bytes.fromhex("e712ec05") * 128)         # MARK, little-endian
    ram = 1 << 16
    source = REACH.format(ram_end=ram)
    bare = Machine(ram, console=Console(), engine=engine, disk=str(disk))
    bare.load(assemble(source, "test.s"))
    bare.run(100_000)
    monitor = run_monitor(source, ram, engine, disk=str(disk))
    assert bare.exit_status == 3 + 16                     # three traps, and the DMA refused
    same_guest(monitor, bare)
    assert bare.cpu.traps == {3: 2, 9: 1}
    # Nothing of the guest's reached the monitor's memory past its RAM.
    host = monitor.cpu.memory
    assert host.size == ram + RESERVED
    assert bytes.fromhex("e712ec05") not in host.read_bytes(ram, RESERVED)


def test_a_privileged_instruction_in_guest_user_mode_traps_into_the_guest():
    source = LOOP.format(count=1).replace("syscall", "mfsr a0, tvec")
    monitor = run_monitor(source)
    assert monitor.machine.exit_status == 2               # privileged instruction, to the guest
    word = int.from_bytes(assemble("mfsr a0, tvec", "x.s").segments[0][1][:4], "little")
    assert monitor.vcpu.sregs[3] == word                  # badaddr: the instruction, as on bare emu
    assert monitor.exits.counts["guest trap"] == 1 and monitor.exits.counts["sysreg read"] == 1


def test_the_timer_guest_runs_the_same_under_the_monitor(guest_dir):
    from emu.asm import assemble_file
    image = assemble_file(os.path.join(guest_dir, "timer.s"))
    bare = Machine(1 << 16, console=Console())
    bare.load(image)
    bare.run(1_000_000)
    monitor = Monitor(1 << 16, console=Console())
    monitor.machine.load(image)
    monitor.machine.run(1_000_000)
    assert bare.exit_status == 0 and b"tick 5" in bytes(bare.console.output)
    same_guest(monitor, bare)
    assert monitor.exits.counts["interrupt"] == 5


def test_bad_memory_sizes_are_refused_with_one_line():
    for size in (0, 1000, 0xF0000000):
        with pytest.raises(ValueError, match="memory size must be a multiple of 4096 .* under the monitor"):
            Monitor(size)


# The guest edits a present page-table entry: until it flushes, it keeps
# the old translation (the TLB's, and the shadow's), afterwards the new one.
# Exit status: what it read before the flush * 16 + what it read after.
EDIT = """
_start:
    li   t0, 0x6000
    li   t1, 1
    stw  t1, [t0]             ; frame 0x6000 holds 1, frame 0x7000 holds 2
    li   t0, 0x7000
    li   t1, 2
    stw  t1, [t0]
    li   t2, 0x8000
    li   t3, 0x9000 | 1
    stw  t3, [t2]
    li   t2, 0x9000
    li   t3, 0 | 0b1111       ; page 0: this code
    stw  t3, [t2]
    li   t3, 0x6000 | 0b0111  ; page 5 -> frame 0x6000, P R W
    stw  t3, [t2 + 20]
    li   t3, 0x8000 | 0b0111  ; page 8 -> the directory, page 9 -> the table
    stw  t3, [t2 + 32]
    li   t3, 0x9000 | 0b0111
    stw  t3, [t2 + 36]
    li   t0, 0x8000 | 1
    mtsr ptbr, t0
    li   t0, 0x5000
    ldw  a0, [t0]             ; 1
    li   t3, 0x7000 | 0b0111
    stw  t3, [t2 + 20]        ; page 5 -> frame 0x7000, not flushed yet
    ldw  a1, [t0]             ; still 1
    tlbflush
    ldw  a2, [t0]             ; 2
    shli a1, a1, 4
    add  a1, a1, a2
    li   t1, 0xF0000200
    stw  a1, [t1]
"""


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_the_shadows_follow_the_guests_page_table_edits_at_its_tlb_flush(engine):
    bare = Machine(1 << 16, console=Console(), engine=engine)
    bare.load(assemble(EDIT, "test.s"))
    bare.run(10_000)
    monitor = run_monitor(EDIT, engine=engine)
    assert bare.exit_status == 0x12
    same_guest(monitor, bare)
    assert monitor.exits.counts["tlbflush"] == 1 and monitor.shadow.flushes == 2


def test_cli_runs_toyos_under_the_monitor_and_prints_the_exits(toyos, cli):
    typed = b"hello\necho bye\n"
    bare = cli("run", str(toyos), input=typed)
    r = cli("run", "--virtualization", "trap", str(toyos), input=typed)
    assert r.returncode == bare.returncode == 0
    assert r.stdout == bare.stdout == (b"toyos booting\n$ Hello from user space! I am process 2\n"
                                       b"$ bye\n$ \n")
    lines = r.stderr.decode().splitlines()
    assert lines[0].split() == ["exit", "count", "per", "s"]
    table = {cause: count for cause, count, _rate in (line.rsplit(None, 2) for line in lines[1:2 + len(CAUSES)])}
    assert int(table["sysreg write"]) > 0 and int(table["device"]) > 0
    assert int(table["total"]) == sum(int(n) for cause, n in table.items() if cause != "total")
    assert bare.stderr == b""


# A toyos session, cut in two by a snapshot at SNAP_AT steps: the first half
# typed before, the rest after (the console's input is part of no snapshot).
SESSION = (b"ls\ncat motd\n", b"bad\ncounter 2\nps\nhello\n")
SNAP_AT = 60_000


@pytest.mark.parametrize("before, after", [("trap", "none"), ("none", "trap"), ("trap", "trap"),
                                           ("hw", "none"), ("none", "hw"), ("trap", "hw")])
def test_a_snapshot_under_the_monitor_continues_on_bare_emu_and_back(toyos, cli, tmp_path,
                                                                     before, after):
    whole = cli("run", str(toyos), input=b"".join(SESSION))
    snap = tmp_path / "s.snap"
    # The first half typed, and the input left open: the guest waits for more.
    first = subprocess.Popen([sys.executable, "-m", "emu", "run", "--virtualization", before,
                              "--snapshot-at", str(SNAP_AT), str(snap), "--steps", str(SNAP_AT),
                              str(toyos)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=REPO)
    try:
        first.stdin.write(SESSION[0])
        first.stdin.flush()
        first.stdout = first.stdout.read()
        first.stderr = first.stderr.read()
    finally:
        first.stdin.close()
        first.wait(timeout=60)
    assert first.returncode == 0 and snap.exists(), first.stderr
    rest = cli("restore", "--virtualization", after, str(snap), input=SESSION[1])
    assert rest.returncode == whole.returncode == 0, rest.stderr
    # The guest cannot tell: the session reads the same, byte for byte.
    assert first.stdout + rest.stdout == whole.stdout
    assert b"Hello from user space" in rest.stdout
    assert (b"exit" in rest.stderr) == (after != "none")      # the exits, under a monitor


def test_a_snapshot_of_a_monitored_guest_is_a_bare_machines_state(toyos, tmp_path):
    from emu import snapshot
    typed = b"hello\n"
    bare, monitor = boot_both(toyos, typed, "translate", hold_open=True)
    bare.run(SNAP_AT)
    monitor.machine.run(SNAP_AT)
    for machine, name in ((bare, "bare"), (monitor.machine, "monitored")):
        snapshot.save(machine, tmp_path / f"{name}.snap")
    bare_state = snapshot.restore(tmp_path / "bare.snap")
    for machine in (snapshot.restore(tmp_path / "monitored.snap"),
                    Monitor.restore(tmp_path / "bare.snap").machine):
        # The virtual system registers, not the real CPU's; the guest's RAM
        # only, not the shadows above it.
        assert machine.memory.size == bare.memory.size
        assert machine.save_state()["cpu"]["sregs"] == bare_state.save_state()["cpu"]["sregs"]
    restored = Monitor.restore(tmp_path / "monitored.snap", console=Console(hold_open=True))
    restored.machine.console.output[:0] = bare.console.output    # printed before the snapshot
    restored.machine.run(5_000_000)
    bare.run(5_000_000)
    assert b"Hello from user space" in restored.machine.console.output
    assert guest_state(restored.machine, restored.ram.ram, restored.vcpu) == \
        guest_state(bare, bare.memory.ram)
    # A diff snapshot of a monitored guest holds the guest's pages only.
    snapshot.save_diff(restored.machine, tmp_path / "diff.snap")
    again = snapshot.restore(tmp_path / "diff.snap")
    assert bytes(again.memory.ram) == bytes(restored.ram.ram)


def test_ctrl_a_s_saves_a_snapshot_under_the_monitor(toyos, terminal, tmp_path, cli):
    t = terminal("run", "--virtualization", "trap", str(toyos))
    t.read_until(b"$ ")
    t.write(b"\x01s")
    t.read_until(b"emu: snapshot saved to ")
    name = t.read_until(b".snap").decode() + ".snap"
    t.write(b"\x01x")
    assert t.wait() == 0
    r = cli("restore", str(tmp_path / name), input=b"hello\n")
    assert r.returncode == 0 and b"Hello from user space" in r.stdout


def test_cli_refuses_what_the_monitor_cannot_do_with_one_line(toyos, cli, tmp_path):
    big = tmp_path / "big.snap"
    # As big as bare emu allows: no room left above it for the monitor's shadows.
    r = cli("run", "--mem", hex(isa.MMIO_BASE), "--snapshot-at", "0", str(big), "--steps", "0",
            str(toyos))
    assert r.returncode == 0 and big.exists()
    r = cli("restore", "--virtualization", "trap", str(big))
    assert r.returncode == 125 and r.stdout == b"" and r.stderr.decode().count("\n") == 1
    assert "under the monitor" in r.stderr.decode()
    r = cli("run", "--virtualization", "trap", "--mem", "4000M", str(toyos))
    assert r.returncode == 125 and r.stderr.decode().count("\n") == 1
    assert "under the monitor" in r.stderr.decode()
    r = cli("run", "--virtualization", "popf", str(toyos))
    assert r.returncode == 2 and b"invalid choice: 'popf'" in r.stderr


def run_bare_and_monitored(image, steps, memory=fuzz.MEMORY, input_bytes=b"", disk=None,
                           sregs=None, engine="interpret"):
    """Run `image` on bare emu, under the monitor and with hardware
    assistance (each with a fresh copy of the disk) and check that the guest
    ends in the same state."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "disk.img")
        results = []
        for kind in (None, Monitor, AssistedMonitor):
            if disk is not None:
                with open(path, "wb") as f:
                    f.write(disk)
            kw = dict(console=Console(input_bytes=input_bytes), engine=engine,
                      disk=path if disk is not None else None)
            monitor = kind and kind(memory, **kw)
            machine = monitor.machine if monitor else Machine(memory, **kw)
            machine.load(image)
            for sreg, value in (sregs or {}).items():
                (guest_cpu(monitor) if monitor else machine.cpu).sregs[sreg] = value
            if kind is Monitor:
                monitor.enter_guest()
            with fuzz.no_hang(f"{kind.__name__ if kind else 'bare'}, {steps} steps"):
                machine.run(steps)
            results.append((monitor, machine, Path(path).read_bytes() if disk else None))
        (_, bare, bare_disk), *monitored = results
        for monitor, _, monitor_disk in monitored:
            same_guest(monitor, bare)
            assert monitor_disk == bare_disk


@fuzz.fuzz(20)
@given(rngs)
def test_fuzz_random_programs_run_the_same_under_the_monitor(rng):
    """Random programs with paging or not, the timer, the console, the disk,
    user mode and trap handlers, page tables edited under a stale TLB:
    the guest cannot tell it is virtualised."""
    source = fuzz.program(rng)
    hypothesis.note(source)
    run_bare_and_monitored(assemble(source, "case.s"), 2000, input_bytes=fuzz.console_input(rng),
                           disk=fuzz.disk_bytes(rng), engine=rng.choice(["interpret", "translate"]))


@fuzz.fuzz(20)
@given(rngs)
def test_fuzz_random_words_run_the_same_under_the_monitor(rng):
    """Any words at all, in either mode, with or without a handler."""
    words = fuzz.words(rng, rng.randrange(1, 64))
    hypothesis.note(repr(words))
    sregs = {isa.SREG_TVEC: rng.choice([0, 0x80, 0x3, 0xFFC]),
             isa.SREG_STATUS: rng.choice([0, isa.STATUS_U, isa.STATUS_IE])}
    data = b"".join(w.to_bytes(4, "little") for w in words)
    run_bare_and_monitored(Image([(0, data)], 0), 1000, memory=1 << 12, input_bytes=b"xyz",
                           sregs=sregs)


def test_the_guest_kernel_never_runs_in_real_supervisor_mode(toyos):
    _, monitor = boot_both(toyos, b"hello\n", "interpret")
    modes = set()
    monitor.cpu.trace = lambda pc, word: modes.add(monitor.cpu.sregs[isa.SREG_STATUS] & isa.STATUS_U)
    monitor.machine.run(5_000_000)
    assert monitor.machine.exit_status == 0 and monitor.cpu.steps > 50_000
    assert modes == {isa.STATUS_U}                        # every instruction, the kernel's too
    assert monitor.vcpu.traps[isa.TRAP_SYSCALL] > 10      # while the guest had a kernel and users


def test_two_guests_under_two_monitors_in_one_process_keep_to_themselves(toyos):
    """Run interleaved, as emu vm's host runs its machines: each guest ends
    exactly as it would alone on bare emu."""
    pairs = [boot_both(toyos, typed, "translate") for typed in (b"ls\ncounter 2\n", b"hello\nbad\nps\n")]
    for bare, _ in pairs:
        bare.run(20_000_000)
    while not all(monitor.machine.stopped for _, monitor in pairs):
        for _, monitor in pairs:
            monitor.machine.run(7_919)
    for bare, monitor in pairs:
        same_guest(monitor, bare)


def every_unprivileged_instruction(rounds):
    """A guest kernel running each instruction of the ISA that is not a
    system instruction, `rounds` times over, in supervisor mode: RAM loads
    and stores, branches taken and not, jumps, calls and returns."""
    operands = {"R": "t0, t1, t2", "I": "t0, t1, -3", "IU": "t0, t1, 0x1234", "SH": "t0, t1, 3",
                "U": "t0, 0x1234", "L": "t0, [s1 + 4]", "S": "t1, [s1 + 8]",
                "B": "t1, t2, {next}", "J": "{next}", "JR": "s2"}
    body = []
    for i, insn in enumerate(isa.INSTRUCTIONS):
        if insn.kind == "system":
            continue
        label = f"after_{i}"                  # where a branch, jump or call goes
        if insn.kind in ("jr", "callr"):
            body += [f"    la s2, {label}", f"    {insn.mnemonic} s2"]
        else:
            body += [f"    {insn.mnemonic} {operands[insn.format].format(next=label)}", "    nop"]
        body += [f"{label}:"]
    return "\n".join([
        "_start:",
        "    la s1, data",
        f"    li s0, {rounds}",
        "    li t1, 7",
        "    li t2, 9",
        "again:", *body,
        "    addi s0, s0, -1",
        "    bnez s0, again",
        "    li t0, 0xF0000200",
        "    stw zero, [t0]",
        ".align 4096",
        "data:",
        "    .space 64"])


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_no_unprivileged_instruction_exits(engine):
    kinds = {insn.kind for insn in isa.INSTRUCTIONS if not insn.privileged} - {"system"}
    assert kinds == {"alu", "load", "store", "branch", "jump", "call", "jr", "callr"}
    once = run_monitor(every_unprivileged_instruction(1), engine=engine)
    often = run_monitor(every_unprivileged_instruction(500), engine=engine)
    assert once.machine.exit_status == often.machine.exit_status == 0
    assert often.cpu.steps > once.cpu.steps + 499 * 40
    # The power-off and a shadow fill for the code page and the data page: no more.
    assert once.exits.counts == often.exits.counts
    assert often.exits.total == 3 and often.exits.counts["shadow fill"] == 2


# -- hardware assistance: the guest in guest mode, two-stage translation ---------------------

@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_a_toyos_session_is_identical_on_bare_emu_and_with_hardware_assistance(toyos, engine):
    typed = b"ls\ncat motd\nbad\nbad peek\nbad jump\ncounter 2\nps\nhello\n"
    bare = Machine(console=Console(input_bytes=typed), engine=engine, disk=str(toyos))
    hw = AssistedMonitor(console=Console(input_bytes=typed), engine=engine, disk=str(toyos))
    for machine in (bare, hw.machine):
        machine.boot()
        machine.run(20_000_000)
    assert "killed: page fault on store" in bytes(hw.machine.console.output).decode()
    assert hw.machine.stop_reason == "powered off with status 0"
    same_guest(hw, bare)
    counts = hw.exits.counts
    # The guest's own system registers, eret, page-table edits, traps and
    # faults stay in guest mode; the devices, waiting, interrupts and new
    # guest-physical pages leave it.
    for cause in ("sysreg read", "sysreg write", "eret", "tlbflush", "shadow fill",
                  "guest fault", "guest trap"):
        assert counts[cause] == 0, cause
    for cause in ("device", "halt", "2nd-level fill"):
        assert counts[cause] > 0, cause
    assert counts["device"] == sum(hw.machine.exits.values())
    assert counts["2nd-level fill"] == hw.mapped <= hw.ram.size // isa.PAGE_SIZE
    # Against trap-and-emulate, the same session: far fewer exits.
    _, trap = boot_both(toyos, typed, engine)
    trap.machine.run(20_000_000)
    assert hw.exits.total * 2 < trap.exits.total


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_page_table_edits_and_the_guests_own_traps_make_no_exit_with_hardware_assistance(engine):
    bare = Machine(1 << 16, console=Console(), engine=engine)
    bare.load(assemble(EDIT, "test.s"))
    bare.run(10_000)
    hw = run_monitor(EDIT, engine=engine, kind=AssistedMonitor)
    same_guest(hw, bare)
    assert hw.exits.counts["tlbflush"] == hw.exits.counts["sysreg write"] == 0
    loop = run_monitor(LOOP.format(count=20_000), engine=engine, kind=AssistedMonitor)
    assert loop.machine.exit_status == 5                  # the system call: the guest's, no exit
    assert loop.exits.total == loop.exits.counts["device"] + loop.exits.counts["2nd-level fill"]


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_a_guest_in_guest_mode_cannot_reach_past_its_own_memory(engine, tmp_path):
    disk = tmp_path / "mark.img"
    disk.write_bytes(bytes.fromhex("e712ec05") * 128)
    ram = 1 << 16
    source = REACH.format(ram_end=ram)
    bare = Machine(ram, console=Console(), engine=engine, disk=str(disk))
    bare.load(assemble(source, "test.s"))
    bare.run(100_000)
    hw = run_monitor(source, ram, engine, disk=str(disk), kind=AssistedMonitor)
    assert bare.exit_status == 3 + 16
    same_guest(hw, bare)
    # Nothing of the guest's reached the second-level table past its RAM.
    host = hw.cpu.memory
    assert bytes.fromhex("e712ec05") not in host.read_bytes(ram, host.size - ram)


def test_cli_runs_toyos_with_hardware_assistance_and_prints_the_exits(toyos, cli):
    typed = b"hello\necho bye\n"
    bare = cli("run", str(toyos), input=typed)
    r = cli("run", "--virtualization", "hw", str(toyos), input=typed)
    assert r.returncode == bare.returncode == 0 and r.stdout == bare.stdout
    table = dict(line.rsplit(None, 2)[:2]
                 for line in r.stderr.decode().splitlines()[1:2 + len(CAUSES)])
    assert int(table["sysreg write"]) == 0 and int(table["2nd-level fill"]) > 0
    assert int(table["total"]) == sum(int(n) for cause, n in table.items() if cause != "total")


# -- variant P: a sensitive instruction that does not trap, and binary translation ------------

class VariantPMachine(Machine):
    cpu_class = VariantPCPU


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_variant_p_breaks_trap_and_emulate_and_binary_translation_repairs_it(toyos, engine):
    typed = b"hello\nps\n"
    standard = Machine(console=Console(input_bytes=typed), engine=engine, disk=str(toyos))
    bare = VariantPMachine(console=Console(input_bytes=typed), engine=engine, disk=str(toyos))
    naive, translated = (Monitor(console=Console(input_bytes=typed), engine=engine, disk=str(toyos),
                                 variant_p=True, translate_sensitive=bt) for bt in (False, True))
    for machine in (standard, bare, naive.machine, translated.machine):
        machine.boot()
        machine.run(5_000_000)
    # A kernel in supervisor mode cannot tell the variant from the standard CPU.
    assert bytes(bare.console.output) == bytes(standard.console.output)
    assert b"I am process 2" in bytes(bare.console.output)
    # Deprivileged, it reads the real mode (user) where its own was, its
    # writes of status vanish, and the monitor is never told: its first
    # system call looks to it like a trap of its own, and it panics.
    assert b"kernel trap: cause 5" in bytes(naive.machine.console.output)
    assert naive.machine.exit_status != 0 and naive.exits.counts["translated"] == 0
    # Its sensitive instructions rewritten into calls to the monitor, it runs
    # as on bare hardware, to the bit.
    same_guest(translated, bare)
    counts = translated.exits.counts
    assert counts["translated"] > 0
    assert counts["sysreg read"] > 0                     # the other system registers still trap


def test_a_translated_status_access_in_guest_user_mode_does_what_the_variant_does():
    # A user program reads status (the real one on variant P: user mode,
    # as the guest's kernel set it) and writes it (ignored), with no trap.
    source = LOOP.format(count=1).replace("syscall", "mfsr a0, status\n    mtsr status, zero\n    syscall")
    bare = VariantPMachine(1 << 16, console=Console())
    bare.load(assemble(source, "test.s"))
    bare.run(10_000)
    monitor = run_monitor(source, variant_p=True, translate_sensitive=True)
    assert bare.exit_status == monitor.machine.exit_status == 5
    same_guest(monitor, bare)
    assert bare.cpu.regs[1] & isa.STATUS_U
    # The kernel's own `mtsr status` and the program's two: all three calls to the monitor.
    assert monitor.exits.counts["translated"] == 3 and monitor.exits.counts["guest trap"] == 1
