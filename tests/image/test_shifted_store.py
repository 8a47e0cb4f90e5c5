"""The id-shifted store (``Store(root, id_map=...)``, for ``--userns=remap``):
every owner moved through the user namespace's map, everything else kept."""

import os
import shutil
import stat
import tempfile

import pytest

from minirt.errors import ImageError
from minirt.image import Store, open_image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root can shift owners")

REMAP = ([(0, 100000, 65536)], [(0, 200000, 65536)])  # different gids, to tell them apart
SHIFTED = "layers/shift-u0.100000.65536-g0.200000.65536"


@pytest.fixture
def root():
    """A state root the shifted root (uid 100000) can reach: not under pytest's
    0700 tmp directories."""
    path = tempfile.mkdtemp(prefix="minirt-shift-")
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def unpack(unpack, root):
    def run(path, **kw):
        return unpack(path, root=root, **kw)
    return run


@pytest.fixture
def rich(T, make_layer):
    return make_layer(
        T.dir("etc", uid=0, gid=0),
        T.file("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
        T.file("bin/su", b"#!", mode=0o4755),                 # implicit parent bin/
        T.file("bin/ping", b"#!", mode=0o755, xattrs={"user.note": b"kept"}),
        T.dir("var/www", uid=33, gid=33, mode=0o750),
        T.file("var/www/index.html", b"hi", uid=33, gid=34),
        T.sym("var/www/link", "/etc/passwd", uid=33, gid=33),
        T.link("etc/passwd-hard", "etc/passwd"),
        T.dev("dev/null", uid=0, gid=0),
        T.fifo("run/fifo", uid=7, gid=7),
    )


def test_owners_are_shifted(image, rich, unpack, snapshot):
    [plain] = unpack(image(rich))
    [shifted] = unpack(image(rich), id_map=REMAP)
    a, b = snapshot(plain), snapshot(shifted)
    assert a.keys() == b.keys()
    implicit = {"bin", "var", "dev", "run"}  # made on the way, so their mtime is "now"
    for path, (kind, mode, uid, gid, extra, mtime) in a.items():
        # Same tree, same modes (setuid too), contents, targets and times;
        # only the owners moved: uid + 100000, gid + 200000.
        want = (kind, mode, uid + 100000, gid + 200000, extra)
        assert b[path][:5] == want and (path in implicit or b[path][5] == mtime), path
    assert b["bin/su"][1] == 0o4755
    assert b["var/www/index.html"][2:4] == (100033, 200034)
    # The layer's own root and the implicit bin/ belong to the shifted root.
    for d in (shifted, shifted / "bin"):
        st = os.lstat(d)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (100000, 200000, 0o755)
    assert os.stat(shifted / "etc/passwd").st_nlink == 2
    assert os.getxattr(shifted / "bin/ping", "user.note") == b"kept"


def test_opaque_dirs_and_whiteouts_for_overlay_in_a_user_namespace(image, T, make_layer, unpack):
    lower = make_layer(T.dir("d"), T.file("d/old", b"x"), T.file("gone", b"x"))
    upper = make_layer(T.dir("d"), T.file("d/.wh..wh..opq"), T.file(".wh.gone", uid=5, gid=6))
    _, up = unpack(image(lower, upper), id_map=REMAP)
    # The overlay is mounted inside the container's user namespace, with
    # userxattr: it reads user.overlay.*, never trusted.overlay.*.
    assert os.getxattr(up / "d", "user.overlay.opaque") == b"y"
    assert "trusted.overlay.opaque" not in os.listxattr(up / "d")
    st = os.lstat(up / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (st.st_uid, st.st_gid) == (100005, 200006)


def test_stores_live_apart(image, T, make_layer, root):
    path = image(make_layer(T.file("f", b"x")))
    two = ([(0, 100000, 1000), (1000, 300000, 1000)], [(0, 100000, 65536)])
    with open_image(path) as img:
        dirs = [Store(root, **kw).unpack(img)[0] for kw in (
            {"rootless": False}, {"rootless": True}, {"id_map": REMAP}, {"id_map": two})]
    assert len(set(dirs)) == 4
    assert os.path.dirname(dirs[2]) == os.path.join(root, SHIFTED, "sha256")
    assert "/layers/shift-u0.100000.1000_1000.300000.1000-g0.100000.65536/sha256/" in dirs[3]
    assert os.listdir(os.path.join(root, SHIFTED, "tmp")) == []
    assert Store(root, id_map=REMAP).rootless is False


def test_multi_range_map(image, T, make_layer, unpack):
    two = ([(0, 100000, 1000), (1000, 300000, 1000)], [(0, 100000, 2000)])
    [d] = unpack(image(make_layer(T.file("a", uid=999, gid=999), T.file("b", uid=1000, gid=1000))),
                 id_map=two)
    assert (os.lstat(d / "a").st_uid, os.lstat(d / "b").st_uid) == (100999, 300000)


def test_owner_outside_the_map_is_refused(image, T, make_layer, root):
    # Not "nobody": a file the container could never use as the image meant.
    path = image(make_layer(T.file("ok"), T.file("far", uid=70000)))
    with pytest.raises(ImageError, match=r"member 'far': owner uid 70000 is outside the user namespace's id map"):
        with open_image(path) as img:
            Store(root, id_map=REMAP).unpack(img)
    shifted = os.path.join(root, SHIFTED)
    assert os.listdir(shifted + "/sha256") == [] and os.listdir(shifted + "/tmp") == []


def test_bad_maps(tmp_path):
    for bad in ([(0, 100000, 0)], []), ("nonsense",), ([(0, -1, 5)], [(0, 1, 5)]):
        with pytest.raises(ValueError):
            Store(tmp_path, id_map=bad)
    with pytest.raises(ValueError, match="rootless or id-shifted"):
        Store(tmp_path, rootless=True, id_map=REMAP)


def test_unreachable_store_is_a_clear_error(image, T, make_layer, root):
    # mkdtemp makes 0700 directories: the container's root (uid 100000 on the
    # host) could not reach its layers to mount them.
    path = image(make_layer(T.file("f")))
    os.chmod(root, 0o700)
    with open_image(path) as img:
        with pytest.raises(ImageError, match=rf"{root}: not searchable by uid 100000"):
            Store(root, id_map=REMAP).unpack(img)
        os.chmod(root, 0o711)
        [d] = Store(root, id_map=REMAP).unpack(img)
    assert os.stat(d).st_uid == 100000
