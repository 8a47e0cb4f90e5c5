"""The outer-archive reader (tarindex.py) against Python's tarfile: for every
archive both read, they must agree on every member's name, type, size, data
offset and link target -- in all three spellings of long names."""

import io
import os
import shutil
import subprocess
import tarfile

import pytest
from hypothesis import given, settings, strategies as st

from minirt.image.tarindex import TarFormatError, _number, read_index

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir",
         tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.FIFOTYPE: "fifo",
         tarfile.CHRTYPE: "chardev", tarfile.BLKTYPE: "blockdev"}


def make_tar(entries, format, **kw) -> bytes:
    """entries: (name, kind, size or link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=format, **kw) as tar:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = arg
                tar.addfile(ti, io.BytesIO(b"x" * arg))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                       "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("symlink", "hardlink"):
                ti.linkname = arg
            tar.addfile(ti)
    return buf.getvalue()


def ours(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        # tarfile drops a directory's trailing slash; tarindex leaves names be.
        return [(m.name.rstrip("/") if m.type == "dir" else m.name, m.type, m.size, m.offset, m.linkname)
                for m in read_index(fd)]
    finally:
        os.close(fd)


def theirs(path):
    with tarfile.open(path, "r:") as t:
        return [(m.name.rstrip("/") if m.isdir() else m.name, TYPES.get(m.type, "other"),
                 m.size, m.offset_data, m.linkname) for m in t.getmembers()]


def agree(tmp_path, data):
    p = tmp_path / "a.tar"
    p.write_bytes(data)
    mine = ours(p)
    assert mine == theirs(p)
    return mine


LONG = "blobs/" + "d" * 120 + "/" + "f" * 90   # needs a prefix (ustar) or an extension
VERY_LONG = "x/" * 80 + "y" * 200              # too long even for ustar's prefix


@pytest.mark.parametrize("format", FORMATS)
def test_agrees_with_tarfile(tmp_path, format):
    entries = [("index.json", "file", 514), ("blobs", "dir", None), ("blobs/sha256", "dir", None),
               ("empty", "file", 0), ("block", "file", 512), ("odd", "file", 513),
               (LONG, "file", 3), ("link", "symlink", "blobs/sha256/" + "a" * 64),
               ("hard", "hardlink", "index.json"), ("fifo", "fifo", None)]
    if format != "ustar":
        entries += [(VERY_LONG, "file", 7), ("longlink", "symlink", VERY_LONG),
                    ("ünïcode-名前", "file", 1)]
    got = agree(tmp_path, make_tar(entries, FORMATS[format]))
    assert [n for n, *_ in got] == [e[0] for e in entries]


def test_pax_global_header_is_skipped(tmp_path):
    # git archive writes one (comment=<commit>); it describes no member.
    data = make_tar([("a", "file", 3)], tarfile.PAX_FORMAT, pax_headers={"comment": "abc"})
    assert [m[0] for m in agree(tmp_path, data)] == ["a"]


def test_gnu_tar_made_archive(tmp_path):
    if shutil.which("tar") is None:
        pytest.skip("no tar")
    src = tmp_path / "src"
    (src / ("d" * 150)).mkdir(parents=True)
    (src / ("d" * 150) / ("f" * 120)).write_bytes(b"hello")
    (src / "s").symlink_to("t" * 130)
    for fmt in ("gnu", "posix", "ustar"):
        out = tmp_path / f"{fmt}.tar"
        r = subprocess.run(["tar", f"--format={fmt}", "-cf", out, "-C", src, "."], capture_output=True)
        if r.returncode:  # ustar cannot hold the 130-byte link target
            assert fmt == "ustar"
            continue
        assert len(ours(out)) == 4 and ours(out) == theirs(out)


names = st.lists(st.sampled_from(["a", "bb", "c" * 60, "d" * 99, "ü"]), min_size=1, max_size=6).map("/".join)
entries = st.lists(st.tuples(names, st.just("file"), st.integers(0, 2000)) |
                   st.tuples(names, st.just("symlink"), names), max_size=6)


@settings(max_examples=150, deadline=None)
@given(entries=entries, format=st.sampled_from(["gnu", "pax"]))
def test_property_agrees_with_tarfile(tmp_path_factory, entries, format):
    agree(tmp_path_factory.mktemp("t"), make_tar(entries, FORMATS[format]))


def test_base256_numbers():
    # GNU tar spells sizes of 8 GiB and more in binary, marked by a high bit.
    assert _number(b"\x80" + (9 << 30).to_bytes(11, "big"), 0) == 9 << 30
    assert _number(b"0000644\0", 0) == 0o644
    assert _number(b"     12 ", 0) == 0o12
    with pytest.raises(TarFormatError):
        _number(b"\xff" * 12, 0)  # negative


def read_bytes(tmp_path, data):
    p = tmp_path / "x.tar"
    p.write_bytes(data)
    return ours(p)


def test_bad_checksum(tmp_path):
    data = bytearray(make_tar([("a", "file", 10), ("b", "file", 10)], tarfile.PAX_FORMAT))
    data[1024 + 5] ^= 1  # inside the second header's name
    with pytest.raises(TarFormatError, match="bad header checksum at offset 1024") as e:
        read_bytes(tmp_path, bytes(data))
    assert not e.value.truncated


def test_truncated(tmp_path):
    data = make_tar([("a", "file", 5000)], tarfile.PAX_FORMAT)
    for cut in (600, 300 + 512, 4000):
        with pytest.raises(TarFormatError) as e:
            read_bytes(tmp_path, data[:cut])
        assert e.value.truncated


def test_sparse_members_are_refused(tmp_path):
    data = bytearray(make_tar([("a", "file", 0)], tarfile.GNU_FORMAT))
    data[156:157] = b"S"
    data[148:156] = b"%06o\0 " % (sum(data[:148]) + 256 + sum(data[156:512]))
    with pytest.raises(TarFormatError, match="sparse"):
        read_bytes(tmp_path, bytes(data))


def test_end_of_file_without_zero_blocks(tmp_path):
    data = make_tar([("a", "file", 1)], tarfile.PAX_FORMAT)
    assert [m[0] for m in read_bytes(tmp_path, data[:1024])] == ["a"]
