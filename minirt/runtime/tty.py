"""The container's terminal (``-t``): a pseudo-terminal relayed to ours.

Lecture idea: a terminal is a kernel object with a line discipline.  The
container gets the *slave* side of a fresh pty as its stdin/stdout/stderr and
controlling terminal; minirt keeps the *master* side and copies bytes between
it and the user's own terminal, which it puts in raw mode so that every key,
Ctrl-C included, travels to the container unchanged.  It is the container's
line discipline, not ours, that turns Ctrl-C into SIGINT for the container's
foreground process.  Window size changes (SIGWINCH) are copied across too.
"""

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import termios
import tty


_TIOCSPTLCK = 0x40045431   # <asm/ioctls.h>: lock or unlock a pty's slave (unlockpt(3))
_TIOCGPTPEER = 0x5441      # the slave, opened through its master (Linux 4.13): no path lookup


def open_pty():
    """A new pseudo-terminal, (master, slave), from the /dev/ptmx of our mount
    namespace: once a container's is joined, its own devpts, whose options (gid,
    mode) the slave gets and where the slave has a name (/dev/pts/N), as runc
    makes an ``exec -t`` process's terminal."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    except BaseException:
        os.close(master)
        raise
    return master, slave


def set_winsize(fd, rows, cols):
    """Give the terminal ``fd`` a size (rows and columns; 0 leaves it unset)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def copy_winsize(src_fd, dst_fd):
    try:
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass  # not a terminal: keep the pty's default size


@contextlib.contextmanager
def raw_mode(fd):
    """Put the terminal ``fd`` in raw mode for the duration (no-op if not a tty)."""
    if fd < 0 or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay(master, interactive, stdin=0, stdout=1):
    """Copy between our terminal and the container's pty until the container's side closes."""
    previous = signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(stdin, master))
    readers = [master] + ([stdin] if interactive else [])
    try:
        with raw_mode(stdin if interactive else -1):
            while True:
                ready, _, _ = select.select(readers, [], [])
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError as e:
                        if e.errno == errno.EIO:  # every slave fd closed: the container is gone
                            return
                        raise
                    if not data:
                        return
                    _write_all(stdout, data)
                if stdin in ready:
                    data = os.read(stdin, 65536)
                    if data:
                        _write_all(master, data)
                    else:
                        readers.remove(stdin)
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]
