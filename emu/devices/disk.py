"""The disk: a block device backed by a disk-image file on the host.

Lecture idea: "the entire guest environment -- including the entire guest OS,
disk and memory -- needs to be represented in the VM file".  The guest's disk
is an ordinary host file; the guest sees 512-byte sectors it reads and writes
by DMA: it names a sector, a RAM address and a count, says go, and gets on
with something else until the completion interrupt.  That is how real disk
controllers (and virtio-blk) work, and why a kernel can run another program
while one waits for the disk.

A transfer takes LATENCY + PER_SECTOR * count cycles of guest time and moves
the data at the moment it completes, so runs stay exactly repeatable.  The
disk uses physical addresses: DMA does not go through the MMU.

The image is a raw file or a qcow2 copy-on-write overlay on a read-only
backing image (``qcow2.py``), told apart by its magic number; the guest
cannot tell the difference.

A snapshot does not copy the disk (it can be large, and a VM's disk is a file
of its own): it names the image and records the checksum of what the guest
sees on it (every byte, read through its backing chain), and a restore
refuses an image that has changed since.  What is checked is the content,
not the files: a chain whose layers were merged since (``emu vm snapshot
delete``, ``qcow2.stream``) reads the same and is accepted.  (A real
hypervisor takes a disk snapshot, a copy-on-write overlay, at the same
moment; ``emu vm`` does, in ``emu/vm/disks.py``.)
"""

import os
import zlib

from . import Device
from ..qcow2 import ImageError, open_image

SECTOR_SIZE = 512
SECTOR, ADDR, COUNT, CMD, STATUS, CTRL, SIZE = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18
CMD_READ, CMD_WRITE = 1, 2
BUSY, DONE, ERROR = 1, 2, 4
IRQ_ENABLE = 1
LATENCY, PER_SECTOR = 100, 20      # cycles: a fast disk, but not free


class DiskError(ValueError):
    """The disk image cannot be used; the message is one line."""


class Disk(Device):
    name = "disk"
    summary = (f"Sectors of {SECTOR_SIZE} bytes from a disk-image file, moved to and from "
               "RAM by DMA (physical addresses). A transfer completes "
               f"{LATENCY} + {PER_SECTOR} x COUNT cycles after the command; then DONE is "
               "set and, if CTRL.IRQ, the line is raised until DONE is acknowledged. A "
               "transfer outside the disk or RAM, or a write to a read-only image, completes "
               "with ERROR and moves nothing (a write the host fails completes with ERROR too). With no image attached SIZE is 0.")
    registers = (
        (SECTOR, "SECTOR", "first sector of the transfer"),
        (ADDR, "ADDR", "physical RAM address of the buffer"),
        (COUNT, "COUNT", "number of sectors"),
        (CMD, "CMD", "write 1: read sectors into RAM; 2: write RAM to sectors. "
                     "Ignored while BUSY"),
        (STATUS, "STATUS", "bit 0 BUSY, bit 1 DONE, bit 2 ERROR. Write 1 to bit 1: "
                           "acknowledge (clears DONE and ERROR, lowers the line)"),
        (CTRL, "CTRL", "bit 0 IRQ: raise the line when a transfer completes"),
        (SIZE, "SIZE", "read: sectors on the disk"),
    )

    def __init__(self, path=None, readonly=False):
        super().__init__()
        self.image = None
        self.path = None
        self.readonly = readonly
        self.sectors = 0
        self.sector = self.addr = self.count = 0
        self.command = 0
        self.status = 0
        self.ctrl = 0
        self.deadline = None
        self.reads = self.writes = 0     # sectors moved (statistics, not machine state)
        if path is not None:
            self.open(path, readonly)

    def open(self, path, readonly=False):
        path = os.path.abspath(path)
        try:
            try:
                image = open_image(path, readonly)
            except PermissionError:
                if readonly:
                    raise
                image, readonly = open_image(path, readonly=True), True
        except OSError as e:
            raise DiskError(f"{path}: {e.strerror}") from None
        except ImageError as e:
            raise DiskError(str(e)) from None
        if image.size % SECTOR_SIZE:
            image.close()
            raise DiskError(f"{path}: a disk image must be a whole number of "
                            f"{SECTOR_SIZE}-byte sectors, not {image.size} bytes")
        if self.image is not None:
            self.image.close()
        self.image, self.path, self.readonly = image, path, readonly
        self.sectors = image.size // SECTOR_SIZE

    def read_sectors(self, first, count):
        """Raw bytes, for the firmware's boot and for tests."""
        try:
            return self.image.read(first * SECTOR_SIZE, count * SECTOR_SIZE)
        except (OSError, ImageError) as e:
            raise DiskError(f"{self.path}: read failed: {e}") from None

    # -- guest side ---------------------------------------------------------------

    def read(self, offset):
        return {SECTOR: self.sector, ADDR: self.addr, COUNT: self.count, STATUS: self.status,
                CTRL: self.ctrl, SIZE: self.sectors, CMD: self.command}.get(offset, 0)

    def write(self, offset, value):
        if offset == SECTOR:
            self.sector = value
        elif offset == ADDR:
            self.addr = value
        elif offset == COUNT:
            self.count = value
        elif offset == CMD and not self.status & BUSY and value in (CMD_READ, CMD_WRITE):
            self.command = value
            self.status = BUSY
            self.deadline = self.board.cycles + LATENCY + PER_SECTOR * min(self.count, 1 << 16)
        elif offset == STATUS and value & DONE:
            self.status &= BUSY
        elif offset == CTRL:
            self.ctrl = value & IRQ_ENABLE
        self._update_irq()

    def _update_irq(self):
        if self.board is not None and self.irq is not None:
            self.board.set_irq(self.irq, bool(self.ctrl & IRQ_ENABLE and self.status & DONE))

    # -- time -----------------------------------------------------------------------

    def next_event(self):
        return self.deadline

    def advance(self, now):
        if self.deadline is None or now < self.deadline:
            return
        self.deadline = None
        self.status = DONE if self._transfer() else DONE | ERROR
        self._update_irq()

    def _transfer(self):
        memory = self.board.memory
        length = self.count * SECTOR_SIZE
        if (self.image is None or self.count == 0 or self.sector + self.count > self.sectors
                or self.addr + length > memory.size):
            return False
        try:
            if self.command == CMD_READ:
                memory.write_bytes(self.addr, self.read_sectors(self.sector, self.count))
                self.reads += self.count
            elif self.readonly:
                return False
            else:
                self.image.write(self.sector * SECTOR_SIZE, memory.read_bytes(self.addr, length))
                self.writes += self.count
        except (OSError, ImageError, DiskError):
            return False         # the host's disk is full or failing: the guest's problem to see
        return True

    # -- snapshot -------------------------------------------------------------------

    def checksum(self):
        """A crc32 of the disk as the guest sees it."""
        crc, size = 0, 0 if self.image is None else self.image.size
        for offset in range(0, size, 1 << 20):
            crc = zlib.crc32(self.image.read(offset, min(1 << 20, self.image.size - offset)), crc)
        return crc

    def save(self):
        return {"path": self.path, "readonly": self.readonly, "sectors": self.sectors,
                "crc": self.checksum(), "sector": self.sector, "addr": self.addr,
                "count": self.count, "command": self.command, "status": self.status,
                "ctrl": self.ctrl, "deadline": self.deadline}

    def restore(self, state):
        if state["path"] is not None:
            if self.path != state["path"]:
                self.open(state["path"], state["readonly"])
            if self.sectors != state["sectors"] or self.checksum() != state["crc"]:
                raise DiskError(f"disk image {state['path']} has changed since the snapshot")
        self.sector, self.addr, self.count = state["sector"], state["addr"], state["count"]
        self.command, self.status, self.ctrl = state["command"], state["status"], state["ctrl"]
        self.deadline = state["deadline"]
