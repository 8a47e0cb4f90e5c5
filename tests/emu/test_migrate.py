"""Live migration (emu/migrate.py): a machine moved while it runs continues
exactly where it was; a migration that fails at any point leaves it running
at the source, and the destination never runs a machine it did not receive
whole."""

import os
import random
import select
import socket
import threading

import pytest

from emu import migrate, snapshot
from emu.asm import assemble
from emu.devices.console import Console
from emu.machine import Machine
from tests.emu.conftest import GUEST

# Prints a counter kept in memory, read back from the last of four pages
# it writes over and over: every round of a migration has pages to send
# again, and a page sent stale shows in the output.
COUNTER = """
.include "lib.s"
_start:
    la   t0, count
    ldw  s0, [t0]
    addi s0, s0, 1
    stw  s0, [t0]
    la   t0, buffer
    li   t1, 4 * 4096
fill:
    stw  s0, [t0]
    addi t0, t0, 64
    addi t1, t1, -64
    bnez t1, fill
    ldw  a0, [t0 - 64]
    call print_uint
    li   a0, 10
    call putc
    li   t0, 400
    bltu s0, t0, _start
    exit 0
count:
    .word 0
.align 4096
buffer:
    .space 4 * 4096
"""

# Writes a new page every 40 instructions or so: faster than a round can
# send them, with the slices below.
SCRIBBLER = """
_start:
    li   t0, 0x10000
loop:
    stw  t0, [t0]
    addi t0, t0, 4096
    li   t1, 0xF0000
    bltu t0, t1, loop
    li   t0, 0x10000
    jmp  loop
"""


def counter_machine(memory=1 << 20, console=None):
    machine = Machine(memory, console=console or Console(), engine="translate")
    machine.load(assemble(COUNTER, os.path.join(GUEST, "counter.s")))
    return machine


def reference_output():
    machine = counter_machine()
    machine.run()
    return bytes(machine.console.output), bytes(machine.memory.ram)


def migrate_in_threads(source, memory_size=None, middle=None, **send_options):
    """Migrate `source` to a new machine over a socket pair (through
    `middle(a, b)`, a proxy, if given), the destination in a thread.
    Returns (report or MigrationError, machine or MigrationError)."""
    here, there = socket.socketpair()
    if middle is not None:
        near, far = socket.socketpair()
        proxy = threading.Thread(target=middle, args=(there, far), daemon=True)
        proxy.start()
        there = near
    received = []

    def destination():
        try:
            received.append(migrate.receive(there, memory_size=memory_size, timeout=20))
        except migrate.MigrationError as e:
            received.append(e)
        finally:
            there.close()
    thread = threading.Thread(target=destination)
    thread.start()
    try:
        sent = migrate.send(source, here, run=lambda: source.run(2000), timeout=20, **send_options)
    except migrate.MigrationError as e:
        sent = e
    finally:
        here.close()
    thread.join()
    return sent, received[0]


def one_line(error):
    assert isinstance(error, migrate.MigrationError), error
    text = str(error)
    assert text and "\n" not in text
    return text


def test_a_migrated_machine_prints_what_an_unmigrated_one_does():
    expected, ram = reference_output()
    source = counter_machine()
    source.run(30_000)
    report, machine = migrate_in_threads(source)
    assert isinstance(report, migrate.Report) and isinstance(machine, Machine)
    assert source.stopped and source.stop_reason == "migrated to another host"   # the source is gone
    assert len(report.rounds) >= 2 and report.rounds[0] >= 5 and report.downtime <= report.total
    assert "downtime" in str(report)
    machine.run()
    assert bytes(source.console.output) + bytes(machine.console.output) == expected
    assert machine.exit_status == 0 and bytes(machine.memory.ram) == ram


def test_toyos_session_continues_on_the_destination(toyos):
    def boot():
        machine = Machine(console=Console(input_bytes=b"counter 4\nhello\n"), disk=str(toyos))
        machine.boot()
        return machine
    unmigrated = boot()
    unmigrated.run(20_000_000)
    assert unmigrated.stopped and b"counter: 4" in unmigrated.console.output
    source = boot()
    source.run(200_000)
    report, machine = migrate_in_threads(source)
    assert isinstance(machine, Machine), machine
    machine.run(20_000_000 - source.cpu.steps)
    assert bytes(source.console.output) + bytes(machine.console.output) == bytes(unmigrated.console.output)
    assert machine.cpu.steps == unmigrated.cpu.steps and machine.exit_status == unmigrated.exit_status


def test_more_memory_is_allowed_less_is_refused():
    expected, _ = reference_output()
    source = counter_machine()
    source.run(30_000)
    report, machine = migrate_in_threads(source, memory_size=512 << 10)
    assert one_line(report) == ("the destination refused: the machine has 1 MiB of memory, "
                                "this host offers 512 KiB")
    assert one_line(machine) == "the machine has 1 MiB of memory, this host offers 512 KiB"
    report, machine = migrate_in_threads(source, memory_size=4 << 20)
    assert isinstance(machine, Machine) and machine.memory.size == 4 << 20
    machine.run()
    assert bytes(source.console.output) + bytes(machine.console.output) == expected


def test_a_guest_that_writes_too_fast_is_given_up_on_and_runs_on():
    machine = Machine(1 << 20, console=Console(), engine="translate")
    machine.load(assemble(SCRIBBLER, "scribbler.s"))
    machine.run(10_000)
    report, received = migrate_in_threads(machine, downtime=0, max_rounds=4)
    assert one_line(report).startswith("did not converge in 4 rounds")
    assert "source gave up" in one_line(received)
    assert not machine.stopped
    before = machine.cpu.steps
    machine.run(10_000)
    assert machine.cpu.steps == before + 10_000


def cutting(at, flip=False):
    """A proxy that passes the source's stream on up to byte `at`, then
    cuts the connection (or, with `flip`, corrupts that byte and goes on)."""
    def middle(source, destination):
        passed = 0
        ends = [source, destination]
        try:
            while True:
                for end in select.select(ends, [], [])[0]:
                    data = end.recv(1 << 16)
                    if not data:
                        return
                    if end is destination:
                        source.sendall(data)
                        continue
                    if passed <= at < passed + len(data):
                        if not flip:
                            destination.sendall(data[:at - passed])
                            return
                        data = data[:at - passed] + bytes([data[at - passed] ^ 0x40]) + data[at - passed + 1:]
                    passed += len(data)
                    destination.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            destination.close()
    return middle


@pytest.mark.parametrize("flip", [False, True], ids=["cut", "corrupt"])
def test_a_broken_stream_leaves_the_machine_at_the_source(flip):
    """Cut or corrupt the stream at random points: either the destination
    has the whole machine, or the source goes on (never both, never a
    machine run from half a stream); a failed source ends as if never
    migrated."""
    expected, _ = reference_output()
    rng = random.Random(14)
    total = 0
    for _ in range(12):
        source = counter_machine()
        source.run(30_000)
        at = rng.randrange(total) if total else 10 ** 9
        report, machine = migrate_in_threads(source, middle=cutting(at, flip))
        if flip and total:
            assert not isinstance(machine, Machine), f"a machine from a stream corrupt at byte {at}"
        if isinstance(machine, Machine):
            assert isinstance(report, migrate.Report)
            total = total or report.sent        # the first run passes all of it: its length
            machine.run()
            assert bytes(source.console.output) + bytes(machine.console.output) == expected
            continue
        one_line(machine)
        if isinstance(report, migrate.Report):
            # Cut inside the hand-over's last record: the source has let go
            # and nothing runs -- never two copies.
            assert source.stopped
            continue
        one_line(report)
        assert not source.stopped
        source.run()
        assert bytes(source.console.output) == expected


def test_a_restored_machine_migrates_its_pages_checked(tmp_path):
    # Restored memory is checked page by page as it is touched: migration
    # reads it through those checks too.
    expected, ram = reference_output()
    source = counter_machine()
    source.run(30_000)
    snapshot.save(source, tmp_path / "m.snap")
    restored = snapshot.restore(tmp_path / "m.snap", console=Console())
    assert restored.memory.unchecked_left
    report, machine = migrate_in_threads(restored)
    assert isinstance(machine, Machine), machine
    machine.run()
    output = source.console.output + restored.console.output + machine.console.output
    assert bytes(output) == expected
    assert bytes(machine.memory.ram) == ram
