"""The session's container runner: a small process that runs the tests' containers,
so that the test process itself never forks.

Lecture idea: ``fork`` (and clone) copies a process's page tables and marks
all of its memory copy-on-write, in the parent as much as in the child.
Until the child has executed its command, each page either of them writes
is copied (some 3 microseconds each on this nested-virtualization host),
and afterwards the parent still takes a fault on the first write to each
page.  pytest's process is large and busy: measured here, it took some 1300
page faults in every test that ran one container, where minirt's own loop of
containers takes under 600.  So the containers of ``container(...)`` are run
by a process that holds little more than minirt: a fresh interpreter,
started on the session's first container, whose few pages stay hot from one
container to the next.  It is the idea of Android's zygote and of
multiprocessing's forkserver, at the size of a whole ``minirt.run``.

The conversation is one request and one answer at a time over two pipes,
each a length and a pickle (the runner is our own child: nothing else
writes to it): ``minirt.run``'s arguments, the working directory and what
changed in the environment in, so that relative paths and ``env=["KEY"]``
mean what they mean in the test; its Result, or the exception it raised,
out.  A container it removed is gone before the answer (name, cgroup,
network, state directory renamed away); the unlinking of its files waits
until the answer is sent (``removals_deferred``), and overlaps with the
test's own work.  The runner dies with the test process (PR_SET_PDEATHSIG),
and so do the containers it runs (theirs is the runner); an interrupted
request (Ctrl-C reaches both) ends the runner, and the next request starts a
new one.

Run as ``python -m minirt.testing.runner IN OUT PARENT`` (descriptor numbers,
the test process's pid).
"""

import os
import pickle
import struct
import subprocess
import sys

from minirt.errors import MinirtError, RuntimeFailure

_LENGTH = struct.Struct("!I")


class Runner:
    """The client: ``run(image, cmd, **options)`` is ``minirt.api.containers.run``
    in the runner process, started on first use."""

    def __init__(self):
        self.process = self.requests = self.answers = self.environ = None

    def run(self, *args, **kwargs):
        if self.process is None:
            self._start()
        environ = dict(os.environ)  # (only the changes go: pytest sets PYTEST_CURRENT_TEST each test)
        sent = self.environ or {}
        changes = ({k: v for k, v in environ.items() if sent.get(k) != v}, [k for k in sent if k not in environ])
        try:
            _send(self.requests, (os.getcwd(), changes, args, kwargs))
            self.environ = environ
            kind, value = _receive(self.answers)
        except (EOFError, BrokenPipeError):
            code = self.close()
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise RuntimeFailure(f"the session's container runner died ({how})") from None
        except BaseException:
            self.close()  # (half a conversation: the next request gets a new runner)
            raise
        if kind == "raised":
            raise value
        return value

    def _start(self):
        request_r, request_w = os.pipe2(os.O_CLOEXEC)
        answer_r, answer_w = os.pipe2(os.O_CLOEXEC)
        # Our interpreter with our import path: the same minirt, cffi and all.
        # (sys.executable may not be ours to execute: a venv's link into root's
        # home, run as nobody; /proc/self/exe is the file we run from.)
        python = sys.executable if sys.executable and os.access(sys.executable, os.X_OK) else "/proc/self/exe"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        try:
            self.process = subprocess.Popen(
                [python, "-m", "minirt.testing.runner", str(request_r), str(answer_w), str(os.getpid())],
                pass_fds=(request_r, answer_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=env)
        finally:
            os.close(request_r)
            os.close(answer_w)
        self.requests, self.answers = request_w, answer_r

    def close(self):
        """End the runner (it exits at the end of its requests; killed if it
        does not); its exit status, as subprocess says it."""
        if self.process is None:
            return None
        for fd in (self.requests, self.answers):
            os.close(fd)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        code = self.process.returncode
        self.process = self.requests = self.answers = self.environ = None
        return code


def _send(fd, obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    data = _LENGTH.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _receive(fd):
    (length,) = _LENGTH.unpack(_read(fd, _LENGTH.size))
    return pickle.loads(_read(fd, length))


def _read(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("the container runner went away")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _portable(error):
    """``error``, or where it cannot cross the pipe (an exception whose
    constructor wants other arguments) the same words in a plain one."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 -- any failure to pickle
        return (MinirtError if isinstance(error, MinirtError) else RuntimeError)(f"{type(error).__name__}: {error}")


def main(requests, answers, parent):
    import _prctl  # (python-prctl's C half, as kernel/security.py uses it)
    import signal

    from minirt.api import containers

    _prctl.prctl(_prctl.PR_SET_PDEATHSIG, signal.SIGKILL)  # die with the test process
    if os.getppid() != parent:
        return  # it died before we could say so
    while True:
        try:
            cwd, (changed, removed), args, kwargs = _receive(requests)
        except EOFError:
            return  # the session is over
        with containers.removals_deferred():  # (the container's files go after the answer)
            try:
                os.chdir(cwd)
                os.environ.update(changed)
                for key in removed:
                    del os.environ[key]
                answer = ("returned", containers.run(*args, **kwargs))
            except KeyboardInterrupt:
                return  # (Ctrl-C: the client has given up on this answer)
            except BaseException as e:  # noqa: BLE001 -- every error is the client's to raise
                answer = ("raised", _portable(e))
            try:
                _send(answers, answer)
            except BrokenPipeError:
                return


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
