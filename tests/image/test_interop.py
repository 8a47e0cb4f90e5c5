"""Images made by other tools load, and unpack like theirs.

skopeo converts our OCI layout to the docker-archive and oci-archive forms it
writes; umoci builds an image of its own; and ``umoci unpack`` of the same
image must give the same tree as our store.
"""

import os
import shutil
import subprocess

import pytest

from minirt.image import Store, open_image
from minirt.image.busybox import build_busybox_image

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack keeps owners only as root")


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


def sh(*cmd, cwd=None):
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)
    assert out.returncode == 0, f"{cmd}: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def busybox_layout(tmp_path_factory):
    return build_busybox_image(tmp_path_factory.mktemp("bb") / "layout", "oci-layout")


@pytest.mark.parametrize("dest", ["docker-archive:{out}.tar:busybox:latest", "oci-archive:{out}.tar:latest",
                                  "oci:{out}:latest"])
def test_skopeo_made_images_load(busybox_layout, tmp_path, dest, snapshot):
    skopeo = tool("skopeo")
    out = tmp_path / "copy"
    target = dest.format(out=out)
    sh(skopeo, "--insecure-policy", "copy", "-q", f"oci:{busybox_layout}:latest", target)
    theirs = Store(tmp_path / "theirs")
    ours = Store(tmp_path / "ours")
    with open_image(target.split(":")[1]) as img:
        assert img.config["config"]["Cmd"] == ["sh"]
        [a] = theirs.unpack(img)
    with open_image(busybox_layout) as img:
        [b] = ours.unpack(img)
    assert os.path.basename(a) == os.path.basename(b)  # the same diff_id
    assert snapshot(a) == snapshot(b)


@needs_root
def test_umoci_built_image_with_a_whiteout(tmp_path, unpack, snapshot):
    umoci = tool("umoci")
    lay, bundle = tmp_path / "lay", tmp_path / "bundle"
    sh(umoci, "init", "--layout", str(lay))
    sh(umoci, "new", "--image", f"{lay}:t")
    sh(umoci, "unpack", "--image", f"{lay}:t", str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "etc").mkdir()
    (rootfs / "etc/motd").write_text("hi\n")
    (rootfs / "etc/gone").write_text("soon\n")
    os.symlink("/etc/motd", rootfs / "motd")
    os.link(rootfs / "etc/motd", rootfs / "etc/motd.link")
    (rootfs / "suid").write_bytes(b"x")
    os.chmod(rootfs / "suid", 0o4755)
    sh(umoci, "repack", "--refresh-bundle", "--image", f"{lay}:t", str(bundle))
    (rootfs / "etc/gone").unlink()
    sh(umoci, "repack", "--image", f"{lay}:t", str(bundle))
    sh(umoci, "config", "--image", f"{lay}:t", "--config.cmd", "sh")
    with open_image(lay, ref="t") as img:
        assert img.config["config"]["Cmd"] == ["sh"]
        assert len(img.layers) == 2
    lower, upper = unpack(lay)
    assert (lower / "etc/motd").read_text() == "hi\n"
    assert (lower / "etc/motd").stat().st_ino == (lower / "etc/motd.link").stat().st_ino
    assert os.readlink(lower / "motd") == "/etc/motd"
    assert (lower / "suid").stat().st_mode & 0o7777 == 0o4755
    st = (upper / "etc/gone").lstat()
    assert st.st_rdev == 0 and (st.st_mode & 0o170000) == 0o020000


@needs_root
@pytest.mark.parametrize("compression", [None, "gzip"])  # umoci 0.4 reads no zstd
def test_same_tree_as_umoci_unpack(tmp_path, unpack, snapshot, T, make_layer, image, compression):
    umoci = tool("umoci")
    base = build_busybox_image(tmp_path / "bb", "oci-layout", compression=compression)
    [ours] = unpack(base)
    bundle = tmp_path / "bundle"
    sh(umoci, "unpack", "--image", f"{base}:latest", str(bundle))
    assert snapshot(ours) == snapshot(bundle / "rootfs")


@needs_root
def test_rich_layer_same_tree_as_umoci_unpack(tmp_path, unpack, snapshot, T, make_layer, image):
    umoci = tool("umoci")
    rich = make_layer(
        T.dir("usr", mtime=10), T.dir("usr/bin", mtime=20),
        T.file("usr/bin/su", b"\x7fELF su", mode=0o4755, mtime=30),
        T.file("usr/bin/ping", b"\x7fELF ping", mode=0o755, mtime=31,
               xattrs={"security.capability": bytes.fromhex("0100000200200000000000000000000000000000")}),
        T.link("usr/bin/su2", "usr/bin/su"), T.sym("usr/bin/sh", "/bin/busybox", mtime=40),
        T.dir("home", mtime=50), T.dir("home/alice", mode=0o700, uid=1000, gid=1000, mtime=60),
        T.file("home/alice/notes", b"n", mode=0o640, uid=1000, gid=100, mtime=70),
        T.dir("tmp", mode=0o1777, mtime=80), T.dir("dev", mtime=90),
        T.fifo("dev/fifo", mtime=100), T.dev("dev/null", "c", 1, 3, mtime=110),
        T.file("user-xattr", b"u", xattrs={"user.note": b"hello"}, mtime=120))
    path = image(rich, compression="gzip")
    [ours] = unpack(path)
    bundle = tmp_path / "bundle"
    sh(umoci, "unpack", "--image", f"{path}:latest", str(bundle))
    theirs = bundle / "rootfs"
    assert snapshot(ours) == snapshot(theirs)
    for f in ("usr/bin/ping", "user-xattr"):
        assert sorted(os.listxattr(ours / f)) == sorted(os.listxattr(theirs / f))
        for k in os.listxattr(ours / f):
            assert os.getxattr(ours / f, k) == os.getxattr(theirs / f, k)
