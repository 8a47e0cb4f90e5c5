"""The console: a serial line to the host terminal.

Lecture idea: a virtual machine's users "interact with the virtualization layer
as if it were the underlying machine" -- here, a UART-like device whose output
goes to the host's stdout and whose input comes from the host's stdin.

Input is read from the host only when the guest looks (a STATUS or DATA read)
or when the board polls, never from a background thread, so what the guest
sees depends on its own actions, not on host scheduling.
"""

import os
import select

from . import Device

DATA, STATUS, CTRL = 0x00, 0x04, 0x08
RX_READY, RX_EOF, TX_READY = 1, 2, 4
RX_IRQ = 1


class Console(Device):
    name = "console"
    summary = ("A serial line: output goes to the host's stdout, input comes from its "
               "stdin. The line is raised while CTRL.RX_IRQ is set and RX_READY or RX_EOF is.")
    registers = (
        (DATA, "DATA", "write: send the low byte. read: take the next input byte (0 if none)"),
        (STATUS, "STATUS", "bit 0 RX_READY: an input byte is waiting; bit 1 RX_EOF: the input "
                           "is closed and every byte has been read; bit 2 TX_READY: always 1"),
        (CTRL, "CTRL", "bit 0 RX_IRQ: interrupt while RX_READY or RX_EOF is set"),
    )

    def __init__(self, input_fd=None, output=None, input_bytes=b"", hold_open=False):
        """`input_fd`: a host file descriptor to read (None: no host input).
        `input_bytes`: input given up front (tests).  `output`: a binary
        stream to write to; by default output is collected in `self.output`.
        `hold_open`: with no `input_fd`, the input never ends -- the guest
        waits for more, as at a terminal nobody types at (tests); `feed`
        types more."""
        super().__init__()
        self.input_fd = input_fd
        self.rx = bytearray(input_bytes)
        self.hold_open = hold_open
        self.eof = input_fd is None and not hold_open
        self.ctrl = 0
        self.output = bytearray()
        self.stream = output

    def _send(self, byte):
        if self.stream is None:
            self.output.append(byte)
            return
        self.stream.write(bytes((byte,)))
        if byte == 10:                   # line-buffered, like a terminal
            self.stream.flush()

    def flush(self):
        if self.stream is not None:
            self.stream.flush()

    # -- host side --------------------------------------------------------------

    def feed(self, data):
        """Type `data` at the console (tests)."""
        self.rx += data
        self._update_irq()

    def poll(self):
        if self.rx or self.eof or self.input_fd is None:
            return
        self.flush()                     # show a prompt before waiting for its answer
        try:
            ready, _, _ = select.select([self.input_fd], [], [], 0)
            if ready:
                data = os.read(self.input_fd, 4096)
                if data:
                    self.rx += data
                else:
                    self.eof = True
        except (OSError, ValueError):
            self.eof = True              # a closed or unreadable stdin is the end of input
        self._update_irq()

    def wait_fd(self):
        return None if self.eof or not self.ctrl & RX_IRQ else self.input_fd

    def _status(self):
        if self.rx:
            return RX_READY | TX_READY
        return (RX_EOF | TX_READY) if self.eof else TX_READY

    def _update_irq(self):
        if self.board is not None and self.irq is not None:
            self.board.set_irq(self.irq, bool(self.ctrl & RX_IRQ and self._status() & (RX_READY | RX_EOF)))

    # -- guest side ---------------------------------------------------------------

    def read(self, offset):
        if offset == DATA:
            self.poll()
            if not self.rx:
                return 0
            byte = self.rx.pop(0)
            self._update_irq()
            return byte
        if offset == STATUS:
            self.poll()
            return self._status()
        if offset == CTRL:
            return self.ctrl
        return 0

    def write(self, offset, value):
        if offset == DATA:
            self._send(value & 0xFF)
        elif offset == CTRL:
            self.ctrl = value & RX_IRQ
            self._update_irq()

    # -- snapshot -----------------------------------------------------------------

    def save(self):
        # Bytes already sent are the host's; bytes received but not yet read
        # by the guest are part of the machine and travel with it.
        return {"rx": self.rx.hex(), "eof": self.eof, "ctrl": self.ctrl}

    def restore(self, state):
        self.rx = bytearray.fromhex(state["rx"])
        self.eof = state["eof"] or (self.input_fd is None and not self.hold_open)
        self.ctrl = state["ctrl"]
