"""Network namespaces: a container's own network stack.

Lecture idea: a new network namespace starts with nothing but a loopback device,
and even that is down.  The default container network ("none") is just that
loopback, brought up.  Bringing one link up needs no netlink library: the
classic ``SIOCSIFFLAGS`` ioctl on any socket does it, which keeps container
start-up free of pyroute2's import cost.  Bridges and veth pairs (pyroute2)
come with the networking modes.
"""

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def link_up(name="lo"):
    """Set the IFF_UP flag of link ``name`` in the current network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", name.encode(), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | IFF_UP))
