"""Devices: the hardware around the CPU, one file per device, one interface.

Lecture idea: the hypervisor "emulates the underlying hardware", and most of
that hardware is not the CPU but the devices.  Like TinyEMU, every device here
is a small object behind the same narrow interface, so a board (``machine.py``)
is just a list of them and a new device is one new file: ``console.py``,
``timer.py``, ``power.py``, ``pic.py`` (the interrupt controller), ``disk.py``.

A device sees the machine only through its *board*, which offers:

- ``board.cycles``           the current time, in CPU cycles;
- ``board.set_irq(line, on)`` raise or lower an interrupt line;
- ``board.power_off(status)`` stop the machine;
- ``board.memory``           RAM, for devices that do DMA (physical addresses).

Each device class also describes itself -- ``summary`` and a ``registers``
table -- and ``manual.py`` turns those into the Devices section of
docs/isa.md, so the reference cannot drift from the code.

Time is counted in guest cycles, never read from the host clock, so that a run
is exactly reproducible and a snapshot restores the devices' notion of time
along with everything else.
"""

WINDOW = 0x100   # bytes of address space each device occupies


class Device:
    """Base class.  Registers are 32-bit words at offsets 0, 4, 8, ... in the
    device's window.  The bus turns byte accesses into word accesses (see
    ``Machine.mmio_read``), so a device only ever sees aligned word offsets.
    A register that does not exist reads as 0 and ignores writes."""

    name = "device"
    summary = ""
    registers = ()           # (offset, name, description), for the manual

    def __init__(self):
        self.board = None
        self.irq = None          # interrupt line, given by the board

    def attach(self, board, irq=None):
        self.board, self.irq = board, irq

    def read(self, offset):
        return 0

    def write(self, offset, value):
        pass

    def next_event(self):
        """The cycle at which this device next does something on its own,
        or None.  The CPU comes back to `advance` no later than that."""
        return None

    def advance(self, now):
        """Bring the device up to time `now` (a cycle count)."""

    def poll(self):
        """Look for input from the host (non-blocking)."""

    def wait_fd(self):
        """A host file descriptor whose readiness could wake an idle guest, or None."""
        return None

    def save(self):
        """Everything needed to continue exactly: a JSON-able dict."""
        return {}

    def restore(self, state):
        pass
