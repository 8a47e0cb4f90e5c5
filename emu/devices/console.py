"""The console: a serial line to the host terminal.

Lecture idea: a virtual machine's users "interact with the virtualization layer
as if it were the underlying machine" -- here, a UART-like device whose output
goes to the host's stdout and whose input comes from the host's stdin.

Input is read from the host only when the guest looks (a STATUS or DATA read)
or when the board polls, never from a background thread, so what the guest
sees depends on its own actions, not on host scheduling.  Like a UART's
FIFO, the receive buffer is small and the host stops reading while it is
full: input waits in the pipe or the terminal instead of being dropped
(flow control, as RTS/CTS does on a real serial line).

At a terminal the host side is raw, as QEMU's is: Ctrl-C is a byte for the
guest, and Ctrl-A is the escape to the emulator (``cli.py`` decides what
the key after it does; Ctrl-A Ctrl-A sends one Ctrl-A).
"""

import contextlib
import os
import select
import termios

from . import Device

DATA, STATUS, CTRL = 0x00, 0x04, 0x08
RX_READY, RX_EOF, TX_READY, TERMINAL = 1, 2, 4, 8
RX_IRQ = 1
RX_BUFFER = 4096        # bytes the device holds; while it is full, the host's input waits
ESCAPE = 0x01           # Ctrl-A: the next key is for the emulator, not the guest


class Console(Device):
    name = "console"
    summary = ("A serial line: output goes to the host's stdout, input comes from its "
               f"stdin through a {RX_BUFFER}-byte receive buffer; while that is full the host "
               "stops reading (back-pressure), so no input is ever lost. The line is raised "
               "while CTRL.RX_IRQ is set and RX_READY or RX_EOF is.")
    registers = (
        (DATA, "DATA", "write: send the low byte. read: take the next input byte (0 if none)"),
        (STATUS, "STATUS", "bit 0 RX_READY: an input byte is waiting; bit 1 RX_EOF: the input "
                           "is closed and every byte has been read; bit 2 TX_READY: always 1; "
                           "bit 3 TERMINAL: a person types at a raw terminal, so the guest "
                           "should echo and edit what it reads"),
        (CTRL, "CTRL", "bit 0 RX_IRQ: interrupt while RX_READY or RX_EOF is set"),
    )

    def __init__(self, input_fd=None, output=None, input_bytes=b"", hold_open=False,
                 terminal=False, escape=None):
        """`input_fd`: a host file descriptor to read (None: no host input).
        `input_bytes`: input given up front (tests), waiting on the host
        side like the rest of a pipe.  `output`: a binary stream to write
        to; by default output is collected in `self.output`.  `hold_open`:
        with no `input_fd`, the input never ends -- the guest waits for
        more, as at a terminal nobody types at (tests); `feed` types more.
        `terminal`: the input is a person at a raw terminal (STATUS.TERMINAL).
        `escape`: a callable given the key typed after Ctrl-A; None: Ctrl-A
        is input like any other byte."""
        super().__init__()
        self.input_fd = input_fd
        self.host = bytearray(input_bytes)   # typed, not yet taken by the device
        self.rx = bytearray()                # the receive buffer, at most RX_BUFFER bytes
        self.hold_open = hold_open
        self.eof = input_fd is None and not hold_open
        self.terminal = terminal
        self.escape = escape
        self.escaped = False                 # Ctrl-A seen, its key not yet
        self.ctrl = 0
        self.output = bytearray()
        self.stream = output

    def connect(self, input_fd, output, terminal=False):
        """Plug a new host side in: a machine restored, or run by a host
        process that feeds its input through a pipe (emu/vm/host.py)."""
        self.input_fd, self.stream, self.terminal = input_fd, output, terminal
        self.eof = input_fd is None and not self.hold_open

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
        self.host += data
        self.poll()

    def poll(self):
        # The device takes host input only into an empty buffer, and only as
        # much as fits: the rest stays with the host (in the pipe or the
        # terminal) until the guest has read what it has.
        if self.rx:
            return
        if self.host:
            self.rx += self.host[:RX_BUFFER]
            del self.host[:RX_BUFFER]
        elif not self.eof and self.input_fd is not None:
            self.flush()                 # show a prompt before waiting for its answer
            try:
                if select.select([self.input_fd], [], [], 0)[0]:
                    data = os.read(self.input_fd, RX_BUFFER)
                    if data:
                        self._receive(data)
                    else:
                        self.eof = True
            except (OSError, ValueError):
                self.eof = True          # a closed or unreadable stdin is the end of input
        self._update_irq()

    def _receive(self, data):
        if self.escape is None or (ESCAPE not in data and not self.escaped):
            self.rx += data
            return
        for byte in data:
            if self.escaped:
                self.escaped = False
                if byte == ESCAPE:
                    self.rx.append(byte)         # Ctrl-A Ctrl-A: one Ctrl-A for the guest
                else:
                    self.escape(chr(byte))
            elif byte == ESCAPE:
                self.escaped = True
            else:
                self.rx.append(byte)

    def wait_fd(self):
        # Only an empty buffer waits for the host: a full one waits for the guest.
        if self.eof or self.rx or self.host or not self.ctrl & RX_IRQ:
            return None
        return self.input_fd

    @contextlib.contextmanager
    def raw_terminal(self):
        """With `terminal` set, put the host terminal in raw mode for the
        duration: every key goes to the guest as it is typed, Ctrl-C
        included, and the guest echoes.  Enter still arrives as a newline, and
        a newline sent still starts a new line.  The old mode comes back at
        the end."""
        if not self.terminal:
            yield
            return
        saved = termios.tcgetattr(self.input_fd)
        mode = [*saved[:6], list(saved[6])]
        mode[0] &= ~(termios.IXON | termios.BRKINT | termios.ISTRIP | termios.INLCR | termios.IGNCR)
        mode[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self.input_fd, termios.TCSANOW, mode)   # (TCSAFLUSH would drop typed keys)
        try:
            yield
        finally:
            termios.tcsetattr(self.input_fd, termios.TCSADRAIN, saved)

    def _status(self):
        status = TX_READY | (TERMINAL if self.terminal else 0)
        if self.rx:
            return status | RX_READY
        return status | (RX_EOF if self.eof and not self.host else 0)
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
        # by the guest are part of the machine and travel with it -- those
        # typed on the host side and not yet taken in too (`typed`, only if
        # any: a VM host hands its console's pending input over so, emu/vm/host.py).
        state = {"rx": self.rx.hex(), "eof": self.eof, "ctrl": self.ctrl}
        if self.host:
            state["typed"] = self.host.hex()
        return state

    def restore(self, state):
        self.rx = bytearray.fromhex(state["rx"])
        typed = state.get("typed", "")
        if not isinstance(typed, str):
            raise ValueError("console: typed input is not a hex string")
        self.host[:0] = bytes.fromhex(typed)     # before what this console was given
        self.eof = state["eof"] or (self.input_fd is None and not self.hold_open)
        self.ctrl = state["ctrl"]
