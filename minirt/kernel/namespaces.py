"""Namespaces: what a process can see.

Lecture idea: a container is a process with its own view of the system.  Each
namespace kind virtualises one global resource: mount points (mnt), process ids
(pid), hostname (uts), System V IPC (ipc), network devices (net), the cgroup
tree (cgroup) and user ids (user).  ``unshare(2)`` gives the calling process new
namespaces; ``setns(2)`` joins existing ones through ``/proc/PID/ns/*`` files.

One subtlety shapes the whole runtime: unsharing the *pid* namespace does not
move the caller, only its future children.  That is why the container's first
process is *cloned* with the namespace flags (runtime/container.py): it is born
PID 1 of its new pid namespace.  ``unshare`` is left for what a process may
change about itself later (its mount and cgroup namespaces, runtime/init.py).

The same subtlety serves a process with several threads, which may not clone
from Python (``libc.clone3``) but may fork (Python and the C library then
mind the other threads' locks): namespaces belong to each thread, so the
forking thread can step into new ones, fork a child that is born in them,
and step back (``fork_into``).
"""

import errno
import os

from minirt.kernel import libc

# Namespace name (as in /proc/PID/ns/NAME and the OCI spec) -> clone flag.
FLAGS = {
    "mnt": libc.CLONE_NEWNS,
    "pid": libc.CLONE_NEWPID,
    "uts": libc.CLONE_NEWUTS,
    "ipc": libc.CLONE_NEWIPC,
    "net": libc.CLONE_NEWNET,
    "cgroup": libc.CLONE_NEWCGROUP,
    "user": libc.CLONE_NEWUSER,
}
_NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: its CLONE_NEW* flag


def kind(fd):
    """The kind ("net", "pid", ...) of the namespace open as ``fd``; None if
    ``fd`` is no namespace file."""
    import fcntl

    try:
        flag = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        return None
    return next((name for name, f in FLAGS.items() if f == flag), None)


def fork_into(flags):
    """``os.fork``, the child born in new namespaces (``flags``: pid, uts, ipc,
    net; not user, which only a single-threaded process may unshare): the
    child's pid, 0 in the child.  For a caller with several threads, where
    ``libc.clone3`` is unsafe.  The calling thread unshares them, forks -- a
    new pid namespace takes its first child as PID 1 -- and joins its own
    again; the new ones stay the child's alone."""
    kinds = [name for name, flag in FLAGS.items() if flags & flag]
    ours = []
    try:
        for name in kinds:  # (its own: the thread's, which another thread's may not be)
            ours.append((os.open(f"/proc/thread-self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), FLAGS[name]))
        libc.unshare(flags)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:  # (the parent, or a fork that failed) back home; pid: back for its next children
                for fd, flag in ours:
                    libc.setns(fd, flag)
    finally:
        for fd, _ in ours:
            os.close(fd)
    return pid


def unshare(names):
    """Give the calling process new namespaces of the given kinds."""
    flags = 0
    for name in names:
        flags |= FLAGS[name]
    libc.unshare(flags)


def write_id_maps(pid, uid_map, gid_map):
    """Give the user namespace of ``pid`` its id mappings.

    A map is a list of (inside, outside, count).  Mapping only our own uid and
    gid needs no privilege, but the kernel insists that ``setgroups`` be denied
    first (otherwise an unprivileged user could drop a supplementary group that
    a file's permissions were denying it).  Anything wider — the ranges of
    /etc/subuid — goes through the setuid helpers ``newuidmap``/``newgidmap``,
    which check that the ranges were granted to us.
    """
    own = os.geteuid() == 0 or (
        uid_map == [(uid_map[0][0], os.geteuid(), 1)] and gid_map == [(gid_map[0][0], os.getegid(), 1)])
    if own:
        if os.geteuid() != 0:
            _write_proc(pid, "setgroups", "deny")
        _write_proc(pid, "uid_map", _format_map(uid_map))
        _write_proc(pid, "gid_map", _format_map(gid_map))
        return
    import subprocess  # only here: rarely needed, and costly to import

    for tool, mapping in (("newuidmap", uid_map), ("newgidmap", gid_map)):
        args = [tool, str(pid)] + [str(n) for entry in mapping for n in entry]
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(errno.EPERM, f"{tool}: {result.stderr.strip() or 'failed'}")


def _format_map(mapping):
    return "".join(f"{inside} {outside} {count}\n" for inside, outside, count in mapping)


def _write_proc(pid, name, text):
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write(text)
