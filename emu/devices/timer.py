"""The timer: interrupts at a fixed period, counted in CPU cycles.

Lecture idea: a hypervisor shares one CPU among many machines, and what lets
a kernel (guest or host) take the CPU back from a program that will not give
it up is a timer interrupt.  Time here is the guest's own cycle count, not the
host clock, so runs and restores are exactly repeatable.

Ticks that pass while one is still pending are merged into it, the way a
real timer's level-triggered line works.
"""

from . import Device

COUNT, PERIOD, CTRL, STATUS = 0x00, 0x04, 0x08, 0x0C
ENABLE = 1
PENDING = 1


class Timer(Device):
    name = "timer"
    summary = ("Interrupts every PERIOD cycles of guest time while enabled. Ticks that pass "
               "while one is pending merge into it.")
    registers = (
        (COUNT, "COUNT", "read: cycles since reset, low 32 bits"),
        (PERIOD, "PERIOD", "interrupt every PERIOD cycles while enabled (0: never)"),
        (CTRL, "CTRL", "bit 0 ENABLE; enabling (or writing PERIOD while enabled) starts a "
                       "new period from now"),
        (STATUS, "STATUS", "read: bit 0 PENDING. Write 1 to bit 0: acknowledge, which lowers "
                           "the line"),
    )

    def __init__(self):
        super().__init__()
        self.period = 0
        self.ctrl = 0
        self.pending = 0
        self.deadline = None

    def _restart(self):
        if self.ctrl & ENABLE and self.period:
            self.deadline = self.board.cycles + self.period
        else:
            self.deadline = None

    def read(self, offset):
        if offset == COUNT:
            return self.board.cycles & 0xFFFFFFFF
        if offset == PERIOD:
            return self.period
        if offset == CTRL:
            return self.ctrl
        if offset == STATUS:
            return self.pending
        return 0

    def write(self, offset, value):
        if offset == PERIOD:
            self.period = value
            self._restart()
        elif offset == CTRL:
            self.ctrl = value & ENABLE
            self._restart()
        elif offset == STATUS and value & PENDING:
            self.pending = 0
            self.board.set_irq(self.irq, False)

    def next_event(self):
        return self.deadline

    def advance(self, now):
        if self.deadline is None or now < self.deadline:
            return
        self.pending = PENDING
        self.board.set_irq(self.irq, True)
        missed = (now - self.deadline) // self.period
        self.deadline += (missed + 1) * self.period

    def save(self):
        return {"period": self.period, "ctrl": self.ctrl, "pending": self.pending,
                "deadline": self.deadline}

    def restore(self, state):
        if state["deadline"] is not None and not state["period"]:
            raise ValueError("timer has a deadline but no period")   # advance divides by it
        self.period, self.ctrl = state["period"], state["ctrl"]
        self.pending, self.deadline = state["pending"], state["deadline"]
