"""A VM moved between homes: addresses, and the definition that goes with it.

Lecture idea: a virtual machine can be "migrated to a more or less powerful
machine".  ``emu/migrate.py`` moves a *machine* (memory, CPU and devices,
pre-copy); a VM is also a *definition* in a home (``store.py``).  Before the
machine's stream, the source sends the definition -- name, memory, CPU
share, a reference to the disk (shared storage: both homes open the same
file, as in Xen, QEMU and VirtualBox's teleporting), the program it was
loaded from -- and the destination answers whether it takes it.  Once the
machine has arrived whole, the destination renames the new definition
into place: a destination that dies on the way leaves no VM behind, only a
hidden ``vms/.new-*`` directory, as a crash in ``emu vm create`` would.

Addresses are a unix socket path (with a ``/``) or ``127.0.0.1:PORT``: the
stream is neither encrypted nor authenticated, so it never leaves the
machine.
"""

import base64
import json
import os
import shutil
import socket
import struct
import time

from .. import snapshot
from ..migrate import MigrationError, receive
from ..vmm import VIRTUALIZATION
from .store import LIVE, VMError, check_name, write_json

LOOPBACK = ("127.0.0.1", "localhost")
LENGTH = struct.Struct("<I")
MAX_OFFER = 16 << 20            # a definition and its program: never near this
TIMEOUT = 30                    # seconds a silent peer is waited for


def parse(address):
    """(family, socket address) of `address`, or a one-line VMError."""
    if "/" in address:
        path = os.path.abspath(address)
        if len(os.fsencode(path)) > 107:          # sun_path's size, less the NUL
            raise VMError(f"address {address}: a unix socket path longer than 107 bytes")
        return socket.AF_UNIX, path
    host, colon, port = address.rpartition(":")
    if not colon or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise VMError(f"address {address!r}: give a unix socket path (with a /) or 127.0.0.1:PORT")
    if host not in LOOPBACK:
        raise VMError(f"address {address}: only loopback (127.0.0.1:PORT) or a unix socket path: "
                      "the migration stream is not encrypted")
    return socket.AF_INET, ("127.0.0.1", int(port))


def canonical(address):
    """`address` checked, as any process reaches it (a path made absolute)."""
    family, where = parse(address)
    return where if family == socket.AF_UNIX else address


def listen(address):
    """A listening socket at `address` (port 0: any free one)."""
    family, where = parse(address)
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if family == socket.AF_INET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(4)
    except OSError as e:
        sock.close()
        raise VMError(f"address {address}: cannot listen: {e.strerror}") from None
    sock.setblocking(False)
    return sock


def name_of(listener):
    """What `emu vm migrate --to` takes to reach `listener`."""
    where = listener.getsockname()
    return where if isinstance(where, str) else f"{where[0]}:{where[1]}"


def close(listener):
    if listener.family == socket.AF_UNIX:
        try:
            os.unlink(listener.getsockname())
        except OSError:
            pass
    listener.close()


def connect(address):
    family, where = parse(address)
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(where)
    except OSError as e:
        sock.close()
        raise VMError(f"address {address}: cannot connect: {e.strerror or e}") from None
    return sock


# -- the definition, both ways ----------------------------------------------------------

def offer(sock, home, vm, paused=False):
    """Send VM `vm`'s definition (the source); raises MigrationError if the
    destination will not take it."""
    program = home.path_of(vm["name"], vm["program"])
    if program is not None:
        with open(program, "rb") as f:
            program = base64.b64encode(f.read()).decode()
    disk = home.path_of(vm["name"], vm["disk"])
    state = "paused" if paused else vm["state"]
    _send(sock, {"name": vm["name"], "memory": vm["memory"], "cpu_share": vm["cpu_share"],
                 "virtualization": vm.get("virtualization", "none"), "disk": disk, "program": program, "state": state, "from": home.path})
    answer = _receive(sock)
    if "error" in answer:
        raise MigrationError(f"the destination refused: {answer['error']}")


def accept(sock, home, host_id, memory=None):
    """Take a VM arriving on `sock` (the destination): its definition, then
    its machine.  Returns (definition, machine, directory to rename into
    place), or raises VMError or MigrationError, nothing left behind."""
    sock.settimeout(TIMEOUT)
    try:
        offered = _receive(sock)
        name = check_name(str(offered["name"]))
        if os.path.exists(home.vm_dir(name)):
            raise VMError(f"vm {name}: already exists in {home.path}")
        if (offered["state"] not in LIVE + ("saved",) or type(offered["cpu_share"]) is not int
                or offered.get("virtualization", "none") not in VIRTUALIZATION):
            raise TypeError
    except (VMError, KeyError, TypeError) as e:
        _send(sock, {"error": str(e) if isinstance(e, VMError) else "a malformed definition"})
        raise VMError(f"vm refused: {e}") from None
    tmp = home.file("vms", f".new-{name}-{os.getpid()}-{os.urandom(3).hex()}")
    os.mkdir(tmp, 0o700)
    try:
        _send(sock, {"ok": True})
        machine = receive(sock, memory_size=memory, timeout=TIMEOUT)
        vm = {"name": name, "memory": machine.memory.size, "cpu_share": offered["cpu_share"],
              "virtualization": offered.get("virtualization", "none"),
              "program": None, "disk": None, "state": offered["state"], "host": None,
              "reason": f"migrated from {offered['from']}", "exit_status": None,
              "created": time.time(), "snapshots": {}}
        if offered["program"] is not None:
            with open(os.path.join(tmp, "program.img"), "wb") as f:
                f.write(base64.b64decode(offered["program"]))
            vm["program"] = "program.img"
        if offered["disk"] is not None:
            vm["disk"] = os.path.relpath(offered["disk"], tmp)   # tmp is as deep as its final name
        if vm["state"] in LIVE:
            vm["host"] = host_id
        else:                             # cold: it arrives saved, `emu vm start` continues it
            snapshot.save(machine, os.path.join(tmp, "saved.snap"))
            if machine.disk.image is not None:
                machine.disk.image.close()
        write_json(os.path.join(tmp, "vm.json"), vm)
        return vm, machine, tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _send(sock, value):
    body = json.dumps(value).encode()
    sock.sendall(LENGTH.pack(len(body)) + body)


def _receive(sock):
    length = LENGTH.unpack(_exactly(sock, LENGTH.size))[0]
    if length > MAX_OFFER:
        raise MigrationError(f"a definition of {length} bytes: larger than any emu sends")
    try:
        value = json.loads(_exactly(sock, length))
    except ValueError:
        raise MigrationError("a malformed definition") from None
    if not isinstance(value, dict):
        raise MigrationError("a malformed definition")
    return value


def _exactly(sock, length):
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            raise MigrationError("connection closed by the other side")
        data += chunk
    return data
