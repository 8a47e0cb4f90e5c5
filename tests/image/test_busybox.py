"""The example busybox image: built by minirt's own writer, deterministic, and
a root filesystem that really runs."""

import os
import subprocess

import pytest

from minirt.image import open_image
from minirt.image.busybox import build_busybox_image

pytestmark = pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static")


@pytest.mark.parametrize("form", ["docker", "oci-archive", "oci-layout"])
def test_busybox_image_forms(tmp_path, unpack, form):
    path = build_busybox_image(tmp_path / ("bb" if form == "oci-layout" else "bb.tar"), form)
    with open_image(path) as img:
        cfg = img.config["config"]
        assert cfg["Cmd"] == ["sh"]
        assert any(e.startswith("PATH=") and "/bin" in e for e in cfg["Env"])
        assert len(img.layers) == 1
    [d] = unpack(path)
    assert os.readlink(d / "bin/sh") == "/bin/busybox"
    assert (d / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (d / "root").stat().st_mode & 0o777 == 0o700
    assert "nobody:x:65534:65534" in (d / "etc/passwd").read_text()
    assert "root:x:0:" in (d / "etc/group").read_text()
    for empty in ("dev", "proc", "sys", "home"):
        assert os.listdir(d / empty) == []


def test_docker_and_oci_twins_share_their_layer(tmp_path, unpack):
    a = unpack(build_busybox_image(tmp_path / "a.tar", "docker"))
    b = unpack(build_busybox_image(tmp_path / "b.tar", "oci-archive"))
    assert a == b


def test_deterministic(tmp_path):
    one = build_busybox_image(tmp_path / "1.tar").read_bytes()
    two = build_busybox_image(tmp_path / "2.tar").read_bytes()
    assert one == two


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_unpacked_rootfs_runs(tmp_path, unpack):
    [d] = unpack(build_busybox_image(tmp_path / "bb.tar"))
    run = lambda *cmd: subprocess.run(["chroot", str(d), *cmd], capture_output=True, text=True, timeout=30)
    assert run("/bin/busybox", "true").returncode == 0
    out = run("/bin/sh", "-c", "echo hello from $(id -un); ls /bin | wc -l")
    assert out.returncode == 0, out.stderr
    greeting, count = out.stdout.split("\n")[:2]
    assert greeting == "hello from root" and int(count) > 50
