"""Property: whatever a layer says, extraction either succeeds or raises
ImageError -- never another exception -- and never touches anything outside
the layer's directory."""

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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(members, min_size=1, max_size=8))
def test_no_escape(entries):
    with open(SECRET, "w") as f:
        f.write("host")
    before = sorted(os.listdir(OUTSIDE))
    data = build(entries)
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
    assert sorted(os.listdir(OUTSIDE)) == before
    assert open(SECRET).read() == "host"


def teardown_module():
    shutil.rmtree(OUTSIDE, ignore_errors=True)
