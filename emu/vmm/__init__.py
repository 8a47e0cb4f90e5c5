"""A trap-and-emulate virtual machine monitor for emu's ISA.

Lecture idea: the hypervisor of the lecture -- "a software layer that
emulates the underlying hardware" -- built the classic way: the guest kernel
runs deprivileged on the real CPU, and only what it may not do itself comes
to the monitor.  Read in this order: ``monitor.py`` (the picture, and the
exits), ``vcpu.py`` (the guest's virtual CPU state and the emulation of what
traps), ``shadow.py`` (shadow page tables), ``ram.py`` (the guest's RAM,
and nothing past it), ``exits.py`` (exits counted by cause); then
``assisted.py``, the same guest with hardware assistance (``guestmode.py``).
"""

from .assisted import AssistedMonitor
from .monitor import MAX_MEMORY, GuestMachine, Monitor

# How a machine may run: bare (none), its kernel deprivileged under the
# trap-and-emulate monitor (trap), or in guest mode with hardware assistance
# (hw).  `emu run`, `emu restore` and `emu vm` offer these.
MONITORS = {"trap": Monitor, "hw": AssistedMonitor}
VIRTUALIZATION = ("none", *MONITORS)

__all__ = ["AssistedMonitor", "GuestMachine", "MAX_MEMORY", "MONITORS", "Monitor", "VIRTUALIZATION"]
