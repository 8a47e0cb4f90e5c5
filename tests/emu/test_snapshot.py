"""Snapshots: save the whole machine, restore it exactly, in this process or
a new one; incremental snapshots; damaged files are refused."""

import functools
import json
import os
import struct
import tempfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("engine", ["interpret", "translate"])
def test_corrupt_memory_is_found_before_the_guest_touches_it(snap, engine):
    mem_offset = snapshot.HEADER.unpack(snap.read_bytes()[:64])[5]
    damage(snap, mem_offset + 10)          # inside the program's code page
    machine = snapshot.restore(snap, engine=engine)   # pages are checked on first touch
    assert machine.memory.unchecked_left > 0
    with pytest.raises(SnapshotError, match=r"m.snap: memory page 0x0 fails its checksum"):
        machine.run(1)                     # its first fetch is from that page
    assert machine.cpu.steps == 3000       # not one instruction ran


def test_every_page_is_checked_in_the_end(guest_dir, tmp_path):
    machine = boot(guest_dir)
    machine.memory.store_word(0x80000, 1)          # a page the guest never touches
    snapshot.save(machine, tmp_path / "m.snap")
    machine = snapshot.restore(tmp_path / "m.snap")
    untouched = 0x80
    assert machine.memory.unchecked[untouched]
    machine.memory.ram[untouched * 4096] ^= 1      # as if the file had it so
    with pytest.raises(SnapshotError, match=f"memory page {untouched:#x} fails"):
        machine.run(None)                  # the guest never touches it; the board checks it
    with pytest.raises(SnapshotError, match="fails its checksum"):
        snapshot.save(machine, tmp_path / "n.snap")   # nor saved as good


def test_cli_reports_a_corrupt_page_in_one_line(cli, snap):
    mem_offset = snapshot.HEADER.unpack(snap.read_bytes()[:64])[5]
    damage(snap, mem_offset + 10)
    r = cli("restore", str(snap))
    assert r.returncode == 125
    assert r.stderr.decode() == f"emu: {snap}: memory page 0x0 fails its checksum: the file is corrupt\n"


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


# -- crafted files: a valid checksum over nonsense is refused in one line -----------------

def craft(path, change_meta=None, **header):
    """Rewrite `path` with its metadata and header fields changed, checksum recomputed."""
    data = bytearray(path.read_bytes())
    fields = dict(zip(("magic", "version", "kind", "meta_offset", "meta_length", "mem_offset",
                       "mem_length", "crc"), snapshot.HEADER.unpack(data[:64])))
    meta = json.loads(data[64:64 + fields["meta_length"]])
    if change_meta:
        change_meta(meta)
    blob = json.dumps(meta).encode()
    body = data[fields["mem_offset"]:]
    mem_offset = -(-(64 + len(blob)) // 4096) * 4096
    fields.update(meta_length=len(blob), mem_offset=mem_offset)
    fields.update(header)
    head = snapshot.HEADER.pack(*list(fields.values())[:7], 0)
    crc = zlib.crc32(blob, zlib.crc32(head[:48]))
    out = head[:48] + struct.pack("<I", crc) + bytes(12) + blob
    path.write_bytes(out + bytes(mem_offset - len(out)) + body)


def setter(*keys, value):
    def change(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return change


@pytest.mark.parametrize("change", [
    setter("state", "memory_size", value=1 << 40),
    setter("state", "memory_size", value="big"),
    setter("state", "memory_size", value=4096.5),
    setter("pages", value=[-1]),
    setter("pages", value=[1 << 30]),
    setter("pages", value=["x"]),
    setter("pages", value={"a": 1}),
    setter("page_crcs", value="x"),
    setter("page_crcs", value="00"),
    setter("page_crcs", value=7),
    setter("state", "cpu", "regs", value=[1] * 1000),
    setter("state", "cpu", "regs", value=["x"] * 16),
    setter("state", "cpu", "pc", value=1 << 70),
    setter("state", "cpu", "pc", value=None),
    setter("state", "cpu", "halted", value="yes"),
    setter("state", "cpu", "cycles", value=-5),
    setter("state", "cpu", "tlb", value=[[1, 2, 3]]),
    setter("state", "cpu", "tlb", value=[["a", 1]]),
    setter("state", "devices", value="console"),
    setter("state", "devices", "timer", "period", value="x"),
    setter("state", "devices", "timer", value={"period": 0, "ctrl": 1, "pending": 0, "deadline": 5}),
    setter("state", "devices", "console", "rx", value="zz"),
    setter("state", "devices", "disk", "path", value=7),
    setter("state", "symbols", value={"a": "b"}),
    setter("state", "stop_reason", value=[1]),
    setter("state", value=None),
    lambda meta: meta.clear(),
])
def test_crafted_metadata_is_refused_in_one_line(snap, change):
    craft(snap, change)
    with pytest.raises(SnapshotError) as info:
        machine = snapshot.restore(snap)
        machine.run(1000)                       # (if it was accepted, running must not raise)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(snap))


@pytest.mark.parametrize("header", [dict(mem_length=1 << 60), dict(meta_length=1 << 29),
                                    dict(mem_offset=1 << 62), dict(kind=1, mem_length=1 << 40)])
def test_crafted_lengths_are_checked_against_the_file_before_reading(snap, header):
    craft(snap, **header)
    with pytest.raises(SnapshotError, match="truncated|malformed"):
        snapshot.restore(snap)


def test_a_crafted_diff_is_checked_before_it_is_read(guest_dir, tmp_path):
    machine = boot(guest_dir)
    machine.run(1000)
    snapshot.save(machine, tmp_path / "a.snap")
    machine.run(1000)
    snapshot.save_diff(machine, tmp_path / "b.snap")
    craft(tmp_path / "b.snap", setter("pages", value=list(range(1 << 20))))
    with pytest.raises(SnapshotError, match="truncated|malformed"):
        snapshot.restore(tmp_path / "b.snap")


def test_a_fifo_is_refused_not_waited_for(guest_dir, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(SnapshotError, match="not a regular file"):
        snapshot.restore(tmp_path / "fifo")
    machine = boot(guest_dir)
    snapshot.save(machine, tmp_path / "a.snap")
    snapshot.save_diff(machine, tmp_path / "b.snap")
    craft(tmp_path / "b.snap", setter("base", value="fifo"))
    with pytest.raises(SnapshotError, match="not a regular file"):
        snapshot.restore(tmp_path / "b.snap")


def test_a_diff_over_its_own_base_is_refused(guest_dir, tmp_path):
    machine = boot(guest_dir)
    machine.run(1000)
    snapshot.save(machine, tmp_path / "a.snap")
    machine.run(1000)
    snapshot.save_diff(machine, tmp_path / "b.snap")
    before = (tmp_path / "a.snap").read_bytes(), (tmp_path / "b.snap").read_bytes()
    machine.run(1000)
    for target in ("a.snap", "b.snap"):          # its base, and the base's base
        with pytest.raises(SnapshotError, match="base"):
            snapshot.save_diff(machine, tmp_path / target)
    assert ((tmp_path / "a.snap").read_bytes(), (tmp_path / "b.snap").read_bytes()) == before
    snapshot.save_diff(machine, tmp_path / "c.snap")
    assert snapshot.restore(tmp_path / "c.snap").cpu.steps == 3000


@pytest.mark.parametrize("args, message", [
    (["--snapshot-at", "100000"], "stopped at step"),
    (["--steps", "50", "--snapshot-at", "60"], "beyond --steps"),
])
def test_snapshot_at_past_the_end_says_so(cli, guest_dir, tmp_path, args, message):
    r = cli("run", os.path.join(guest_dir, "hello.s"), *args, str(tmp_path / "x.snap"))
    err = r.stderr.decode()
    assert r.returncode == 125 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.snap").exists()


def leaves(value, where=()):
    """Every (path, value) in a JSON document."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from leaves(inner, where + (key,))
    elif isinstance(value, list) and value:
        for i, inner in enumerate(value):
            yield from leaves(inner, where + (i,))
    yield where, value


ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 3),
                       st.integers(-(1 << 70), 1 << 70), st.sampled_from([0xFFFFFFFF, 1 << 32, 1 << 64, 4096]),
                       st.floats(allow_nan=False), st.text(max_size=3), st.lists(st.integers(0, 5), max_size=3),
                       st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=2))


@functools.lru_cache
def timer_snapshot(guest_dir):
    with tempfile.TemporaryDirectory() as tmp:
        machine = boot(guest_dir)
        machine.run(3000)
        snapshot.save(machine, os.path.join(tmp, "m.snap"))
        with open(os.path.join(tmp, "m.snap"), "rb") as f:
            return f.read()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.data())
def test_random_crafted_metadata_is_refused_or_runs(tmp_path_factory, guest_dir, data):
    path = tmp_path_factory.mktemp("c") / "m.snap"
    path.write_bytes(timer_snapshot(guest_dir))
    meta = json.loads(path.read_bytes()[64:64 + snapshot.HEADER.unpack(path.read_bytes()[:64])[4]])
    spots = sorted(leaves(meta), key=repr)
    changes = data.draw(st.lists(st.tuples(st.sampled_from(spots), ODD_VALUES), min_size=1, max_size=3))

    def change(meta):
        for (where, _old), value in changes:
            if not where:
                continue
            d = meta
            try:
                for k in where[:-1]:
                    d = d[k]
                d[where[-1]] = value
            except (KeyError, IndexError, TypeError):
                pass                                   # an earlier change removed it
    craft(path, change)
    try:
        restored = snapshot.restore(path, console=Console())
    except SnapshotError as e:
        assert "\n" not in str(e)
        return
    restored.run(2000)
