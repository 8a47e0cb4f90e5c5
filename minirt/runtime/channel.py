"""The start-up handshake: the messages a container's processes exchange while it
starts, and the channels that carry them.

Lecture idea: starting a container is a conversation between processes that
share no memory -- the parent (``minirt run``, ``minirt-runc create``), the
helper that outlives it (``run -d``), PID 1, the process that joins a running
container (``exec``), and for an OCI bundle the later ``start`` -- and each
waits for the other's word before it goes on.  The words are few, and all of
them are here (as youki's process/message.rs and channel.rs):

    message      from -> to                 means
    IDS_WRITTEN  parent -> PID 1            (rootless) your uid/gid maps are written
    born         helper -> parent           "PID1 inside|outside HELPER": PID 1 exists,
                                            born in its cgroup2 cgroup or not
    PLACED       parent -> PID 1            you are recorded (and in your cgroup): go on
    CREATED      PID 1 -> parent            (a bundle's) built, waiting for ``start``
    START        PID 1 -> ``start``         (a bundle's, on exec.fifo) going on to my command
    pid          joiner -> exec's caller    (``exec --detach``) the pid of the process inside
    failure      any child -> its parent    why the command could not be executed:
                                            "<exit code> <message>", or the trampoline's two
                                            bytes (``kernel/trampoline.py``)

A ``Channel`` is a pipe in one direction, both ends close-on-exec: a process
that executes its command keeps neither, so end-of-file on the failure
channel means "the command runs" (its execve closed the last writer), and
end-of-file on any other means the peer died or gave up, which ``expect``
reports as the channel's own one-line error.  The parent opens every channel
before it forks; then each side closes the end that is not its own
(``parent_side``, ``child_side``, ``child_end``).

exec.fifo is the one channel that is not a pipe: ``start`` is not PID 1's
parent, so the two meet at a named fifo in the state directory; PID 1 blocks
opening it for writing (``wait_for_start``) until ``start`` opens it for
reading (``let_start``).
"""

import os

from minirt.errors import CommandNotExecutable, CommandNotFound, MinirtError, RuntimeFailure, exec_error

# The one-byte messages, each its own byte, so that a crossed channel shows.
IDS_WRITTEN = b"i"      # parent -> PID 1
PLACED = b"p"           # parent -> PID 1
CREATED = b"c"          # PID 1 -> parent
START = b"0"            # PID 1 -> `start`, on exec.fifo: runc's byte
# The payloads: born is b"PID1 inside|outside HELPER\n", pid the decimal number.
_INSIDE, _OUTSIDE = b"inside", b"outside"
_REPORT_LIMIT = 4000    # a failure report is below PIPE_BUF: one atomic write that never blocks


class Channel:
    """One direction of the handshake: a pipe, both ends close-on-exec.

    ``down``: the parent writes and the child reads (else the other way).
    ``gone``: the error ``expect`` raises when the writer went away instead.
    """

    __slots__ = ("reader", "writer", "down", "gone")

    def __init__(self, down, gone="the other side of the handshake went away"):
        self.reader, self.writer = os.pipe2(os.O_CLOEXEC)
        self.down, self.gone = down, gone

    @property
    def child_end(self):
        """The descriptor the child keeps (init's ``close_others`` must spare it)."""
        return self.reader if self.down else self.writer

    def parent_side(self):
        """In the parent, after the fork: let go of the child's end."""
        self._close_end(self.down)

    def child_side(self):
        """In the child: let go of the parent's end."""
        self._close_end(not self.down)

    def _close_end(self, reader):
        fd = self.reader if reader else self.writer
        if fd is not None:
            os.close(fd)
            if reader:
                self.reader = None
            else:
                self.writer = None

    def close(self):
        """Let go of whatever ends are still open (a waiting reader sees end-of-file)."""
        self._close_end(True)
        self._close_end(False)

    # -- one-byte messages ----------------------------------------------------

    def send(self, message):
        """Say ``message``; False if nobody listens any more (the peer died:
        whatever it reports on its failure channel says why)."""
        try:
            os.write(self.writer, message)
            return True
        except BrokenPipeError:
            return False

    def receive(self):
        """The next one-byte message, waiting for it; b"" once the writer is gone."""
        return os.read(self.reader, 1)

    def expect(self, message):
        """Wait for ``message``, then close our end; raise the channel's
        ``gone`` error if the writer went away first."""
        got = self.receive()
        if got != message:
            raise RuntimeFailure(self.gone if not got else f"{self.gone} (said {got!r}, not {message!r})")
        self.close()

    # -- messages with a payload ---------------------------------------------

    def send_born(self, pid1, inside, helper):
        os.write(self.writer, b"%d %s %d\n" % (pid1, _INSIDE if inside else _OUTSIDE, helper))

    def receive_born(self):
        """(PID 1's pid, born inside its cgroup2 cgroup, the helper's pid), or
        None if the helper failed before it said so (its failure report says why)."""
        line = self._read_to(b"\n").split()
        if not line:
            return None
        return int(line[0]), line[1] == _INSIDE, int(line[2])

    def send_pid(self, pid):
        os.write(self.writer, b"%d" % pid)

    def receive_pid(self):
        """The pid sent, or None if the sender exited without one."""
        data = self._read_to(None)
        return int(data) if data else None

    def _read_to(self, end):
        """Bytes up to ``end`` (included) or to end-of-file."""
        chunks = []
        while chunk := os.read(self.reader, 4096):
            chunks.append(chunk)
            if end and chunk.endswith(end):
                break
        return b"".join(chunks)

    # -- the failure report ---------------------------------------------------

    def send_failure(self, exc, step=None):
        """Tell the parent why the command could not be executed; False if
        nobody listens any more."""
        try:
            os.write(self.writer, encode_failure(exc, step))
        except OSError:
            return False
        return True

    def outcome(self):
        """Read to end-of-file: b"" once the command runs (its execve closed
        the channel); else the failure report for ``raise_failure``."""
        return self._read_to(None)


def encode_failure(exc, step=None):
    """``exc`` as "<exit code> <message>"; ``step`` names what an OSError interrupted."""
    if isinstance(exc, MinirtError):
        code, message = exc.exit_code, str(exc)
    elif isinstance(exc, OSError):
        code, message = 125, f"{exc.strerror or exc}" + (f": {os.fsdecode(exc.filename)}" if exc.filename else "")
        if step:
            message = f"{step}: {message}"
    else:
        code, message = 125, f"{type(exc).__name__}: {exc}"
    return f"{code} {message}".encode(errors="replace")[:_REPORT_LIMIT]


def raise_failure(report, command):
    """Raise the error a failure report stands for, the command being
    ``command``: docker's 126 and 127, or a failure of minirt's own (125)."""
    # (imported here: minirt-runc's start, state, kill and delete load this
    # module with the container, and need none of the trampoline's imports)
    from minirt.kernel import trampoline

    if len(report) == 2 and report[:1] == trampoline.EXECVE_FAILED:
        raise exec_error(command, report[1])
    if len(report) == 2 and report[:1] == trampoline.FILTER_FAILED:
        from minirt.kernel import security  # (its cffi and prctl are the `start` verb's largest imports)

        raise security.seccomp_failure(report[1])
    if len(report) == 2 and report[:1] == trampoline.FORK_FAILED:
        raise RuntimeFailure(f"--init: starting the command: fork: {os.strerror(report[1])}")
    code, _, message = report.decode(errors="replace").partition(" ")
    raise {126: CommandNotExecutable, 127: CommandNotFound}.get(int(code), RuntimeFailure)(message)


# -- exec.fifo: PID 1 and `start` ------------------------------------------------

def wait_for_start(fifo_fd):
    """PID 1's side: block opening exec.fifo (held as the O_PATH descriptor
    ``fifo_fd``: its path is gone after pivot_root) for writing until
    ``start`` opens it for reading; then say START."""
    try:
        fifo = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise RuntimeFailure(f"opening exec.fifo (is /proc mounted?): {e.strerror}") from None
    os.close(fifo_fd)
    os.write(fifo, START)
    os.close(fifo)


def let_start(fifo_path, alive):
    """``start``'s side: open exec.fifo for reading, which lets PID 1 go on,
    and wait for its START while ``alive()`` holds.  True once it came; False
    if PID 1 died first.  FileNotFoundError: there is no fifo (started already)."""
    import select  # (only `start` waits on it)

    fifo = os.open(fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # PID 1's open for writing completes now; its byte follows.  (Until a
        # writer came, the read end is not readable: no end-of-file yet.)
        while not select.select([fifo], [], [], 0.1)[0]:
            if not alive():
                return False
        return os.read(fifo, 1) == START
    finally:
        os.close(fifo)
