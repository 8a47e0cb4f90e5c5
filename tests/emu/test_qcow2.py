"""qcow2 copy-on-write disks: emu's overlays, qemu-img's judgement of them,
emu on what qemu-img writes, bad images refused at open, and the guest's view."""

import json
import os
import random
import shutil
import struct
import subprocess

import pytest
from hypothesis import given, strategies as st

from emu import qcow2, snapshot
from emu.asm import assemble
from emu.devices.console import Console
from emu.devices.disk import Disk, DiskError
from emu.machine import Machine
from tests.emu import fuzz

QEMU_IMG, QEMU_IO = shutil.which("qemu-img"), shutil.which("qemu-io")
needs_qemu = pytest.mark.skipif(QEMU_IMG is None or QEMU_IO is None,
                                reason="qemu-img and qemu-io (Debian's qemu-utils) are not installed")
SIZE = 1 << 20
# Writes that start, end and cross cluster boundaries (64 KiB), cover whole
# clusters, and touch the last sector.
WRITES = [(0, 10), (65530, 20), (131072, 65536), (SIZE - 512, 512), (300000, 200000), (5, 3)]


@pytest.fixture
def base(tmp_path):
    path = tmp_path / "base.img"
    path.write_bytes(random.Random(1).randbytes(SIZE))
    return path


def qemu(*args, tool="qemu-img"):
    r = subprocess.run([tool, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def assert_clean(path):
    out = qemu("check", path)
    assert "No errors were found on the image." in out, out


def as_raw(path):
    out = f"{path}.raw"
    qemu("convert", "-O", "raw", path, out)
    with open(out, "rb") as f:
        return f.read()


def write_all(path, writes, seed=2):
    """Do `writes` on the image at `path`; returns what the disk now holds."""
    image = qcow2.open_image(path)
    model = bytearray(image.read(0, image.size))
    rng = random.Random(seed)
    for offset, length in writes:
        data = rng.randbytes(length)
        image.write(offset, data)
        model[offset:offset + length] = data
    assert image.read(0, image.size) == model
    image.close()
    return bytes(model)


def read_all(path):
    image = qcow2.open_image(path, readonly=True)
    try:
        return image.read(0, image.size)
    finally:
        image.close()


# -- emu's images, judged by qemu-img --------------------------------------------------

@needs_qemu
def test_overlay_reads_its_base_keeps_its_writes_and_qemu_img_agrees(base, tmp_path):
    overlay = tmp_path / "overlay.qcow2"
    qcow2.create(overlay, backing=base)
    assert read_all(overlay) == base.read_bytes()
    before = base.read_bytes()
    model = write_all(overlay, WRITES)
    assert read_all(overlay) == model                 # reopened: all of it was written down
    assert base.read_bytes() == before
    assert_clean(overlay)
    assert as_raw(overlay) == model
    info = json.loads(qemu("info", "--output=json", "--backing-chain", overlay))
    assert info[0]["backing-filename"] == "base.img"  # relative to the overlay
    assert info[0]["backing-filename-format"] == "raw" and info[1]["format"] == "raw"


@needs_qemu
def test_a_chain_of_overlays_and_small_clusters_that_need_new_refcount_blocks(base, tmp_path):
    middle, top = tmp_path / "middle.qcow2", tmp_path / "sub" / "top.qcow2"
    top.parent.mkdir()
    qcow2.create(middle, backing=base, cluster_bits=9)   # 256 refcounts a block: many blocks
    write_all(middle, [(i, 512) for i in range(0, SIZE, 4096)])
    qcow2.create(top, backing=middle)
    model = write_all(top, WRITES, seed=3)
    for image in (middle, top):
        assert_clean(image)
    assert as_raw(top) == model
    chain = json.loads(qemu("info", "--output=json", "--backing-chain", top))
    assert [os.path.normpath(c["filename"]) for c in chain] == [str(top), str(middle), str(base)]
    assert chain[0]["backing-filename"] == "../middle.qcow2"


@needs_qemu
@pytest.mark.parametrize("maker", ["emu", "qemu"])
def test_stream_merges_a_layer_into_its_overlay_and_the_disk_reads_the_same(base, tmp_path, maker):
    middle, top = tmp_path / "middle.qcow2", tmp_path / "top.qcow2"
    qcow2.create(middle, backing=base, cluster_bits=9)      # not the overlay's cluster size
    write_all(middle, WRITES)
    if maker == "emu":
        qcow2.create(top, backing=middle)
    else:                                 # qemu's header has extensions of its own: kept
        qemu("create", "-q", "-f", "qcow2", "-b", middle.name, "-F", "qcow2", top)
    model = write_all(top, [(0, 700), (400000, 70000)], seed=3)
    assert qcow2.stream(top) > 0
    assert read_all(top) == model
    assert_clean(top)
    assert as_raw(top) == model
    chain = json.loads(qemu("info", "--output=json", "--backing-chain", top))
    assert [os.path.normpath(c["filename"]) for c in chain] == [str(top), str(base)]
    assert chain[0]["backing-filename"] == "base.img" and chain[0]["backing-filename-format"] == "raw"
    # Onto a layer with no backing file: the overlay stands alone.
    qcow2.create(middle, SIZE, replace=True)
    write_all(middle, [(1000, 5000)], seed=4)
    qcow2.create(top, backing=middle, replace=True)
    model = write_all(top, [(3000, 10)], seed=5)
    qcow2.stream(top)
    assert read_all(top) == model and "backing-filename" not in json.loads(qemu("info", "--output=json", top))
    assert_clean(top)


def test_stream_refuses_an_image_with_no_qcow2_layer_under_it(base, tmp_path):
    top = tmp_path / "top.qcow2"
    qcow2.create(top, backing=base)
    before = top.read_bytes()
    for path in (top, base):
        with pytest.raises(qcow2.ImageError, match="not a qcow2 overlay on a qcow2 image"):
            qcow2.stream(path)
    assert top.read_bytes() == before


# -- what qemu-img writes, read and written by emu ------------------------------------------

@needs_qemu
@pytest.mark.parametrize("backing_format", ["raw", "qcow2"])
def test_emu_reads_and_writes_overlays_qemu_made(base, tmp_path, backing_format):
    backing = base
    if backing_format == "qcow2":
        backing = tmp_path / "base.qcow2"
        qemu("convert", "-O", "qcow2", base, backing)
    overlay = tmp_path / "q.qcow2"
    qemu("create", "-q", "-f", "qcow2", "-b", backing.name, "-F", backing_format, overlay)
    qemu("-c", "write -P 0x5a 100k 70k", "-c", "write -z 512k 64k", overlay, tool=QEMU_IO)
    assert read_all(overlay) == as_raw(overlay)
    # In qemu's clusters, in its zero cluster, and in clusters it never wrote:
    model = write_all(overlay, [(110000, 1000), (530000, 100), (900000, 70000)])
    assert_clean(overlay)
    assert as_raw(overlay) == model


@needs_qemu
@pytest.mark.parametrize("compat", ["1.1", "0.10"])          # qcow2 version 3 and 2
def test_compressed_clusters_and_version_2(base, tmp_path, compat):
    image = tmp_path / "c.qcow2"
    qemu("convert", "-c", "-O", "qcow2", "-o", f"compat={compat}", base, image)
    assert read_all(image) == base.read_bytes()
    model = write_all(image, WRITES)          # a compressed cluster copied out is freed
    assert_clean(image)
    assert as_raw(image) == model


@needs_qemu
def test_a_full_refcount_table_fails_the_write_and_leaves_the_image_sound(tmp_path):
    image = tmp_path / "f.qcow2"      # 512-byte clusters, 64-bit refcounts: the table covers 2 MiB
    qemu("create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", image, "4M")
    disk = qcow2.open_image(image)
    with pytest.raises(qcow2.ImageError, match=f"^{image}: refcount table is full"):
        for offset in range(0, disk.size, 512):
            disk.write(offset, bytes([offset >> 9 & 0xFF]) * 512)
    assert offset > 1 << 20 and disk.read(offset - 512, 512) == bytes([offset - 512 >> 9 & 0xFF]) * 512
    disk.close()
    assert_clean(image)


# -- linked clones -------------------------------------------------------------------------

def test_linked_clones_never_see_each_others_writes_and_the_base_is_never_written(base, tmp_path):
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    for clone in (a, b):
        qcow2.create(clone, backing=base)
    before = base.read_bytes()
    os.chmod(base, 0o444)
    try:
        model_a = write_all(a, WRITES, seed=4)
        assert read_all(b) == before
        model_b = write_all(b, WRITES[:2], seed=5)
        assert read_all(a) == model_a and model_a != model_b
    finally:
        os.chmod(base, 0o644)
    assert base.read_bytes() == before
    with pytest.raises(qcow2.ImageError, match="read-only"):
        qcow2.open_image(a).backing.write(0, b"x")


def test_reads_of_clusters_the_overlay_does_not_hold_never_touch_its_file(base, tmp_path, monkeypatch):
    overlay = tmp_path / "o.qcow2"
    qcow2.create(overlay, backing=base)
    write_all(overlay, [(0, 512)])
    image = qcow2.open_image(overlay)
    reads = []
    pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: reads.append(fd) or pread(fd, n, at))
    assert image.read(65536, SIZE - 65536) == base.read_bytes()[65536:]
    assert image.fd not in reads and image.backing.fd in reads
    image.close()


# -- the guest's view ----------------------------------------------------------------------

DISK = 0xF0000400
# Write sectors 5..7 from RAM at 0 (this code), then read sectors 0..7 to
# 0x8000; power off with the second transfer's STATUS.
GUEST = f"""
    li   s0, {DISK:#x}
    li   t0, 5
    stw  t0, [s0]
    stw  zero, [s0 + 4]
    li   t0, 3
    stw  t0, [s0 + 8]
    li   t0, 2
    stw  t0, [s0 + 0xC]
    call wait
    stw  zero, [s0]
    li   t0, 0x8000
    stw  t0, [s0 + 4]
    li   t0, 8
    stw  t0, [s0 + 8]
    li   t0, 1
    stw  t0, [s0 + 0xC]
    call wait
    li   t0, 0xF0000200
    stw  a0, [t0]
wait:
    ldw  a0, [s0 + 0x10]
    andi t1, a0, 1
    bnez t1, wait
    li   t1, 2
    stw  t1, [s0 + 0x10]
    ret
"""


def run_guest(disk, readonly=False):
    m = Machine(1 << 16, console=Console(), engine="interpret", disk=Disk(disk, readonly=readonly))
    m.load(assemble(GUEST))
    m.run(100_000)
    return m


@needs_qemu
def test_the_guest_writes_through_an_overlay_and_qemu_img_sees_it(base, tmp_path):
    overlay = tmp_path / "o.qcow2"
    qcow2.create(overlay, backing=base)
    m = run_guest(overlay)
    assert m.exit_status == 2                                       # DONE, no ERROR
    written = m.memory.read_bytes(0, 3 * 512)
    model = bytearray(base.read_bytes())
    model[5 * 512:8 * 512] = written
    assert m.memory.read_bytes(0x8000, 8 * 512) == model[:8 * 512]
    assert_clean(overlay)
    assert as_raw(overlay) == model and base.read_bytes() != model
    m = run_guest(overlay, readonly=True)                           # --disk-readonly
    assert m.exit_status == 2 and read_all(overlay) == model


def test_a_write_the_image_cannot_do_is_the_guests_disk_error(base, tmp_path):
    image = tmp_path / "c.qcow2"
    qcow2.create(image, size=SIZE)
    write_all(image, [(0, 512)])
    # Make cluster 0 a compressed cluster whose data does not inflate.
    raw = bytearray(image.read_bytes())
    l2 = struct.unpack_from(">Q", raw, 3 * 65536)[0] & qcow2.OFFSET
    data = struct.unpack_from(">Q", raw, l2)[0] & qcow2.OFFSET
    struct.pack_into(">Q", raw, l2, qcow2.COMPRESSED | data)
    raw[data:data + 512] = b"\xff" * 512
    image.write_bytes(raw)
    m = run_guest(image)
    assert m.exit_status == 2 | 4          # the guest saw ERROR; emu went on
    assert image.read_bytes() == raw


def test_toyos_boots_from_an_overlay_on_its_image(toyos, tmp_path, cli):
    overlay = tmp_path / "toyos.qcow2"
    qcow2.create(overlay, backing=toyos)
    r = cli("run", str(overlay), input=b"cat motd\n")
    assert r.returncode == 0 and b"Welcome to toyos" in r.stdout, r.stderr


# -- the command line ---------------------------------------------------------------------

@needs_qemu
def test_disk_create_info_commit(base, tmp_path, cli):
    overlay = tmp_path / "o.qcow2"
    r = cli("disk", "create", "--backing", str(base), str(overlay))
    assert r.returncode == 0 and r.stderr == b""
    model = write_all(overlay, WRITES)
    info = cli("disk", "info", str(overlay)).stdout.decode()
    assert (f"image: {overlay}\nformat: qcow2 (version 3)\nvirtual size: 1048576 bytes (1 MiB)\n" in info
            and "cluster size: 65536\nallocated clusters: 8 of 16\nbacking file: base.img (raw)\n" in info
            and f"\n\nimage: {base}\nformat: raw\n" in info)
    r = cli("disk", "commit", str(overlay))
    assert r.returncode == 0 and r.stdout == f"{overlay}: 8 clusters written to its backing file; overlay emptied\n".encode()
    assert base.read_bytes() == model and read_all(overlay) == model
    assert "allocated clusters: 0 of 16" in cli("disk", "info", str(overlay)).stdout.decode()
    assert_clean(overlay)
    empty = tmp_path / "e.qcow2"
    assert cli("disk", "create", "--size", "64K", str(empty)).returncode == 0
    assert read_all(empty) == bytes(65536)
    assert_clean(empty)


@pytest.mark.parametrize("args, message", [
    (["create", "NEW"], "NEW: a size is needed (--size) when there is no backing file"),
    (["create", "--size", "1000", "NEW"], "NEW: size 1000 is not a positive whole number of 512-byte sectors"),
    (["create", "--backing", "missing.img", "NEW"], "missing.img: No such file or directory"),
    (["create", "--size", "1M", "FILE"], "FILE: already exists"),
    (["commit", "FILE"], "FILE: has no backing file to commit to"),
    (["info", "missing.img"], "missing.img: No such file or directory"),
])
def test_disk_command_bad_input(tmp_path, cli, args, message):
    image = tmp_path / "FILE"
    qcow2.create(image, size=SIZE)
    before = image.read_bytes()
    r = cli("disk", *args, cwd=tmp_path)
    assert r.returncode == 125 and r.stderr.decode() == f"emu: {message}\n"
    assert image.read_bytes() == before and not (tmp_path / "NEW").exists()


# -- bad images: one line at open, nothing changed -----------------------------------------

def put(offset, fmt, value):
    return lambda raw: struct.pack_into(fmt, raw, offset, value)


def backing_name(name):
    def patch(raw):
        offset = struct.unpack_from(">Q", raw, 8)[0]
        raw[offset:offset + len(name)] = name.encode()
        struct.pack_into(">I", raw, 16, len(name))
    return patch


def truncate(length):
    def patch(raw):
        del raw[length:]
    return patch


BAD = [  # (what, patch of o.qcow2 (an overlay on base.img, cluster 0 written), error, writing only)
    ("version 1", put(4, ">I", 1), "qcow2 version 1 is not supported (only 2 and 3)", False),
    ("truncated", truncate(50), "truncated qcow2 header", False),
    ("encrypted", put(32, ">I", 2), "encrypted (method 2): not supported", False),
    ("unknown feature", put(72, ">Q", 1 << 9), "qcow2 feature bit 9 (unknown): not supported", False),
    ("corrupt bit", put(72, ">Q", 2), "qcow2 feature marked corrupt: not supported", False),
    ("external data", put(72, ">Q", 4), "qcow2 feature external data file: not supported", False),
    ("zstd", put(72, ">Q", 8), "qcow2 feature compression other than zlib: not supported", False),
    ("extended L2", put(72, ">Q", 16), "qcow2 feature extended L2 entries: not supported", False),
    ("dirty", put(72, ">Q", 1), "qcow2 feature dirty (refcounts need repair: qemu-img check -r all): "
     "not supported", True),
    ("snapshots", put(60, ">I", 1), "has internal snapshots: not supported for writing", True),
    ("cluster bits", put(20, ">I", 40), "cluster size 2^40 is out of range (2^9 to 2^21)", False),
    ("refcount order", put(96, ">I", 7), "refcount order 7 is out of range (at most 6)", False),
    ("header length", put(100, ">I", 100), "header length 100 is malformed", False),
    ("L1 too small", put(36, ">I", 0), "L1 table of 0 entries does not fit a disk of 1048576 bytes", False),
    ("L1 past the end", put(40, ">Q", 1 << 30),
     "L1 table at 0x40000000 lies outside the file or is not cluster-aligned", False),
    ("L2 past the end", put(3 * 65536, ">Q", qcow2.COPIED | 1 << 30),
     "L2 table at 0x40000000 lies outside the file or is not cluster-aligned", False),
    ("data past the end", put(5 * 65536, ">Q", qcow2.COPIED | 1 << 30),
     "data cluster at 0x40000000 lies beyond the end of the file or is not cluster-aligned", False),
    ("refcount table past the end", put(56, ">I", 1 << 20),
     "refcount table at 0x10000 lies outside the file or is not cluster-aligned", False),
    ("refcount block past the end", put(65536, ">Q", 1 << 30),
     "refcount block at 0x40000000 lies beyond the end of the file or is not cluster-aligned", False),
    ("backing name too long", put(16, ">I", 2000), "backing file name lies outside the first cluster", False),
    ("extension overruns", put(104 + 4, ">I", 1 << 20), "header extensions run past the first cluster", False),
    ("missing backing", backing_name("gone.img"), "backing file gone.img: No such file or directory", False),
    ("backing name with a NUL", backing_name("a\0b"), "backing file name 'a\\x00b' is not a file name", False),
    ("empty backing name", backing_name(""), "backing file name '' is not a file name", False),
    ("backing loop", backing_name("o.qcow2"), "backing chain loop: o.qcow2 is already in the chain", False),
    ("wrong backing format", backing_name("x.qcow2"), "backing file x.qcow2 is qcow2, not raw as the header says",
     False),
]


@pytest.mark.parametrize("what, patch, message, writing_only", BAD, ids=[b[0] for b in BAD])
def test_bad_images_are_refused_at_open_with_one_line(base, tmp_path, cli, what, patch, message, writing_only):
    image = tmp_path / "o.qcow2"
    qcow2.create(image, backing=base)
    qcow2.create(tmp_path / "x.qcow2", size=SIZE)
    write_all(image, [(0, 512)])
    raw = bytearray(image.read_bytes())
    patch(raw)
    image.write_bytes(raw)
    with pytest.raises(DiskError) as error:
        Disk(image)
    assert str(error.value) == f"{image}: {message}"
    r = cli("disk", "info", str(image))
    if writing_only:
        assert r.returncode == 0                       # reading it is fine
        Disk(image, readonly=True).image.close()
    else:
        assert r.returncode == 125 and r.stderr.decode() == f"emu: {image}: {message}\n"
    assert image.read_bytes() == raw


def test_a_longer_loop_and_a_fifo_are_refused(base, tmp_path, cli):
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    qcow2.create(a, backing=base)
    qcow2.create(b, backing=a)
    raw = bytearray(a.read_bytes())
    backing_name("b.qcow2")(raw)                 # a -> b -> a
    a.write_bytes(raw)
    r = cli("disk", "info", str(b))
    assert r.returncode == 125 and r.stderr.decode() == f"emu: {a}: backing chain loop: b.qcow2 is already in the chain\n"
    fifo = tmp_path / "f.qcow2"
    os.mkfifo(fifo)
    program = tmp_path / "p.s"
    program.write_text(GUEST)
    for args in (["run", str(program), "--disk", str(fifo)], ["disk", "info", str(fifo)]):
        r = cli(*args)
        assert r.returncode == 125 and r.stderr.decode() == f"emu: {fifo}: not a regular file\n"


# -- snapshots name the disk robustly -----------------------------------------------------

def test_a_snapshot_moved_with_its_disks_restores_and_a_changed_base_is_refused(base, tmp_path):
    here = tmp_path / "vm"
    here.mkdir()
    shutil.move(base, here / "base.img")
    overlay = here / "o.qcow2"
    qcow2.create(overlay, backing=here / "base.img")
    m = Machine(1 << 16, console=Console(), engine="interpret", disk=overlay)
    m.load(assemble(GUEST))
    while m.disk.command != 1:                 # the write is done, the read under way
        m.run(1)
    snapshot.save(m, here / "m.snap")
    m.run()
    moved = tmp_path / "elsewhere"
    here.rename(moved)
    restored = snapshot.restore(moved / "m.snap", console=Console(), engine="interpret")
    assert restored.disk.path == str(moved / "o.qcow2")
    restored.run()
    assert restored.exit_status == m.exit_status == 2
    assert restored.memory.read_bytes(0x8000, 4096) == m.memory.read_bytes(0x8000, 4096)
    with open(moved / "base.img", "r+b") as f:
        f.seek(SIZE // 2)                 # where the guest sees it: not under the overlay's cluster
        f.write(b"changed")
    with pytest.raises(snapshot.SnapshotError, match="has changed since the snapshot"):
        snapshot.restore(moved / "m.snap")


@pytest.fixture(scope="module")
def small_clusters(tmp_path_factory):
    """A directory with an overlay, good.qcow2, of 4 KiB clusters: its
    metadata and some data in a few dozen clusters."""
    here = tmp_path_factory.mktemp("fuzz")
    (here / "base.img").write_bytes(random.Random(1).randbytes(SIZE))
    qcow2.create(here / "good.qcow2", backing=here / "base.img", cluster_bits=12)
    write_all(here / "good.qcow2", [(0, 3000), (5000, 3000), (300000, 3000), (700001, 3000)])
    return here


@fuzz.fuzz(300)
@given(st.lists(st.tuples(st.integers(0, 40 * 4096 - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_a_damaged_image_is_refused_or_used_never_a_crash(small_clusters, damage):
    here = small_clusters
    raw = bytearray((here / "good.qcow2").read_bytes())
    for at, value in damage:
        raw[at % 128 if at % 2 else at % len(raw)] = value      # half of them in the header
    path = here / "damaged.qcow2"
    path.write_bytes(raw)
    with fuzz.no_hang("a damaged qcow2 image"):
        try:
            disk = Disk(path)
        except DiskError as e:
            fuzz.one_line(e)
            return
        try:
            disk.image.read(0, disk.image.size)
            for offset in (0, 4095, 100000, 800000):
                disk.image.write(offset, b"q" * 5000)
            disk.image.read(0, disk.image.size)
        except qcow2.ImageError as e:
            fuzz.one_line(e)
        finally:
            disk.image.close()
