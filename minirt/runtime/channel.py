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
    listener     PID 1 or exec's process    (a bundle's seccomp filter with an agent) the
                 -> parent                  filter's notification descriptor, for the
                                            agent (``runtime/seccomp_agent.py``)
    SENT         parent -> the same         (on the listener's channel) the agent has it: go on
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

The listener's channel is a unix socket pair instead (``FdChannel``): a pipe
cannot carry a descriptor.

exec.fifo is the one channel that is not a pipe either: ``start`` is not PID 1's
parent, so the two meet at a named fifo in the state directory; PID 1 blocks
opening it for writing (``wait_for_start``) until ``start`` opens it for
reading (``let_start``, or minirt-runc's front door, a bash script that opens
it for reading and writing).  PID 1 then removes it: a container whose fifo is
gone has been started, whoever started it.
"""

import os

from minirt.errors import CommandNotExecutable, CommandNotFound, MinirtError, RuntimeFailure, exec_error

# The one-byte messages, each its own byte, so that a crossed channel shows.
IDS_WRITTEN = b"i"      # parent -> PID 1
PLACED = b"p"           # parent -> PID 1
CREATED = b"c"          # PID 1 -> parent
START = b"0"            # PID 1 -> `start`, on exec.fifo: runc's byte
SENT = b"s"             # parent -> PID 1 or exec's process, on an FdChannel
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


class FdChannel(Channel):
    """A channel up, child to parent, that carries one descriptor (SCM_RIGHTS
    over a unix socket pair), and with it the sender's pid as the parent's pid
    namespace numbers it (SO_PASSCRED: the kernel's word, whichever pid
    namespace the sender is in); the child goes on once the parent has said
    SENT back on it (``sent``)."""

    __slots__ = ()

    def __init__(self, gone="the runtime could not hand the seccomp filter's descriptor to its agent"):
        # (imported only by containers whose seccomp filter has an agent; and
        # here, in the parent, so that the child, which may no longer reach the
        # host's Python library, finds it loaded)
        import socket

        reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)  # (close-on-exec)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.reader, self.writer = reader.detach(), writer.detach()
        self.down, self.gone = False, gone

    def send_fd(self, fd):
        """Hand ``fd`` (a copy of it) to the parent, wait until it says SENT,
        and let go of our end; raise the channel's ``gone`` error if it gave up."""
        import socket

        with socket.socket(fileno=self.writer) as s:
            self.writer = None
            socket.send_fds(s, [b"f"], [fd])
            # read(2), not recv: the one call every filter lets through
            if os.read(s.fileno(), 1) != SENT:
                raise RuntimeFailure(self.gone)

    def sent(self):
        """The parent's word that the child may go on."""
        os.write(self.reader, SENT)

    def receive_fd(self):
        """(the descriptor, the sender's pid), waiting for it; None if the
        sender went away without one (its failure report says why)."""
        import socket

        s = socket.socket(fileno=self.reader)
        try:
            _, ancillary, _, _ = s.recvmsg(1, socket.CMSG_SPACE(4) + socket.CMSG_SPACE(12), socket.MSG_CMSG_CLOEXEC)
        finally:
            s.detach()
        fd = pid = None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fd = int.from_bytes(data[:4], "little")
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int.from_bytes(data[:4], "little")
        return None if fd is None else (fd, pid)


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

def wait_for_start(fifo_fd, dir_fd=None):
    """PID 1's side: block opening exec.fifo (held as the O_PATH descriptor
    ``fifo_fd``: its path is gone after pivot_root) for writing until
    ``start`` opens it for reading; then remove the fifo from its directory
    (``dir_fd``, O_PATH, if given: the container is running once it is gone,
    whoever started it) and say START."""
    try:
        fifo = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise RuntimeFailure(f"opening exec.fifo (is /proc mounted?): {e.strerror}") from None
    os.close(fifo_fd)
    if dir_fd is not None:
        try:
            os.unlink("exec.fifo", dir_fd=dir_fd)
        except OSError as e:
            raise RuntimeFailure(f"removing exec.fifo: {e.strerror}") from None
        os.close(dir_fd)
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
