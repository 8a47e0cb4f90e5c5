"""Namespaces: what a process can see.

Lecture idea: a container is a process with its own view of the system.  Each
namespace kind virtualises one global resource: mount points (mnt), process ids
(pid), hostname (uts), System V IPC (ipc), network devices (net), the cgroup
tree (cgroup) and user ids (user).  ``unshare(2)`` gives the calling process new
namespaces; ``setns(2)`` joins existing ones through ``/proc/PID/ns/*`` files.

One subtlety shapes the whole runtime: unsharing the *pid* namespace does not
move the caller, only its future children.  That is why the runtime forks once
more after ``unshare`` so that the container's first process is PID 1.
"""

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

# What `minirt run` isolates by default (user namespaces are opt-in, see rootless).
DEFAULT = ("mnt", "pid", "uts", "ipc", "net", "cgroup")


def unshare(names):
    """Give the calling process new namespaces of the given kinds."""
    flags = 0
    for name in names:
        flags |= FLAGS[name]
    libc.unshare(flags)


def join(pid, names):
    """Enter the namespaces of process ``pid`` (user namespace first, as the kernel needs)."""
    order = sorted(names, key=lambda n: n != "user")
    fds = [os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in order]
    try:
        for name, fd in zip(order, fds):
            libc.setns(fd, FLAGS[name])
    finally:
        for fd in fds:
            os.close(fd)


def inode(pid, name):
    """The identity of a namespace: two processes share it iff the inodes are equal."""
    return os.stat(f"/proc/{pid}/ns/{name}").st_ino
