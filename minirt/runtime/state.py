"""Where containers and images live on disk: the state root.

Everything minirt creates on the host is under one directory (default
``/var/lib/minirt`` for root, ``~/.local/share/minirt`` otherwise; moved by
``--root`` or ``MINIRT_ROOT``)::

    layers/sha256/<diff id>/      unpacked image layers, shared (image/store.py)
    containers/<id>/              one container:
        config.json               its ContainerSpec
        state.json                status, pids, exit code, times
        upper/ work/ rootfs/      overlay: writable layer, overlay's scratch, mount point
        hostname hosts resolv.conf   bind-mounted into the container's /etc

Files are replaced atomically (write to a temporary name, then rename), so a
reader never sees half a file and a crash never leaves one.
"""

import itertools
import json
import os

_serial = itertools.count()


def default_root():
    if "MINIRT_ROOT" in os.environ:
        return os.environ["MINIRT_ROOT"]
    if os.geteuid() == 0:
        return "/var/lib/minirt"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "minirt")


def write_json(path, data):
    """Replace ``path`` with ``data`` as JSON, atomically."""
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def write_text(path, text, mode=0o644):
    """Replace ``path`` with ``text``, atomically."""
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{next(_serial)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path):
    with open(path) as f:
        return json.load(f)
