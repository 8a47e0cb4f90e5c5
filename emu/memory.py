"""RAM with page-granular dirty tracking.

Lecture idea: "machine states can be checkpointed" -- and checkpoint files "can
be huge".  The memory of a virtual machine is most of its state, so this module
keeps track, per 4 KiB page, of what the guest wrote since the last snapshot.
A diff snapshot then saves only those pages, and live migration
(``migrate.py``) sends only them, round after round.  Read ``snapshot.py``
next.

RAM is any writable buffer: an anonymous mapping for a fresh machine, or a
copy-on-write mapping of a snapshot file for a restored one (both made by
``hostmem.ram``) -- the CPU cannot tell the difference, which is what makes
restore independent of memory size.
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

from . import hostmem
from .isa import PAGE_SIZE

PAGE_SHIFT = PAGE_SIZE.bit_length() - 1

# Translated code is tracked in lines of 256 bytes, finer than pages, so that
# data stored right after a program's code does not keep throwing away the
# translations of that code.
CODE_SHIFT = 8
LINES_PER_PAGE = PAGE_SIZE >> CODE_SHIFT

# A page's byte in ``Memory.dirty`` holds one bit for each reader of the
# log: the snapshots (SNAPSHOT) and live migration (MIGRATION).  Every write
# sets both; each reader clears its own bit when it has copied the page, so
# neither disturbs the other.
SNAPSHOT, MIGRATION = 1, 2
WRITTEN = SNAPSHOT | MIGRATION
_HAS = {bit: bytes(1 if flags & bit else 0 for flags in range(256)) for bit in (SNAPSHOT, MIGRATION)}

# Per line, what a store the translator compiled must know besides where
# to write (``Memory.store_flags``): whether its page is marked in every
# reader's log (MARKED), and whether the translator holds code from the
# line (CODE: the bytes written must be checked against it).  Most lines
# are MARKED only, and a store there costs one look at its line's flags;
# fresh memory is all zeros: nothing marked, no code.
MARKED, CODE = 1, 2
_UNMARKED = bytes(flags & ~MARKED for flags in range(256))

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
            backing = hostmem.ram(size)
        # Bytes and words through memoryviews: as fast as a bytearray, whatever the backing.
        self.ram = memoryview(backing)
        self.words = self.ram.cast("I")
        self.pages = size // PAGE_SIZE
        self.dirty = bytearray(self.pages)       # SNAPSHOT | MIGRATION: written since that reader copied it
        self.present = bytearray(self.pages)     # 1 = may be non-zero as of the last snapshot
        # Per 256-byte line (one byte each: 4 MiB for a 1 GiB guest, so they
        # start as zero pages the host has not given yet, and only lines
        # that are used cost anything):
        self.code = _zeros(size >> CODE_SHIFT)   # 1 = the translator holds code from this line
        self.store_flags = _zeros(size >> CODE_SHIFT)  # MARKED | CODE, see above
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
        self.dirty[addr >> PAGE_SHIFT] = WRITTEN
        if self.code[addr >> CODE_SHIFT]:
            self.on_code_write(addr >> CODE_SHIFT)
        if self.watch is not None:
            self.watch(addr, width)

    def write_bytes(self, addr, data):
        """Copy `data` in from outside (the loader, a restore); marks dirty."""
        self.ram[addr:addr + len(data)] = data
        last = addr + max(len(data), 1) - 1
        for page in range(addr >> PAGE_SHIFT, (last >> PAGE_SHIFT) + 1):
            self.dirty[page] = WRITTEN
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

    def dirty_pages(self, reader=SNAPSHOT):
        """Page numbers written since `reader` (SNAPSHOT: the last
        `mark_snapshot`; MIGRATION: the last `mark_copied` by migration)."""
        return _ones(self.dirty.translate(_HAS[reader]))

    def used_pages(self):
        """Pages that may hold something other than zeros: a full snapshot
        saves these and leaves the rest as holes in the file."""
        return _ones(self.used_flags())

    def used_flags(self):
        """`used_pages` as one byte per page, 1 = used."""
        flags = bytearray(self.present)
        for page in self.dirty_pages():
            flags[page] = 1
        return flags

    def mark_copied(self, pages, reader):
        """`reader` has copied `pages` as they are now: clear its bit, so
        that the next write to one of them marks it again."""
        dirty, flags, clear = self.dirty, self.store_flags, ~reader
        for page in pages:
            dirty[page] &= clear
            # A store to a MARKED line marks nothing: make it mark again.
            lines = slice(page * LINES_PER_PAGE, (page + 1) * LINES_PER_PAGE)
            flags[lines] = flags[lines].translate(_UNMARKED)

    def mark_snapshot(self, present=None):
        """A snapshot now holds memory as it is: start a new dirty epoch.
        `present`: the pages a restored snapshot holds, one byte per page."""
        if present is not None:
            self.present[:] = present
        pages = self.dirty_pages()
        for page in pages:
            self.present[page] = 1
        self.mark_copied(pages, SNAPSHOT)


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


def _zeros(length):
    """`length` zero bytes that cost no memory until written: an anonymous
    private mapping, as fresh RAM is."""
    return mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE)


def _ones(flags):
    """Indexes of the bytes of `flags` that are 1, found at C speed."""
    found, i = [], flags.find(1)
    while i >= 0:
        found.append(i)
        i = flags.find(1, i + 1)
    return found
