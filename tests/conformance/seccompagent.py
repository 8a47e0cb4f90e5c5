"""seccompagent: the seccomp notification agent runc's integration tests talk to
(runc builds it from contrib/cmd/seccompagent, a Go program; Debian's source
package ships no binary and this host has no Go).  x86-64 only, as those tests.

Lecture idea: "seccomp" -- besides allowing or refusing a system call, a
filter can hand it to a supervisor (SCMP_ACT_NOTIFY): the runtime sends the
filter's notification descriptor to the agent at ``listenerPath``, with the
container's state as JSON; the agent receives each intercepted call, and
answers it instead of the kernel, or lets it continue.

    seccompagent.py -socketfile=PATH [-pid-file=FILE]

What it does with the calls, as runc's agent (the tests check exactly this):

- ``mkdir(PATH, MODE)``: makes ``PATH-METADATA`` instead (METADATA: the
  filter's ``listenerMetadata``), inside the container's root or working
  directory; the call returns 0, or ENOSYS if that fails;
- ``chmod``, ``fchmod``, ``fchmodat``: fail with ENOMEDIUM;
- any other: continues as if there were no filter.
"""

import argparse
import errno
import fcntl
import json
import os
import socket
import struct
import sys
import threading

# <linux/seccomp.h>: ioctls on the notification descriptor (type '!').
NOTIF = struct.Struct("=QII iIQ6Q")   # seccomp_notif: id, pid, flags, data{nr, arch, ip, args[6]}
RESP = struct.Struct("=QqiI")         # seccomp_notif_resp: id, val, error, flags
IOCTL_RECV = (3 << 30) | (NOTIF.size << 16) | (ord("!") << 8) | 0   # _IOWR('!', 0, ...)
IOCTL_SEND = (3 << 30) | (RESP.size << 16) | (ord("!") << 8) | 1   # _IOWR('!', 1, ...)
IOCTL_ID_VALID = (1 << 30) | (8 << 16) | (ord("!") << 8) | 2       # _IOW('!', 2, __u64)
FLAG_CONTINUE = 1
AUDIT_ARCH_X86_64 = 0xC000003E
MKDIR, CHMOD, FCHMOD, FCHMODAT = 83, 90, 91, 268  # x86-64 system call numbers


def receive_listener(conn):
    """(notification fd, metadata) from the runtime's message: the container
    process state (runtime spec: ContainerProcessState) and its fds."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 4096, 8)
    state = json.loads(data)
    names = state.get("fds", [])
    if names.count("seccompFd") != 1 or names.index("seccompFd") >= len(fds):
        for fd in fds:
            os.close(fd)
        raise ValueError("no seccompFd in the container process state")
    listener = fds[names.index("seccompFd")]
    for fd in fds:
        if fd != listener:
            os.close(fd)
    metadata = os.path.basename(state.get("metadata", ""))  # a name, never a path
    return listener, metadata or "agent-generated-suffix"


def read_string(pid, address):
    """A NUL-terminated string of process ``pid`` at ``address``."""
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        return os.pread(fd, 4096, address).split(b"\0", 1)[0].decode()
    finally:
        os.close(fd)


def mkdir_in_container(pid, path, mode, metadata):
    """mkdir ``path-metadata`` as process ``pid`` sees it (its root or its cwd),
    the path taken lexically so that ``..`` cannot leave that directory."""
    base = f"/proc/{pid}/root" if path.startswith("/") else f"/proc/{pid}/cwd"
    inside = os.path.normpath("/" + f"{path}-{metadata}").lstrip("/")
    os.mkdir(os.path.join(base, inside), mode & 0o7777)


def answer(listener, metadata):
    """Serve the intercepted calls of one filter until its last task is gone."""
    buf = bytearray(NOTIF.size)
    while True:
        buf[:] = bytes(NOTIF.size)  # the kernel wants it zeroed
        try:
            fcntl.ioctl(listener, IOCTL_RECV, buf, True)
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno == errno.ENOENT:  # the task went away before we read it
                continue
            break
        nid, pid, _flags, nr, arch, _ip, *args = NOTIF.unpack(buf)
        value, error, flags = 0, 0, FLAG_CONTINUE
        if arch == AUDIT_ARCH_X86_64 and nr == MKDIR:
            try:
                path = read_string(pid, args[0])
                fcntl.ioctl(listener, IOCTL_ID_VALID, struct.pack("=Q", nid))  # still the same task?
                mkdir_in_container(pid, path, args[1], metadata)
                flags = 0
            except OSError:
                value, error, flags = -1, -errno.ENOSYS, 0
        elif arch == AUDIT_ARCH_X86_64 and nr in (CHMOD, FCHMOD, FCHMODAT):
            value, error, flags = -1, -errno.ENOMEDIUM, 0
        try:
            fcntl.ioctl(listener, IOCTL_SEND, bytearray(RESP.pack(nid, value, error, flags)), True)
        except OSError:
            pass  # the task was killed while we answered
    os.close(listener)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="seccompagent", description=__doc__.splitlines()[0])
    parser.add_argument("-socketfile", default="/run/seccomp-agent.socket")
    parser.add_argument("-pid-file", dest="pid_file")
    args = parser.parse_args(argv)
    if args.pid_file:  # first, as runc's agent: the tests' teardown kills this pid
        with open(args.pid_file, "w") as f:
            f.write(str(os.getpid()))
    try:
        os.unlink(args.socketfile)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(args.socketfile)
    except OSError as e:
        sys.exit(f"seccompagent: {args.socketfile}: {e.strerror}")
    server.listen(16)
    devnull = os.open(os.devnull, os.O_RDWR)  # let go of the test's output: bats waits for its holders
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                listener, metadata = receive_listener(conn)
            except (OSError, ValueError):
                continue  # (a message the runtime garbled: its test fails, and says why)
        threading.Thread(target=answer, args=(listener, metadata), daemon=True).start()


if __name__ == "__main__":
    main()
