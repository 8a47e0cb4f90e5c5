"""Who the container's process runs as: ``-u`` and the image's User, resolved.

A user name means what the *container's* /etc/passwd says, not the host's, so
this runs after pivot_root and reads the container's files.  Like docker, a
numeric uid need not exist in /etc/passwd; a name must.  The files are the
image's, so they are read as untrusted input: bounded in size (a link to
/dev/zero must not grow PID 1 without end) and every id checked.
"""

import os

from minirt import bounded
from minirt.errors import SpecError
from minirt.spec import NO_ID, is_id

DATABASE_LIMIT = 16 * bounded.MiB


class User:
    """Numeric ids to run as, the supplementary gids, and $HOME."""

    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid=0, gid=0, groups=(), home="/"):
        self.uid, self.gid, self.groups, self.home = uid, gid, groups, home

    def __repr__(self):
        return f"User(uid={self.uid}, gid={self.gid}, groups={self.groups!r}, home={self.home!r})"


def _entries(path):
    if not os.path.exists(path):
        return []  # an image without one knows numeric ids only
    text = bounded.read(path, "the container's user database", DATABASE_LIMIT).decode(errors="replace")
    return [line.split(":") for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _id(text, what):
    if not is_id(text):
        raise SpecError(f"invalid {what} {text!r}: not a number from 0 to {NO_ID - 1}")
    return int(text)


def exact(spec_user, groups, passwd="/etc/passwd"):
    """An OCI bundle's user: "UID:GID" and the supplementary ``groups`` exactly
    as given (no /etc/group lookup: the engine did it); only HOME is looked up."""
    uid, _, gid = spec_user.partition(":")
    entry = next((e for e in _entries(passwd) if len(e) >= 7 and e[2] == uid), None)
    return User(uid=_id(uid, "uid"), gid=_id(gid or "0", "gid"), groups=sorted({_id(str(g), "gid") for g in groups}),
                home=(entry[5] if entry else "") or "/")


def resolve(spec_user, passwd="/etc/passwd", group="/etc/group", extra_groups=()):
    """Turn "", "UID", "UID:GID", "NAME" or "NAME:GROUP" into a User.

    ``extra_groups`` (``--group-add``) are names or gids added to the
    supplementary groups."""
    name, _, grp = (spec_user or "0").partition(":")
    users = [e for e in _entries(passwd) if len(e) >= 7]
    groups = [e for e in _entries(group) if len(e) >= 4]

    entry = next((e for e in users if e[0] == name), None)
    if entry is None and name.isascii() and name.isdigit():
        entry = next((e for e in users if e[2] == name), None)
    if entry is None and not name.isdigit():
        raise SpecError(f"unable to find user {name}: no matching entries in passwd file")
    uid = _id(entry[2] if entry else name, "uid")
    gid = _id(entry[3], "gid") if entry else 0 if not grp else None
    home = entry[5] if entry else "/"

    if grp:
        match = next((g for g in groups if g[0] == grp), None)
        if match:
            gid = _id(match[2], "gid")
        elif grp.isdigit():
            gid = _id(grp, "gid")
        else:
            raise SpecError(f"unable to find group {grp}: no matching entries in group file")

    username = entry[0] if entry else None
    extra = {_id(g[2], "gid") for g in groups if username and username in g[3].split(",")}
    for name in extra_groups:
        match = next((g for g in groups if g[0] == name), None)
        if match:
            extra.add(_id(match[2], "gid"))
        elif str(name).isdigit():
            extra.add(_id(str(name), "gid"))
        else:
            raise SpecError(f"unable to find group {name}: no matching entries in group file")
    return User(uid=uid, gid=gid, groups=sorted(extra - {gid}), home=home or "/")
