"""Guest RAM as the host's kernel sees it: which pages back it, and what it costs.

Lecture idea: "virtual machines share resources" -- memory among them --
and "poor planning and multiple VMs can drown a machine".  A guest's RAM is
an ordinary mapping of the host process (``memory.py``), so the host's
kernel decides what it costs: a page costs memory once touched, and a page
mapped from a file is shared by everyone who maps it until one of them
writes it (copy-on-write).  This module holds the few kernel calls that
RAM and page sharing (``emu/vm/sharing.py``) need, and nothing else:

- ``ram`` makes a machine's RAM: a private mapping of its own (anonymous,
  or a snapshot's file), which the kernel never merges with a neighbouring
  mapping, so that smaps can tell what each machine's RAM costs;
- ``map_page`` puts one page of a file over one page of RAM in place
  (``mmap`` with MAP_FIXED | MAP_PRIVATE): the guest reads the file's page,
  and its first write gets it a private copy, made by the kernel;
- ``copied`` asks the kernel (``/proc/self/pagemap``) whether a page so
  mapped has been copied since;
- ``punch`` frees a file's page (a hole in a memfd costs nothing);
- ``usage`` reads ``/proc/self/smaps``: the resident (Rss), proportional
  (Pss: a shared page split among those who map it) and private anonymous
  memory of address ranges, as the kernel counts it, not as a model would.

Python's mmap module cannot map at a given address, so ``map_page`` (and
``ram``, for a file) call libc's mmap through ctypes.
"""

import ctypes
import mmap
import os

from .isa import PAGE_SIZE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int64)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)

MAP_FIXED = 0x10
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2

# /proc/self/pagemap: one 64-bit entry per page of the address space.
PRESENT, SWAPPED, FILE = 1 << 63, 1 << 62, 1 << 61

# Host pages must be guest pages for one to be mapped over the other.
SUPPORTED = mmap.PAGESIZE == PAGE_SIZE


def ram(size, fd=-1, offset=0):
    """`size` bytes of RAM, as a writable memoryview: zeros, or bytes
    `offset`.. of file `fd` copy-on-write.  Either way the host gives a page
    memory only when the guest first touches it.  Two guard pages around it
    (never touched, they cost nothing) differ from it in one flag
    (MADV_DONTFORK), so the kernel never merges it into a neighbouring
    mapping, another machine's RAM or Python's heap: what smaps says about
    its addresses is about this machine alone."""
    whole = mmap.mmap(-1, size + 2 * PAGE_SIZE, flags=mmap.MAP_PRIVATE)
    whole.madvise(mmap.MADV_DONTFORK, 0, PAGE_SIZE)
    whole.madvise(mmap.MADV_DONTFORK, PAGE_SIZE + size, PAGE_SIZE)
    view = memoryview(whole)[PAGE_SIZE:PAGE_SIZE + size]
    if fd >= 0:
        _map(address(view), size, fd, offset)
    return view


def address(ram):
    """Where writable buffer `ram` (guest RAM's memoryview) starts in this process."""
    return ctypes.addressof(ctypes.c_char.from_buffer(ram))


def is_mapping(ram):
    """Whether `ram` views an mmap (as `ram` makes), whose pages may be
    mapped over; a bytearray's may not."""
    return SUPPORTED and isinstance(ram, memoryview) and isinstance(ram.obj, mmap.mmap)


def map_page(at, fd, offset):
    """Map page `offset` of file `fd` privately over the page at address `at`
    (the page that was there is freed).  Reading it reads the file's page;
    writing it gives this mapping its own copy."""
    _map(at, PAGE_SIZE, fd, offset)


def _map(at, length, fd, offset):
    got = _libc.mmap(at, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | MAP_FIXED, fd, offset)
    if got != at:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def copied(pagemap, at):
    """Whether the page at `at`, mapped by `map_page`, now holds a private
    copy (the guest wrote it) rather than the file's page.  `pagemap` is
    an open /proc/self/pagemap.  A page not touched since it was mapped
    has no entry yet: it still reads the file."""
    entry = int.from_bytes(os.pread(pagemap, 8, at // PAGE_SIZE * 8), "little")
    return bool(entry & SWAPPED or entry & PRESENT and not entry & FILE)


def resident(fd):
    """The memory file `fd` holds (a memfd's pages are memory), in bytes."""
    return os.fstat(fd).st_blocks * 512


def punch(fd, offset, length=PAGE_SIZE):
    """Free `length` bytes of file `fd` at `offset` (they read as zeros again)."""
    if _libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, offset, length):
        err = ctypes.get_errno()
        raise OSError(err, f"punching a hole: {os.strerror(err)}")


FIELDS = {"Rss:": "rss", "Pss:": "pss", "Anonymous:": "anonymous"}


def usage(ranges):
    """{key: {"rss": bytes, "pss": bytes, "anonymous": bytes}} for `ranges`
    {key: (start, end)} of this process's address space, summed over the
    mappings in each (sharing splits a mapping into many), from
    /proc/self/smaps.  Anonymous pages are the ones private to the range
    (written, or copied on write); a page of a file it maps is in Rss and
    Pss, and costs memory once, however many map it."""
    found = {key: dict.fromkeys(FIELDS.values(), 0) for key in ranges}
    inside = []
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                start, end = (int(x, 16) for x in line.split(" ", 1)[0].split("-"))
                inside = [found[key] for key, (low, high) in ranges.items() if low <= start and end <= high]
            elif inside and line.split(":", 1)[0] + ":" in FIELDS:
                field, value = line.split()[:2]
                for counts in inside:
                    counts[FIELDS[field]] += int(value) * 1024
    return found
