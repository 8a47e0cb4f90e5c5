"""Snapshots: save the whole machine, restore it exactly, in this process or
a new one; incremental snapshots; damaged files are refused."""

import os
import struct

import pytest

from emu import snapshot
from emu.asm import assemble_file
from emu.devices.console import Console
from emu.machine import Machine
from emu.snapshot import SnapshotError


def boot(guest_dir, name="timer.s", memory=1 << 20, engine="translate"):
    machine = Machine(memory, console=Console(), engine=engine)
    machine.load(assemble_file(os.path.join(guest_dir, name)))
    return machine


def test_restore_continues_exactly(guest_dir, tmp_path, state):
    straight = boot(guest_dir)
    straight.run(20_000)

    first = boot(guest_dir)
    first.run(9_000)
    snapshot.save(first, tmp_path / "m.snap")
    second = snapshot.restore(tmp_path / "m.snap", console=Console())
    second.run(11_000)
    first_out = bytes(first.console.output)
    assert first_out + bytes(second.console.output) == bytes(straight.console.output)
    second.console.output[:0] = first_out
    assert state(second) == state(straight)


def test_restore_maps_memory_copy_on_write(guest_dir, tmp_path):
    machine = boot(guest_dir, "sieve.s")
    machine.run(1000)
    path = tmp_path / "m.snap"
    snapshot.save(machine, path)
    before = path.read_bytes()
    restored = snapshot.restore(path, console=Console())
    assert type(restored.memory.ram.obj).__name__ == "mmap"
    restored.run()                         # the sieve writes all over its memory...
    assert restored.exit_status == 0
    assert path.read_bytes() == before     # ...and none of it reaches the file


def test_full_snapshot_stores_only_used_pages(guest_dir, tmp_path):
    machine = boot(guest_dir, "hello.s", memory=64 << 20)
    path = tmp_path / "big.snap"
    snapshot.save(machine, path)
    assert os.path.getsize(path) >= 64 << 20              # the memory section is all there...
    assert os.stat(path).st_blocks * 512 < 1 << 20         # ...but mostly holes on disk


def test_diff_snapshots_hold_only_written_pages(guest_dir, tmp_path, state):
    machine = boot(guest_dir, "sieve.s", memory=4 << 20)
    machine.run(5_000)
    snapshot.save(machine, tmp_path / "base.snap")
    machine.run(5_000)
    dirty = machine.memory.dirty_pages()
    snapshot.save_diff(machine, tmp_path / "d1.snap")
    machine.run(5_000)
    snapshot.save_diff(machine, tmp_path / "d2.snap")

    restored = snapshot.restore(tmp_path / "d2.snap", console=Console())
    machine.console.output.clear()
    assert state(restored) == state(machine)
    assert 0 < len(dirty) < 8
    assert os.path.getsize(tmp_path / "d1.snap") < (len(dirty) + 2) * 4096
    restored.run()
    assert b"1229" in restored.console.output


def test_diff_refuses_a_changed_base(guest_dir, tmp_path):
    machine = boot(guest_dir)
    machine.run(100)
    snapshot.save(machine, tmp_path / "base.snap")
    machine.run(100)
    snapshot.save_diff(machine, tmp_path / "diff.snap")
    other = boot(guest_dir, "hello.s")
    snapshot.save(other, tmp_path / "base.snap")
    with pytest.raises(SnapshotError, match="base snapshot base.snap has changed"):
        snapshot.restore(tmp_path / "diff.snap")


def test_diff_needs_a_base():
    with pytest.raises(SnapshotError, match="no earlier snapshot"):
        snapshot.save_diff(Machine(), "/nonexistent/x.snap")


@pytest.fixture
def snap(guest_dir, tmp_path):
    machine = boot(guest_dir)
    machine.run(3000)
    path = tmp_path / "m.snap"
    snapshot.save(machine, path)
    return path


def damage(path, offset, value=None):
    data = bytearray(path.read_bytes())
    data[offset] = value if value is not None else data[offset] ^ 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_metadata_is_refused(snap):
    damage(snap, 100)
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        snapshot.restore(snap)


def test_corrupt_memory_is_refused(snap):
    mem_offset = snapshot.HEADER.unpack(snap.read_bytes()[:64])[5]
    damage(snap, mem_offset + 10)          # inside the program's code page
    with pytest.raises(SnapshotError, match="memory checksum mismatch"):
        snapshot.restore(snap)


def test_truncated_file_is_refused(snap):
    data = snap.read_bytes()
    for cut in (4, 40, 200, len(data) - 10):
        snap.write_bytes(data[:cut])
        with pytest.raises(SnapshotError, match="truncated|bad magic"):
            snapshot.restore(snap)


def test_wrong_version_is_refused(snap):
    data = bytearray(snap.read_bytes())
    struct.pack_into("<I", data, 8, 99)
    snap.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="version 99"):
        snapshot.restore(snap)


def test_not_a_snapshot(tmp_path):
    (tmp_path / "x").write_bytes(b"hello there")
    with pytest.raises(SnapshotError, match="not an emu snapshot"):
        snapshot.restore(tmp_path / "x")


def test_cli_refuses_damaged_snapshot_in_one_line(cli, snap):
    damage(snap, 70)
    r = cli("restore", str(snap))
    assert r.returncode == 125
    assert r.stderr.decode() == f"emu: {snap}: checksum mismatch: the file is corrupt\n"


@pytest.mark.parametrize("name, n", [("timer.s", 6_000), ("fibonacci.s", 700), ("sieve.s", 66_000)])
def test_determinism_across_processes(cli, guest_dir, tmp_path, name, n):
    """2N steps in one go == N steps, snapshot, restore in a new process, N steps."""
    program = os.path.join(guest_dir, name)
    whole = cli("run", program, "--steps", str(2 * n), "--snapshot-at", str(2 * n), str(tmp_path / "a.snap"))
    first = cli("run", program, "--steps", str(n), "--snapshot-at", str(n), str(tmp_path / "mid.snap"))
    second = cli("restore", str(tmp_path / "mid.snap"), "--steps", str(n),
                 "--snapshot-at", str(2 * n), str(tmp_path / "b.snap"))
    assert whole.returncode == first.returncode == second.returncode == 0, second.stderr
    assert whole.stdout and second.stdout
    assert whole.stdout == first.stdout + second.stdout
    assert (tmp_path / "a.snap").read_bytes() == (tmp_path / "b.snap").read_bytes()


def test_cli_diff_snapshots_and_restore(cli, guest_dir, tmp_path):
    program = os.path.join(guest_dir, "fibonacci.s")
    r = cli("run", program, "--diff", "--snapshot-at", "200", str(tmp_path / "s1.snap"),
            "--snapshot-at", "400", str(tmp_path / "s2.snap"))
    full = r.stdout
    assert r.returncode == 0
    assert os.path.getsize(tmp_path / "s2.snap") < os.path.getsize(tmp_path / "s1.snap")
    head = cli("run", program, "--steps", "400").stdout
    rest = cli("restore", str(tmp_path / "s2.snap"))
    assert rest.returncode == 0 and head + rest.stdout == full


def test_no_verify_skips_only_the_memory_checksum(snap, cli):
    mem_offset = snapshot.HEADER.unpack(snap.read_bytes()[:64])[5]
    damage(snap, mem_offset + 4096 * 200)       # a page the guest never used: a hole
    snapshot.restore(snap, verify=False)
    damage(snap, 100)
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        snapshot.restore(snap, verify=False)


def test_cli_restore_no_verify(cli, snap):
    r = cli("restore", str(snap), "--no-verify")
    assert r.returncode == 0 and r.stdout.endswith(b"tick 5\n")
