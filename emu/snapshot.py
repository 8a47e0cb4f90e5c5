"""Snapshots: the whole machine in one file, full or incremental.

Lecture idea: "machine states can be checkpointed ... migrated ... rapid return
of services when hardware goes down" -- and "checkpoint files can be huge".
A snapshot holds the CPU (registers, mode, pending interrupts), every device
and all of memory, so ``restore`` continues exactly where ``save`` stopped.
Two tricks keep it cheap, both taken from real hypervisors:

- **Restore does not read memory.**  The memory section starts on a page
  boundary, so restore maps it copy-on-write (``mmap`` ACCESS_COPY, which is
  MAP_PRIVATE, as Firecracker maps its memory file): the guest's pages are read
  from the file only when touched, and its writes never reach the file.
- **Incremental snapshots.**  ``memory.py`` marks every page written since the
  last snapshot; a diff snapshot holds just those pages and names its base.

File layout (integers little-endian)::

  0   magic "EMUSNAP\\0" | version u32 | kind u32 (0 full, 1 diff)
  16  metadata offset u64 | metadata length u64
  32  memory offset u64   | memory length u64
  48  crc32 u32 of bytes 0..47 and the metadata | 12 bytes zero
  64  metadata: JSON -- machine state, the list of pages stored, a crc32 of
      those pages, and for a diff the base file and the base's crc
  ..  memory, from a page boundary.  Full: the whole RAM, with holes (never
      written) where a page was never used.  Diff: the listed pages, packed.

Every restore checks the magic, version, header-and-metadata crc, the file's
length and the crc of the stored pages (holes, the pages never used, hold
nothing to check); a file that fails any check is refused
with a one-line ``SnapshotError``.  Checking the stored pages costs time in
proportion to the memory the guest has *used*, not to its memory size, and
can be skipped (``verify=False``, ``emu restore --no-verify``) when the file
is known to be good.
"""

import json
import mmap
import os
import struct
import zlib

from .devices.disk import DiskError
from .isa import PAGE_SIZE
from .machine import Machine

MAGIC = b"EMUSNAP\0"
VERSION = 1
FULL, DIFF = 0, 1
HEADER = struct.Struct("<8sIIQQQQI12x")   # 64 bytes


class SnapshotError(ValueError):
    """A snapshot that cannot be restored; the message is one line."""


# -- saving ------------------------------------------------------------------------

def save(machine, path):
    """Write a full snapshot of `machine` to `path`."""
    memory = machine.memory
    pages = memory.used_pages()
    crc = 0
    for page in pages:
        crc = zlib.crc32(memory.words[page * PAGE_SIZE // 4:(page + 1) * PAGE_SIZE // 4], crc)
    meta = {"state": machine.save_state(), "pages": pages, "pages_crc": crc}

    def write_memory(f, offset):
        # Only used pages are written; the rest stay holes that read as zeros,
        # so a mostly empty 64 MiB machine makes a small, fast file.
        view = memoryview(memory.ram)
        for start, end in _runs(pages):
            f.seek(offset + start * PAGE_SIZE)
            f.write(view[start * PAGE_SIZE:end * PAGE_SIZE])
        f.truncate(offset + memory.size)

    _write(path, FULL, meta, memory.size, write_memory)
    memory.mark_snapshot()
    machine.last_snapshot = (os.path.abspath(path), _header_crc(path))


def save_diff(machine, path):
    """Write only what changed since the machine's last snapshot (saved or
    restored).  Restoring it restores the base first, then applies this."""
    base = getattr(machine, "last_snapshot", None)
    if base is None:
        raise SnapshotError("no earlier snapshot of this machine to take a diff against")
    base_path, base_crc = base
    memory = machine.memory
    pages = memory.dirty_pages()
    crc = 0
    for page in pages:
        crc = zlib.crc32(memory.words[page * PAGE_SIZE // 4:(page + 1) * PAGE_SIZE // 4], crc)
    here = os.path.dirname(os.path.abspath(path))
    meta = {"state": machine.save_state(), "pages": pages, "pages_crc": crc,
            "base": os.path.relpath(base_path, here), "base_crc": base_crc}

    def write_memory(f, offset):
        f.seek(offset)
        view = memoryview(memory.ram)
        for page in pages:
            f.write(view[page * PAGE_SIZE:(page + 1) * PAGE_SIZE])

    _write(path, DIFF, meta, len(pages) * PAGE_SIZE, write_memory)
    memory.mark_snapshot()
    machine.last_snapshot = (os.path.abspath(path), _header_crc(path))


def _write(path, kind, meta, memory_length, write_memory):
    blob = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    mem_offset = -(-(HEADER.size + len(blob)) // PAGE_SIZE) * PAGE_SIZE
    head = HEADER.pack(MAGIC, VERSION, kind, HEADER.size, len(blob), mem_offset, memory_length, 0)
    crc = zlib.crc32(blob, zlib.crc32(head[:48]))
    # Write beside and rename: the machine being saved may itself be running
    # on a copy-on-write map of the file at `path`, which must not change under it.
    if os.path.lexists(path) and not os.path.isfile(path):
        # Renaming over /dev/null (say) would replace the device itself.
        raise SnapshotError(f"{path}: not a regular file; will not replace it")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(head[:48] + struct.pack("<I", crc) + bytes(12) + blob)
            write_memory(f, mem_offset)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise SnapshotError(f"{path}: {e.strerror}") from None
        raise


def _runs(pages):
    """Consecutive page numbers as (start, end) ranges, for fewer writes."""
    runs = []
    for page in pages:
        if runs and runs[-1][1] == page:
            runs[-1][1] += 1
        else:
            runs.append([page, page + 1])
    return runs


# -- restoring -------------------------------------------------------------------------

def restore(path, console=None, engine="translate", verify=True, _depth=0):
    """A new Machine, exactly as it was when `path` was saved.

    `verify=False` skips the checksum of the stored memory pages, the only
    part of a restore whose cost grows with the memory the guest used; the
    header, the metadata and the file's length are always checked."""
    f, kind, meta, mem_offset, mem_length = _open(path)
    try:
        with f:
            return _restore(path, f, kind, meta, mem_offset, mem_length, console, engine, verify, _depth)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        if isinstance(e, SnapshotError):
            raise
        if isinstance(e, DiskError):
            raise SnapshotError(f"{path}: {e}") from None
        # The checksum matched, so this was written wrong, not damaged later.
        raise SnapshotError(f"{path}: malformed metadata ({type(e).__name__}: {e})") from None


def _restore(path, f, kind, meta, mem_offset, mem_length, console, engine, verify, _depth):
    state = meta["state"]
    size = state["memory_size"]
    if kind == FULL:
        if mem_length != size or os.fstat(f.fileno()).st_size < mem_offset + size:
            raise SnapshotError(f"{path}: truncated: memory section shorter than {size} bytes")
        try:
            backing = mmap.mmap(f.fileno(), size, offset=mem_offset, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as e:
            raise SnapshotError(f"{path}: cannot map memory: {e}") from None
        if verify:
            _check_pages(path, meta, backing, lambda page: page * PAGE_SIZE)
        machine = Machine(size, console=console, engine=engine, backing=backing)
        present = meta["pages"]
    else:
        if _depth > 64:
            raise SnapshotError(f"{path}: chain of diff snapshots too long (a cycle?)")
        base_path = os.path.join(os.path.dirname(os.path.abspath(path)), meta["base"])
        try:
            base_crc = _header_crc(base_path)
        except OSError as e:
            raise SnapshotError(f"{path}: base snapshot {meta['base']}: {e.strerror}") from None
        if base_crc != meta["base_crc"]:
            raise SnapshotError(f"{path}: base snapshot {meta['base']} has changed since this diff was taken")
        machine = restore(base_path, console, engine, verify, _depth + 1)
        if machine.memory.size != size:
            raise SnapshotError(f"{path}: memory size differs from its base")
        f.seek(mem_offset)
        data = f.read(mem_length)
        if len(data) != mem_length or mem_length != len(meta["pages"]) * PAGE_SIZE:
            raise SnapshotError(f"{path}: truncated: memory section too short")
        index = {page: i * PAGE_SIZE for i, page in enumerate(meta["pages"])}
        _check_pages(path, meta, data, index.__getitem__)
        for page, at in index.items():
            machine.memory.write_bytes(page * PAGE_SIZE, data[at:at + PAGE_SIZE])
        present = machine.memory.used_pages()
    machine.restore_state(state)
    machine.memory.mark_snapshot(present)
    machine.last_snapshot = (os.path.abspath(path), _header_crc(path))
    return machine


def _check_pages(path, meta, buffer, where):
    crc = 0
    view = memoryview(buffer)
    for page in meta["pages"]:
        at = where(page)
        crc = zlib.crc32(view[at:at + PAGE_SIZE], crc)
    if crc != meta["pages_crc"]:
        raise SnapshotError(f"{path}: memory checksum mismatch: the file is corrupt")


def _open(path):
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SnapshotError(f"{path}: {e.strerror}") from None
    try:
        head = f.read(HEADER.size)
        if len(head) < 8 or head[:8] != MAGIC:
            raise SnapshotError(f"{path}: not an emu snapshot (bad magic)")
        if len(head) < HEADER.size:
            raise SnapshotError(f"{path}: truncated header")
        magic, version, kind, meta_offset, meta_length, mem_offset, mem_length, crc = HEADER.unpack(head)
        if version != VERSION:
            raise SnapshotError(f"{path}: snapshot version {version}, this emu reads version {VERSION}")
        if meta_offset != HEADER.size or meta_length > 1 << 30:
            raise SnapshotError(f"{path}: malformed header")
        blob = f.read(meta_length)
        if len(blob) != meta_length:
            raise SnapshotError(f"{path}: truncated metadata")
        if zlib.crc32(blob, zlib.crc32(head[:48])) != crc:
            raise SnapshotError(f"{path}: checksum mismatch: the file is corrupt")
        if kind not in (FULL, DIFF) or mem_offset % PAGE_SIZE or mem_offset < HEADER.size + meta_length:
            raise SnapshotError(f"{path}: malformed header")
        try:
            meta = json.loads(blob)
        except ValueError:
            raise SnapshotError(f"{path}: malformed metadata") from None
        return f, kind, meta, mem_offset, mem_length
    except BaseException:
        f.close()
        raise


def _header_crc(path):
    with open(path, "rb") as f:
        head = f.read(HEADER.size)
    return struct.unpack_from("<I", head, 48)[0] if len(head) == HEADER.size else None
