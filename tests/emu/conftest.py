"""Helpers for the emu tests: assemble and run small programs in one call."""

import os
import subprocess
import sys

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


@pytest.fixture
def terminal(open_terminal, tmp_path):
    """terminal(*args): start emu on a pseudo-terminal, in tmp_path."""
    return lambda *args: open_terminal("emu", args, cwd=tmp_path)


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
