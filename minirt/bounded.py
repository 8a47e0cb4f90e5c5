"""Reading a file someone else named, without trusting it.

Lecture idea: the runtime runs with the host's privileges on input it does not
control.  A path on the command line (a seccomp profile) may name anything: a
device that never ends (``/dev/zero`` grew one minirt to 24 GB), a FIFO whose
writer never comes, a directory, a file of gigabytes.  So such a file is read
only if it is a regular file or a pipe, and only up to a bound; a pipe may
block (as ``cat`` would), but a signal then stops minirt (cli.py).
"""

import os
import stat

from minirt.errors import SpecError

MiB = 1 << 20


def read(path, what, limit, error=SpecError):
    """The bytes of ``path``, a regular file or a pipe of at most ``limit``
    bytes; else ``error`` naming ``what`` the file is and what is wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise error(f"{path}: cannot read {what}: {getattr(e, 'strerror', None) or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise error(f"{path}: cannot read {what}: not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, MiB))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise error(f"{path}: cannot read {what}: larger than {limit // MiB} MiB")
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    finally:
        os.close(fd)
