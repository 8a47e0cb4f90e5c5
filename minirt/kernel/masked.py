"""Masked and read-only paths: the parts of /proc and /sys a container must not use.

Lecture idea: namespaces do not virtualise everything.  Much of /proc and /sys
still describes (and lets you change) the *host*: /proc/kcore is the host's
memory, /proc/sysrq-trigger reboots it, /proc/sys tunes its kernel.  So, as in
docker, some paths are hidden — a file is covered by /dev/null, a directory by
an empty read-only tmpfs — and others are made read-only.  ``--privileged``
skips both lists.
"""

import os
import stat

from minirt.kernel import libc, mounts

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def mask(path):
    """Hide ``path`` (inside the container, after pivot_root) if it exists."""
    try:
        mode = os.stat(path).st_mode  # (one stat: PID 1 makes some fifty on its way)
    except OSError:
        return
    if stat.S_ISDIR(mode):
        libc.mount("tmpfs", path, "tmpfs", libc.MS_RDONLY, "size=0")
    else:
        mounts.bind("/dev/null", path, recursive=False)


def make_readonly(path):
    """Make ``path`` read-only (a bind mount onto itself, remounted read-only)."""
    if os.path.exists(path):
        mounts.bind(path, path, readonly=True)


def apply():
    for path in MASKED_PATHS:
        mask(path)
    for path in READONLY_PATHS:
        make_readonly(path)
