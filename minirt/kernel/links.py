"""Network links: a container's own network stack, and the cable to it.

Lecture idea: a new network namespace starts with nothing but a loopback device,
and even that is down.  To connect it, the host makes a *veth pair* — two
network devices joined like the ends of a cable — puts one end into the
container's namespace (where it is renamed ``eth0``) and plugs the other into a
*bridge*, a software Ethernet switch on the host that also carries the
network's gateway address.  Everything else (which address, which bridge, NAT)
is policy, in ``minirt/runtime/network.py``.

Two halves, on purpose:

- Inside the container (PID 1, before it drops privileges) only the classic
  ``ioctl``s are used — ``SIOCSIFFLAGS`` (``ifconfig lo up``),
  ``SIOCSIFADDR``/``SIOCSIFNETMASK`` (``ifconfig eth0 ADDR netmask MASK``) and
  ``SIOCADDRT`` (``route add default gw GW``).  They need only a socket, which
  keeps container start-up free of a netlink library's import cost.  A
  socket made in the container's namespace by a thread stepping in and out
  does as well from the host: that is how a rootful parent brings ``lo`` up
  while PID 1 builds its root (``link_up_in``).
- On the host, the bridge and the veth pairs are made with rtnetlink: one
  message each, encoded by pyroute2's message classes (imported only there,
  and only those: see below), so ``--network none`` never pays for them.
"""

import errno
import fcntl
import os
import struct

# The C half of `socket`: the Python half imports selectors and enum (~3 ms of
# every container's start-up) for features an ioctl socket never uses.
import _socket as socket

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
IFF_UP = 0x1
RTF_UP, RTF_GATEWAY = 0x1, 0x2

IFNAMSIZ = 16  # a link name is at most 15 bytes and a NUL


# -- inside the namespace: ioctls ---------------------------------------------------

def _ioctls(*requests):
    """Issue ``(request, argument)`` ioctls in turn on a socket (any socket will
    do as the handle for a network ioctl); return the last one's result."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for request, argument in requests:
            result = fcntl.ioctl(s, request, argument)
        return result
    finally:
        s.close()


def link_up(name="lo"):
    """Set the IFF_UP flag of link ``name`` in the current network namespace."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _set_up(s, name)
    finally:
        s.close()


def link_up_in(pid, name="lo"):
    """``link_up`` in the network namespace of process ``pid``, from outside it.
    A socket belongs to the namespace it was made in, and its ioctls act
    there: the calling thread steps in to make one, and straight back out."""
    from minirt.kernel import libc

    ours = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        theirs = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.setns(theirs, libc.CLONE_NEWNET)
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            finally:
                libc.setns(ours, libc.CLONE_NEWNET)
        finally:
            os.close(theirs)
    finally:
        os.close(ours)
    try:
        _set_up(s, name)
    finally:
        s.close()


def _set_up(s, name):
    current = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", name.encode(), 0))
    flags = struct.unpack("16sH", current[:18])[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | IFF_UP))


def _sockaddr_in(address):
    # struct sockaddr_in: family, port (big-endian), address, 8 bytes of zero
    return struct.pack("=H2s4s8x", socket.AF_INET, b"\0\0", socket.inet_aton(address))


def configure(name, address, prefixlen, gateway=None):
    """``ifconfig NAME ADDRESS/PREFIXLEN up`` and ``route add default gw GATEWAY``."""
    netmask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF))
    # struct ifreq: the name, then a union whose first member is a sockaddr
    _ioctls((SIOCSIFADDR, struct.pack("16s16s8x", name.encode(), _sockaddr_in(address))),
            (SIOCSIFNETMASK, struct.pack("16s16s8x", name.encode(), _sockaddr_in(netmask))))
    link_up(name)
    if gateway:
        any_ = _sockaddr_in("0.0.0.0")
        # struct rtentry (x86_64): pad, dst, gateway, genmask, flags, pad, pad,
        # pad, metric, dev, mtu, window, irtt — 120 bytes.  dst and genmask
        # 0.0.0.0 make it the default route.
        entry = struct.pack("=Q16s16s16sHh4xQQh6xQQQH6x", 0, any_, _sockaddr_in(gateway), any_,
                            RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, 0, 0, 0, 0)
        _ioctls((SIOCADDRT, entry))


# -- on the host: rtnetlink, spoken with pyroute2's message classes ----------------------
#
# A veth pair whose one end is born in another namespace has no ioctl: it takes
# one rtnetlink message, RTM_NEWLINK.  pyroute2 encodes it, but ``import
# pyroute2`` runs the package's __init__, which imports every netlink family it
# knows, asyncio and multiprocessing: ~100 ms, more than starting a container.
# minirt needs only the message machinery (``pyroute2.netlink``: nlmsg, nla),
# declares the few link attributes it sets (linux/if_link.h) and sends the
# message on a socket of its own.

RTM_NEWLINK, RTM_DELLINK = 16, 17
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
_link_message = None


def netlink_ready():
    """Import what talking rtnetlink takes, once (see above); return the link
    message class.  Cheap after the first call; the CLI calls it early, in a
    helper process of its own (``minirt.runtime.network.head_start``)."""
    global _link_message
    if _link_message is None:
        _link_message = _declare_link_message(_import_without_package_init("pyroute2.netlink"))
    return _link_message


def _import_without_package_init(name):
    """Import the submodule ``name`` of a package without running the package's
    ``__init__``: a bare package module stands in for it while the submodule
    (and what it imports) loads, and is taken away afterwards, so that a later
    ``import pyroute2`` elsewhere in the process still gets the real package."""
    import importlib
    import importlib.machinery
    import sys

    package = name.split(".")[0]
    if package in sys.modules:  # imported already, the usual way
        return importlib.import_module(name)
    spec = importlib.machinery.PathFinder.find_spec(package)
    if spec is None:
        raise ImportError(f"no module named {package!r}")
    stand_in = type(sys)(package)
    stand_in.__path__ = spec.submodule_search_locations
    sys.modules[package] = stand_in
    try:
        return importlib.import_module(name)
    finally:
        for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[loaded]


def _declare_link_message(netlink):
    # struct ifinfomsg (linux/rtnetlink.h), then attributes by number.
    header = (("family", "B"), ("__pad", "x"), ("ifi_type", "H"), ("index", "i"),
              ("flags", "I"), ("change", "I"))

    class ifinfmsg(netlink.nlmsg):
        fields = header
        nla_map = ((1, "IFLA_ADDRESS", "l2addr"), (3, "IFLA_IFNAME", "asciiz"),
                   (10, "IFLA_MASTER", "uint32"), (18, "IFLA_LINKINFO", "linkinfo"))

        class linkinfo(netlink.nla):
            nla_map = ((1, "IFLA_INFO_KIND", "asciiz"), (2, "IFLA_INFO_DATA", "veth_info"))

            class veth_info(netlink.nla):
                nla_map = ((1, "VETH_INFO_PEER", "peer"),)

                class peer(netlink.nla):  # the other end: a header and attributes of its own
                    fields = header
                    nla_map = ((3, "IFLA_IFNAME", "asciiz"), (19, "IFLA_NET_NS_PID", "uint32"))

    return ifinfmsg


def _rtnetlink(kind, attrs, flags=0, up=False):
    """Send one link message (RTM_NEWLINK or RTM_DELLINK) and wait for the
    kernel's answer; its error becomes an OSError."""
    message = netlink_ready()()
    message["header"]["type"] = kind
    message["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
    message["flags"] = message["change"] = IFF_UP if up else 0
    message["attrs"] = attrs
    message.encode()
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)  # 0: NETLINK_ROUTE
    try:
        s.sendto(message.data, (0, 0))
        answer = s.recv(65536)
    finally:
        s.close()
    # struct nlmsghdr, then (for NLMSG_ERROR) the error: 0 is the acknowledgement
    _, answer_type, _, _, _, error = struct.unpack_from("=IHHIIi", answer)
    if answer_type == NLMSG_ERROR and error:
        raise OSError(-error, os.strerror(-error))


def exists(name):
    """Whether the link ``name`` exists in the current network namespace (no netlink)."""
    return os.path.exists(f"/sys/class/net/{name}")


def links():
    """Names of all links in the current network namespace."""
    return os.listdir("/sys/class/net")


def alias(name):
    """The link's alias (``ip link set NAME alias TEXT``), "" if none or no link."""
    try:
        with open(f"/sys/class/net/{name}/ifalias") as f:
            return f.read().strip()
    except OSError:
        return ""


def set_alias(name, text):
    with open(f"/sys/class/net/{name}/ifalias", "w") as f:
        f.write(text)


def create_bridge(name, address, prefixlen, alias=None):
    """A bridge with the network's gateway address, up.

    The bridge gets a fixed MAC address of its own; otherwise it takes the
    lowest MAC of its ports, which changes as containers come and go and leaves
    every container with a stale ARP entry for its gateway.
    """
    mac = bytearray(os.urandom(6))
    mac[0] = (mac[0] & 0xFE) | 0x02  # unicast, locally administered
    _rtnetlink(RTM_NEWLINK, [("IFLA_IFNAME", name), ("IFLA_ADDRESS", ":".join(f"{b:02x}" for b in mac)),
                             ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})],
               NLM_F_CREATE | NLM_F_EXCL)
    if alias:
        set_alias(name, alias)
    configure(name, address, prefixlen)  # ifconfig works on the host's links too


def create_veth(host_name, bridge, netns_pid, peer_name="eth0", alias=None):
    """A veth pair: ``peer_name`` inside the network namespace of ``netns_pid``,
    ``host_name`` on the host, plugged into ``bridge`` and up — one message.

    The peer is created directly in the target namespace (IFLA_NET_NS_PID), so
    it never exists on the host under a name that could clash with the host's
    own ``eth0``.
    """
    with open(f"/sys/class/net/{bridge}/ifindex") as f:
        master = int(f.read())
    peer = {"attrs": [("IFLA_IFNAME", peer_name), ("IFLA_NET_NS_PID", netns_pid)]}
    _rtnetlink(RTM_NEWLINK, [("IFLA_IFNAME", host_name), ("IFLA_MASTER", master),
                             ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                                          ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]})],
               NLM_F_CREATE | NLM_F_EXCL, up=True)
    if alias:
        set_alias(host_name, alias)


def delete_link(name):
    """Delete link ``name`` (a veth takes its peer with it); no error if it is gone."""
    if not exists(name):
        return False
    try:
        _rtnetlink(RTM_DELLINK, [("IFLA_IFNAME", name)])
    except OSError as e:
        if e.errno != errno.ENODEV:  # someone else deleted it meanwhile
            raise
    return True


def routes():
    """The host's IPv4 routes as (destination, prefixlen, device), from /proc/net/route."""
    out = []
    with open("/proc/net/route") as f:
        next(f)
        for line in f:
            fields = line.split()
            dest, mask = int(fields[1], 16), int(fields[7], 16)
            # /proc/net/route prints addresses in host (little-endian) byte order
            out.append((socket.inet_ntoa(struct.pack("<I", dest)), bin(mask).count("1"), fields[0]))
    return out


def set_sysctl(path, value):
    """Write ``/proc/sys/<path>`` (e.g. ``net/ipv4/ip_forward``), if it differs."""
    full = os.path.join("/proc/sys", path)
    with open(full) as f:
        if f.read().strip() == str(value):
            return
    with open(full, "w") as f:
        f.write(str(value))
