"""The guest's RAM: the first part of the host's, and not a byte more.

Lecture idea: "each virtual machine runs in an isolated environment".  Under
the monitor the real CPU's physical memory holds two things: the guest's RAM
(host-physical 0 up to the guest's size, so guest-physical and host-physical
addresses coincide) and, above it, the monitor's own pages -- the shadow page
tables (``shadow.py``).  Everything that acts on the guest's behalf without
going through the real MMU -- the firmware that loads the boot sector, the
disk's DMA, the monitor's walks of the guest's page tables, its fetch of an
instruction to emulate -- gets this view instead of the host's memory, so
bounds checks made against ``size`` stop at the guest's last byte.

Writes go through the host's memory, so dirty pages are marked and the block
translator still learns that code it compiled has been overwritten (a program
read from disk by DMA into a slot where another one ran).

A snapshot sees this view too (``monitor.py``): the pages it saves, full or
dirty since the last one, are the guest's and never the monitor's, so what
it writes is a bare machine's memory.
"""

from ..isa import PAGE_SIZE


class GuestRAM:
    """The first `size` bytes of `host` (an ``emu.memory.Memory``), with the
    methods the loader, the devices and a CPU use."""

    unchecked_left = 0              # pages are checked by the host's memory, not here

    def __init__(self, host, size):
        if size > host.size:
            raise ValueError(f"guest RAM of {size} bytes does not fit in {host.size}")
        self.host, self.size = host, size
        self.ram = host.ram[:size]
        self.words = host.words[:size >> 2]
        self.pages = size // PAGE_SIZE

    def load_word(self, addr):
        return self.host.load_word(addr)

    def load_byte(self, addr):
        return self.host.load_byte(addr)

    def store_word(self, addr, value):
        self.host.store_word(addr, value)

    def store_byte(self, addr, value):
        self.host.store_byte(addr, value)

    def read_bytes(self, addr, length):
        self._check(addr, length)
        return self.host.read_bytes(addr, length)

    def write_bytes(self, addr, data):
        self._check(addr, len(data))
        self.host.write_bytes(addr, data)

    # -- what a snapshot asks of memory (snapshot.py), for the guest's pages ----------

    def used_pages(self):
        return [page for page in self.host.used_pages() if page < self.pages]

    def used_flags(self):
        return self.host.used_flags()[:self.pages]

    def dirty_pages(self):
        return [page for page in self.host.dirty_pages() if page < self.pages]

    def check_some(self, count):
        self.host.check_some(count)

    def mark_snapshot(self, present=None):
        if present is not None:
            present = bytes(present) + bytes(self.host.pages - self.pages)
        self.host.mark_snapshot(present)

    def _check(self, addr, length):
        # Callers check bounds first, as they do against a Memory; this is the
        # wall that holds if one of them ever does not.
        if addr + length > self.size:
            raise ValueError(f"{length} bytes at {addr:#x} reach past the guest's "
                             f"{self.size} bytes of RAM")
