"""Volumes: ``minirt volume create|ls|inspect|rm|prune``.

Lecture idea: a container's data that must outlive it lives in a volume, a
directory the runtime keeps in its state root and mounts where the container
asks (``-v NAME:/path``); the policy -- names, labels, who uses which, docker's
copy-up -- is ``runtime/volumes.py``.  ``run`` needs nothing from here: a
container's volumes are made as it is created.
"""

from minirt.runtime import prune as _sweep
from minirt.spec import parse_labels
from minirt.runtime import volumes as _policy

ANONYMOUS = _policy.ANONYMOUS


def create(root, name=None, labels=(), driver="local"):
    """Make a volume (a random name if None; an existing one is left as it is): its record.
    ``labels``: "KEY=VALUE" strings or a dict."""
    labels = labels if isinstance(labels, dict) else parse_labels(labels)
    return _policy.create(root, name, labels=labels, driver=driver)


def inspect(root, name):
    """docker's ``volume inspect`` fields: Name, Driver, Mountpoint, CreatedAt, Labels, Scope, Options."""
    return _policy.inspect(root, name)


def listing(root, filters=()):
    """The volumes' records, by name; ``filters``: dangling=true|false, name=PART, label=KEY[=VALUE]."""
    return _policy.listing(root, filters)


def remove(root, name, force=False):
    """Remove a volume no container uses; ``force``: a missing one is no error."""
    _policy.remove(root, name, force=force)


def prune(root, everything=False):
    """Unused anonymous volumes (all unused ones with ``everything``): (names, bytes freed)."""
    return _sweep.prune_volumes(root, everything=everything)
