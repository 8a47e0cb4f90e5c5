"""``minirt logs``: what a detached container wrote.

A detached container's stdout and stderr are plain files in its state
directory (``stdout.log``, ``stderr.log``), opened by minirt and handed to the
container as its file descriptors 1 and 2: the kernel writes them directly,
so nothing is lost even if the monitor dies, and nothing needs copying.
"""

import os
import sys
import time

from minirt.runtime import lifecycle


def _tail(data, n):
    if n is None:
        return data
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:]) if n else b""


LOGS = ("stdout.log", "stderr.log")


def marks(container):
    """Where each log ends now: given back to ``show`` as ``since``, what
    comes after (``compose up`` attaching to a container it starts again)."""
    return tuple(_size(os.path.join(container.dir, name)) for name in LOGS)


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def show(container, tail=None, follow=False, out=None, err=None, since=(0, 0)):
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    files = []
    for name, dest, offset in zip(LOGS, (out, err), since):
        try:
            f = open(os.path.join(container.dir, name), "rb")
        except FileNotFoundError:
            continue
        f.seek(offset)
        dest.write(_tail(f.read(), tail))
        dest.flush()
        files.append((f, dest))
    while follow:
        running = lifecycle.is_running(container.state())
        for f, dest in files:
            chunk = f.read()
            if chunk:
                dest.write(chunk)
                dest.flush()
        if not running:
            break
        time.sleep(0.1)
    for f, _ in files:
        f.close()
