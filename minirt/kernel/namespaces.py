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
