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


def test_an_endless_passwd_is_refused(tmp_path, files):
    """An image may make /etc/passwd a link to /dev/zero, or a file of gigabytes."""
    endless, huge = tmp_path / "endless", tmp_path / "huge"
    endless.symlink_to("/dev/zero")
    with open(huge, "wb") as f:
        f.truncate(1 << 30)  # sparse
    with pytest.raises(SpecError, match="not a regular file"):
        resolve("app", str(endless), files[1])
    with pytest.raises(SpecError, match="larger than 16 MiB"):
        resolve("app", str(huge), files[1])


def test_no_passwd_means_numeric_ids_only(tmp_path):
    missing = str(tmp_path / "none")
    assert resolve("7:8", missing, missing).uid == 7
    with pytest.raises(SpecError, match="unable to find user app"):
        resolve("app", missing, missing)


@pytest.mark.parametrize("passwd, group, user", [
    ("app:x:abc:1000::/:/bin/sh\n", "", "app"),            # uid not a number
    ("app:x:1000:-1::/:/bin/sh\n", "", "app"),             # gid not a number
    ("app:x:99999999999:0::/:/bin/sh\n", "", "app"),       # past 32 bits
    ("app:x:1000:1000::/:/bin/sh\n", "g:x:zz:\n", "app:g"),  # group id not a number
    ("", "", "4294967295"),                                 # (uid_t)-1: setuid would keep root
    ("", "", "0:4294967295"),
])
def test_damaged_entries_are_one_line_errors(tmp_path, passwd, group, user):
    (tmp_path / "p").write_text(passwd)
    (tmp_path / "g").write_text(group)
    with pytest.raises(SpecError, match="invalid"):
        resolve(user, str(tmp_path / "p"), str(tmp_path / "g"))
