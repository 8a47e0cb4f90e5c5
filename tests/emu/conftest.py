"""Helpers for the emu tests: assemble and run small programs in one call."""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from emu.asm import assemble
from emu.machine import Machine

GUEST = os.path.join(os.path.dirname(__file__), "..", "..", "emu", "guest")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run_source(source, steps=100_000, engine="interpret", memory=1 << 16, input_bytes=b"", **kw):
    """Assemble `source`, run it, return the machine (console output in
    machine.console.output)."""
    from emu.devices.console import Console
    machine = Machine(memory, console=Console(input_bytes=input_bytes), engine=engine, **kw)
    machine.load(assemble(source, "test.s"))
    machine.run(steps)
    return machine


def emu_cli(*args, input=b"", cwd=None):
    """Run the emu command in a new process; returns CompletedProcess (bytes)."""
    return subprocess.run([sys.executable, "-m", "emu", *args], input=input, capture_output=True,
                          cwd=cwd or REPO, timeout=120)


@pytest.fixture(scope="session")
def toyos(tmp_path_factory):
    """A toyos disk image, built once for the session."""
    from emu import mkfs
    path = tmp_path_factory.mktemp("toyos") / "toyos.img"
    mkfs.build_toyos(str(path))
    return path


class Terminal:
    """``python -m emu ARGS`` with a new pseudo-terminal as its controlling
    terminal and stdin/stdout; we hold the other end, as a person at a
    keyboard would."""

    def __init__(self, args, cwd):
        import pty
        self.pid, self.master = pty.fork()
        if self.pid == 0:             # (this tree's emu, whatever the directory)
            os.environ["PYTHONPATH"] = os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])
            os.chdir(cwd)
            os.execv(sys.executable, [sys.executable, "-m", "emu", *args])
        self.out = b""  # all read so far
        self._pos = 0   # where the last needle found ends

    def write(self, data):
        os.write(self.master, data)

    def read_until(self, needle, timeout=30):
        """Read until ``needle`` shows up after the last one found; returns
        what came before it."""
        deadline = time.monotonic() + timeout
        start = self._pos
        while (found := self.out.find(needle, self._pos)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {needle!r}; got {self.out[self._pos:]!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:           # EIO: the other side has gone
                    chunk = b""
                assert chunk, f"the terminal closed before {needle!r}; got {self.out[self._pos:]!r}"
                self.out += chunk
        self._pos = found + len(needle)
        return self.out[start:found]

    def wait_raw(self, timeout=30):
        """Wait until emu has made the terminal raw (before that, the
        terminal itself would take Ctrl-C and echo)."""
        import termios
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.master)[3] & termios.ICANON:
            assert time.monotonic() < deadline, "the terminal never became raw"
            time.sleep(0.05)

    def wait(self):
        """emu's exit status (the rest of its output is read and kept)."""
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.out += chunk
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return os.waitstatus_to_exitcode(status)

    def close(self):
        os.close(self.master)
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


@pytest.fixture
def terminal(tmp_path):
    """terminal(*args): start emu on a pseudo-terminal, in tmp_path."""
    opened = []

    def start(*args):
        opened.append(Terminal(args, tmp_path))
        return opened[-1]
    yield start
    for t in opened:
        t.close()


@pytest.fixture
def guest_dir():
    return os.path.abspath(GUEST)


@pytest.fixture
def run():
    return run_source


@pytest.fixture
def cli():
    return emu_cli


def machine_state(machine):
    """Everything observable about a machine, for comparing two runs."""
    return (machine.save_state(), bytes(machine.memory.ram), bytes(machine.console.output))


@pytest.fixture
def state():
    return machine_state
