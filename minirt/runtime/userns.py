"""User namespaces: root inside, nobody special outside.

Lecture idea: a user namespace maps ids.  Inside, the container's process is
uid 0 with every capability — over its own namespaces only; outside, the
kernel sees an ordinary uid.  Two uses:

- **rootless**: an unprivileged user runs containers.  Their own uid becomes
  root inside; if /etc/subuid and /etc/subgid grant them a range (and
  ``newuidmap`` is installed), the range becomes uids 1.. inside, so images
  with several users work.
- **remap** (``--userns=remap``, as root): root inside is mapped to an
  unprivileged range outside (from /etc/subuid's ``minirt`` entry, or
  100000:65536), so a process that escapes the container is nobody.
"""

import os
import pwd

from minirt.errors import SpecError

DEFAULT_REMAP = (100000, 65536)


def _subordinate(path, user, uid):
    """The first range granted to ``user`` (by name or uid) in /etc/subuid-style ``path``."""
    try:
        with open(path) as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) == 3 and fields[0] in (user, str(uid)):
                    return int(fields[1]), int(fields[2])
    except (OSError, ValueError):
        pass
    return None


def rootless_maps(uid=None, gid=None):
    """(uid_map, gid_map) for an unprivileged user, each a list of (inside, outside, count)."""
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    uid_map, gid_map = [(0, uid, 1)], [(0, gid, 1)]
    from shutil import which  # lazily: shutil is costly to import

    subuid = _subordinate("/etc/subuid", name, uid)
    subgid = _subordinate("/etc/subgid", name, uid)
    if subuid and subgid and which("newuidmap") and which("newgidmap"):
        uid_map.append((1, subuid[0], subuid[1]))
        gid_map.append((1, subgid[0], subgid[1]))
    return uid_map, gid_map


def remap_maps():
    """(uid_map, gid_map) for ``--userns=remap``: all of 0..N-1 inside onto a high range."""
    start, count = _subordinate("/etc/subuid", "minirt", -1) or DEFAULT_REMAP
    gstart, gcount = _subordinate("/etc/subgid", "minirt", -1) or DEFAULT_REMAP
    return [(0, start, count)], [(0, gstart, gcount)]


def maps_for(mode):
    """The id maps for ``--userns`` ``mode``: "" (host; rootless users get theirs) or "remap"."""
    if mode not in ("", "host", "remap"):
        raise SpecError(f"invalid --userns {mode!r}: expected host or remap")
    if os.geteuid() != 0:
        if mode == "remap":
            raise SpecError("--userns=remap needs root; unprivileged users always get a user namespace")
        return rootless_maps()
    if mode == "remap":
        return remap_maps()
    return None


def hand_over(paths, uid_map, gid_map):
    """Give ``paths`` to the container's root: the host ids its uid and gid 0 map to.

    For ``--userns=remap``.  Inside the namespace a file of host root belongs to
    nobody, so a writable layer (overlay's upper and work directories) made by
    root would be closed to the container's root, and overlayfs, unable to use
    its work directory, silently mounts the whole root filesystem read-only.
    Rootless, the user's own directories are already its root's: nothing to do.
    """
    ids = host_root(uid_map, gid_map)
    for path in paths if ids else ():
        os.chown(path, *ids)


def host_root(uid_map, gid_map):
    """(uid, gid) on the host of a remapped container's root; None when that is
    ourselves (rootless) or there is no user namespace."""
    uid = next((outside for inside, outside, _ in uid_map or () if inside == 0), None)
    gid = next((outside for inside, outside, _ in gid_map or () if inside == 0), None)
    if uid is None or gid is None or (uid, gid) == (os.geteuid(), os.getegid()):
        return None
    return uid, gid
