"""Volumes: data that outlives its containers (``minirt volume``, ``-v NAME:/path``).

Lecture idea: a container's writable layer goes with the container; what must
survive it -- a database's files -- lives in a volume, a directory the runtime
keeps beside its containers and mounts into any of them.  docker's local
driver is the model, its layout and its rules::

    volumes/NAME/volume.json    Name, Driver, CreatedAt, Labels, Options, Scope (docker's inspect)
    volumes/NAME/_data/         what the containers see

A named volume is made by ``volume create`` or on first use (``-v
NAME:/path``); an anonymous one (``-v /path``) gets a random name and docker's
label ``com.docker.volume.anonymous``, and goes with its container on ``rm -v``
and ``run --rm``.  An empty volume is filled with what the image has at the
mount's path (docker's copy-up: ``copy_up``, done by PID 1 from its merged root
before the volume covers it; owners, modes, xattrs, hard links and times kept).
PID 1 does it on any start that finds the volume empty; docker, only when it
creates the container (a volume emptied by hand is filled again by ``start``).

A volume is in use while a container, running or not, names it in its
config.json: ``volume rm`` refuses it then, and ``volume prune`` leaves it.
``volumes/`` is private as the state root is; a ``--userns=remap`` container's
root may pass through to its volume's ``_data``, which it owns from the volume's
creation (so its copy-up writes the image's owners as the container sees them).
"""

import os
import stat
import time

from minirt.errors import MinirtError
from minirt.runtime import state, userns
from minirt.spec import check_volume_name, labels_match

ANONYMOUS = "com.docker.volume.anonymous"   # docker's label on a volume made by `-v /path`


class NoSuchVolume(MinirtError):
    pass


def volumes_dir(root):
    return os.path.join(root, "volumes")


def data_dir(root, name):
    """Where a volume's content is (docker's Mountpoint)."""
    return os.path.join(volumes_dir(root), name, "_data")


def create(root, name=None, labels=None, driver="local", owner=None):
    """Make the volume ``name`` (a random one if None) unless it exists; its record.

    ``owner``: the host (uid, gid) of a remapped container's root, which gets
    ``_data`` of a new volume and may pass through to it."""
    if driver != "local":
        raise MinirtError(f"create {name or ''}: error looking up volume plugin {driver}:"
                          f" plugin \"{driver}\" not found")
    name = check_volume_name(name) if name else os.urandom(32).hex()
    try:
        _make(root, name, labels, owner)
    except OSError as e:
        raise MinirtError(f"create {name}: {e.strerror or e}") from None
    return inspect(root, name)


def _make(root, name, labels, owner):
    group = owner[1] if owner else None
    top = volumes_dir(root)
    state.private_root(root, group)
    state.private_dir(top, group)
    path = os.path.join(top, name)
    if not os.path.isdir(path):
        new = os.path.join(top, f".new-{os.getpid()}-{name}")
        state.remove_tree(new)
        os.mkdir(new, 0o700)
        os.mkdir(os.path.join(new, "_data"), 0o755)
        if owner:
            os.chown(os.path.join(new, "_data"), *owner)
        state.write_json(os.path.join(new, "volume.json"), {
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "Driver": "local",
            "Labels": dict(labels or {}), "Name": name, "Options": {}, "Scope": "local"})
        try:
            os.rename(new, path)
        except OSError:  # made by another minirt meanwhile: theirs is the volume
            state.remove_tree(new)
    if group is not None:
        state.private_dir(path, group)


def inspect(root, name):
    """docker's ``volume inspect`` fields of the volume ``name``."""
    try:
        record = state.read_json(os.path.join(volumes_dir(root), _known(name), "volume.json"))
    except (FileNotFoundError, NotADirectoryError):
        raise NoSuchVolume(f"get {name}: no such volume") from None
    except (OSError, ValueError) as e:
        raise MinirtError(f"volume {name}: unreadable record: {e}") from None
    record["Mountpoint"] = data_dir(root, name)
    return dict(sorted(record.items()))


def _known(name):
    """``name`` if it can be a volume's (so no path leaves volumes/), else NoSuchVolume."""
    try:
        return check_volume_name(name)
    except MinirtError:
        raise NoSuchVolume(f"get {name}: no such volume") from None


def names(root):
    try:
        return sorted(n for n in os.listdir(volumes_dir(root)) if not n.startswith("."))
    except FileNotFoundError:
        return []


def users(root):
    """{volume name: [ids of the containers that name it]}, created ones included."""
    found = {}
    for cid in state.container_ids(root):
        try:
            config = state.read_json(os.path.join(state.containers_dir(root), cid, "config.json"))
        except (OSError, ValueError):
            continue  # half made or half removed: prune's to clean up
        for m in config.get("mounts") or ():
            if m.get("volume"):
                found.setdefault(m["volume"], []).append(cid)
    return found


FILTERS = ("dangling", "name", "label")


def listing(root, filters=()):
    """The records of the volumes that pass every ``KEY=VALUE`` filter (docker's
    dangling=true|false, name=PART, label=KEY[=VALUE])."""
    wanted = [_filter(f) for f in filters]
    used = users(root) if any(key == "dangling" for key, _ in wanted) else {}
    out = []
    for name in names(root):
        try:
            record = inspect(root, name)
        except MinirtError:
            continue  # removed meanwhile
        if all(_passes(record, key, value, used) for key, value in wanted):
            out.append(record)
    return out


def _filter(text):
    key, eq, value = text.partition("=")
    if not eq or key not in FILTERS:
        raise MinirtError(f"invalid filter {text!r} (volume filters: {', '.join(FILTERS)})")
    if key == "dangling" and value not in ("true", "false", "1", "0"):
        raise MinirtError(f"invalid filter 'dangling={value}': expected true or false")
    return key, value


def _passes(record, key, value, used):
    if key == "dangling":
        return (record["Name"] not in used) == (value in ("true", "1"))
    if key == "name":
        return value in record["Name"]
    return labels_match(record.get("Labels") or {}, value)


def remove(root, name, force=False):
    """``volume rm``: refused while a container uses it; ``force`` forgives a missing one."""
    path = os.path.join(volumes_dir(root), _known(name))
    if not os.path.isfile(os.path.join(path, "volume.json")):
        if force:
            return
        raise NoSuchVolume(f"No such volume: {name}")
    held = state.hold(volumes_dir(root))  # no container takes it up between the look and the rename
    try:
        using = users(root).get(name)
        if using:
            raise MinirtError(f"remove {name}: volume is in use - [{', '.join(using)}]")
        doomed = os.path.join(volumes_dir(root), f".removing-{name}")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return  # removed by another minirt meanwhile
    finally:
        os.close(held)
    state.remove_tree(doomed)


# -- a container's volumes -------------------------------------------------------

def attach(root, spec):
    """Before the container's config.json is written: each volume of ``spec``
    made if it is missing (a named one on first use, an anonymous one always),
    and its mount's source set to the volume's ``_data``.  Returns a shared
    hold on volumes/, to be closed once config.json names the volumes: until
    then ``remove`` (which holds it alone while it looks) waits."""
    owner = userns.host_root(spec.uid_map, spec.gid_map)
    try:
        state.private_root(root, owner[1] if owner else None)
        state.private_dir(volumes_dir(root), owner[1] if owner else None)
        held = state.hold(volumes_dir(root), shared=True)
    except OSError as e:
        raise MinirtError(f"volumes of {root}: {e.strerror or e}") from None
    try:
        for m in spec.mounts:
            if m.volume:
                create(root, m.volume, labels={ANONYMOUS: ""} if m.anonymous else None, owner=owner)
                m.source = data_dir(root, m.volume)
    except BaseException:
        os.close(held)
        raise
    return held


def remove_anonymous(root, spec):
    """The container's anonymous volumes (``rm -v``, ``run --rm``), unless
    another container uses one too (``--volumes-from`` would): then it stays."""
    for m in spec.mounts:
        if m.anonymous:
            try:
                remove(root, m.volume, force=True)
            except MinirtError:
                pass


def copy_up(source, data):
    """docker's copy-up: into the empty volume directory ``data``, what the
    image has at the mount's path ``source`` (a directory of the container's
    merged root), with the directory's own owner and mode.  PID 1 does it before
    the volume covers ``source``, in the container's user namespace."""
    if os.listdir(data) or not os.path.isdir(source):
        return
    _copy_tree(source, data, {})
    _copy_attributes(source, data, os.lstat(source))


def _copy_tree(source, target, links):
    with os.scandir(source) as entries:
        found = list(entries)
    for entry in found:
        src, dst = entry.path, os.path.join(target, entry.name)
        st = os.lstat(src)
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFDIR:
            os.mkdir(dst, 0o700)
            _copy_tree(src, dst, links)
        elif kind == stat.S_IFREG:
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:  # a hard link to a file copied already
                os.link(links[key], dst)
                continue
            _copy_file(src, dst)
            links[key] = dst
        elif kind == stat.S_IFLNK:
            os.symlink(os.readlink(src), dst)
        elif kind in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK):
            try:
                os.mknod(dst, st.st_mode, st.st_rdev)
            except PermissionError:  # a device node, in a user namespace: the kernel says no
                continue
        else:
            continue  # a socket: nothing to copy
        _copy_attributes(src, dst, st)


def _copy_file(src, dst):
    with open(src, "rb") as i, open(dst, "xb") as o:
        size = os.fstat(i.fileno()).st_size
        while size > 0:
            sent = os.sendfile(o.fileno(), i.fileno(), None, min(size, 1 << 30))
            if sent == 0:
                break
            size -= sent


def _copy_attributes(src, dst, st):
    """Owner first (chown clears the set-id bits), then mode, xattrs and times."""
    link = stat.S_ISLNK(st.st_mode)
    try:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    except OSError:  # an id this user namespace does not map (shown as the overflow id): stays root's
        pass
    if not link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        try:
            names = os.listxattr(src, follow_symlinks=False)
        except OSError:
            names = ()
        for name in names:
            try:
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
            except OSError:
                pass  # (trusted.* in a user namespace, or what this filesystem will not take)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

