"""Identical pages of different VMs, shared copy-on-write: KSM in the host process.

Lecture idea: "virtual machines share resources" -- memory -- and its
other side, "poor planning and multiple VMs can drown a machine".  Ten
VMs booted from one image hold ten copies of the same kernel, the same
shell, the same zeros.  Linux's KSM (kernel samepage merging) finds such
pages in the memory of its VMs and keeps one copy, shared copy-on-write;
this module does the same for the VMs of one host process
(``emu/vm/host.py``), without Linux's KSM, whose switch
(/sys/kernel/mm/ksm/run) is the whole machine's to set, not ours.

Like ksmd it scans a few pages at a time, between the scheduler's rounds,
so it never stalls a guest: at most SCAN_SHARE of the host's time while
guests run, and while they all wait it goes on until a whole pass finds
nothing new (``settled``), then sleeps.  Each page a guest has used
(``Memory.used_pages``: untouched pages are zeros that cost nothing) is
checksummed; a page whose checksum changed since the last pass is left
alone for now (it is being written: sharing it would only be undone), and
one round of the scheduler ends one pass at most: between two looks at a
page, the guests have had their turn.
A page that held still is looked up among the **stable** pages, one copy
each of the contents already shared, kept in a memfd; failing that, among
the **unstable** candidates of this pass, which the first page of some
content becomes (KSM's two trees, as dictionaries).  A match is confirmed
byte for byte -- a checksum only says where to look -- and again right
before the page is mapped, so a page written since (the host is one
thread: no guest runs between the two) is never replaced by stale bytes.

Sharing a page is the kernel's work: ``hostmem.map_page`` maps the stable
page's memfd page over the guest's page, MAP_PRIVATE, and the guest's own
copy is freed.  Its content is the same, so the CPU, the translator, the
dirty log, snapshots and migration see nothing; the first write gets the
guest a private copy again, made by the kernel's copy-on-write, and no
other VM sees it.  The scanner finds out on its next look, from the
kernel (``hostmem.copied``), and counts one user less: a stable page no
guest maps any more is punched out of the memfd.  A machine that leaves
the host (poweroff, savestate, reset, migrated away) gives up its shared
pages with its RAM, which goes when the machine does.

Sharing splits a RAM mapping in two or three for each page shared, and
Linux allows a process 65,530 mappings (vm.max_map_count): the scanner
stops sharing well before that (``limit``), and says so in the stats.
"""

import itertools
import os
import time
import zlib

from .. import hostmem
from ..isa import PAGE_SIZE
from ..snapshot import SnapshotError

SCAN_SHARE = 0.02           # of the host's time, at most, while guests run
SCAN_PAUSE = 0.02           # seconds between batches while every guest waits, until settled
BATCH = 32                  # pages between two looks at the clock
MAX_CREDIT = 0.005          # seconds of scanning saved up, at most (after a long wait)
SPARE_MAPPINGS = 8192       # of vm.max_map_count, left to everything else in the process


class Sharing:
    """The scanner and the stable pages of one host process."""

    def __init__(self):
        self.rams = {}          # id(memory) -> Ram, for every machine being scanned
        self.stable = {}        # crc32 -> slots (of the memfd) holding that content
        self.slots = []         # slot -> [crc32, users], or None when free
        self.free = []          # slots to use again
        self.users = 0          # guest pages mapping a stable page, all told
        self.unstable = {}      # crc32 -> (Ram, page): the first page of that content this pass
        self.fd = self.pagemap = None      # the memfd of stable pages; /proc/self/pagemap
        self.limit = 0          # guest pages that may map a stable page (mappings it may cost)
        self.walk = None        # this pass: (Ram, page), one after another
        self.passes = 0
        self.changed = False    # this pass saw something new: another pass is needed
        self.settled = True     # a whole pass found nothing new, and no guest ran since
        self.credit = 0.0       # seconds of scanning allowed
        self.error = None       # why sharing stopped, if it did
        self.full = False       # a page went unshared for want of mappings (limit)

    def scan(self, memories, elapsed, ran):
        """Called after each round of the scheduler, which took `elapsed`
        seconds (waiting included) and ran a guest if `ran`: follow the
        machines joining and leaving, and scan for SCAN_SHARE of it."""
        self._follow(memories)
        if ran:
            self.settled = False
            self.changed = True
        if self.settled or self.error:
            return
        self.credit = min(self.credit + elapsed * SCAN_SHARE / (1 - SCAN_SHARE), MAX_CREDIT)
        ended = False             # one pass at most: guests run between two looks at a page
        while self.credit > 0 and not ended:
            start = time.perf_counter()
            ended = self._batch()
            self.credit -= time.perf_counter() - start

    def _follow(self, memories):
        here = {id(memory): memory for memory in memories if hostmem.is_mapping(memory.ram)}
        for key in [key for key in self.rams if key not in here]:
            self._leave(self.rams.pop(key))
        for key, memory in here.items():
            if key not in self.rams:
                self._open()
                self.rams[key] = Ram(memory)
                self.settled, self.changed = False, True
        if not self.rams:
            self._close()

    def _open(self):
        if self.fd is None:
            with open("/proc/sys/vm/max_map_count") as f:
                # Each page shared may split its mapping in two more.
                self.limit = max(0, int(f.read()) - SPARE_MAPPINGS) // 2
            self.fd = os.memfd_create("emu-shared-pages", os.MFD_CLOEXEC)
            os.ftruncate(self.fd, self.limit * PAGE_SIZE)    # a hole: costs nothing
            self.pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)

    def _close(self):
        """No machine left: every stable page is free; give back the files."""
        if self.fd is not None:
            os.close(self.fd)
            os.close(self.pagemap)
            self.__init__()

    def _leave(self, ram):
        """A machine left the host: its RAM, shared pages and all, goes with it."""
        for slot in ram.shared.values():
            self._unuse(slot)
        self.unstable = {crc: seen for crc, seen in self.unstable.items() if seen[0] is not ram}

    # -- the scan ---------------------------------------------------------------------

    def _batch(self):
        """Look at the next BATCH pages; True if that ended a pass."""
        if self.walk is None:     # a new pass, over the pages each machine has used
            self.walk = ((ram, page) for ram in list(self.rams.values()) for page in ram.memory.used_pages())
        looked = 0
        for ram, page in itertools.islice(self.walk, BATCH):
            looked += 1
            if self.rams.get(id(ram.memory)) is ram:      # (it may have left meanwhile)
                self._look(ram, page)
        if looked < BATCH:
            self.passes += 1
            self.settled = not self.changed
            self.changed = False
            self.unstable = {}
            self.walk = None
        return looked < BATCH

    def _look(self, ram, page):
        memory = ram.memory
        if memory.unchecked_left and memory.unchecked[page]:
            try:                  # a restored page not checked yet: check it first, as a guest's touch does
                memory.read_bytes(page * PAGE_SIZE, PAGE_SIZE)
            except SnapshotError:
                return            # damaged: its guest finds out when it touches it, as without sharing
        slot = ram.shared.get(page)
        if slot is not None:
            if not hostmem.copied(self.pagemap, ram.address(page)):
                return            # still shared
            del ram.shared[page]  # the guest wrote it: the kernel gave it its own copy
            self._unuse(slot)
            self.changed = True
        content = memory.ram[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
        crc = zlib.crc32(content)
        if ram.crcs.get(page) != crc:
            ram.crcs[page] = crc  # new, or written since the last pass: not yet
            self.changed = True
            return
        content = bytes(content)
        for slot in self.stable.get(crc, ()):
            if os.pread(self.fd, PAGE_SIZE, slot * PAGE_SIZE) == content:
                self._share(ram, page, slot, content)
                return
        seen = self.unstable.setdefault(crc, (ram, page))
        if seen == (ram, page):
            return
        other, other_page = seen
        if other.content(other_page) != content:
            self.unstable[crc] = (ram, page)               # the other one changed since
            return
        slot = self._new_slot(crc, content)
        if slot is not None:
            del self.unstable[crc]
            self._share(other, other_page, slot, content)
            self._share(ram, page, slot, content)
            if not self.slots[slot][1]:
                self._unuse(slot, held=False)              # neither could take it after all

    def _new_slot(self, crc, content):
        if self.users + 2 > self.limit:
            self.full = True
            return None
        slot = self.free.pop() if self.free else len(self.slots)
        if slot == len(self.slots):
            self.slots.append(None)
        os.pwrite(self.fd, content, slot * PAGE_SIZE)
        self.slots[slot] = [crc, 0]
        self.stable.setdefault(crc, []).append(slot)
        return slot

    def _share(self, ram, page, slot, content):
        """Map stable page `slot` over `page` of `ram`, if it still holds
        `content` (looked at last, right before: no guest runs in between)."""
        if page in ram.shared or ram.content(page) != content:
            return
        if self.users >= self.limit:
            self.full = True
            return
        try:
            hostmem.map_page(ram.address(page), self.fd, slot * PAGE_SIZE)
        except OSError as e:      # (out of mappings after all: the guest's own page is still there)
            self.error = f"sharing stopped: {e}"
            self.settled = True
            return
        ram.shared[page] = slot
        self.slots[slot][1] += 1
        self.users += 1
        self.changed = True

    def _unuse(self, slot, held=True):
        """One guest page less maps stable page `slot`; none: free it."""
        entry = self.slots[slot]
        if held:
            entry[1] -= 1
            self.users -= 1
        if entry[1] == 0:
            hostmem.punch(self.fd, slot * PAGE_SIZE)
            self.stable[entry[0]].remove(slot)
            if not self.stable[entry[0]]:
                del self.stable[entry[0]]
            self.slots[slot] = None
            self.free.append(slot)

    # -- what it achieved -----------------------------------------------------------------

    def shared_pages(self, memory):
        """How many pages of `memory` map a stable page (as of their last look)."""
        ram = self.rams.get(id(memory))
        return len(ram.shared) if ram is not None else 0

    def saved(self, memory):
        """The memory sharing saves, `memory`'s part: each stable page saves
        all but one copy, split evenly among the pages that map it (so the
        parts of all VMs add up to stats()["saved"])."""
        ram = self.rams.get(id(memory))
        if ram is None:
            return 0
        return round(sum((self.slots[slot][1] - 1) / self.slots[slot][1] for slot in ram.shared.values())
                     * PAGE_SIZE)

    def stats(self):
        """KSM's counters: stable pages in use (pages_shared), the guest
        pages that map them (pages_sharing), and the memory that saves; the
        memory the stable pages hold, as the kernel counts it; full passes."""
        stable = len(self.slots) - len(self.free)
        return {"pages_shared": stable, "pages_sharing": self.users,
                "saved": (self.users - stable) * PAGE_SIZE,
                "stable_memory": hostmem.resident(self.fd) if self.fd is not None else 0,
                "passes": self.passes,
                "settled": self.settled, "limit": self.limit, "full": self.full, "error": self.error}


class Ram:
    """One machine's RAM, as the scanner knows it."""

    def __init__(self, memory):
        self.memory = memory
        self.base = hostmem.address(memory.ram)
        self.shared = {}        # page -> the stable slot it maps
        self.crcs = {}          # page -> its crc32 at the last pass

    def address(self, page):
        return self.base + page * PAGE_SIZE

    def content(self, page):
        return bytes(self.memory.ram[page * PAGE_SIZE:(page + 1) * PAGE_SIZE])
