"""Reading a file someone else named, without trusting it.

Lecture idea: the runtime runs with the host's privileges on input it does not
control.  A path on the command line (a seccomp profile) may name anything: a
device that never ends (``/dev/zero`` grew one minirt to 24 GB), a FIFO whose
writer never comes, a directory, a file of gigabytes.  So such a file is read
only if it is a regular file or a pipe, and only up to a bound; a pipe may
block (as ``cat`` would), but a signal then stops minirt (cli.py).

Python runs a signal's handler between bytecodes.  A signal that arrives just
before a blocking read() starts would wait for the read to end, for ever if
the FIFO's writer never writes; so a pipe is waited on in short polls, and
the handler runs within one of them.
"""

import os
import select  # here, not when a FIFO shows up: PID 1 reads /etc/passwd after pivot_root
import stat

from minirt.errors import SpecError

MiB = 1 << 20
SIGNAL_CHECK_MS = 100


def read(path, what, limit, error=SpecError):
    """The bytes of ``path``, a regular file or a pipe of at most ``limit``
    bytes; else ``error`` naming ``what`` the file is and what is wrong."""
    try:  # non-blocking: opening a FIFO would otherwise wait for its writer
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise error(f"{path}: cannot read {what}: {getattr(e, 'strerror', None) or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise error(f"{path}: cannot read {what}: not a regular file")
        pipe = select.poll() if stat.S_ISFIFO(mode) else None
        if pipe:
            pipe.register(fd, select.POLLIN)
        chunks, size = [], 0
        while size <= limit:
            # Data, or a writer come and gone (a FIFO that never had one
            # polls as quiet and reads as empty: so poll first).
            while pipe and not pipe.poll(SIGNAL_CHECK_MS):
                pass
            try:
                chunk = os.read(fd, min(limit + 1 - size, MiB))
            except BlockingIOError:  # another reader took it first
                continue
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise error(f"{path}: cannot read {what}: larger than {limit // MiB} MiB")
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    finally:
        os.close(fd)
