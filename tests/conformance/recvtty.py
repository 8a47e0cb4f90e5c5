"""recvtty: the other end of an OCI runtime's ``--console-socket``, as runc's
integration tests call it (runc builds it from contrib/cmd/recvtty, a Go
program; Debian's source package ships no binary and this host has no Go).

Lecture idea: "the terminal of a container" -- the runtime makes the pseudo-
terminal inside the container and hands its master end, as a file descriptor
in an SCM_RIGHTS message, to whoever listens on the console socket.

    recvtty.py [--mode single|null] [--pid-file FILE] [--no-stdin] SOCKET

- ``single``: accept one terminal and join it to our stdio (output to stdout,
  stdin to the terminal unless --no-stdin); exit when the terminal closes.
- ``null``: accept any number of terminals and read each to nowhere, so that
  the containers never block writing to them; run until killed.

The pid file is written first, as runc's recvtty does: runc's tests kill the
pid it names in their teardown, which can come moments after the start.  In
null mode it lets go of the stdio it was started with (bats waits for every
holder of a test's output to let go).
"""

import argparse
import os
import socket
import sys
import termios
import threading


def receive_terminal(conn):
    """The pty master the runtime sent over ``conn``; refuses any other message."""
    _data, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
    if len(fds) != 1:
        raise OSError("the console socket's peer sent no file descriptor")
    return fds[0]


def drain(fd, out=None):
    """Copy ``fd`` to ``out`` (or nowhere) until the terminal closes (EOF or EIO)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the last process holding the terminal's other end is gone
            return
        if not chunk:
            return
        if out is not None:
            out.write(chunk)
            out.flush()


def feed(fd):
    """Copy our stdin into the terminal until stdin ends."""
    while chunk := os.read(0, 65536):
        os.write(fd, chunk)


def single(listener, no_stdin):
    conn, _ = listener.accept()
    listener.close()  # one terminal only: another recvtty may take the path over
    with conn:
        master = receive_terminal(conn)
    attrs = termios.tcgetattr(master)
    attrs[1] &= ~termios.ONLCR  # as runc's recvtty: the output as the program wrote it
    termios.tcsetattr(master, termios.TCSANOW, attrs)
    if not no_stdin:
        threading.Thread(target=feed, args=(master,), daemon=True).start()
    drain(master, sys.stdout.buffer)
    os.close(master)


def null(listener):
    def serve(conn):
        with conn:
            try:
                master = receive_terminal(conn)
            except OSError:
                return
        drain(master)
        os.close(master)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="recvtty", description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--mode", choices=("single", "null"), default="single")
    parser.add_argument("--pid-file")
    parser.add_argument("--no-stdin", action="store_true", help="single mode: do not copy stdin in")
    parser.add_argument("socket")
    args = parser.parse_args(argv)
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(args.socket)
    except OSError as e:
        sys.exit(f"recvtty: {args.socket}: {e.strerror}")
    listener.listen(16)
    if args.mode == "single":
        single(listener, args.no_stdin)
    else:
        let_go_of_stdio()
        null(listener)


def let_go_of_stdio():
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    main()
