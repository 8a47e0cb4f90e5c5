"""A bundle's mounts as runc makes them: recursive flags (rro ...), a read-only
/dev (filled first), and proc or sysfs refused where the rootfs has a symlink."""

import json
import os

import pytest

from minirt.kernel import libc

pytestmark = pytest.mark.privileged


def _edit_mounts(b, change):
    """Change the bundle ``b``'s mount list (the spec's defaults) in place with ``change``."""
    path = os.path.join(b, "config.json")
    with open(path) as f:
        config = json.load(f)
    change(config["mounts"])
    with open(path, "w") as f:
        json.dump(config, f)


@pytest.fixture
def volume(tmp_path):
    """A tmpfs with another tmpfs mounted below it (unmounted at the end)."""
    top = tmp_path / "volume"
    top.mkdir()
    libc.mount("tmpfs", str(top), "tmpfs")
    try:
        (top / "sub").mkdir()
        libc.mount("tmpfs", str(top / "sub"), "tmpfs")
        try:
            yield str(top)
        finally:
            libc.umount(str(top / "sub"))
    finally:
        libc.umount(str(top))


@pytest.mark.parametrize("options, sub_writable", [(["rbind", "ro"], True), (["rbind", "rro"], False),
                                                  (["rbind", "ro", "rro"], False), (["rbind", "rro", "rrw"], True)])
def test_recursive_read_only_reaches_the_mounts_below(oci, bundle, volume, options, sub_writable):
    mount = {"source": volume, "destination": "/mnt", "type": "bind", "options": options}
    b = bundle(["sh", "-c", "touch /mnt/top; echo $?; touch /mnt/sub/file; echo $?"])
    _edit_mounts(b, lambda mounts: mounts.append(mount))
    r = oci("run", "--bundle", b, "m1")
    assert r.returncode == 0, r.stderr
    top, sub = r.stdout.split()
    assert (top, sub) == ("0" if options == ["rbind", "rro", "rrw"] else "1", "0" if sub_writable else "1")
    assert sub_writable or "Read-only file system" in r.stderr


def test_a_read_only_dev_is_made_then_read_only(oci, bundle):
    b = bundle(["sh", "-c", "grep '^tmpfs /dev ' /proc/mounts; ls /dev/null /dev/pts/ptmx; touch /dev/x"])
    _edit_mounts(b, lambda mounts: next(m for m in mounts if m["destination"] == "/dev")["options"].append("ro"))
    r = oci("run", "--bundle", b, "m2")
    assert r.returncode == 1 and "Read-only file system" in r.stderr
    line, null, ptmx = r.stdout.splitlines()
    assert " ro," in line and (null, ptmx) == ("/dev/null", "/dev/pts/ptmx")


@pytest.mark.parametrize("where, kind", [("proc", "proc"), ("sys", "sysfs")])
def test_proc_or_sys_through_a_symlink_is_refused(oci, bundle, tmp_path, where, kind):
    b = bundle(["true"])
    path = os.path.join(b, "rootfs", where)
    if os.path.isdir(path):
        os.rmdir(path)
    os.symlink("/elsewhere", path)
    r = oci("run", "--bundle", b, "m3")
    assert r.returncode == 1
    assert f"/{where}: filesystem '{kind}' must be mounted on ordinary directory" in r.stderr
    assert oci.ids() == [] and not os.path.exists(os.path.join(b, "rootfs", "elsewhere"))
