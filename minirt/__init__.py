"""minirt: a container runtime built from first principles.

A container is an ordinary Linux process that the kernel shows a different world:
namespaces decide what it can see, cgroups how much it may use, an overlay root
filesystem what it runs from, capabilities and seccomp what it may ask the kernel.
Start reading at ``minirt/runtime/container.py``.

The Python API (``minirt.run``, ``minirt.Result``, ``minirt.Container``) is
imported on first use, so ``import minirt`` stays cheap.
"""

from minirt.errors import (
    CommandNotExecutable, CommandNotFound, ImageError, MinirtError, RuntimeFailure, SpecError,
)

__version__ = "0.1.0"

__all__ = ["run", "start", "Result", "Container", "MinirtError", "ImageError", "SpecError",
           "RuntimeFailure", "CommandNotFound", "CommandNotExecutable"]


def __getattr__(name):
    if name in ("run", "start", "Result", "prepare", "Container"):
        from minirt.api import containers
        return getattr(containers, name)
    raise AttributeError(f"module 'minirt' has no attribute {name!r}")
