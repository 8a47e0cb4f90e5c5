"""Page sharing (KSM): identical pages of machines in one process are shared
copy-on-write, as the host's kernel counts it (smaps, pagemap); a write
stays the writer's; snapshots and restored machines are unaffected.
Real machines, real mappings, the real kernel: nothing is mocked.  (The
host process doing this for `emu vm` is tested in test_vm.py.)"""

import os

import pytest

from emu import hostmem, snapshot
from emu.devices.console import Console
from emu.isa import PAGE_SIZE, REGISTERS
from emu.machine import Machine
from emu.vm.sharing import Sharing

# Four pages of data, the same in every machine, and code that, once told
# to (a1 != 0, set from outside), writes a1 into the second of them.
WRITER = """
_start:
    beqz a1, _start
    la   t0, data + 4096
    stw  a1, [t0]
    halt
.align 4096
data:
    .space 4096, 0x5a
    .space 4096, 0x5b
    .space 4096, 0x5c
    .space 4096, 0x5d
"""


@pytest.fixture
def booted(toyos):
    """booted(count): toyos machines, each at its prompt, waiting for keys
    on a pipe (machine.keys: its other end), as in the host process."""
    made = []

    def boot(count):
        for _ in range(count):
            keys, typing = os.pipe()
            machine = Machine(1 << 20, disk=str(toyos), console=Console(input_fd=keys))
            machine.keys = typing
            machine.blocking = False
            machine.boot()
            machine.run(1_000_000)
            assert machine.waiting, machine.stop_reason
            made.append(machine)
        return list(made)
    yield boot
    for machine in made:
        os.close(machine.keys)
        os.close(machine.console.input_fd)
        machine.disk.image.close()


def settle(sharing, machines):
    """Scan until a whole pass finds nothing new (no guest running)."""
    for _ in range(10_000):
        sharing.scan([m.memory for m in machines], 1.0, False)
        if sharing.settled:
            return sharing.stats()
    pytest.fail("the scanner never settled")


def usage(machines):
    """The kernel's count (smaps) for each machine's RAM."""
    ram = [m.memory.ram for m in machines]
    return list(hostmem.usage({i: (hostmem.address(r), hostmem.address(r) + len(r))
                               for i, r in enumerate(ram)}).values())


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_ten_toyos_machines_cost_about_one_and_leave_nothing_behind(booted):
    *machines, reference = booted(11)            # the eleventh is never shared
    fds = open_fds()
    before = usage(machines)
    one = before[0]["rss"]
    # Unshared, the kernel gives each machine exactly the pages its guest used.
    assert all(u["rss"] == u["anonymous"] == len(m.memory.used_pages()) * PAGE_SIZE
               for u, m in zip(before, machines))
    sharing = Sharing()
    stats = settle(sharing, machines)
    after = usage(machines)
    # What the ten cost now: their private pages, and the stable pages once.
    ten = sum(u["anonymous"] for u in after) + stats["stable_memory"]
    print(f"one toyos machine: {one >> 10}K; ten, shared: {ten >> 10}K ({ten / one:.2f} x one); "
          f"{stats['pages_sharing']} pages map {stats['pages_shared']} stable ones")
    assert ten < 3 * one
    assert stats["saved"] > 6 * one
    assert stats["pages_sharing"] == sum(sharing.shared_pages(m.memory) for m in machines)
    assert abs(stats["saved"] - sum(sharing.saved(m.memory) for m in machines)) < 10
    # The guests go on, reading and writing shared pages: exactly as one never shared.
    for machine in machines + [reference]:
        os.write(machine.keys, b"hello\n")
        machine.waiting = None
        machine.run(1_000_000)
        assert machine.waiting, machine.stop_reason
    assert b"Hello from user space" in reference.console.output
    for machine in machines:
        assert machine.console.output == reference.console.output
        assert machine.memory.ram == reference.memory.ram and machine.cpu.save() == reference.cpu.save()
    # Machines leave: their share goes; the last one takes the memfd along.
    sharing.scan([m.memory for m in machines[:4]], 0.0, False)
    assert sharing.stats()["pages_sharing"] == sum(sharing.shared_pages(m.memory) for m in machines[:4])
    sharing.scan([], 0.0, False)
    assert sharing.stats()["pages_sharing"] == 0 and open_fds() == fds


def test_a_write_to_a_shared_page_is_the_writers_alone(run):
    machines = [run(WRITER, steps=1000, engine=engine, memory=1 << 16)
                for engine in ("translate", "interpret", "translate")]
    reference = run(WRITER, steps=1000, memory=1 << 16)      # never shared: what must happen
    untouched = bytes(reference.memory.ram)
    sharing = Sharing()
    stats = settle(sharing, machines)
    assert all(sharing.shared_pages(m.memory) == len(m.memory.used_pages()) for m in machines)
    written = [hostmem.address(m.memory.ram) + 2 * PAGE_SIZE for m in machines]
    writer, others = machines[1], machines[::2]
    for machine in (writer, reference):
        machine.cpu.regs[REGISTERS["a1"]] = 1         # go
        machine.run(1000)
    assert writer.memory.load_word(2 * PAGE_SIZE) == 1
    assert bytes(writer.memory.ram) == bytes(reference.memory.ram)
    for machine in others:
        assert bytes(machine.memory.ram) == untouched
    # The kernel copied the page for the writer; the scanner learns it from the kernel.
    with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
        assert [hostmem.copied(pagemap.fileno(), at) for at in written] == [False, True, False]
    sharing.scan([m.memory for m in machines], 0.0, True)
    after = settle(sharing, machines)
    assert after["pages_sharing"] == stats["pages_sharing"] - 1
    assert sharing.shared_pages(writer.memory) == sharing.shared_pages(others[0].memory) - 1
    # Each of the others writes a value of its own: no one maps the stable
    # page of 0x5b bytes any more, and the memfd gives its memory back.
    for value, machine in enumerate(others, 2):
        machine.cpu.regs[REGISTERS["a1"]] = value
        machine.run(1000)
    sharing.scan([m.memory for m in machines], 0.0, True)
    last = settle(sharing, machines)
    assert last["pages_shared"] == stats["pages_shared"] - 1
    assert last["stable_memory"] == stats["stable_memory"] - PAGE_SIZE
    assert [m.memory.load_word(2 * PAGE_SIZE) for m in machines] == [2, 1, 3]
    sharing.scan([], 0.0, False)


def test_snapshots_of_shared_machines_restore_identically_and_restored_ones_share(run, tmp_path):
    machines = [run(WRITER, steps=1000, memory=1 << 16) for _ in range(2)]
    sharing = Sharing()
    settle(sharing, machines)
    assert sharing.shared_pages(machines[0].memory) > 0
    path = str(tmp_path / "m.snap")
    snapshot.save(machines[0], path)
    restored = [snapshot.restore(path) for _ in range(2)]
    for machine in restored:
        assert bytes(machine.memory.ram) == bytes(machines[0].memory.ram)
        assert machine.save_state() == machines[0].save_state()
    # A restored machine's RAM maps the snapshot file; its pages are
    # checked on first touch, and the scanner's is no exception.
    assert restored[0].memory.unchecked_left
    settle(sharing, machines + restored)
    assert restored[0].memory.unchecked_left == 0
    assert sharing.shared_pages(restored[0].memory) == len(restored[0].memory.used_pages())
    # Shared, then run on: as a snapshot restored with no sharing at all.
    alone = snapshot.restore(path)
    for machine in (restored[0], alone):
        machine.cpu.regs[REGISTERS["a1"]] = 1
        machine.run(1000)
    assert bytes(restored[0].memory.ram) == bytes(alone.memory.ram)
    assert bytes(restored[1].memory.ram) == bytes(machines[1].memory.ram)
    sharing.scan([], 0.0, False)


def test_a_page_that_keeps_changing_is_left_alone(run):
    # Both count in the same word: equal after every run, never still.
    source = ("_start: la t0, n\nloop: ldw t1, [t0]\naddi t1, t1, 1\nstw t1, [t0]\nb loop\n"
              ".align 4096\nn: .word 0")
    machines = [run(source, steps=1000, memory=1 << 16) for _ in range(2)]
    sharing = Sharing()
    for _ in range(20):
        for machine in machines:
            machine.run(1000)
        sharing.scan([m.memory for m in machines], 1.0, True)
    counter = machines[0].memory.used_pages()[-1]
    assert all(counter not in sharing.rams[id(m.memory)].shared for m in machines)
    assert sharing.shared_pages(machines[0].memory) > 0          # the code, which holds still
    sharing.scan([], 0.0, False)


def test_the_scanner_never_maps_over_a_buffer_that_is_not_a_mapping():
    from emu.memory import Memory
    memories = [Memory(PAGE_SIZE * 4, bytearray(PAGE_SIZE * 4)) for _ in range(2)]
    for memory in memories:
        memory.write_bytes(0, b"same" * 1024)
    sharing = Sharing()
    for _ in range(5):
        sharing.scan(memories, 1.0, False)
    assert sharing.stats()["pages_sharing"] == 0 and sharing.fd is None


def test_sharing_stops_short_of_the_processs_mapping_limit(run):
    # Each page shared may cost two mappings of vm.max_map_count's 65,530:
    # the limit is half of what is left over, here made small.
    machines = [run(WRITER, steps=1000, memory=1 << 16) for _ in range(3)]
    sharing = Sharing()
    sharing.scan([m.memory for m in machines], 0.0, False)
    with open("/proc/sys/vm/max_map_count") as f:
        assert 0 < sharing.limit < int(f.read()) // 2
    sharing.limit = 5
    stats = settle(sharing, machines)
    assert stats["pages_sharing"] == 5 and stats["full"] and not stats["error"]
    sharing.scan([], 0.0, False)
