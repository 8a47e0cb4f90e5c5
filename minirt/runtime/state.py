"""Where containers and images live on disk: the state root.

Everything minirt creates on the host is under one directory (default
``/var/lib/minirt`` for root, ``~/.local/share/minirt`` otherwise; moved by
``--root`` or ``MINIRT_ROOT``)::

    layers/sha256/<diff id>/      unpacked image layers, shared (image/store.py)
    images/                       loaded, pulled and built images and their tags (runtime/catalog.py)
    build-cache/                  minirt build's cached steps and cache mounts (build/builder.py)
    build-tmp/                    builds under way (a dead build's is pruned)
    names/<name> -> <id>          container names; a symlink is created atomically,
                                  so two containers can never get the same name
    cache/seccomp/<hash>          compiled seccomp filters (kernel/security.py)
    containers/<id>/              one container:
        config.json               its ContainerSpec
        state.json                status, pids, exit code, times (see below)
                                  (config.json's flock(2) guards its read-modify-write;
                                  the directory itself is flocked while the
                                  container is created or started: ``hold``)
        upper/ work/ rootfs/      overlay: writable layer, overlay's scratch, mount point
        hostname hosts resolv.conf   bind-mounted into the container's /etc
        stdout.log stderr.log     output of a detached container
        reserve                   room kept for the exit status on a full disk
    containers/.new-<id>/         a container directory before it is held and named
    networks/                     networks and their addresses (runtime/network.py)
    volumes/<name>/               a volume: volume.json (docker's fields) and _data/,
                                  what containers see (runtime/volumes.py)

The root is private to its owner (0700; see ``private_root``), and so are
``layers/`` and ``containers/`` in it: what they hold would make any host user
root.  A ``--userns=remap`` container's root may pass through the root,
``layers/``, its own id-shifted store and ``containers/<id>/`` (group
traversal, 0710), as it mounts its overlay from inside its user namespace.

Files are replaced atomically (write to a temporary name, then rename), so a
reader never sees half a file and a crash never leaves one; writers take the
container's lock, so two minirt processes never lose each other's update.

The truth about a container is its processes, not the file: ``load`` checks that
a container recorded as running still has its PID 1 (the same process: the pid
and its start time), and shows it as exited if minirt or the monitor died
without saying so.  Reading never writes: ``ps`` and ``inspect`` work on a full
disk.
"""

import errno
import fcntl
import itertools
import os
import sys
import time

from minirt import lightjson  # json's reading and writing, without its import time
from minirt.errors import MinirtError
from minirt.runtime.lifecycle import CREATED, EXITED, RESTARTING, RUNNING

_serial = itertools.count()


class NoSuchContainer(MinirtError):
    pass


SYSTEM_ROOT = "/var/lib/minirt"  # root's state root, unless told otherwise


def default_root():
    if "MINIRT_ROOT" in os.environ:
        return os.environ["MINIRT_ROOT"]
    if os.geteuid() == 0:
        return SYSTEM_ROOT
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "minirt")


SUBDIRS = ("layers", "containers", "images", "names", "cache", "networks", "volumes")  # see the layout above


def private_root(root, group=None, create=True):
    """The state root, closed to other users; ``root`` is returned.

    Image layers and containers' writable layers hold setuid-root binaries and
    device nodes that are harmless in a container and root for anyone on the
    host who can reach them by path (CVE-2021-41091).  So the root is 0700,
    as docker's is 0710: only its owner gets in.  ``group`` (the host gid of
    a ``--userns=remap`` container's root, which mounts its layers from inside
    its user namespace) may pass through, and no further than it must.  A
    root an older minirt left open is closed with what lies under it; when it
    is right, this costs one stat on ``minirt run``'s path.
    """
    try:
        try:
            st = os.stat(root)
        except FileNotFoundError:
            if not create:
                return root
            os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
            for d in (root, *(os.path.join(root, sub) for sub in SUBDIRS)):
                private_dir(d)  # (made here, else whoever is first makes them with the umask's 0755)
            st = os.stat(root)
        if st.st_mode & 0o067 and st.st_uid == os.geteuid():
            _close_tree(root)
        if group is not None:
            private_dir(root, group)
    except OSError as e:
        raise MinirtError(f"state root {root}: {e.strerror or e}") from None
    return root


def private_dir(path, group=None):
    """Make ``path`` (if missing) and keep it its owner's, traversable by ``group`` if given."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.stat(path)
    if group is not None and (st.st_gid != group or st.st_mode & 0o077 != 0o010):
        os.chown(path, -1, group)
        os.chmod(path, st.st_mode & 0o700 | 0o010)


def _close_tree(root):
    """Take every user but the owner (and a group's right to pass) out of the
    state root and the directories under it that lead to layers and containers."""
    levels = [root]
    for parent in (root, os.path.join(root, "layers"), os.path.join(root, "containers")):
        levels += [e.path for e in _scandir(parent) if e.is_dir(follow_symlinks=False)]
    for sub in _scandir(os.path.join(root, "layers")):  # rootless/, shift-.../: their sha256/, tmp/
        if sub.is_dir(follow_symlinks=False):
            levels += [e.path for e in _scandir(sub.path) if e.is_dir(follow_symlinks=False)]
    for path in levels:
        mode = os.lstat(path).st_mode
        if mode & 0o067:
            os.chmod(path, mode & 0o710)


def _scandir(path):
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def seccomp_cache(root):
    return os.path.join(root, "cache", "seccomp")


# -- files ------------------------------------------------------------------------

def remove_tree(path, dir_fd=None):
    """``rm -rf path``: never follows a symlink; what cannot be removed stays
    (``system prune`` tries again).  Not shutil.rmtree, whose import loads
    zlib, bz2 and lzma: some 2.5 ms of every ``minirt run --rm``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError:  # not a directory (or a symlink to one): a name to unlink
        _quietly(os.unlink, path, dir_fd=dir_fd)
        return
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    remove_tree(entry.name, fd)
                else:
                    _quietly(os.unlink, entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    _quietly(os.rmdir, path, dir_fd=dir_fd)


# The trees this process has put off removing (``removals_deferred``), or None.
_deferred = None


def remove_renamed(path):
    """Remove ``path``, a tree already renamed out of sight (``.removing-ID``):
    now, or at the end of the ``removals_deferred`` block the process is in."""
    if _deferred is None:
        remove_tree(path)
    else:
        _deferred.append(path)


class removals_deferred:
    """``with removals_deferred():`` -- within the block, ``remove_renamed``
    only notes its trees; they are removed when the block ends.  For a
    process with something better to do first: emptying a container's
    directory is some ten unlinks and rmdirs, and each freed block a
    synchronous discard on a filesystem mounted with ``discard`` and no
    journal (about 0.1 ms each on these hosts).  (A class, as ``locked``.)"""

    def __enter__(self):
        global _deferred
        self.outer, _deferred = _deferred, []

    def __exit__(self, *exc):
        global _deferred
        trees, _deferred = _deferred, self.outer
        for path in trees:
            remove_tree(path)


def _quietly(call, *args, **kwargs):
    """``call``, ignoring OSError; whether it succeeded."""
    try:
        call(*args, **kwargs)
    except OSError:
        return False
    return True


def write_json(path, data):
    """Replace ``path`` with ``data`` as a line of JSON, atomically."""
    write_text(path, lightjson.dumps(data, sort_keys=True) + "\n")


def write_text(path, text, mode=0o644):
    """Replace ``path`` with ``text``, atomically."""
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{next(_serial)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            data = text.encode()
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        if not _exchanged(tmp, path):
            os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _exchanged(tmp, path):
    """Put ``tmp`` in ``path``'s place by swapping the two names (renameat2's
    exchange), then unlink the old file; False where that cannot be done
    (``path`` is new, or the filesystem has no exchange), and ``rename`` must.

    Why not rename over it: ext4 (its auto_da_alloc) takes a rename over an
    existing file for a program replacing a file without fsync, and writes
    the new one's blocks at once: 0.1 ms or more each time, and state.json
    is replaced twice in every ``minirt run``.  A swap is no such rename.
    (That write-back was ext4's kindness to programs that forget fsync; minirt
    does not count on it: after the machine's own crash a state file may be
    empty, as on any filesystem, and an empty one reads as "created".)

    Only where libc's bindings are loaded already (minirt run, create,
    start): a one-shot ``minirt-runc start`` would pay more to import cffi
    than it saves, and the monitor runs without it."""
    libc = sys.modules.get("minirt.kernel.libc")
    if libc is None:
        return False
    try:
        libc.exchange(tmp, path)
    except OSError:  # ENOENT: nothing to replace; EINVAL: no exchange here
        return False
    _quietly(os.unlink, tmp)  # the old file, under the temporary name now
    return True


def read_json(path):
    return lightjson.loads(read_bytes(path))


def read_bytes(path):
    """The whole of a file (os.open, not open(): a file object costs more to
    make than reading a small file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class locked:
    """``with locked(directory):`` holds the directory's lock (an flock,
    released by the kernel if we die) on its file ``name``, made if missing
    unless ``create`` is false.  A class rather than a
    ``contextlib.contextmanager``: importing contextlib costs ``minirt run`` 0.6 ms."""

    def __init__(self, directory, name="lock", create=True):
        self.path = os.path.join(directory, name)
        self.flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_CREAT if create else 0)

    def __enter__(self):
        self.fd = os.open(self.path, self.flags, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc):
        os.close(self.fd)


def hold(directory, wait=True, shared=False):
    """Mark a container busy: being created, started or removed, not prune's to
    take.  An flock on its directory itself, so that it can be held before the
    directory gets its name.  Returns the descriptor (closing it lets go), or
    None when ``wait`` is false and another process holds it.  (``shared``:
    the containers/ directory, held by each creator from making its
    directory to holding it, and by prune alone while it sweeps those that
    never got a name.)"""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def update(directory, check=None, change=None, **fields):
    """Merge ``fields`` into the container's state.json under its lock; return the result.
    ``check`` (see ``lifecycle.move``) sees the state before and may refuse the change;
    ``change`` sees it too and returns more fields (a health log grown by one probe).
    The lock is config.json's, the one file of a container that is never
    replaced (a file of its own would be one more to make and delete)."""
    with locked(directory, "config.json", create=False):
        path = os.path.join(directory, "state.json")
        try:
            data = read_json(path)
        except (FileNotFoundError, ValueError):
            data = {}
        if check is not None:
            check(data)
        if change is not None:
            fields.update(change(data))
        data.update(fields)
        try:
            write_json(path, data)
        except OSError as e:
            if e.errno != errno.ENOSPC or not _quietly(os.unlink, os.path.join(directory, "reserve")):
                raise
            write_json(path, data)  # in the room set aside by ``reserve``
        return data


def reserve(directory):
    """Set room aside in a container's directory for its last words.

    A container can fill the disk its state lives on (its writable layer is in
    the state root).  Then the exit status is written into this room, freed
    for it: ``ps`` shows the container's own exit code, not "unknown"."""
    fd = os.open(os.path.join(directory, "reserve"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, 16384)  # a few pages: a new state.json beside the old one
    finally:
        os.close(fd)


# -- processes ----------------------------------------------------------------------

def start_time(pid):
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat).

    With the pid it names one process for good: a pid can be reused, the pair cannot.
    """
    try:
        return int(read_bytes(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid, started):
    if not pid:
        return False
    now = start_time(pid)
    if now is None or (started is not None and now != started):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- the set of containers ---------------------------------------------------------

def containers_dir(root):
    return os.path.join(root, "containers")


def container_ids(root):
    try:
        return sorted(d for d in os.listdir(containers_dir(root)) if not d.startswith("."))
    except FileNotFoundError:
        return []


def load(root, cid):
    """state.json of container ``cid``, corrected by what the kernel says is alive."""
    directory = os.path.join(containers_dir(root), cid)
    try:
        data = read_json(os.path.join(directory, "state.json"))
    except FileNotFoundError:
        raise NoSuchContainer(f"no such container: {cid}") from None
    except ValueError:
        data = {"id": cid, "status": CREATED}
    if data.get("status") == RUNNING and _orphaned(data):
        # Its processes are gone but nobody recorded the exit: minirt or the
        # monitor was killed.  Say so, as docker does after a daemon crash;
        # and only say so: reading never writes (the disk may be full).
        data.update(status=EXITED, finished_at=_last_written(directory),
                    exit_code=data.get("exit_code") if data.get("exit_code") is not None else 255,
                    error="the container's monitor died; exit status unknown")
    elif data.get("status") == RESTARTING and _orphaned(data):
        # The monitor that was to restart it is gone (killed, or the host rebooted).
        data.update(status=EXITED, error="the container's monitor died before restarting it")
    return data


def _last_written(directory):
    try:
        return os.stat(os.path.join(directory, "state.json")).st_mtime
    except OSError:
        return time.time()


def _orphaned(data):
    """PID 1 is gone and so is whoever should have recorded its exit (while the
    monitor lives, it is about to write the exit status: trust it)."""
    return (not alive(data.get("pid"), data.get("pid_start"))
            and not alive(data.get("monitor_pid"), data.get("monitor_start")))


def resolve(root, ref):
    """A container id from a name, a full id or a unique id prefix."""
    if not ref:
        raise NoSuchContainer("no container given")
    link = os.path.join(root, "names", ref)
    try:
        cid = os.readlink(link)
        if os.path.isdir(os.path.join(containers_dir(root), cid)):
            return cid
    except OSError:
        pass
    matches = [c for c in container_ids(root) if c.startswith(ref.lower())]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise NoSuchContainer(f"{ref}: ambiguous id prefix ({len(matches)} containers match)")
    raise NoSuchContainer(f"no such container: {ref}")


def claim_name(root, name, cid):
    """Reserve ``name`` for container ``cid``; fails if another container has it.

    Under the names lock, so that of two minirt processes racing for a name
    exactly one wins, even when they both take over a stale name."""
    names = os.path.join(root, "names")
    os.makedirs(names, exist_ok=True)
    link = os.path.join(names, name)
    with locked(names, ".lock"):
        try:
            owner = os.readlink(link)
        except FileNotFoundError:
            owner = None
        if owner and os.path.isdir(os.path.join(containers_dir(root), owner)):
            raise MinirtError(f'the container name "{name}" is already in use by container {owner[:12]}')
        tmp = os.path.join(names, f".{name}.{os.getpid()}")
        os.symlink(cid, tmp)
        os.rename(tmp, link)


def release_name(root, name, cid):
    link = os.path.join(root, "names", name)
    try:
        if os.readlink(link) == cid:
            os.unlink(link)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EINVAL, errno.ENAMETOOLONG, errno.ENOTDIR):  # never claimed
            raise
