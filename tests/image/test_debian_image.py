"""The example Debian image (images/debian.tar): debootstrap's minbase as a
distribution's base image is, without its build host's files or apt's
downloads; made once; a debootstrap that fails is one line and leaves nothing."""

import glob
import os
import stat

import pytest

from minirt.errors import ImageError
from minirt.image import open_image
from minirt.image.debian import build_debian_image, made_once


@pytest.mark.privileged  # debootstrap needs root (the image may have to be made)
def test_the_image_is_debian_s_minbase_without_its_build_host(debian_image, unpack):
    with open_image(debian_image) as img:
        assert img.config["config"]["Cmd"] == ["bash"] and len(img.layers) == 1
    [d] = unpack(debian_image)
    assert 'VERSION_CODENAME=bookworm' in (d / "etc/os-release").read_text()
    for host_file in ("etc/hostname", "etc/resolv.conf"):
        assert (d / host_file).read_bytes() == b""
    assert os.listdir(d / "dev") == []
    assert os.listdir(d / "var/lib/apt/lists") == ["partial"]
    assert "partial" in os.listdir(d / "var/cache/apt/archives")
    assert not glob.glob(str(d / "var/cache/apt/archives/*.deb"))
    assert not (d / "var/log/bootstrap.log").exists()
    su, perl, twin = (os.lstat(d / p) for p in ("usr/bin/su", "usr/bin/perl", "usr/bin/perl5.36.0"))
    assert stat.S_IMODE(su.st_mode) == 0o4755 and (su.st_uid, su.st_gid) == (0, 0)
    assert perl.st_ino == twin.st_ino and perl.st_nlink == 2
    assert "_apt:x:42:65534:" in (d / "etc/passwd").read_text()


def test_an_existing_image_is_kept(tmp_path):
    path = tmp_path / "debian.tar"
    path.write_bytes(b"made earlier")
    assert made_once(path) is False
    assert path.read_bytes() == b"made earlier"


@pytest.mark.privileged
def test_a_debootstrap_that_fails_is_one_line_and_leaves_nothing(tmp_path):
    scratch = set(glob.glob("/var/tmp/minirt-debian-*"))
    with pytest.raises(ImageError) as failed:
        build_debian_image(tmp_path / "debian.tar", suite="no-such-suite")
    assert str(failed.value) == ("debootstrap no-such-suite failed (exit 1): "
                                 "E: No such script: /usr/share/debootstrap/scripts/no-such-suite")
    assert os.listdir(tmp_path) == [] and set(glob.glob("/var/tmp/minirt-debian-*")) == scratch
