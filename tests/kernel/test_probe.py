"""The syscall probe (kernel/probe.py): one system call, its errno as the exit status."""

import errno
import os
import subprocess

import pytest

from minirt.errors import SpecError
from minirt.kernel.probe import syscall_probe


def ran(tmp_path, call, *args):
    path = tmp_path / "probe"
    path.write_bytes(syscall_probe(call, args))
    os.chmod(path, 0o755)
    return subprocess.run([str(path)]).returncode


def test_the_exit_status_is_the_errno_or_zero(tmp_path):
    assert ran(tmp_path, "close", 999) == errno.EBADF
    mask = os.umask(0o22)
    os.umask(mask)
    assert ran(tmp_path, "umask", 0o22) == (256 - mask) % 256  # a positive result r: 256 - r
    assert ran(tmp_path, "sched_yield") == 0
    assert ran(tmp_path, 3, -1) == errno.EBADF  # a number; close(-1): the argument sign-extended


def test_six_arguments_reach_their_registers(tmp_path):
    # mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 1): an unaligned offset
    assert ran(tmp_path, "mmap", 0, 4096, 0, 0x22, -1, 1) == errno.EINVAL
    assert ran(tmp_path, "mmap", 0, 4096, 0, 0x22, -1, 4096) == 0  # an address: 256 - 0 (page-aligned)


@pytest.mark.parametrize("call,args,message", [
    ("no_such_call", (), "invalid syscall 'no_such_call': not an x86-64 system call"),
    (-1, (), "invalid syscall -1"),
    ("getpid", (1, 2, 3, 4, 5, 6, 7), "at most six"),
])
def test_bad_input(call, args, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        syscall_probe(call, args)
