"""Resolving -u against the container's own /etc/passwd and /etc/group."""

import pytest

from minirt.errors import SpecError
from minirt.runtime.users import resolve


@pytest.fixture
def files(tmp_path):
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (tmp_path / "group").write_text("root:x:0:\napp:x:1000:\nwheel:x:10:app\nstaff:x:50:other,app\n")
    return str(tmp_path / "passwd"), str(tmp_path / "group")


def test_default_is_root(files):
    u = resolve("", *files)
    assert (u.uid, u.gid, u.home) == (0, 0, "/root")


def test_name_gets_its_primary_and_supplementary_groups(files):
    u = resolve("app", *files)
    assert (u.uid, u.gid, u.groups, u.home) == (1000, 1000, [10, 50], "/home/app")


def test_numeric_uid_need_not_exist(files):
    u = resolve("4242:4343", *files)
    assert (u.uid, u.gid, u.groups) == (4242, 4343, [])


def test_group_by_name(files):
    assert resolve("app:wheel", *files).gid == 10


@pytest.mark.parametrize("user, message", [("nobody-here", "unable to find user"), ("app:nogroup", "unable to find group")])
def test_unknown_names_are_refused(files, user, message):
    with pytest.raises(SpecError, match=message):
        resolve(user, *files)
