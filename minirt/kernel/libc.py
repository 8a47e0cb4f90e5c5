"""The few libc calls Python's ``os`` module does not offer (as of 3.11).

The lecture's container is built from a handful of system calls: ``clone3``
and ``clone`` (a child in new namespaces, born inside its cgroup), ``unshare``
and ``setns`` (namespaces), ``mount``/``umount2``/``pivot_root``,
``open_tree``/``move_mount`` and ``mount_setattr`` (the root filesystem),
``sethostname`` (the UTS namespace), ``seccomp`` (a filter on system calls);
and ``renameat2``'s exchange, for the state files (``runtime/state.py``).
They are reached through cffi in ABI mode: no compiler, and the declarations
are pre-parsed at install time into ``_libc.py`` (see ``_libc_build.py``), so
importing this module is cheap.

Every wrapper raises ``OSError`` with errno set, like the ``os`` functions do, so
callers handle kernel refusals the same way everywhere.
"""

import os
# The C half of `signal`, under its usual name: the Python half builds enums of
# every signal, 0.7 ms of each `minirt run` for names nobody prints.
import _signal as signal
import sys

try:
    from minirt.kernel._libc import ffi
except ImportError:  # running from a source tree where `make install` was not run
    from minirt.kernel._libc_build import ffibuilder as ffi

_libc = ffi.dlopen(None)

# <sched.h> clone flags: one per namespace.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_INTO_CGROUP = 0x200000000  # clone3(2) only (Linux 5.7): born inside a cgroup2 cgroup

# <sys/mount.h> mount flags.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_UNBINDABLE = 1 << 17
MS_SYNCHRONOUS = 0x10
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 0x2

# <linux/mount.h> mount_setattr(2) attributes (Linux 5.12): a mount's flags, set
# on a whole tree of mounts at once.
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70          # the atime mode: one of the three below
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 0x4

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_SYS_PIVOT_ROOT = 155  # x86_64
_SYS_CLONE = 56
_SYS_SECCOMP = 317
_SYS_CLONE3 = 435
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_SYS_RENAMEAT2 = 316
_RENAME_EXCHANGE = 2
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3   # return the filter's user-notification descriptor
# Parsed once here, not in the container's first process where time counts.
_FILTER_ARRAY = ffi.typeof("struct sock_filter[]")
_FPROG = ffi.typeof("struct sock_fprog *")


def _check(result, what):
    if result == -1:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _path(p):
    return None if p is None else os.fsencode(p)


def mount(source, target, fstype=None, flags=0, data=None):
    src = _path(source) or ffi.NULL
    typ = fstype.encode() if fstype else ffi.NULL
    opts = data.encode() if data else ffi.NULL
    _check(_libc.mount(src, _path(target), typ, flags, opts), f"mount {target}")


def umount(target, flags=0):
    _check(_libc.umount2(_path(target), flags), f"umount {target}")


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def setns(fd, nstype=0):
    _check(_libc.setns(fd, nstype), "setns")


def sethostname(name):
    b = name.encode()
    _check(_libc.sethostname(b, len(b)), "sethostname")


def pivot_root(new_root, put_old):
    result = _libc.syscall(
        ffi.cast("long", _SYS_PIVOT_ROOT),
        ffi.new("char[]", _path(new_root)),
        ffi.new("char[]", _path(put_old)),
    )
    _check(result, "pivot_root")


def mount_setattr(target, attr_set, attr_clr):
    """Set ``attr_set`` and clear ``attr_clr`` (MOUNT_ATTR_*) on the mount at
    ``target`` and every mount below it (AT_RECURSIVE)."""
    # struct mount_attr: attr_set, attr_clr, propagation, userns_fd: four u64.
    attr = bytearray(b"".join(v.to_bytes(8, sys.byteorder) for v in (attr_set, attr_clr, 0, 0)))
    _check(_libc.syscall(ffi.cast("long", _SYS_MOUNT_SETATTR), ffi.cast("int", _AT_FDCWD),
                         ffi.new("char[]", _path(target)), ffi.cast("unsigned int", _AT_RECURSIVE),
                         ffi.from_buffer(attr), ffi.cast("size_t", len(attr))), f"mount_setattr {target}")


def open_tree(source, recursive=True):
    """A detached copy of the mount at ``source`` (with those below it when
    ``recursive``), as a descriptor that ``move_mount`` attaches elsewhere --
    in another mount namespace, by a process that could not even reach ``source``."""
    flags = _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | (_AT_RECURSIVE if recursive else 0)
    return _check(_libc.syscall(ffi.cast("long", _SYS_OPEN_TREE), ffi.cast("int", _AT_FDCWD),
                                ffi.new("char[]", _path(source)), ffi.cast("unsigned int", flags)),
                  f"open_tree {source}")


def move_mount(tree, target):
    """Attach the mount tree open as ``tree`` (``open_tree``) at ``target``."""
    _check(_libc.syscall(ffi.cast("long", _SYS_MOVE_MOUNT), ffi.cast("int", tree), ffi.new("char[]", b""),
                         ffi.cast("int", _AT_FDCWD), ffi.new("char[]", _path(target)),
                         ffi.cast("unsigned int", _MOVE_MOUNT_F_EMPTY_PATH)), f"move_mount {target}")


def clone3(flags=0, cgroup=0):
    """clone3(2) used as a fork: the child's pid in the parent, 0 in the child.

    What ``os.fork`` cannot do: ``flags`` can give the child new namespaces
    (``CLONE_NEWPID``: it is PID 1 of a new pid namespace), and
    ``CLONE_INTO_CGROUP`` starts its life in the cgroup2 directory open as
    ``cgroup``, no migration needed.  The price: Python's own fork bookkeeping
    (at-fork hooks, re-initialising the locks other threads might hold) does
    not run, so the caller must be single-threaded.
    """
    # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
    # stack, stack_size, tls, set_tid, set_tid_size, cgroup: eleven u64.
    fields = (flags, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, cgroup)
    args = bytearray(b"".join(v.to_bytes(8, sys.byteorder) for v in fields))
    result = _libc.syscall(ffi.cast("long", _SYS_CLONE3), ffi.from_buffer(args), ffi.cast("size_t", len(args)))
    return _check(result, "clone3")


def single_threaded():
    """Whether this process has one thread only: the condition for ``clone3``
    and ``clone`` from Python."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no /proc to tell: take the way that is always safe
        return False


def clone(flags=0):
    """clone(2), the older call, as ``clone3`` without a cgroup: for kernels
    before 5.7 and sandboxes whose seccomp filter refuses clone3.  The same
    rule: single-threaded callers only."""
    # x86_64 argument order: flags, new stack (0: a copy of ours), parent_tid, child_tid, tls.
    null = ffi.cast("void *", 0)
    result = _libc.syscall(ffi.cast("long", _SYS_CLONE), ffi.cast("unsigned long", flags | signal.SIGCHLD),
                           null, null, null, ffi.cast("unsigned long", 0))
    return _check(result, "clone")


def seccomp_filter(program, flags=0):
    """seccomp(SECCOMP_SET_MODE_FILTER): install ``program`` (the bytes of a
    ``struct sock_filter[]``, see ``seccomp.py``) on the calling thread.
    Returns 0, or with SECCOMP_FILTER_FLAG_NEW_LISTENER the new descriptor
    (close-on-exec) on which the filter's notifications arrive."""
    filters = ffi.from_buffer(_FILTER_ARRAY, program)
    prog = ffi.new(_FPROG, {"len": len(program) // 8, "filter": filters})
    return _check(_libc.syscall(ffi.cast("long", _SYS_SECCOMP), ffi.cast("unsigned int", SECCOMP_SET_MODE_FILTER),
                                ffi.cast("unsigned int", flags), prog), "seccomp")


def exchange(a, b):
    """renameat2(RENAME_EXCHANGE): the names ``a`` and ``b`` swap their files
    in one atomic step (both must exist)."""
    _check(_libc.syscall(ffi.cast("long", _SYS_RENAMEAT2), ffi.cast("int", _AT_FDCWD), ffi.new("char[]", _path(a)),
                         ffi.cast("int", _AT_FDCWD), ffi.new("char[]", _path(b)),
                         ffi.cast("unsigned int", _RENAME_EXCHANGE)), f"exchange {a} {b}")


def prctl(option, arg2=0):
    return _check(_libc.prctl(option, arg2, 0, 0, 0), "prctl")
