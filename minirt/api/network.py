"""Networks: ``minirt network create|ls|inspect|connect|disconnect|rm|prune``,
``minirt port``, and what ``minirt run`` asks before it starts.

Lecture idea: a container's network is a namespace plugged into a bridge on
the host; which bridges (one interface per network), which addresses and
which published ports is policy, kept in ``runtime/network.py``.  ``run``
checks ``--network`` and ``-p`` before the image is unpacked, and gives the
veth plumber its head start (it imports the netlink code while minirt goes on).
"""

from minirt.errors import SpecError
from minirt.runtime import network as _policy


def check(root, network, ports, more=()):
    """``--network`` (the first, and ``more``) and ``-p`` checked against the networks that exist."""
    _policy.check(root, network, ports, more)


def head_start(network):
    """Start importing the netlink code now if ``network`` will need a veth pair."""
    _policy.head_start(network)


def create(root, name, subnet=None, labels=None):
    """Record a network (its bridge comes with its first container); its record."""
    return _policy.create(root, name, subnet=subnet, labels=labels)


def listing(root):
    """(network record, number of containers on it) of each network."""
    return _policy.listing(root)


def inspect(root, name):
    """docker's ``network inspect`` record of network ``name``."""
    return _policy.describe(root, name)


def remove(root, name):
    """Remove a network no container is on."""
    _policy.remove(root, name)


def prune(root):
    """Remove the user-defined networks no container is on; their names."""
    return _policy.prune_networks(root)


def connect(container, name, aliases=()):
    """Put ``container`` (running or not) on network ``name`` too, with ``aliases`` there."""
    return _policy.connect(container, name, aliases)


def disconnect(container, name):
    """Take ``container`` off network ``name``."""
    _policy.disconnect(container, name)


def endpoints(container):
    """docker's NetworkSettings.Networks of ``container``: {network: endpoint}."""
    return {e["name"]: {"Aliases": e["aliases"], "NetworkID": e["network_id"], "Gateway": e["gateway"],
                        "IPAddress": e["address"], "IPPrefixLen": e["prefixlen"], "Interface": e["interface"]}
            for e in _policy.endpoints(container.state())}


def ports(container):
    """The container's published ports, their host ports chosen: docker's
    NetworkSettings.Ports, {"80/tcp": [{"HostIp", "HostPort"}]}, every
    exposed port that is published."""
    out = {}
    for p in container.state().get("ports", container.spec.ports):
        out.setdefault(f"{p['container_port']}/{p['proto']}", []).append(
            {"HostIp": p["host_ip"] or "0.0.0.0", "HostPort": str(p["host_port"])})
    return out


def port_lines(container, which=None):
    """``minirt port CONTAINER [PORT[/PROTO]]``: docker's lines, ``80/tcp -> 0.0.0.0:49153``."""
    wanted = None
    if which is not None:
        number, _, proto = which.partition("/")
        if not number.isdecimal() or not 1 <= int(number) <= 65535 or proto not in ("", "tcp", "udp"):
            raise SpecError(f"invalid port {which!r}: expected PORT[/tcp|udp]")
        wanted = f"{int(number)}/{proto or 'tcp'}"
    lines = [(key, f"{b['HostIp']}:{b['HostPort']}") for key, bindings in ports(container).items()
             for b in bindings if wanted in (None, key)]
    if wanted is not None and not lines:
        raise SpecError(f"no public port '{wanted}' published for {container.spec.name or container.id[:12]}")
    return [f"{key} -> {address}" if wanted is None else address for key, address in lines]
