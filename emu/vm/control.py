"""Talking to a home's host process, starting it when needed.

Lecture idea: "users interact with the virtualization layer" -- the
commands are short-lived; the machines live in the host process
(``host.py``), and every command that touches a running VM is one request
to it over its control socket.  Connecting, starting the host and the
request happen under spawn.lock, which the host also takes before it exits
when idle: so a command never talks to a host that is on its way out, and
two commands never start two hosts.
"""

import json
import os
import socket
import subprocess
import sys

from .store import VMError, flock


def _connect(home):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(home.socket_name())
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        return None
    return sock


def _spawn(home):
    """Start the host process and wait until it listens."""
    r, w = os.pipe()
    log = open(home.file("host.log"), "ab")
    try:
        child = subprocess.Popen([sys.executable, "-m", "emu.vm.host", home.path, str(w)],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 pass_fds=(w,), start_new_session=True)
    finally:
        log.close()
        os.close(w)
    child.wait()                      # it forks the daemon and exits at once
    with os.fdopen(r, "rb") as ready:
        if ready.read() != b"ready":
            raise VMError(f"{home.path}: the host process did not start (see {home.file('host.log')})")


def request(home, op, spawn=False, keep=False, **args):
    """Send one request; return its answer (and with `keep`, the socket,
    which then carries the guest's console).  Without `spawn`, no host
    means no VM is running: a VMError."""
    with flock(home.file("spawn.lock")):
        sock = _connect(home)
        if sock is None and spawn:
            _spawn(home)
            sock = _connect(home)
        if sock is None:
            name = args.get("name")
            raise VMError(f"vm {name}: not running" if name else "no VM is running")
        try:
            sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(1)      # byte by byte: what follows is the console's
                if not chunk:
                    raise VMError(f"{home.path}: the host process hung up")
                reply += chunk
        except BaseException:
            sock.close()
            raise
    reply = json.loads(reply)
    if "error" in reply or not keep:
        sock.close()
    if "error" in reply:
        raise VMError(reply["error"])
    return (reply["ok"], sock) if keep else reply["ok"]
