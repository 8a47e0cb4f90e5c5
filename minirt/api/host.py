"""The host as minirt uses it: its state root, ``version``, ``info``, ``system prune``,
and a probe of what its kernel lets a container ask.

Lecture idea: a container runtime is a client of kernel features, not a
hypervisor: what it can do here is what this kernel offers (``runtime/host.py``
finds out), and all it keeps is a directory of state, which ``system prune``
brings back in line with what really runs.
"""

from minirt.runtime import state as _state


def state_root(path=None, create=True):
    """The private state root (``path``, else the caller's default)."""
    return _state.private_root(path or _state.default_root(), create=create)


def default_root():
    """Where state lives unless told: $MINIRT_ROOT, else root's system root, else the user's data directory."""
    return _state.default_root()


def build():
    """The commit minirt was built from."""
    from minirt.runtime import host

    return host.build()


def platform():
    """os/arch, as docker prints it."""
    from minirt.runtime import host

    return host.platform()


def features():
    """{kernel feature: present} for ``minirt version``."""
    from minirt.runtime import host

    return host.features()


def info(root):
    """docker's ``info`` fields."""
    from minirt.runtime import host

    return host.info(root)


def prune(root, volumes=False, cgroup_parents=()):
    """``minirt system prune``: what was removed, a line each; named volumes stay,
    unused anonymous ones go with ``volumes`` (``--volumes``, as docker 23);
    the cgroup parents ``cgroup_parents`` go once empty, as the default one does."""
    from minirt.runtime import prune as sweep

    return sweep.prune(root, volumes=volumes, cgroup_parents=cgroup_parents)


def syscall_probe(call, args=()):
    """An x86-64 program (bytes) that makes the system call ``call`` (a name
    or number) with the integer ``args`` and exits with its errno, 0 if it
    succeeded (``kernel/probe.py``)."""
    from minirt.kernel import probe

    return probe.syscall_probe(call, args)


def capability_names(bits):
    """The capability names (``CAP_NET_RAW``, ...) in the bit mask ``bits``, as
    /proc/PID/status shows a process's sets (``CapEff: 00000000a80425fb``)."""
    from minirt.kernel import capabilities

    return capabilities.names_in(bits)
