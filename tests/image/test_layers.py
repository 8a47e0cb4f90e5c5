"""Layer application: whiteouts, opaque directories, links, modes, owners,
times, xattrs, devices -- as root and in rootless (userxattr) mode."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def one(unpack, image, *members_layers, **kw):
    [d] = unpack(image(*members_layers), **kw)
    return d


def test_whiteouts_become_overlay_whiteouts(image, unpack, T, make_layer):
    lower = make_layer(T.dir("etc"), T.file("etc/gone", b"x"), T.file("etc/kept", b"y"))
    upper = make_layer(T.dir("etc"), T.file("etc/.wh.gone"), T.file(".wh.toplevel"))
    _, up = unpack(image(lower, upper))
    st = (up / "etc/gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert stat.S_ISCHR((up / "toplevel").lstat().st_mode)
    assert not (up / "etc/.wh.gone").exists() and not (up / "etc/kept").exists()


@pytest.mark.parametrize("rootless,xattr", [(False, "trusted.overlay.opaque"),
                                            (True, "user.overlay.opaque")])
def test_opaque_directory(image, unpack, T, make_layer, rootless, xattr):
    if not rootless and os.geteuid() != 0:
        pytest.skip("trusted.* xattrs need root")
    d = one(unpack, image, make_layer(T.dir("var"), T.dir("var/cache"), T.file("var/cache/.wh..wh..opq"),
                                      T.file("var/cache/new", b"n")), rootless=rootless)
    assert os.getxattr(d / "var/cache", xattr) == b"y"
    assert sorted(os.listdir(d / "var/cache")) == ["new"]


@root_only
@pytest.mark.privileged
@pytest.mark.parametrize("rootless", [False, True])
def test_a_store_that_cannot_hold_the_opaque_xattr_says_so(image, unpack, T, make_layer, tmp_path, rootless):
    """ramfs has no extended attributes at all (and tmpfs no user.* ones
    before Linux 6.6): one line, naming the way out."""
    from minirt.errors import ImageError

    ram = tmp_path / "ram"
    ram.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "none", str(ram)], check=True)
    try:
        with pytest.raises(ImageError, match=r"member 'a/\.wh\.\.wh\.\.opq': the store's filesystem cannot mark an "
                                             r"opaque directory .*: use a state root elsewhere$"):
            unpack(image(make_layer(T.dir("a"), T.file("a/.wh..wh..opq"))), rootless=rootless, root=ram / "root")
    finally:
        subprocess.run(["umount", str(ram)], check=True)


def test_opaque_marker_before_its_directory_entry(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.file("a/.wh..wh..opq"), T.dir("a", mode=0o750)), rootless=True)
    assert os.getxattr(d / "a", "user.overlay.opaque") == b"y"
    assert stat.S_IMODE((d / "a").stat().st_mode) == 0o750


def test_layer_cannot_forge_overlay_xattrs(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.dir("a", xattrs={"user.overlay.redirect": b"/etc",
                                                         "user.overlay.opaque": b"y",
                                                         "user.ok": b"1"})), rootless=True)
    assert os.listxattr(d / "a") == ["user.ok"]


def test_hard_links_share_an_inode(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.dir("bin"), T.file("bin/a", b"data", mode=0o755),
                                      T.link("bin/b", "bin/a"), T.link("c", "./bin/a"),
                                      T.sym("s", "/nowhere"), T.link("s2", "s")))
    assert (d / "bin/a").stat().st_ino == (d / "bin/b").stat().st_ino == (d / "c").stat().st_ino
    assert (d / "bin/a").stat().st_nlink == 3
    assert os.readlink(d / "s2") == "/nowhere"  # a link to the symlink itself


def test_symlinks_kept_verbatim_never_followed(image, unpack, T, make_layer, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("host")
    d = one(unpack, image, make_layer(T.sym("abs", str(victim)), T.sym("rel", "../../.."),
                                      T.sym("dangling", "/no/such"),
                                      T.file("abs", b"replaced")))  # replaces the link, not its target
    assert victim.read_text() == "host"
    assert (d / "abs").read_bytes() == b"replaced"
    assert os.readlink(d / "rel") == "../../.."
    assert os.readlink(d / "dangling") == "/no/such"


def test_modes_including_setuid_setgid_sticky(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.file("su", b"x", mode=0o4755), T.file("sg", b"x", mode=0o2711),
                                      T.dir("tmp", mode=0o1777), T.file("private", b"x", mode=0o600),
                                      T.dir("ro", mode=0o555), T.file("ro/inside", b"x", mode=0o444)))
    modes = {n: stat.S_IMODE((d / n).lstat().st_mode) for n in ("su", "sg", "tmp", "private", "ro", "ro/inside")}
    assert modes == {"su": 0o4755, "sg": 0o2711, "tmp": 0o1777, "private": 0o600, "ro": 0o555, "ro/inside": 0o444}


@root_only
def test_owners(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.dir("home", uid=0), T.dir("home/u", uid=1000, gid=1000),
                                      T.file("home/u/f", b"x", uid=1000, gid=100, mode=0o4750),
                                      T.sym("home/u/l", "f", uid=1000, gid=1000),
                                      T.fifo("home/u/p", uid=7, gid=8)))
    own = lambda p: ((d / p).lstat().st_uid, (d / p).lstat().st_gid)
    assert own("home/u") == (1000, 1000) and own("home/u/f") == (1000, 100)
    assert own("home/u/l") == (1000, 1000) and own("home/u/p") == (7, 8)
    assert stat.S_IMODE((d / "home/u/f").stat().st_mode) == 0o4750  # chown before chmod


def test_rootless_keeps_no_owners(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.file("f", b"x", uid=1000, gid=1000)), rootless=True)
    assert (d / "f").stat().st_uid == os.geteuid()


def test_mtimes_directories_after_contents(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.dir("a", mtime=111), T.dir("a/b", mtime=222),
                                      T.file("a/b/f", b"x", mtime=333), T.sym("a/l", "b", mtime=444),
                                      T.file("a/later", b"y", mtime=555)))
    assert (d / "a").stat().st_mtime == 111
    assert (d / "a/b").stat().st_mtime == 222
    assert (d / "a/b/f").stat().st_mtime == 333
    assert (d / "a/l").lstat().st_mtime == 444


def test_pax_subsecond_mtime(image, unpack, T, make_layer):
    ti, _ = T.dir("x")
    ti.pax_headers["mtime"] = "1234.5"
    d = one(unpack, image, make_layer((ti, None)))
    assert (d / "x").stat().st_mtime_ns == 1_234_500_000_000


def test_xattrs_and_file_capabilities(image, unpack, T, make_layer):
    xattrs = {"user.comment": b"hi \xff\x00binary"}
    if os.geteuid() == 0:
        # cap_net_bind_service+ep, as setcap writes it (VFS_CAP_REVISION_2)
        xattrs["security.capability"] = bytes.fromhex("0100000200040000000000000000000000000000")
    d = one(unpack, image, make_layer(T.file("ping", b"\x7fELF", mode=0o755, uid=0, xattrs=xattrs)))
    for k, v in xattrs.items():
        assert os.getxattr(d / "ping", k) == v


@root_only
def test_rootless_skips_privileged_xattrs(image, unpack, T, make_layer):
    # Run as nobody: trusted.* cannot be set, and that must not fail the layer.
    path = image(make_layer(T.file("f", b"x", xattrs={"trusted.x": b"1", "user.y": b"2"})))
    out = _as_nobody(path, path.parent / "nobody-root")
    assert out.returncode == 0, out.stderr
    layer = Path(out.stdout.strip())
    assert os.getxattr(layer / "f", "user.y") == b"2"
    assert "trusted.x" not in os.listxattr(layer / "f")


@root_only
def test_devices_and_fifos(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.dir("dev"), T.dev("dev/null", "c", 1, 3),
                                      T.dev("dev/loop0", "b", 7, 0), T.fifo("dev/initctl", mode=0o600)))
    assert stat.S_ISCHR((d / "dev/null").lstat().st_mode) and (d / "dev/null").lstat().st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK((d / "dev/loop0").lstat().st_mode)
    assert stat.S_ISFIFO((d / "dev/initctl").lstat().st_mode)
    assert stat.S_IMODE((d / "dev/null").lstat().st_mode) == 0o666


def test_later_member_wins(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.file("f", b"first"), T.file("f", b"second"),
                                      T.dir("d"), T.file("d/x", b"x"), T.file("d", b"now a file"),
                                      T.sym("s", "f"), T.dir("s"), T.file("s/in", b"real dir")))
    assert (d / "f").read_bytes() == b"second"
    assert (d / "d").read_bytes() == b"now a file"
    assert (d / "s").is_dir() and not (d / "s").is_symlink()


def test_implicit_parents_and_dot_slash_names(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.dir("./"), T.file("./deep/er/file", b"x"), T.file("a//b", b"y")))
    assert (d / "deep/er/file").read_bytes() == b"x"
    assert stat.S_IMODE((d / "deep").stat().st_mode) == 0o755
    assert (d / "a/b").read_bytes() == b"y"


def test_root_entry_sets_layer_dir_mode(image, unpack, T, make_layer):
    d = one(unpack, image, make_layer(T.dir(".", mode=0o700, mtime=42)))
    assert stat.S_IMODE(d.stat().st_mode) == 0o700 and d.stat().st_mtime == 42


def test_sparse_and_large_files(image, unpack, T, make_layer, tmp_path):
    big = os.urandom(3 << 20)
    d = one(unpack, image, make_layer(T.file("big", big), T.file("empty", b"")), )
    assert (d / "big").read_bytes() == big and (d / "empty").read_bytes() == b""


def _as_nobody(image_path, root):
    """Unpack ``image_path`` into a rootless store as user nobody; print the layer dir."""
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    for p in (image_path, *image_path.parents):
        if p == Path("/"):
            break
        os.chmod(p, os.stat(p).st_mode | 0o055)
    code = ("import sys\nfrom minirt.image import open_image, Store\n"
            "with open_image(sys.argv[1]) as img:\n"
            "    print(Store(sys.argv[2]).unpack(img)[-1])\n")
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-c", code, str(image_path), str(root)],
                          capture_output=True, text=True)


@root_only
def test_rootless_as_nobody_end_to_end(image, T, make_layer, tmp_path):
    lower = make_layer(T.dir("etc"), T.file("etc/gone", b"x"), T.dir("opq"), T.file("opq/old", b"o"))
    upper = make_layer(T.file("etc/.wh.gone"), T.dir("opq"), T.file("opq/.wh..wh..opq"),
                       T.file("etc/su", b"x", mode=0o4755, uid=0), T.dir("ro", mode=0o500),
                       T.file("ro/f", b"r", mode=0o400))
    path = image(lower, upper)
    out = _as_nobody(path, tmp_path / "nobody-root")
    assert out.returncode == 0, out.stderr
    d = Path(out.stdout.strip())
    assert d.parent == tmp_path / "nobody-root/layers/rootless/sha256"
    assert (d / "etc/gone").lstat().st_rdev == 0 and stat.S_ISCHR((d / "etc/gone").lstat().st_mode)
    assert os.getxattr(d / "opq", "user.overlay.opaque") == b"y"
    assert (d / "etc/su").stat().st_uid == 65534
    assert stat.S_IMODE((d / "etc/su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((d / "ro").stat().st_mode) == 0o500


def test_modes_do_not_depend_on_the_umask(image, unpack, T, make_layer):
    path = image(make_layer(T.file("implicit/parent/f", b"x", mode=0o755), T.dir("d", mode=0o775)))
    old = os.umask(0o077)
    try:
        [d] = unpack(path)
    finally:
        os.umask(old)
    modes = {n: stat.S_IMODE((d / n).stat().st_mode) for n in ("implicit", "implicit/parent", "implicit/parent/f", "d")}
    assert modes == {"implicit": 0o755, "implicit/parent": 0o755, "implicit/parent/f": 0o755, "d": 0o775}
    assert stat.S_IMODE(d.stat().st_mode) == 0o755
