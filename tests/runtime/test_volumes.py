"""Volumes (runtime/volumes.py) through the command line, as docker's users do:
``minirt volume create|ls|inspect|rm|prune``, ``-v NAME:/path`` and ``-v /path``,
docker's copy-up, ``rm -v``, ``run --rm``, ``system prune [--volumes]``,
``--userns=remap`` and a rootless user."""

import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest

import minirt
from minirt.image.busybox import busybox_rootfs
from minirt.image.write import write_image
from minirt.runtime import volumes
from minirt.runtime.container import Container

pytestmark = pytest.mark.privileged


@pytest.fixture
def root():
    d = tempfile.mkdtemp(prefix="minirt-volumes-")
    yield d
    ids = subprocess.run([sys.executable, "-m", "minirt", "--root", d, "ps", "-aq", "--no-trunc"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        cli(d, "rm", "-f", *ids)
    shutil.rmtree(d)


def cli(root, *args, ok=True):
    r = subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args], capture_output=True,
                       text=True, timeout=60)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def names(root):
    return cli(root, "volume", "ls", "-q").stdout.split()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """busybox, and a /data whose copy-up has something to keep: owners, modes,
    a set-uid bit, an xattr, hard links, a symlink."""
    tmp = tmp_path_factory.mktemp("volimage")
    (tmp / "rootfs").mkdir()
    rootfs = busybox_rootfs(tmp / "rootfs")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, **extra):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, uid, 1000000000
            for k, v in extra.items():
                setattr(ti, k, v)
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("data", tarfile.DIRTYPE, mode=0o750, uid=33)
        add("data/www", tarfile.DIRTYPE, mode=0o700, uid=33)
        add("data/www/index", data=b"hello\n", mode=0o640, uid=33,
            pax_headers={"SCHILY.xattr.user.origin": "image"})
        add("data/www/again", tarfile.LNKTYPE, linkname="data/www/index")
        add("data/suid", data=b"#!/bin/sh\n", mode=0o4755)
        add("data/link", tarfile.SYMTYPE, linkname="www/index")
    return str(write_image(tmp / "vol.tar", [rootfs, buf.getvalue()], form="docker",
                           config={"Cmd": ["sh"], "Env": ["PATH=/bin:/sbin"]}))


def test_create_ls_inspect_rm(root):
    assert cli(root, "volume", "create", "pg", "--label", "tier=back", "--label", "x").stdout == "pg\n"
    assert cli(root, "volume", "create", "pg").stdout == "pg\n"  # an existing one: left as it is
    anon = cli(root, "volume", "create").stdout.strip()
    assert len(anon) == 64 and names(root) == sorted([anon, "pg"])
    [info] = json.loads(cli(root, "volume", "inspect", "pg").stdout)
    assert set(info) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
    assert (info["Name"], info["Driver"], info["Scope"], info["Labels"]) == ("pg", "local", "local",
                                                                         {"tier": "back", "x": ""})
    assert info["Mountpoint"] == os.path.join(root, "volumes", "pg", "_data")
    assert info["CreatedAt"].endswith("Z") and os.path.isdir(info["Mountpoint"])
    assert os.stat(os.path.join(root, "volumes")).st_mode & 0o777 == 0o700  # private, as the root
    table = cli(root, "volume", "ls").stdout.splitlines()
    assert [row.split() for row in table] == [["DRIVER", "VOLUME", "NAME"]] + [["local", n] for n in names(root)]
    assert cli(root, "volume", "ls", "-q", "--filter", "label=tier=back").stdout.split() == ["pg"]
    assert cli(root, "volume", "ls", "-q", "-f", "name=pg").stdout.split() == ["pg"]
    r = cli(root, "volume", "rm", "pg", "nope", ok=False)  # one error, the other still removed
    assert (r.returncode, r.stdout, r.stderr) == (1, "pg\n", "minirt: No such volume: nope\n")
    assert cli(root, "volume", "rm", "-f", "nope", anon).stdout == f"nope\n{anon}\n"
    assert names(root) == []


def test_named_volume_outlives_its_containers(root, busybox_image):
    cli(root, "run", "--name", "w", "--network", "none", "-v", "keep:/var/lib/db", busybox_image,
        "sh", "-c", "echo 42 > /var/lib/db/answer")
    # In use by a stopped container: refused with docker's message, and kept.
    [info] = json.loads(cli(root, "inspect", "w").stdout)
    cid = info["Id"]
    assert info["Mounts"] == [{"Type": "volume", "Name": "keep", "Driver": "local", "RW": True,
                               "Source": os.path.join(root, "volumes", "keep", "_data"),
                               "Destination": "/var/lib/db"}]
    r = cli(root, "volume", "rm", "keep", ok=False)
    assert (r.returncode, r.stderr) == (1, f"minirt: remove keep: volume is in use - [{cid}]\n")
    assert cli(root, "volume", "ls", "-q", "--filter", "dangling=true").stdout == ""
    assert cli(root, "volume", "prune", "-a").stdout == "Total reclaimed space: 0B\n"
    cli(root, "rm", "-v", "w")  # -v takes anonymous volumes only
    assert cli(root, "volume", "ls", "-q", "--filter", "dangling=true").stdout == "keep\n"
    r = cli(root, "run", "--rm", "--network", "none", "-v", "keep:/db:ro", busybox_image,
            "sh", "-c", "cat /db/answer; touch /db/x 2>/dev/null || echo read-only")
    assert r.stdout == "42\nread-only\n"
    # The Python API takes the same -v.
    assert minirt.run(busybox_image, ["cat", "/v/answer"], root=root, volumes=["keep:/v"],
                      network="none").stdout == b"42\n"
    cli(root, "system", "prune")  # named volumes stay, even with --volumes (docker 23)
    cli(root, "system", "prune", "--volumes")
    assert names(root) == ["keep"]
    cli(root, "volume", "rm", "keep")
    assert os.listdir(os.path.join(root, "volumes")) == []


def test_copy_up_keeps_owners_modes_xattrs_and_links(root, image):
    r = cli(root, "run", "--rm", "--network", "none", "-v", "fresh:/data", image, "sh", "-c",
            "cd /data && stat -c '%n %u %g %a %h' . www www/index suid && readlink link")
    assert r.stdout.splitlines() == [". 33 33 750 3", "www 33 33 700 2", "www/index 33 33 640 2",
                                     "suid 0 0 4755 1", "www/index"]
    data = json.loads(cli(root, "volume", "inspect", "fresh").stdout)[0]["Mountpoint"]
    index, again = os.lstat(f"{data}/www/index"), os.lstat(f"{data}/www/again")
    assert index.st_ino == again.st_ino and index.st_mtime == 1000000000
    assert os.getxattr(f"{data}/www/index", "user.origin") == b"image"
    # An existing volume with content is used as it is: no copy-up over it.
    os.unlink(f"{data}/suid")
    r = cli(root, "run", "--rm", "--network", "none", "-v", "fresh:/data", image, "ls", "/data")
    assert r.stdout.split() == ["link", "www"]
    cli(root, "volume", "rm", "fresh")


def test_anonymous_volumes_go_with_rm_v_and_run_rm(root, busybox_image):
    cli(root, "run", "--rm", "--network", "none", "-v", "/scratch", busybox_image, "touch", "/scratch/x")
    assert names(root) == []  # --rm took it
    cli(root, "run", "--name", "a", "--network", "none", "-v", "/scratch", busybox_image, "touch", "/scratch/x")
    [anon] = names(root)
    assert json.loads(cli(root, "volume", "inspect", anon).stdout)[0]["Labels"] == {volumes.ANONYMOUS: ""}
    cli(root, "rm", "a")  # without -v it stays, dangling
    assert names(root) == [anon]
    cli(root, "volume", "create", "named")
    out = cli(root, "volume", "prune", "-f").stdout  # anonymous only, without -a
    assert out.startswith(f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: ")
    assert names(root) == ["named"]
    cli(root, "run", "--name", "b", "--network", "none", "-v", "/scratch", busybox_image, "true")
    cli(root, "rm", "-v", "b")
    assert names(root) == ["named"]
    cli(root, "run", "--name", "c", "--network", "none", "-v", "/scratch", busybox_image, "true")
    cli(root, "system", "prune", "-f", "--volumes")  # the container first, then its volume
    assert names(root) == ["named"]
    assert cli(root, "volume", "prune", "-a").stdout.startswith("Deleted Volumes:\nnamed\n")


def test_detached_run_rm_takes_its_anonymous_volume(root, busybox_image):
    cid = cli(root, "run", "-d", "--rm", "--network", "none", "-v", "/scratch", busybox_image, "true").stdout.strip()
    assert cli(root, "wait", cid, ok=False).returncode in (0, 1)
    for _ in range(200):
        if not names(root):
            break
        subprocess.run(["sleep", "0.05"])
    assert names(root) == []


def test_remapped_container_owns_its_volume(root, image):
    r = cli(root, "run", "--rm", "--network", "none", "--userns=remap", "-v", "shifted:/data", image,
            "sh", "-c", "stat -c '%u %g' /data/www/index; echo new > /data/new && stat -c '%u' /data/new")
    assert r.stdout.splitlines() == ["33 33", "0"]
    data = os.path.join(root, "volumes", "shifted", "_data")
    assert os.lstat(f"{data}/www/index").st_uid == 100033 and os.lstat(f"{data}/new").st_uid == 100000
    cli(root, "volume", "rm", "shifted")


def test_rootless_named_volume(nobody, home, image):
    shutil.copyfile(image, os.path.join(home, "vol.tar"))
    os.chmod(os.path.join(home, "vol.tar"), 0o644)
    r = nobody("run", "--rm", "-v", "copied:/data", "vol.tar", "sh", "-c", "cat /data/www/again; ls /data")
    assert (r.returncode, r.stdout) == (0, b"hello\nlink\nsuid\nwww\n"), r.stderr
    assert nobody("volume", "rm", "copied").returncode == 0
    assert nobody("volume", "create", "mine").returncode == 0
    r = nobody("run", "--rm", "-v", "mine:/etc", "busybox.tar", "sh", "-c",
               "stat -c '%u %a' /etc/passwd; echo hi > /etc/note")
    assert (r.returncode, r.stdout) == (0, b"0 644\n"), r.stderr
    r = nobody("run", "--rm", "-v", "mine:/etc", "busybox.tar", "cat", "/etc/note")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
    assert nobody("volume", "rm", "mine").stdout == b"mine\n"


def test_volume_rm_waits_for_a_container_being_created(root, busybox_image):
    """A creation holds volumes/ shared from making its volumes until its
    config.json names them; ``volume rm`` holds it alone while it looks: so it
    sees the new container and refuses, and never takes the volume under it."""
    cli(root, "volume", "create", "race")
    creation = os.open(os.path.join(root, "volumes"), os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(creation, fcntl.LOCK_SH)  # a creation under way, not yet recorded
    try:
        rm = subprocess.Popen([sys.executable, "-m", "minirt", "--root", root, "volume", "rm", "race"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            rm.wait(timeout=1)  # it waits for the creation
        spec = minirt.prepare(busybox_image, ["true"], root=root, volumes=["race:/x"], network="none")
        c = Container(spec, root)
        c.create()  # (its own shared hold goes past the waiting rm)
    finally:
        os.close(creation)
    try:
        out, err = rm.communicate(timeout=30)
        assert (rm.returncode, err) == (1, f"minirt: remove race: volume is in use - [{spec.id}]\n")
        assert names(root) == ["race"]
    finally:
        c.remove(force=True)
    cli(root, "volume", "rm", "race")


def test_system_prune_sweeps_what_a_killed_create_or_rm_left(root):
    cli(root, "volume", "create", "kept")
    with open("/proc/sys/kernel/pid_max") as f:
        dead = int(f.read()) + 1  # no process has it
    for leftover in (f".new-{dead}-half", ".removing-gone"):
        os.makedirs(os.path.join(root, "volumes", leftover, "_data", "deep"))
    live = os.path.join(root, "volumes", f".new-{os.getpid()}-making")  # a create under way: not prune's
    os.makedirs(live)
    cli(root, "system", "prune")
    assert sorted(os.listdir(os.path.join(root, "volumes"))) == [f".new-{os.getpid()}-making", "kept"]
    os.rmdir(live)
    cli(root, "volume", "rm", "kept")
