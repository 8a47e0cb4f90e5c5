"""``--userns=remap`` end to end: the id-shifted layer store (minirt/image/store.py)
seen from inside a remapped container and from the host.

Container root is host uid 100000.  The image's files must look like they do
under docker -- owned by root (and by uid 33, ...) inside -- so that overlay
can copy them up, and the store's opaque directories and whiteouts must be the
ones an overlay mounted inside a user namespace (``userxattr``) obeys.
"""

import io
import os
import shutil
import tarfile
import tempfile

import pytest

import minirt
from minirt.errors import ImageError
from minirt.image.busybox import busybox_rootfs
from minirt.image.write import write_image
from minirt.runtime.container import Container

pytestmark = pytest.mark.privileged


def layer(*members):
    """A layer tar of (name, data or None for a directory, uid)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, uid in members:
            ti = tarfile.TarInfo(name)
            ti.uid = ti.gid = uid
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            else:
                ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.fixture(scope="module")
def root():
    """A state root that was open to every user (minirt closes it, but for uid 100000's group)."""
    d = tempfile.mkdtemp(prefix="minirt-remap-store-")
    os.chmod(d, 0o711)
    yield d
    shutil.rmtree(d)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """busybox, then a layer with a www-data tree and an opaque-to-be directory,
    then a layer that makes it opaque and whites out /etc/group."""
    tmp = tmp_path_factory.mktemp("remap")
    (tmp / "rootfs").mkdir()
    rootfs = busybox_rootfs(tmp / "rootfs")
    middle = layer(("srv", None, 33), ("srv/index", b"www\n", 33),
                   ("etc/opq", None, 0), ("etc/opq/old", b"old", 0))
    top = layer(("etc/opq", None, 0), ("etc/opq/.wh..wh..opq", b"", 0), ("etc/opq/new", b"new", 0),
                ("etc/.wh.group", b"", 0))
    return str(write_image(tmp / "remap.tar", [rootfs, middle, top], form="docker",
                           config={"Cmd": ["sh"], "Env": ["PATH=/bin:/sbin"]}))


def test_image_files_belong_to_root_inside_and_copy_up(busybox_image, root):
    r = minirt.run(busybox_image, ["sh", "-c", "id -u; stat -c %u /etc/passwd;"
                                   " echo x >> /etc/passwd && echo copy-up-ok"],
                   root=root, userns="remap")
    assert (r.exit_code, r.stdout) == (0, b"0\n0\ncopy-up-ok\n"), r.stderr
    # On the host, the layer's files belong to the shifted root.
    shifted = os.path.join(root, "layers/shift-u0.100000.65536-g0.100000.65536/sha256")
    [hexdir] = os.listdir(shifted)
    st = os.lstat(os.path.join(shifted, hexdir, "etc/passwd"))
    assert (st.st_uid, st.st_gid) == (100000, 100000)


def test_owners_opaque_dirs_and_whiteouts_inside(image, root):
    r = minirt.run(image, ["sh", "-c", "stat -c '%u %g' /srv /srv/index; ls /etc/opq;"
                           " test -e /etc/group || echo group-gone;"
                           " echo more >> /srv/index && cat /srv/index; rm /etc/opq/new && ls /etc/opq | wc -l"],
                   root=root, userns="remap")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "33 33", "33 33",     # shifted on the way in, shifted back by the namespace
        "new",                # user.overlay.opaque hid "old" from the layer below
        "group-gone",         # the whiteout is obeyed
        "www", "more",        # copy-up of a non-root file
        "0"]


def test_remapped_process_is_uid_100000_on_the_host(busybox_image, root):
    spec = minirt.prepare(busybox_image, ["sleep", "30"], root=root, userns="remap", remove=True)
    assert all(d.startswith(os.path.join(root, "layers/shift-")) for d in spec.layers)
    c = Container(spec, root)
    c.create()
    try:
        null = os.open(os.devnull, os.O_RDWR)
        try:
            c.start(stdio=(null, null, null))
        finally:
            os.close(null)
        with open(f"/proc/{c.pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        assert status["Uid"].split() == ["100000"] * 4
        assert status["Gid"].split() == ["100000"] * 4
        c.signal(9)
        assert c.wait() == 137
    finally:
        c.delete()


def test_unreachable_state_root_is_a_clear_error(busybox_image):
    # minirt opens its own state root to uid 100000's group, but not what lies
    # above it: a root in a private 0700 directory could not be reached for the
    # mount.  Said before anything starts, not as a bare "Permission denied"
    # from inside the container.
    above = tempfile.mkdtemp(prefix="minirt-remap-private-")
    try:
        with pytest.raises(ImageError, match=f"{above}: not searchable by uid 100000"):
            minirt.run(busybox_image, ["true"], root=os.path.join(above, "root"), userns="remap")
    finally:
        shutil.rmtree(above)
