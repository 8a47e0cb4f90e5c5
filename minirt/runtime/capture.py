"""A container's output, captured: what ``minirt.run`` and ``Container.exec`` return.

Lecture idea: a container is a process like any other, so its output is read
the way any child's is -- through pipes given to it as stdin, stdout and
stderr.  Reading both output pipes and feeding stdin in one loop keeps any of
them from filling up and blocking the container.
"""

import os


class Result:
    """What a finished container (or exec) left: its exit code and its output."""

    def __init__(self, exit_code, stdout, stderr, id):
        self.exit_code, self.stdout, self.stderr, self.id = exit_code, stdout, stderr, id

    def __repr__(self):
        return (f"Result(exit_code={self.exit_code!r}, stdout={self.stdout!r}, "
                f"stderr={self.stderr!r}, id={self.id[:12]!r})")


def captured(start, input):
    """Call ``start(stdio)`` with pipes as stdio; return (its result, stdout, stderr)."""
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if input is not None else (0, None)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        started = start(stdio=(in_r, out_w, err_w))
    except BaseException:
        for fd in (out_r, err_r) + ((in_w,) if in_w is not None else ()):
            os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w) + ((in_r,) if in_w is not None else ()):
            os.close(fd)
    out, err = communicate(in_w, input or b"", out_r, err_r)
    return started, out, err


def communicate(in_w, data, out_r, err_r):
    """Feed stdin and drain stdout/stderr together, so no pipe can fill up and block."""
    import selectors  # here, not at the top: `minirt run` on a terminal never needs it

    sel = selectors.DefaultSelector()
    chunks = {out_r: [], err_r: []}
    for fd in chunks:
        sel.register(fd, selectors.EVENT_READ)
    if in_w is not None:
        if data:
            os.set_blocking(in_w, False)
            sel.register(in_w, selectors.EVENT_WRITE)
        else:
            os.close(in_w)
    while sel.get_map():
        for key, _ in sel.select():
            fd = key.fd
            if fd == in_w:
                try:
                    data = data[os.write(fd, data[:65536]):]
                except BrokenPipeError:
                    data = b""
                if not data:
                    sel.unregister(fd)
                    os.close(fd)
                continue
            chunk = os.read(fd, 65536)
            if chunk:
                chunks[fd].append(chunk)
            else:
                sel.unregister(fd)
                os.close(fd)
    sel.close()
    return b"".join(chunks[out_r]), b"".join(chunks[err_r])
