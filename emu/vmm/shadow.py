"""Shadow page tables: the guest's translations, rewritten for the real MMU.

Lecture idea: memory virtualisation, the hard half of trap-and-emulate.  The
guest kernel writes page tables that map *guest-virtual* to *guest-physical*
addresses and loads them into its (virtual) ptbr; the real MMU must instead
walk tables mapping guest-virtual to *host-physical* addresses, with
permissions that keep the guest inside its own RAM.  The monitor builds those
tables -- the shadows -- itself, out of sight of the guest, and points the
real ptbr at them.

``ShadowPageTables`` is the guest's MMU as the monitor sees it.  It *is* an
``MMU`` over the guest's RAM: it walks the guest's tables and caches what it
finds exactly as the real one would (that cache is the guest's virtual TLB).
Every translation it caches can also be written into a shadow table
(``fill``): present, with the guest's own R/W/X bits, the U bit always (the
guest runs in real user mode, even its kernel), at the same frame (guest RAM
sits at host-physical 0, ``ram.py``).  Frames past the guest's RAM are never
written, because the walk treats them as not present, as the hardware does.

Shadows start empty and are filled lazily: the real MMU faults on an empty
entry, the monitor asks the guest's tables (``fill``), and either writes the
entry and retries the instruction -- a fault the guest never sees -- or
passes the guest the fault its own tables make.

Coherence.  When the guest edits its tables, the shadows go stale.  The two
classic answers are to write-protect the guest's page tables and trap every
edit, or to rebuild on the guest's TLB flush.  This ISA makes the second one
exact: its TLB is never kept coherent by hardware either -- it keeps every
entry until ``tlbflush`` or a write to ptbr (docs/isa.md, Paging) -- so a
guest that edits a present entry *must* flush before it can rely on the
edit.  The shadows are a software TLB with the same contract, and are emptied
at the same moments.  Write protection would cost an exit on every store to
a page table (toyos zeroes and fills a fresh directory and table for each
process it starts), and it would have to find the page tables first; the
flush costs one exit that the guest makes anyway, and the refills after it.

Two shadows, one per guest mode.  The guest kernel's pages have no U bit in
the guest's tables; in real user mode that bit cannot protect them any more,
so the monitor keeps a shadow for guest supervisor mode (every page the
guest's tables allow the supervisor) and one for guest user mode (only the
pages with U), and switches the real ptbr between them whenever the guest's
mode changes (``root``).  A guest user program thus sees exactly the
pages the guest kernel gave it.
"""

from ..isa import PAGE_SIZE, PTE_P, PTE_R, PTE_W, PTE_X, PTE_U
from ..mmu import MMU, FRAME_MASK

SUPERVISOR, USER = 0, 1
DIRECTORIES = 2                 # one shadow address space per guest mode
TABLES = 2 * 1024               # a page table per directory entry, at most
RESERVED = (DIRECTORIES + TABLES) * PAGE_SIZE   # host memory the monitor keeps above the guest's
_PERMISSIONS = PTE_R | PTE_W | PTE_X
_ZERO_PAGE = bytes(PAGE_SIZE)


class ShadowPageTables(MMU):
    """The guest's MMU over `ram` (``GuestRAM``), with shadow tables in
    `host` memory from `base` up, walked by the real MMU `real`."""

    def __init__(self, ram, host, base, real):
        super().__init__(ram)
        if base + RESERVED > host.size:
            raise ValueError("no room above the guest's RAM for the shadow page tables")
        self.host, self.real = host, real
        self.directories = (base, base + PAGE_SIZE)        # by guest mode: SUPERVISOR, USER
        self.first_table = base + DIRECTORIES * PAGE_SIZE
        self.tables = 0                                    # page tables handed out since the last flush
        self.fills = 0                                     # shadow entries written (statistics)
        self.flushes = 0                                   # times the shadows were emptied (statistics)

    def root(self, user):
        """The shadow page directory the real ptbr points at while the
        guest runs in that mode."""
        return self.directories[USER if user else SUPERVISOR]

    def fill(self, vaddr, access, user):
        """The guest touched `vaddr` and the real MMU faulted.  If the
        guest's own translation allows the access, write it into the shadow
        of that mode and return True: the instruction is retried.  Otherwise
        False: the fault is the guest's."""
        if self.enabled:
            if self.translate(vaddr, access, user) is None:
                return False
            pte = self.tlb[vaddr >> 12]
            frame, permissions = pte & FRAME_MASK, pte & _PERMISSIONS
        elif vaddr < self.memory.size:
            # Paging off: guest-virtual is guest-physical, and RAM is all allowed.
            frame, permissions = vaddr & FRAME_MASK, _PERMISSIONS
        else:
            return False
        root = self.root(user)
        slot = root + (vaddr >> 22) * 4
        pde = self.host.load_word(slot)
        if not pde & PTE_P:
            pde = (self.first_table + self.tables * PAGE_SIZE) | PTE_P
            self.tables += 1
            self.host.store_word(slot, pde)
        self.host.store_word((pde & FRAME_MASK) + ((vaddr >> 12) & 0x3FF) * 4,
                             frame | permissions | PTE_U | PTE_P)
        self.fills += 1
        return True

    def flush(self):
        """The guest flushed its TLB (``tlbflush``, or a write to ptbr): forget
        its cached entries, empty both shadows, and flush the real TLB, which
        may hold entries from them."""
        super().flush()
        for directory in self.directories:
            self.host.write_bytes(directory, _ZERO_PAGE)
        for table in range(self.tables):
            self.host.write_bytes(self.first_table + table * PAGE_SIZE, _ZERO_PAGE)
        self.tables = 0
        self.flushes += 1
        self.real.flush()
