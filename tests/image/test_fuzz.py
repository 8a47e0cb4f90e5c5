"""Property: whatever a layer says, extraction either succeeds or raises
ImageError -- never another exception, never a hang -- and never touches
anything outside the layer's directory."""

import hashlib
import io
import os
import shutil
import tarfile
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from minirt.errors import ImageError
from minirt.image.layers import apply_layer
from minirt.image.stream import LayerStream

OUTSIDE = tempfile.mkdtemp(prefix="minirt-fuzz-outside-")
SECRET = os.path.join(OUTSIDE, "secret")

parts = st.sampled_from(["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", ".wh..", OUTSIDE.lstrip("/")])
names = st.lists(parts, min_size=1, max_size=4).map("/".join) | st.just(SECRET)
targets = names | st.sampled_from([OUTSIDE, "/", "../../..", "a"])
members = st.tuples(st.sampled_from("file dir sym link fifo".split()), names, targets)


def build(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, target in entries:
            ti = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                data = b"pwned"
                ti.size = len(data)
            else:
                ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                           "link": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                ti.linkname = target if kind in ("sym", "link") else ""
            tar.addfile(ti, io.BytesIO(data) if data else None)
    return buf.getvalue()


def extract(data: bytes) -> None:
    """Extract ``data`` as a layer (with a matching diff_id); only ImageError may come out."""
    dest = tempfile.mkdtemp(prefix="minirt-fuzz-layer-")
    try:
        stream = LayerStream(io.BytesIO(data), digest=None, size=None,
                             diff_id="sha256:" + hashlib.sha256(data).hexdigest(), what="fuzz")
        try:
            apply_layer(stream, dest, rootless=True, what="fuzz")
            stream.finish()
        except ImageError as e:
            assert "\n" not in str(e)
        finally:
            stream.close()
    finally:
        shutil.rmtree(dest)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(members, min_size=1, max_size=8))
def test_no_escape(entries):
    with open(SECRET, "w") as f:
        f.write("host")
    before = sorted(os.listdir(OUTSIDE))
    extract(build(entries))
    assert sorted(os.listdir(OUTSIDE)) == before
    assert open(SECRET).read() == "host"


def _checksum_ok(block: bytes) -> bool:
    digits = block[148:156].split(b"\0")[0].strip()
    octal = digits and not digits.strip(b"01234567")  # a mutation may leave an 8 or a 9 there
    return octal and int(digits, 8) == sum(block[:148]) + 256 + sum(block[156:])


# A layer with a pax header, a long name, a link and a device: every field a
# mutation may hit.  Mutated headers get their checksum fixed, so that the
# bytes reach the field parsers instead of stopping at the checksum.
SEED = build([("dir", "a", ""), ("file", "a/" + "n" * 120, ""), ("sym", "s", "a"), ("fifo", "p", "")])
spots = st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spots, min_size=1, max_size=6))
def test_damaged_headers(mutations):
    data = bytearray(SEED)
    for at, value in mutations:
        start = at - at % 512
        was_header = _checksum_ok(data[start:start + 512])
        data[at] = value
        if was_header and not 148 <= at % 512 < 156:
            block = data[start:start + 512]
            data[start + 148:start + 156] = b"%06o\0 " % (sum(block[:148]) + 256 + sum(block[156:]))
    extract(bytes(data))


def teardown_module():
    shutil.rmtree(OUTSIDE, ignore_errors=True)
