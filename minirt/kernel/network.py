"""Network namespaces: a container's own network stack, and the cable to it.

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
  keeps container start-up free of a netlink library's import cost.
- On the host, links are made with rtnetlink through pyroute2, imported only in
  the functions that need it (about 150 ms), so ``--network none`` never pays it.
"""

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
    current = _ioctls((SIOCGIFFLAGS, struct.pack("16sH14x", name.encode(), 0)))
    flags = struct.unpack("16sH", current[:18])[1]
    _ioctls((SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | IFF_UP)))


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


# -- on the host: rtnetlink (pyroute2) ------------------------------------------------

def exists(name):
    """Whether the link ``name`` exists in the current network namespace (no netlink)."""
    return os.path.exists(f"/sys/class/net/{name}")


def links():
    """Names of all links in the current network namespace."""
    return os.listdir("/sys/class/net")


def create_bridge(name, address, prefixlen, alias=None):
    """A bridge with the network's gateway address, up.

    The bridge gets a fixed MAC address of its own; otherwise it takes the
    lowest MAC of its ports, which changes as containers come and go and leaves
    every container with a stale ARP entry for its gateway.
    """
    from pyroute2 import IPRoute

    mac = bytearray(os.urandom(6))
    mac[0] = (mac[0] & 0xFE) | 0x02  # unicast, locally administered
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge", address=":".join(f"{b:02x}" for b in mac))
        index = ipr.link_lookup(ifname=name)[0]
        if alias:
            ipr.link("set", index=index, ifalias=alias)
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")


def create_veth(host_name, bridge, netns_pid, peer_name="eth0", alias=None):
    """A veth pair: ``peer_name`` inside the network namespace of ``netns_pid``,
    ``host_name`` on the host, plugged into ``bridge`` and up.

    The peer is created directly in the target namespace (IFLA_NET_NS_PID), so
    it never exists on the host under a name that could clash with the host's
    own ``eth0``.
    """
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer_name, "net_ns_pid": netns_pid})
        master = ipr.link_lookup(ifname=bridge)[0]
        index = ipr.link_lookup(ifname=host_name)[0]
        ipr.link("set", index=index, master=master, state="up", **({"ifalias": alias} if alias else {}))


def delete_link(name):
    """Delete link ``name`` (a veth takes its peer with it); no error if it is gone."""
    if not exists(name):
        return False
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            ipr.link("del", ifname=name)
        except NetlinkError as e:
            if e.code != 19:  # ENODEV: someone else deleted it meanwhile
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
