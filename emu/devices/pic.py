"""The interrupt controller: many device lines in, one CPU input out.

Lecture idea: the hypervisor emulates *all* the hardware a guest OS expects,
and an OS expects to choose which devices may interrupt it.  Every device
raises its own line; the controller masks them and shows the CPU the rest.
The CPU then takes the lowest-numbered line that is both raised and enabled
(its cause says which, so there is no separate claim register to read).

Lines are level-triggered: a line stays raised until the kernel deals with
its device (acknowledges the timer, reads the console, acknowledges the disk),
so masking a line only postpones the interrupt, it never loses it.

At reset every line is enabled, so programs that never touch the controller
behave as if it were not there.
"""

from . import Device

PENDING, ENABLE = 0x00, 0x04
ALL_LINES = 0xFFFFFFFF


class InterruptController(Device):
    name = "pic"
    summary = ("Collects the devices' interrupt lines. The CPU sees the lines that are "
               "both raised and enabled, and takes the lowest-numbered one.")
    registers = (
        (PENDING, "PENDING", "read: bit n set while line n is raised, enabled or not"),
        (ENABLE, "ENABLE", "bit n set: line n may interrupt the CPU. All ones at reset"),
    )

    def __init__(self):
        super().__init__()
        self.lines = 0
        self.enable = ALL_LINES

    def set_line(self, line, on):
        if on:
            self.lines |= 1 << line
        else:
            self.lines &= ~(1 << line)
        self._update()

    def _update(self):
        self.board.cpu_irq(self.lines & self.enable)

    def read(self, offset):
        if offset == PENDING:
            return self.lines
        if offset == ENABLE:
            return self.enable
        return 0

    def write(self, offset, value):
        if offset == ENABLE:
            self.enable = value & ALL_LINES
            self._update()

    def save(self):
        return {"lines": self.lines, "enable": self.enable}

    def restore(self, state):
        self.lines, self.enable = state["lines"], state["enable"]
