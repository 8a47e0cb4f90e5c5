"""A bundle's mount and user namespaces given by ``path``: the container is made
in them (its root filesystem built inside the mount namespace; PID 1 born in
the user namespace, which owns its new namespaces), and ``exec`` joins them."""

import contextlib
import json
import os

import pytest

from minirt.kernel import libc, namespaces
from tests.oci.test_cli import wait_for

pytestmark = pytest.mark.privileged

MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@contextlib.contextmanager
def kept_namespace(path, kind, id_map=None):
    """A new namespace of ``kind`` that no process is in, kept by its
    /proc/PID/ns file bound onto ``path`` (``id_map``: its uid and gid map)."""
    path.touch()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc.unshare(namespaces.FLAGS[kind])
            os.write(ready_w, b"1")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"1"
        for name in ("uid_map", "gid_map") if id_map else ():
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in id_map))
        libc.mount(f"/proc/{pid}/ns/{kind}", str(path), None, libc.MS_BIND)
    finally:
        os.write(go_w, b"1")
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
    try:
        yield str(path)
    finally:
        libc.umount(str(path), libc.MNT_DETACH)


def _name(path, kind):
    return f"{kind}:[{os.stat(path).st_ino}]"


def test_a_mount_namespace_joined_by_path(oci, bundle, tmp_path):
    with kept_namespace(tmp_path / "mnt", "mnt") as ns:
        own = [{"type": t} for t in ("pid", "ipc", "uts", "network")]
        b = bundle(["sleep", "100"], linux__namespaces=own + [{"type": "mount", "path": ns}])
        assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "j1").returncode == 0
        pid = int((tmp_path / "pid").read_text())
        assert os.readlink(f"/proc/{pid}/ns/mnt") == _name(ns, "mnt") != os.readlink("/proc/self/ns/mnt")
        assert oci("start", "j1").returncode == 0
        r = oci("exec", "j1", "sh", "-c", "readlink /proc/self/ns/mnt; ls /bin/busybox")
        assert (r.returncode, r.stdout.split()) == (0, [_name(ns, "mnt"), "/bin/busybox"]), r.stderr
        assert oci("delete", "--force", "j1").returncode == 0
        oci.reap(pid)
    assert os.path.ismount("/proc") and not os.path.exists(os.path.join(b, "rootfs", "proc", "self"))


def test_a_user_namespace_joined_by_path(oci, bundle, reachable, tmp_path):
    with kept_namespace(tmp_path / "user", "user", MAP) as ns:
        own = [{"type": t} for t in ("pid", "ipc", "uts", "network", "mount")]
        b = bundle(["sh", "-c", "readlink /proc/self/ns/user; cat /proc/self/uid_map; hostname; exec sleep 100"],
                   linux__namespaces=own + [{"type": "user", "path": ns}], linux__uidMappings=MAP,
                   linux__gidMappings=MAP, hostname="joined")
        out = tmp_path / "out"
        with open(out, "w") as f:
            r = oci("create", "--bundle", reachable(b), "--pid-file", str(tmp_path / "pid"), "j2", stdout=f)
        assert r.returncode == 0, r.stderr
        pid = int((tmp_path / "pid").read_text())
        assert os.readlink(f"/proc/{pid}/ns/user") == _name(ns, "user")
        # its own namespaces are the joined user namespace's (its root may set the hostname)
        assert oci("start", "j2").returncode == 0
        wait_for(lambda: out.read_text().count("\n") == 3)
        assert out.read_text().split() == [_name(ns, "user"), "0", "100000", "65536", "joined"]
        with open(f"/proc/{pid}/status") as f:
            assert next(line for line in f if line.startswith("Uid:")).split()[1:] == ["100000"] * 4
        r = oci("exec", "j2", "readlink", "/proc/self/ns/user")
        assert (r.returncode, r.stdout.strip()) == (0, _name(ns, "user")), r.stderr
        assert oci("delete", "--force", "j2").returncode == 0
        oci.reap(pid)


def test_a_user_namespace_whose_maps_differ_from_the_bundles_is_refused(oci, bundle, tmp_path):
    with kept_namespace(tmp_path / "user", "user", MAP) as ns:
        other = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        b = bundle(["true"], linux__namespaces=[{"type": "mount"}, {"type": "user", "path": ns}],
                   linux__uidMappings=other, linux__gidMappings=MAP)
        r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "j3")
        assert r.returncode == 1
        assert ("linux.uidMappings 0:200000:65536 are not those of the user namespace joined (0:100000:65536)"
                in r.stderr)
        assert oci.ids() == [] and not (tmp_path / "pid").exists()


def test_a_path_that_is_not_a_mount_namespace_is_refused(oci, bundle, tmp_path):
    b = bundle(["true"], linux__namespaces=[{"type": "mount", "path": "/proc/self/ns/net"}])
    r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "j4")
    assert r.returncode == 1 and "linux.namespaces: /proc/self/ns/net is not a mnt namespace" in r.stderr
    assert oci.ids() == []


def test_in_a_user_namespace_bind_sources_out_of_its_roots_reach_are_mounted(oci, bundle, reachable, tmp_path):
    hidden = tmp_path / "hidden" / "dir"   # (under pytest's 0700 directory, and 0700 itself)
    hidden.mkdir(parents=True)
    (hidden / "foo.txt").write_text("found\n")
    os.chmod(hidden.parent, 0o700)
    own = [{"type": t} for t in ("pid", "ipc", "uts", "network", "mount", "user")]
    mount = {"source": str(hidden), "destination": "/tmp/mount-1", "type": "bind", "options": ["bind", "ro"]}
    b = bundle(["sh", "-c", "cat /tmp/mount-1/foo.txt; exec sleep 100"], linux__namespaces=own,
               linux__uidMappings=MAP, linux__gidMappings=MAP)
    with open(os.path.join(b, "config.json")) as f:
        config = json.load(f)
    config["mounts"].append(mount)
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(config, f)
    out = tmp_path / "out"
    with open(out, "w") as f:
        r = oci("create", "--bundle", reachable(b), "--pid-file", str(tmp_path / "pid"), "j5", stdout=f)
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "pid").read_text())
    assert oci("start", "j5").returncode == 0
    wait_for(lambda: out.read_text() == "found\n")
    r = oci("exec", "j5", "sh", "-c", "cat /tmp/mount-1/foo.txt; touch /tmp/mount-1/x")
    assert r.returncode == 1 and r.stdout == "found\n" and "Read-only file system" in r.stderr
    assert oci("delete", "--force", "j5").returncode == 0
    oci.reap(pid)
