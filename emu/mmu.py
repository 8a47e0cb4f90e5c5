"""The paging MMU: page tables in guest memory, and a TLB that caches them.

Lecture idea: virtual machines "run in isolated environments" -- and so do the
programs inside one.  What isolates them is address translation: every address
a program uses is looked up in a page table that only the kernel can change,
so a program cannot even *name* memory its page table does not map.  The same
mechanism, one level down, is how a hypervisor keeps guests apart.

The format (see ``isa.py``, PTE_* and the Paging section of docs/isa.md) is the
classic two-level one of the 32-bit x86 and RISC-V's Sv32: a 4 KiB page
directory of 1024 entries, each pointing at a 4 KiB page table of 1024 entries,
each mapping one 4 KiB page.  Permissions sit in the page-table entry only.

Walking two tables in RAM for every access would make each load three loads,
so, like real hardware, the MMU keeps a TLB: page-table entries by virtual page
number, filled by walks and emptied only by ``tlbflush`` or a write to ptbr.
That makes the TLB part of the machine's state: a kernel that edits a present
entry and forgets to flush keeps seeing the old mapping, exactly as on a real
CPU -- and a snapshot must carry the TLB along, or a restored machine could
behave differently.

For the block translator the TLB is also kept "pre-checked": ``fast[user][access]``
maps a virtual page to its physical page for exactly those pages the TLB
allows that access in that mode.  A translated load is then one dictionary
lookup; anything missing goes back to the interpreter, which walks.
"""

from .isa import MMIO_BASE, PAGE_SIZE, PTE_P, PTE_R, PTE_W, PTE_X, PTE_U, PTBR_ENABLE, WORD

READ, WRITE, EXECUTE = 0, 1, 2
_NEEDS = (PTE_R, PTE_W, PTE_X)      # the PTE bit each kind of access needs
PAGE_MASK = PAGE_SIZE - 1
FRAME_MASK = WORD & ~PAGE_MASK


class MMU:
    def __init__(self, memory):
        self.memory = memory
        self.enabled = False
        self.directory = 0           # physical address of the page directory
        self.tlb = {}                # virtual page number -> page-table entry
        # fast[user][access]: virtual page -> physical page address, for the translator.
        self.fast = ([{}, {}, {}], [{}, {}, {}])
        self.walks = 0               # TLB misses so far (for the curious and the benchmark)

    def set_ptbr(self, value):
        """A write to ptbr: a new address space, so nothing cached still holds."""
        self.enabled = bool(value & PTBR_ENABLE)
        self.directory = value & FRAME_MASK
        self.flush()

    def flush(self):
        self.tlb.clear()
        for by_access in self.fast:
            for table in by_access:
                table.clear()    # in place: the translator holds on to these dicts

    def translate(self, vaddr, access, user):
        """The physical address for `vaddr`, or None if the access faults."""
        vpn = vaddr >> 12
        pte = self.tlb.get(vpn)
        if pte is None:
            pte = self.walk(vaddr)
            if pte is None:
                return None      # not present: nothing to cache, the next try walks again
            self._cache(vpn, pte)
        if not pte & _NEEDS[access] or (user and not pte & PTE_U):
            return None
        return (pte & FRAME_MASK) | (vaddr & PAGE_MASK)

    def walk(self, vaddr):
        """Read the page tables: the present leaf entry for `vaddr`, or None.
        A directory, table or page outside RAM counts as not present (tables
        and pages are whole pages and RAM is too, so one check covers each)."""
        self.walks += 1
        size = self.memory.size
        if self.directory >= size:
            return None
        pde = self.memory.load_word(self.directory + (vaddr >> 22) * 4)
        if not pde & PTE_P or (pde & FRAME_MASK) >= size:
            return None
        pte = self.memory.load_word((pde & FRAME_MASK) + ((vaddr >> 12) & 0x3FF) * 4)
        if not pte & PTE_P or (pte & FRAME_MASK) >= size:
            return None
        return pte

    def probe(self, vaddr):
        """What the CPU would use for `vaddr` -- the TLB's entry, else a walk --
        without changing the TLB (for the debugger).  A PTE, or None."""
        if not self.enabled:
            return None
        pte = self.tlb.get(vaddr >> 12)
        if pte is None:
            self.walks -= 1      # a look from outside is not a miss
            pte = self.walk(vaddr)
        return pte

    def _cache(self, vpn, pte):
        self.tlb[vpn] = pte
        self.allow(vpn, pte, pte & FRAME_MASK)

    def allow(self, vpn, pte, frame):
        """Pre-check TLB entry `pte` for the translator: page `vpn` is at
        physical page `frame` for each mode and access it allows."""
        for user, by_access in enumerate(self.fast):
            if user and not pte & PTE_U:
                continue
            for access, bit in enumerate(_NEEDS):
                if pte & bit:
                    by_access[access][vpn] = frame

    # -- snapshot -------------------------------------------------------------------

    def save(self):
        return sorted(self.tlb.items())

    def restore(self, ptbr, entries):
        self.set_ptbr(ptbr)
        for entry in entries:
            # A cached entry is used without a walk, so it must be one a walk
            # could have cached: anything else would reach outside RAM, or
            # turn a device address (never paged, never walked) into RAM.
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2
                    and all(type(n) is int for n in entry) and 0 <= entry[0] < MMIO_BASE >> 12
                    and 0 <= entry[1] <= WORD and entry[1] & PTE_P
                    and entry[1] & FRAME_MASK < self.memory.size):
                raise ValueError(f"TLB entry {entry!r}: not one a page-table walk could have made")
            self._cache(*entry)
