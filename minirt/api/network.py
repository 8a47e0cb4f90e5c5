"""Networks: ``minirt network create|ls|rm``, and what ``minirt run`` asks before it starts.

Lecture idea: a container's network is a namespace plugged into a bridge on
the host; which bridge, which address and which published ports is policy,
kept in ``runtime/network.py``.  ``run`` checks ``--network`` and ``-p`` before
the image is unpacked, and gives the veth plumber its head start (it imports
the netlink code while minirt goes on).
"""

from minirt.runtime import network as _policy


def check(root, network, ports):
    """``--network`` and ``-p`` checked against the networks that exist."""
    _policy.check(root, network, ports)


def head_start(network):
    """Start importing the netlink code now if ``network`` will need a veth pair."""
    _policy.head_start(network)


def create(root, name, subnet=None):
    """Record a network (its bridge comes with its first container); its record."""
    return _policy.create(root, name, subnet=subnet)


def listing(root):
    """(network record, number of containers on it) of each network."""
    return _policy.listing(root)


def remove(root, name):
    """Remove a network no container is on."""
    _policy.remove(root, name)
