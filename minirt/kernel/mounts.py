"""Mounts: the container's root filesystem.

Lecture idea: a container runs from its own root filesystem, built here in four
moves, each a mount in the container's private mount namespace:

1. make every mount private, so nothing the container mounts propagates back to
   the host (and nothing the host mounts later leaks in);
2. stack the image's read-only layers under a fresh writable directory with
   overlayfs — copy-on-write, so the image is never changed;
3. give it the kernel's virtual filesystems: /proc for its own pid namespace,
   a small /dev with only harmless devices, a read-only /sys;
4. ``pivot_root`` into it and detach the old root, so the host's files are no
   longer reachable at all (unlike ``chroot``, which only changes path lookup).

All paths inside the container are resolved with ``secure_join``: an image can
contain symlinks such as ``/data -> /etc``, and following them on the host while
setting up mounts would let an image redirect a bind mount onto the host's files.
"""

import errno
import os
import stat

from minirt.kernel import libc
from minirt.kernel.libc import (
    MNT_DETACH, MS_BIND, MS_DIRSYNC, MS_MANDLOCK, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC,
    MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SLAVE,
    MS_STRICTATIME, MS_SYNCHRONOUS, MS_UNBINDABLE,
)

# The devices every container gets (name, major, minor): the ones programs take
# for granted and that expose nothing of the host.
DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)

DEV_SYMLINKS = (
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
)


def make_private():
    """Cut mount propagation between this mount namespace and the host, both ways."""
    libc.mount(None, "/", flags=MS_REC | MS_PRIVATE)


def secure_join(root, path):
    """Resolve ``path`` as the container would, with ``root`` as its "/".

    Symlinks are followed, but an absolute target restarts at ``root`` and ``..``
    stops at ``root``: the result is always inside ``root``.  Components that do
    not exist yet are kept literally (the caller may create them).
    """
    pending = [p for p in path.split("/") if p not in ("", ".")]
    done = []
    followed = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        followed += 1
        if followed > 40:
            raise OSError(errno.ELOOP, f"too many symlinks resolving {path}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []
        pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
    return os.path.join(root, *done)


def make_mountpoint(root, path, is_dir=True):
    """Create (inside ``root``) the file or directory a mount will cover; return it."""
    target = secure_join(root, path)
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
    return target


def mount_overlay(target, lowers, upper, work, userxattr=False):
    """Stack ``lowers`` (bottom first) under the writable ``upper`` at ``target``.

    The mount options must fit in one page (4096 bytes), and a layer's path
    in the store takes some 80 bytes: written out, 50 layers would fill it.
    So each layer is opened, and named by its descriptor's number in
    /proc/self/fd (the working directory while mounting): overlayfs follows
    those links as it follows any, and "lowerdir=12:13:14:..." takes four
    bytes a layer, on any kernel.  (The new mount API's "lowerdir+", one
    layer per call, would do as well, but needs Linux 6.8.)  overlayfs
    itself stacks at most 500 layers; image/store.py refuses more.
    """
    fds = [os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for layer in reversed(lowers)]
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        options = f"lowerdir={':'.join(map(str, fds))},upperdir={upper},workdir={work}"
        if userxattr:
            options += ",userxattr"
        os.chdir("/proc/self/fd")
        libc.mount("overlay", target, "overlay", 0, options)
    finally:
        os.fchdir(cwd)
        for fd in fds + [cwd]:
            os.close(fd)


def bind(source, target, readonly=False, recursive=True):
    """Make ``source`` visible at ``target``; read-only needs a second, remount step."""
    flags = MS_BIND | (MS_REC if recursive else 0)
    libc.mount(source, target, None, flags)
    if readonly:
        remount_readonly(target)


def remount_readonly(target):
    remount(target, MS_RDONLY)


def remount(target, flags):
    """Change a bind mount's flags to ``flags``.  A remount must repeat the
    flags that are locked on the mount (nosuid, nodev, noexec when inherited
    from a more privileged namespace), or it is refused."""
    locked = 0
    vfs = os.statvfs(target)
    for bit, flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC)):
        if vfs.f_flag & bit:
            locked |= flag
    libc.mount(None, target, None, MS_BIND | MS_REMOUNT | flags | locked)


# fstab(5)'s options that are mount flags (name -> (flag, set or clear)), as an
# OCI bundle's mounts use them; anything else is the filesystem's own data.
FLAG_OPTIONS = {
    "ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False), "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False), "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True), "async": (MS_SYNCHRONOUS, False), "dirsync": (MS_DIRSYNC, True),
    "mand": (MS_MANDLOCK, True), "nomand": (MS_MANDLOCK, False), "noatime": (MS_NOATIME, True),
    "atime": (MS_NOATIME, False), "nodiratime": (MS_NODIRATIME, True), "diratime": (MS_NODIRATIME, False),
    "relatime": (MS_RELATIME, True), "norelatime": (MS_RELATIME, False),
    "strictatime": (MS_STRICTATIME, True), "nostrictatime": (MS_STRICTATIME, False),
    "bind": (MS_BIND, True), "rbind": (MS_BIND | MS_REC, True), "defaults": (0, True),
}
# Propagation: applied by a mount call of its own, after the mount exists.
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC, "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# runc's recursive options (mount_setattr(2) with AT_RECURSIVE): the flag on the
# mount and on every mount below it, where "ro" makes only the top one read-only.
# name -> (attributes to set, attributes to clear)
RECURSIVE_OPTIONS = {
    "rro": (libc.MOUNT_ATTR_RDONLY, 0), "rrw": (0, libc.MOUNT_ATTR_RDONLY),
    "rnosuid": (libc.MOUNT_ATTR_NOSUID, 0), "rsuid": (0, libc.MOUNT_ATTR_NOSUID),
    "rnodev": (libc.MOUNT_ATTR_NODEV, 0), "rdev": (0, libc.MOUNT_ATTR_NODEV),
    "rnoexec": (libc.MOUNT_ATTR_NOEXEC, 0), "rexec": (0, libc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (libc.MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, libc.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (libc.MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, libc.MOUNT_ATTR_NOSYMFOLLOW),
    "rrelatime": (libc.MOUNT_ATTR_RELATIME, libc.MOUNT_ATTR__ATIME),
    "rnoatime": (libc.MOUNT_ATTR_NOATIME, libc.MOUNT_ATTR__ATIME),
    "rstrictatime": (libc.MOUNT_ATTR_STRICTATIME, libc.MOUNT_ATTR__ATIME),
}


def recursive_options(options):
    """(``options`` without the recursive ones, (attributes to set, to clear) by those)."""
    attr_set = attr_clr = 0
    rest = []
    for option in options:
        if option in RECURSIVE_OPTIONS:
            on, off = RECURSIVE_OPTIONS[option]
            attr_set, attr_clr = (attr_set & ~off) | on, (attr_clr & ~on) | off
        else:
            rest.append(option)
    return rest, (attr_set, attr_clr)


def parse_options(options):
    """fstab-style ``options`` -> (flags, [propagation flags], data string or None)."""
    flags, propagation, data = 0, [], []
    for option in options:
        if option in FLAG_OPTIONS:
            bit, on = FLAG_OPTIONS[option]
            flags = flags | bit if on else flags & ~bit
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        else:
            data.append(option)
    return flags, propagation, ",".join(data) or None


def mount_entry(root, kind, source, destination, options, tree=None):
    """One mount of an OCI bundle (type, source, destination inside ``root``,
    options) with its flags, propagation and recursive flags; returns the
    target on the host.  A bind mount's ``tree``, where given, is its source
    already copied (``libc.open_tree``), attached instead of ``source``."""
    options, recursive = recursive_options(options)
    flags, propagation, data = parse_options(options)
    if flags & MS_BIND:
        is_dir = os.path.isdir(source) if tree is None else stat.S_ISDIR(os.fstat(tree).st_mode)
        target = make_mountpoint(root, destination, is_dir=is_dir)
        if tree is None:
            libc.mount(source, target, None, flags & (MS_BIND | MS_REC))
        else:
            libc.move_mount(tree, target)
        if flags & ~(MS_BIND | MS_REC):  # a bind mount takes its flags only from a remount
            remount(target, flags & ~(MS_BIND | MS_REC))
    else:
        target = make_mountpoint(root, destination)
        libc.mount(source or kind, target, kind, flags, data)
    for change in propagation:
        libc.mount(None, target, None, change)
    if any(recursive):
        libc.mount_setattr(target, *recursive)
    return target


def mount_proc(root):
    libc.mount("proc", make_mountpoint(root, "/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_sys(root, readonly=True):
    """/sys, read-only unless privileged; where sysfs may not be mounted, a bind of the host's."""
    target = make_mountpoint(root, "/sys")
    try:
        libc.mount("sysfs", target, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | (MS_RDONLY if readonly else 0))
    except PermissionError:
        bind("/sys", target, readonly=readonly)


# --tmpfs options that are mount flags; the rest (size=, mode=, ...) go to tmpfs itself.
_TMPFS_FLAGS = {"ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False), "nosuid": (MS_NOSUID, True),
                "suid": (MS_NOSUID, False), "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False),
                "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False)}


def mount_tmpfs(root, text):
    """``--tmpfs DST[:OPTIONS]``: docker's defaults are noexec, nosuid, nodev."""
    destination, _, options = text.partition(":")
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    data = []
    for option in filter(None, options.split(",")):
        if option in _TMPFS_FLAGS:
            bit, on = _TMPFS_FLAGS[option]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(option)
    libc.mount("tmpfs", make_mountpoint(root, destination), "tmpfs", flags, ",".join(data) or None)


def mount_dev(root, *, mknod=True, console=None):
    """A fresh tmpfs /dev holding only ``DEVICES``, a private devpts and /dev/shm.

    In a user namespace the kernel forbids ``mknod``, so the host's device files
    are bind-mounted instead (``mknod=False``).  ``console`` is the pty slave the
    container's terminal uses; it becomes /dev/console.
    """
    dev = make_mountpoint(root, "/dev")
    libc.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    make_devices(dev, mknod)
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    pts_opts = "newinstance,ptmxmode=0666,mode=0620" + (",gid=5" if mknod else "")
    libc.mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC, pts_opts)
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    libc.mount("shm", os.path.join(dev, "shm"), "tmpfs",
               MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    os.mkdir(os.path.join(dev, "mqueue"), 0o755)
    try:
        libc.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        os.rmdir(os.path.join(dev, "mqueue"))  # optional, like in docker
    if console is not None:
        path = os.path.join(dev, "console")
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        bind(console, path, recursive=False)


def make_devices(dev, mknod=True):
    """``DEVICES`` and ``DEV_SYMLINKS`` in the directory ``dev`` (a fresh /dev)."""
    for name, major, minor in DEVICES:
        path = os.path.join(dev, name)
        if mknod:
            make_device(path, "c", major, minor)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o666))
            bind(f"/dev/{name}", path, recursive=False)
    for target, name in DEV_SYMLINKS:
        if not os.path.lexists(os.path.join(dev, name)):
            os.symlink(target, os.path.join(dev, name))


def make_device(path, kind, major, minor, mode=0o666, uid=0, gid=0):
    """A device node: ``kind`` "c" (character), "b" (block) or "p" (a FIFO)."""
    file_type = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
    if os.path.lexists(path):
        os.unlink(path)
    os.mknod(path, (mode & 0o7777) | file_type, os.makedev(major, minor))
    os.chmod(path, mode & 0o7777)  # mknod honours the umask
    os.chown(path, uid, gid)


def pivot_root(root):
    """Make ``root`` the new "/" and detach the old one, so the host is unreachable.

    ``pivot_root(".", ".")`` stacks the old root on top of the new one; unmounting
    "." then removes exactly the old root, with no directory needed for it.
    """
    os.chdir(root)
    libc.pivot_root(".", ".")
    libc.umount(".", MNT_DETACH)
    os.chdir("/")
