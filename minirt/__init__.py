"""minirt: a container runtime built from first principles.

A container is an ordinary Linux process that the kernel shows a different world:
namespaces decide what it can see, cgroups how much it may use, an overlay root
filesystem what it runs from, capabilities and seccomp what it may ask the kernel.
Start reading at ``minirt/runtime/container.py``.
"""

from minirt.errors import MinirtError, ImageError, SpecError, RuntimeFailure

__all__ = ["MinirtError", "ImageError", "SpecError", "RuntimeFailure"]
