"""RAM with page-granular dirty tracking.

Lecture idea: "machine states can be checkpointed" -- and checkpoint files "can
be huge".  The memory of a virtual machine is most of its state, so this module
keeps track, per 4 KiB page, of what the guest wrote since the last snapshot.
A diff snapshot then saves only those pages, and (in a later issue) live
migration sends only them.  Read ``snapshot.py`` next.

RAM is any writable buffer: an anonymous ``mmap`` for a fresh machine, or a
copy-on-write ``mmap`` of a snapshot file for a restored one -- the CPU cannot
tell the difference, which is what makes restore independent of memory size.
Either way the host's kernel gives a page real memory only when it is first
touched (as it does for a real hypervisor's guest RAM), so a 1 GiB machine
costs what its guest uses; untouched pages read as zeros.

A restored machine's pages come from a file that may have been damaged since
it was written.  Checking all of them up front would cost time in proportion
to the memory used, so ``check_lazily`` defers it: each page is checked when
first touched (``CheckedMemory``), and the board checks a few more between
runs, until none is left and the memory is plain ``Memory`` again.  Only code
that goes through these methods may touch RAM meanwhile (``unchecked_left``).
"""

import mmap
import sys

from .isa import PAGE_SIZE

PAGE_SHIFT = PAGE_SIZE.bit_length() - 1

# Translated code is tracked in lines of 256 bytes, finer than pages, so that
# data stored right after a program's code does not keep throwing away the
# translations of that code.
CODE_SHIFT = 8

# Per line, what a store the translator compiled must do besides writing
# (``Memory.store_flags``): mark the page dirty (CLEAN: not marked since the
# last snapshot), check the bytes it writes against translated code (CODE:
# the translator holds code from the line).  Most lines have neither, and
# such a store costs one look at its line's flags.
CLEAN, CODE = 1, 2
_WITH_CLEAN = bytes(flags | CLEAN for flags in range(256))

# Words are read through a memoryview cast to native 32-bit integers, which is
# several times faster than int.from_bytes.  That view is little-endian only on
# a little-endian host, so that is what emu requires.
if sys.byteorder != "little":
    raise ImportError("emu needs a little-endian host (its guest memory is little-endian)")


class Memory:
    """`size` bytes of RAM at guest address 0.

    The CPU checks alignment and bounds before it calls in here; these methods
    assume a valid, aligned address.  Every store marks its page dirty; stores
    into a line that holds translated code tell `on_code_write` (the block
    translator) so it can forget its translations of that line.
    """

    def __init__(self, size, backing=None):
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"memory size must be a positive multiple of {PAGE_SIZE}")
        self.size = size
        if backing is None:
            backing = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        # Bytes and words through memoryviews: as fast as a bytearray, whatever the backing.
        self.ram = memoryview(backing)
        self.words = self.ram.cast("I")
        self.pages = size // PAGE_SIZE
        self.dirty = bytearray(self.pages)       # 1 = written since the last snapshot
        self.present = bytearray(self.pages)     # 1 = may be non-zero as of the last snapshot
        self.code = bytearray(size >> CODE_SHIFT)  # 1 = the translator holds code from this line
        self.store_flags = bytearray([CLEAN]) * len(self.code)  # CLEAN | CODE, see above
        self.on_code_write = None
        self.watch = None                        # the debugger's write hook, or None
        self.unchecked_left = 0                  # pages not yet checked (see check_lazily)

    def load_word(self, addr):
        return self.words[addr >> 2]

    def load_byte(self, addr):
        return self.ram[addr]

    def store_word(self, addr, value):
        self.words[addr >> 2] = value
        self._written(addr, 4)

    def store_byte(self, addr, value):
        self.ram[addr] = value & 0xFF
        self._written(addr, 1)

    def _written(self, addr, width):
        self.dirty[addr >> PAGE_SHIFT] = 1
        if self.code[addr >> CODE_SHIFT]:
            self.on_code_write(addr >> CODE_SHIFT)
        if self.watch is not None:
            self.watch(addr, width)

    def write_bytes(self, addr, data):
        """Copy `data` in from outside (the loader, a restore); marks dirty."""
        self.ram[addr:addr + len(data)] = data
        last = addr + max(len(data), 1) - 1
        for page in range(addr >> PAGE_SHIFT, (last >> PAGE_SHIFT) + 1):
            self.dirty[page] = 1
        for line in range(addr >> CODE_SHIFT, (last >> CODE_SHIFT) + 1):
            if self.code[line]:
                self.on_code_write(line)

    def read_bytes(self, addr, length):
        return bytes(self.ram[addr:addr + length])

    def check_lazily(self, flags, check):
        """The pages flagged (one byte per page, 1 = flagged) must pass
        `check(page)` (which raises if one does not) before anything reads or
        writes them: each is checked on first touch."""
        self.unchecked = bytearray(flags)
        self.unchecked_left = self.unchecked.count(1)
        self._check = check
        if self.unchecked_left:
            self.__class__ = CheckedMemory

    def check_some(self, count):
        """Check up to `count` more pages (all of them: None)."""
        while self.unchecked_left and count != 0:
            self._check_page(self.unchecked.find(1))
            count = None if count is None else count - 1

    def dirty_pages(self):
        """Page numbers written since the last `mark_snapshot`."""
        return _ones(self.dirty)

    def used_pages(self):
        """Pages that may hold something other than zeros: a full snapshot
        saves these and leaves the rest as holes in the file."""
        return sorted(set(_ones(self.present)) | set(_ones(self.dirty)))

    def used_flags(self):
        """`used_pages` as one byte per page, 1 = used."""
        flags = bytearray(self.present)
        for page in _ones(self.dirty):
            flags[page] = 1
        return flags

    def mark_snapshot(self, present=None):
        """A snapshot now holds memory as it is: start a new dirty epoch.
        `present`: the pages a restored snapshot holds, one byte per page."""
        if present is not None:
            self.present[:] = present
        for page in _ones(self.dirty):
            self.present[page] = 1
        # In place: the translator's compiled code holds on to these very arrays.
        self.dirty[:] = bytes(self.pages)
        self.store_flags[:] = self.store_flags.translate(_WITH_CLEAN)


class CheckedMemory(Memory):
    """Memory with pages not yet checked: every access checks its page
    first, once.  The last check turns it back into plain Memory."""

    def _check_page(self, page):
        self._check(page)
        self.unchecked[page] = 0
        self.unchecked_left -= 1
        if not self.unchecked_left:
            self.__class__ = Memory

    def _touch(self, addr, length=1):
        for page in range(addr >> PAGE_SHIFT, ((addr + max(length, 1) - 1) >> PAGE_SHIFT) + 1):
            if self.unchecked[page]:
                self._check_page(page)

    def load_word(self, addr):
        if self.unchecked[addr >> PAGE_SHIFT]:
            self._check_page(addr >> PAGE_SHIFT)
        return self.words[addr >> 2]

    def load_byte(self, addr):
        if self.unchecked[addr >> PAGE_SHIFT]:
            self._check_page(addr >> PAGE_SHIFT)
        return self.ram[addr]

    def store_word(self, addr, value):
        self._touch(addr)
        Memory.store_word(self, addr, value)

    def store_byte(self, addr, value):
        self._touch(addr)
        Memory.store_byte(self, addr, value)

    def write_bytes(self, addr, data):
        self._touch(addr, len(data))
        Memory.write_bytes(self, addr, data)

    def read_bytes(self, addr, length):
        self._touch(addr, length)
        return Memory.read_bytes(self, addr, length)


def runs(pages):
    """Consecutive page numbers as (start, end) ranges."""
    runs = []
    for page in pages:
        if runs and runs[-1][1] == page:
            runs[-1][1] += 1
        else:
            runs.append([page, page + 1])
    return runs


def _ones(flags):
    """Indexes of the non-zero bytes of `flags`, found at C speed."""
    found, i = [], flags.find(1)
    while i >= 0:
        found.append(i)
        i = flags.find(1, i + 1)
    return found
