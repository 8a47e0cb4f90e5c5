"""Helpers for tests that change the privileges of a process: they do it in a
forked child, which exits (never returns into pytest) and is always reaped.

- ``in_child(fn)`` runs ``fn()`` in a child and returns ``(wait status, result)``;
  the result is ``fn``'s JSON-able return value, or ``{"error": "..."}``.
- ``exec_in_child(prepare, argv)`` runs ``prepare()`` in a child, then executes
  ``argv`` there with stdout into a pipe, and returns ``(wait status, stdout)``.
- ``raw_syscall(name, *args)`` makes a system call by number: ``(result, errno)``.
"""

import json
import os

import pytest

from minirt.kernel.libc import ffi
from minirt.kernel.syscalls_x86_64 import SYSCALLS

_lib = ffi.dlopen(None)


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _in_child(fn):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                payload = {"ok": fn()}
            except BaseException as e:  # noqa: BLE001 — report everything to the parent
                payload = {"error": f"{type(e).__name__}: {e}"}
            os.write(w, json.dumps(payload).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = _read_all(r)
    _, status = os.waitpid(pid, 0)
    result = json.loads(data) if data else None
    return status, (result["ok"] if result and "ok" in result else result)


def _exec_in_child(prepare, argv):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            prepare()
            os.dup2(w, 1)
            os.execv(argv[0], argv)
        except BaseException as e:  # noqa: BLE001
            os.write(w, f"ERROR {type(e).__name__}: {e}".encode())
        finally:
            os._exit(127)
    os.close(w)
    out = _read_all(r).decode()
    _, status = os.waitpid(pid, 0)
    return status, out


def _raw_syscall(name, *args):
    number = SYSCALLS[name] if isinstance(name, str) else name
    result = _lib.syscall(ffi.cast("long", number), *(ffi.cast("unsigned long", a) for a in args))
    return result, (ffi.errno if result == -1 else 0)


@pytest.fixture
def in_child():
    return _in_child


@pytest.fixture
def exec_in_child():
    return _exec_in_child


@pytest.fixture
def raw_syscall():
    return _raw_syscall
