"""A board: the CPU, RAM and devices wired together into one machine.

Lecture idea: a virtual machine is the whole computer -- "the entire guest
environment ... needs to be represented".  This module is that whole: it owns
the memory map, routes device accesses, carries interrupt lines to the CPU,
keeps devices in step with the CPU's clock, and gathers the state of every
part for a snapshot.  Read ``cpu.py`` and ``devices/`` first.

Memory map (physical; the device region is never paged):

  0x00000000 .. size-1     RAM
  0xF0000000  console      (devices/console.py)  interrupt line 1
  0xF0000100  timer        (devices/timer.py)    interrupt line 0
  0xF0000200  power        (devices/power.py)
  0xF0000300  pic          (devices/pic.py)      the interrupt controller itself
  0xF0000400  disk         (devices/disk.py)     interrupt line 2
  anything else            bad-address trap

Interrupt lines go from the devices through the interrupt controller, which
masks them, to the CPU.  ``boot`` is the firmware: like a PC's BIOS it copies
the disk's first sector into RAM and jumps to it.
"""

import select

from . import isa
from .cpu import CPU, BusError
from .devices import WINDOW
from .devices.console import Console
from .devices.disk import SECTOR_SIZE, Disk, DiskError
from .devices.pic import InterruptController
from .devices.power import Power
from .devices.timer import Timer
from .memory import Memory

DEFAULT_MEMORY = 1 << 20

# How often (in cycles) the board looks for host input while the guest runs.
# Polls happen at fixed points of guest time, and the next one is part of a
# snapshot, so a restored machine polls exactly where the original would have.
POLL_INTERVAL = 1 << 16

# The last two bytes of a bootable disk's first sector, as on a PC.
BOOT_SIGNATURE = b"\x55\xaa"


class Machine:
    cpu_class = CPU          # a board for a CPU with an extension says so (emu/vmm/assisted.py)

    def __init__(self, memory_size=DEFAULT_MEMORY, console=None, engine="translate", backing=None,
                 disk=None):
        if not isa.PAGE_SIZE <= memory_size <= isa.MMIO_BASE or memory_size % isa.PAGE_SIZE:
            raise ValueError(f"memory size must be a multiple of {isa.PAGE_SIZE} "
                             f"between {isa.PAGE_SIZE} and {isa.MMIO_BASE:#x}")
        self.memory = Memory(memory_size, backing)
        self.cpu = self.cpu_class(self.memory, self)
        # Slot n answers at MMIO_BASE + n * WINDOW.  `disk` is a Disk or a
        # path to an image; without one the disk is there, but empty.
        self.console = console or Console()
        self.timer = Timer()
        self.power = Power()
        self.pic = InterruptController()
        self.disk = disk if isinstance(disk, Disk) else Disk(disk)
        self.slots = {0: self.console, 1: self.timer, 2: self.power, 3: self.pic, 4: self.disk}
        self.pic.attach(self)
        for device, line in ((self.console, 1), (self.timer, 0), (self.power, None),
                             (self.disk, 2)):
            device.attach(self, line)
        self.devices = list(self.slots.values())
        self.stopped = False
        self.exit_status = None
        self.stop_reason = None
        self.paused = False
        # A host running many machines in one process cannot block on one
        # guest's input: with `blocking` off, an idle guest that only input
        # can wake pauses instead, and leaves in `waiting` the descriptors
        # to wait on (emu/vm/host.py waits for all its machines at once).
        self.blocking = True
        self.waiting = None
        self.exits = {}              # device name -> accesses (statistics, not machine state)
        self.next_poll = 0
        self.symbols = {}
        self.last_snapshot = None    # (path, crc) of the last snapshot saved or restored
        self.engine_name = engine
        self.engine = self._make_engine(engine)

    def _make_engine(self, name):
        if name == "interpret":
            return self.cpu
        if name == "translate":
            from .translate import Translator
            return Translator(self.cpu)
        raise ValueError(f"unknown engine {name!r} (interpret or translate)")

    # -- loading and running ---------------------------------------------------------

    def load(self, image):
        """Put an image (``image.Image``) in RAM and reset the CPU to its entry."""
        for addr, data in image.segments:
            if not data:
                continue                 # nothing to put anywhere, even past the end of RAM
            if addr + len(data) > self.memory.size:
                raise ValueError(f"segment at {addr:#010x} ({len(data)} bytes) does not fit "
                                 f"in {self.memory.size} bytes of memory")
            self.memory.write_bytes(addr, data)
        self.symbols = dict(image.symbols)
        self.cpu.pc = image.entry
        self.cpu.regs[isa.SP] = self.memory.size

    def boot(self):
        """The firmware: copy sector 0 of the disk to address 0 and start
        there, in supervisor mode with paging off -- what a PC's BIOS does
        with a boot sector.  Everything after that is the guest's own code."""
        if self.disk.sectors == 0:
            raise DiskError("no disk to boot from")
        sector = self.disk.read_sectors(0, 1)
        if sector[-2:] != BOOT_SIGNATURE:
            raise DiskError(f"{self.disk.path}: not bootable (sector 0 does not end in 55 aa)")
        self.memory.write_bytes(0, sector)
        self.cpu.pc = 0
        self.cpu.regs[isa.SP] = self.memory.size

    def run(self, steps=None):
        """Run until the guest stops the machine or `steps` more instructions
        have executed.  Returns True if the machine has stopped."""
        chunk = 1 << 20
        while not self.stopped:
            n = chunk if steps is None else min(chunk, steps)
            if n <= 0:
                break
            before = self.cpu.steps
            engine = self.engine
            if self.memory.unchecked_left:
                # A restored machine whose pages are checked on first touch
                # (memory.py): only the interpreter touches RAM through those
                # checks.  A few more pages are checked each round, so the
                # translator gets the machine back soon.
                self.memory.check_some(256)
                engine, n = self.cpu, min(n, 10_000)
            engine.run(n)
            if steps is not None:
                steps -= self.cpu.steps - before
        if self.paused:
            self.stopped = self.paused = False
        self.console.flush()
        return self.stopped

    def pause(self):
        """Make `run` return at the next instruction boundary, the machine
        still running: how the console's escape key (Ctrl-A) gets the host
        control between two instructions.  Engines already stop on
        `stopped`, so a pause is a stop that `run` takes back."""
        if not self.stopped:
            self.stopped = self.paused = True

    # -- what devices and the CPU ask of the board -----------------------------------

    @property
    def cycles(self):
        return self.cpu.cycles

    def set_irq(self, line, on):
        self.pic.set_line(line, on)

    def cpu_irq(self, lines):
        """The interrupt controller's output: the lines the CPU may take."""
        self.cpu.irq_pending = lines

    def power_off(self, status):
        self._stop(status, f"powered off with status {status}")

    def unhandled_trap(self, cause, pc, badaddr):
        # No handler installed: the machine cannot go on, like a triple fault.
        self._stop(min(128 + cause, 255), f"unhandled trap: {isa.cause_name(cause)} "
                   f"at pc {pc:#010x} (badaddr {badaddr:#010x})")

    def _stop(self, status, reason):
        if not self.stopped or self.paused:
            self.stopped, self.exit_status, self.stop_reason = True, status, reason
            self.paused = False

    def _device_at(self, addr):
        device = self.slots.get((addr - isa.MMIO_BASE) // WINDOW)
        if device is None:
            raise BusError(addr)
        # A device access is what a hypervisor sees as an exit: counted (statistics only).
        self.exits[device.name] = self.exits.get(device.name, 0) + 1
        return device, (addr - isa.MMIO_BASE) % WINDOW

    def mmio_read(self, addr, width):
        # Devices have word registers.  A byte load reads the whole register
        # (side effects included) and returns the addressed byte of it.
        device, offset = self._device_at(addr)
        value = device.read(offset & ~3) & isa.WORD
        return value if width == 4 else (value >> 8 * (offset & 3)) & 0xFF

    def mmio_write(self, addr, width, value):
        # A byte store writes the byte, zero-extended, to the register it
        # starts; a byte store into the middle of a register is ignored.
        device, offset = self._device_at(addr)
        if width == 1:
            if offset & 3:
                return
            value &= 0xFF
        device.write(offset, value)
        self.reschedule()

    # -- time ------------------------------------------------------------------------

    def service(self):
        """Called by the CPU when its cycle count reaches `next_event`."""
        now = self.cpu.cycles
        for device in self.devices:
            device.advance(now)
        if now >= self.next_poll:
            for device in self.devices:
                device.poll()
            self.next_poll = now + POLL_INTERVAL
        self.reschedule()

    def reschedule(self):
        events = [self.next_poll]
        for device in self.devices:
            event = device.next_event()
            if event is not None:
                events.append(event)
        self.cpu.next_event = min(events)

    def idle(self):
        """The CPU is halted and no interrupt is deliverable.  Skip guest time
        forward to the next device event; if only host input could wake the
        guest, wait for it; if nothing can, the machine is off.  Only a device
        whose line the controller lets through, with IE set, can wake the CPU:
        the controller's mask and IE are the CPU's to change, and it is asleep.
        Each wait counts as a step, so a step bound also bounds halted time."""
        self.cpu.steps += 1
        wakers = []
        if self.cpu.sregs[isa.SREG_STATUS] & isa.STATUS_IE:
            wakers = [device for device in self.devices
                      if device.irq is not None and self.pic.enable >> device.irq & 1]
        if any(device.next_event() is not None for device in wakers):
            self.cpu.cycles = max(self.cpu.cycles, self.cpu.next_event)
            return
        fds = [fd for fd in (device.wait_fd() for device in wakers) if fd is not None]
        if not fds:
            self._stop(0, "halted with nothing left to wake it")
            return
        self.console.flush()
        if not select.select(fds, [], [], None if self.blocking else 0)[0]:
            self.waiting = fds
            self.cpu.steps -= 1          # the wait is counted once, when it ends
            self.pause()
            return
        for device in self.devices:
            device.poll()
        self.reschedule()

    # -- snapshot ----------------------------------------------------------------------

    def save_state(self):
        """Everything but RAM, as a JSON-able dict (see snapshot.py)."""
        return {"memory_size": self.memory.size, "cpu": self.cpu.save(),
                "devices": {device.name: device.save() for device in self.devices},
                "next_poll": self.next_poll, "stopped": self.stopped,
                "exit_status": self.exit_status, "stop_reason": self.stop_reason,
                "symbols": self.symbols}

    def restore_state(self, state):
        self.cpu.restore(state["cpu"])
        for device in self.devices:
            # A snapshot from before a device existed leaves it as at reset.
            if device.name in state["devices"]:
                device.restore(state["devices"][device.name])
        self.next_poll = state["next_poll"]
        self.stopped, self.exit_status = state["stopped"], state["exit_status"]
        self.stop_reason = state["stop_reason"]
        self.symbols = state["symbols"]
        self.reschedule()
