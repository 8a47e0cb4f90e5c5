"""Snapshots: the whole machine in one file, full or incremental.

Lecture idea: "machine states can be checkpointed ... migrated ... rapid return
of services when hardware goes down" -- and "checkpoint files can be huge".
A snapshot holds the CPU (registers, mode, pending interrupts), every device
and all of memory, so ``restore`` continues exactly where ``save`` stopped.
Two tricks keep it cheap, both taken from real hypervisors:

- **Restore does not read memory.**  The memory section starts on a page
  boundary, so restore maps it copy-on-write (``mmap`` MAP_PRIVATE, in
  ``hostmem.ram``, as Firecracker maps its memory file): the guest's pages are read
  from the file only when touched, and its writes never reach the file.
- **Incremental snapshots.**  ``memory.py`` marks every page written since the
  last snapshot; a diff snapshot holds just those pages and names its base.

File layout (integers little-endian)::

  0   magic "EMUSNAP\\0" | version u32 | kind u32 (0 full, 1 diff)
  16  metadata offset u64 | metadata length u64
  32  memory offset u64   | memory length u64
  48  crc32 u32 of bytes 0..47 and the metadata | 12 bytes zero
  64  metadata: JSON -- machine state, the pages stored and a crc32 of each
      (full: a flag and a crc for every page of memory, in hex; diff: the
      page numbers and their crcs), for a diff the base file and the base's crc
  ..  memory, from a page boundary.  Full: the whole RAM, with holes (never
      written) where a page was never used.  Diff: the listed pages, packed.

Every restore checks the magic, version, header-and-metadata crc, the file's
length and the crc of every stored page (holes, the pages never used, hold
nothing to check); a file that fails any check is refused
with a one-line ``SnapshotError``.  A checksum only proves the file is as it
was written, and anyone can write one: so every length is checked against the
file's size before anything is read or allocated, and every field of the
metadata against the shape of a fresh machine's state (types, ranges, list
lengths) before any of it is used.  Checking the stored pages would cost
time in proportion to the memory the guest has used, so a full snapshot's
pages are checked lazily: each when the guest first touches it, the rest a
few at a time as the machine runs (``Memory.check_lazily``), never after the
guest has read one.  ``verify=False`` (``emu restore --no-verify``) skips
that, for a file known to be good.
"""

import array
import json
import os
import stat
import struct
import zlib

from . import hostmem
from .devices.disk import DiskError
from .isa import MMIO_BASE, PAGE_SIZE
from .machine import Machine
from .memory import runs

MAGIC = b"EMUSNAP\0"
VERSION = 2                                # 2: a crc per page, checked on first touch
FULL, DIFF = 0, 1
HEADER = struct.Struct("<8sIIQQQQI12x")   # 64 bytes
MAX_CHAIN = 64                             # diffs on diffs, at most

# Integer fields wider than a register; every other integer in the state is
# a 32-bit register or count.  Fields that may be null, and what they are otherwise.
WIDE = {"cycles", "steps", "deadline", "next_poll"}
NULLABLE = {"exit_status": int, "stop_reason": str, "path": str, "deadline": int, "crc": int}


class SnapshotError(ValueError):
    """A snapshot that cannot be restored; the message is one line."""


# -- saving ------------------------------------------------------------------------

def save(machine, path):
    """Write a full snapshot of `machine` to `path`."""
    memory = machine.memory
    pages = memory.used_pages()
    meta = {"state": _disk_relative(machine.save_state(), path), **_page_list(memory, pages)}

    def write_memory(f, offset):
        # Only used pages are written; the rest stay holes that read as zeros,
        # so a mostly empty 64 MiB machine makes a small, fast file.
        view = memoryview(memory.ram)
        for start, end in runs(pages):
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
    for needed in _chain(base_path):
        if os.path.exists(path) and os.path.samefile(path, needed):
            raise SnapshotError(f"{path}: is a base of this diff (it needs {needed}); "
                                "writing the diff over it would destroy the checkpoint")
    memory = machine.memory
    pages = memory.dirty_pages()
    here = os.path.dirname(os.path.abspath(path))
    meta = {"state": _disk_relative(machine.save_state(), path), "pages": pages,
            "page_crcs": _crcs(memory, pages),
            "base": os.path.relpath(base_path, here), "base_crc": base_crc}

    def write_memory(f, offset):
        f.seek(offset)
        view = memoryview(memory.ram)
        for page in pages:
            f.write(view[page * PAGE_SIZE:(page + 1) * PAGE_SIZE])

    _write(path, DIFF, meta, len(pages) * PAGE_SIZE, write_memory)
    memory.mark_snapshot()
    machine.last_snapshot = (os.path.abspath(path), _header_crc(path))


def _disk_relative(state, path):
    """`state` with its disk named relative to the snapshot at `path`, so
    that a snapshot moved together with its disk (and the disk's backing
    files) still finds it; restore checks it is the same disk."""
    disk = state["devices"]["disk"]
    if disk["path"] is not None:
        disk["path"] = os.path.relpath(disk["path"], os.path.dirname(os.path.abspath(path)))
    return state


def encode(value):
    """JSON as snapshots store it (their metadata; live migration's state
    record is `encode(machine.save_state())` too)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _write(path, kind, meta, memory_length, write_memory):
    blob = encode(meta)
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


def _chain(path):
    """`path` and the bases it is a diff of, down to the full snapshot."""
    chain = []
    while path is not None and len(chain) <= MAX_CHAIN:
        chain.append(path)
        try:
            f, kind, meta, _offset, _length = _open(path)
            f.close()
        except SnapshotError:
            break
        base = meta.get("base") if kind == DIFF and isinstance(meta, dict) else None
        path = os.path.join(os.path.dirname(path), base) if isinstance(base, str) else None
    return chain


def _page_list(memory, pages):
    """A full snapshot's pages, as one byte per page of memory (1 = stored),
    and a crc32 for every page (0 where not stored), both in hex: restore reads
    them without a loop and checks each page on its own, when first touched."""
    flags = bytearray(memory.pages)
    for page in pages:
        flags[page] = 1
    return {"pages": flags.hex(), "page_crcs": _crcs(memory, range(memory.pages), flags)}


def _crcs(memory, pages, stored=None):
    """The crc32 of each of `pages` (0 for those not `stored`), in hex."""
    memory.check_some(None)      # a page saved as good must have been checked
    ram = memory.ram
    return array.array("I", (zlib.crc32(ram[p * PAGE_SIZE:(p + 1) * PAGE_SIZE])
                             if stored is None or stored[p] else 0 for p in pages)).tobytes().hex()


# -- restoring -------------------------------------------------------------------------

def restore(path, console=None, engine="translate", verify=True, disk=None, _depth=0):
    """A new Machine, exactly as it was when `path` was saved.

    `verify=False` skips the checksum of the stored memory pages, the only
    part of a restore whose cost grows with the memory the guest used; the
    header, the metadata and the file's length are always checked.
    `disk`: go on with this image instead of the one the snapshot names
    (an emu vm's disk moves on to a new overlay whenever it is frozen, and
    layers are merged away); it must read as that one did, as always."""
    f, kind, meta, mem_offset, mem_length = _open(path)
    try:
        with f:
            _check_meta(path, kind, meta, mem_length)
            return _restore(path, f, kind, meta, mem_offset, mem_length, console, engine, verify, disk, _depth)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        if isinstance(e, SnapshotError):
            raise
        if isinstance(e, DiskError):
            raise SnapshotError(f"{path}: {e}") from None
        # The checksum matched, so this was written wrong, not damaged later.
        raise SnapshotError(f"{path}: malformed metadata ({type(e).__name__}: {e})") from None


def _restore(path, f, kind, meta, mem_offset, mem_length, console, engine, verify, disk_path, _depth):
    state = meta["state"]
    size = state["memory_size"]
    if kind == FULL:
        try:
            backing = hostmem.ram(size, f.fileno(), mem_offset)
        except (OSError, ValueError) as e:
            raise SnapshotError(f"{path}: cannot map memory: {e}") from None
        machine = Machine(size, console=console, engine=engine, backing=backing)
        if verify:
            machine.memory.check_lazily(meta["pages"], _checker(path, machine.memory.ram, meta["page_crcs"]))
        present = meta["pages"]
    else:
        if _depth > MAX_CHAIN:
            raise SnapshotError(f"{path}: chain of diff snapshots too long (a cycle?)")
        base_path = os.path.join(os.path.dirname(os.path.abspath(path)), meta["base"])
        try:
            base_crc = _header_crc(base_path)
        except SnapshotError as e:
            raise SnapshotError(f"{path}: base snapshot {e}") from None
        if base_crc != meta["base_crc"]:
            raise SnapshotError(f"{path}: base snapshot {meta['base']} has changed since this diff was taken")
        machine = restore(base_path, console, engine, verify, _depth=_depth + 1)
        if machine.memory.size != size:
            raise SnapshotError(f"{path}: memory size differs from its base")
        f.seek(mem_offset)
        data = f.read(mem_length)                 # its length checked against the file's in _open
        check = _checker(path, data, meta["page_crcs"])
        for i, page in enumerate(meta["pages"]):
            check(i, page)
            machine.memory.write_bytes(page * PAGE_SIZE, data[i * PAGE_SIZE:(i + 1) * PAGE_SIZE])
        present = machine.memory.used_flags()
    disk = state["devices"].get("disk")
    if disk is not None and disk["path"] is not None:
        disk["path"] = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(path)), disk["path"]))
        if disk_path is not None:
            disk["path"] = os.path.abspath(disk_path)
    machine.restore_state(state)
    machine.memory.mark_snapshot(present)
    machine.last_snapshot = (os.path.abspath(path), _header_crc(path))
    return machine


def _checker(path, buffer, crcs):
    """check(i): the i-th page of `buffer` has the i-th crc (`page` names it)."""
    view = memoryview(buffer)

    def check(i, page=None):
        if zlib.crc32(view[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]) != crcs[i]:
            raise SnapshotError(f"{path}: memory page {i if page is None else page:#x} fails its "
                                "checksum: the file is corrupt")
    return check


def _check_meta(path, kind, meta, mem_length):
    """Every field of the metadata has the type, range and length it must
    have, before any of it is used."""
    if not isinstance(meta, dict):
        raise SnapshotError(f"{path}: malformed metadata: not an object")
    fields = {"state": dict, "pages": str if kind == FULL else list, "page_crcs": str}
    if kind == DIFF:
        fields.update(base=str, base_crc=int)
    for name, kind_of in fields.items():
        if not isinstance(meta.get(name), kind_of) or isinstance(meta[name], bool):
            raise SnapshotError(f"{path}: malformed metadata: {name} is not {kind_of.__name__}")
    state = meta["state"]
    check_state(path, state)
    size = state["memory_size"]
    # Full: a flag per page of memory.  Diff: the page numbers, in order.
    count = size // PAGE_SIZE
    try:
        pages, crcs = meta["pages"], array.array("I", bytes.fromhex(meta["page_crcs"]))
        if kind == FULL:
            pages = bytes.fromhex(pages)
    except ValueError:
        raise SnapshotError(f"{path}: malformed metadata: pages or page_crcs is not hex") from None
    if kind == FULL and (len(pages) != count or len(crcs) != count or pages.translate(None, b"\0\1")):
        raise SnapshotError(f"{path}: malformed metadata: pages and page_crcs are not "
                            f"one flag and one crc for each of its {count} pages")
    if kind == DIFF and (not all(type(p) is int for p in pages) or pages != sorted(set(pages))
                         or pages and not 0 <= pages[0] <= pages[-1] < count or len(crcs) != len(pages)):
        raise SnapshotError(f"{path}: malformed metadata: pages are not distinct page numbers "
                            "of its memory, each with a crc")
    if kind == DIFF and mem_length != len(pages) * PAGE_SIZE:
        raise SnapshotError(f"{path}: malformed header: memory section is not the {len(pages)} pages listed")
    meta["pages"], meta["page_crcs"] = pages, crcs
    if kind == FULL and mem_length != size:
        raise SnapshotError(f"{path}: truncated: memory section shorter than {size} bytes")


def check_state(path, state):
    """`state`, a machine's `save_state` read back from JSON, has the shape
    of a fresh machine's (types, ranges, list lengths) and a possible memory
    size; else SnapshotError naming `path`.  Whoever restores a state that
    came from outside (a snapshot file, live migration) checks it so first."""
    _check_shape(path, "state", state, Machine(PAGE_SIZE, engine="interpret").save_state())
    size = state["memory_size"]
    if not PAGE_SIZE <= size <= MMIO_BASE or size % PAGE_SIZE:
        raise SnapshotError(f"{path}: malformed metadata: memory size {size}")


def _check_shape(path, where, value, template):
    """`value` is like `template` (the same part of a fresh machine's state):
    the same keys and types, lists of the same length, integers in range."""
    name = where.rsplit(".", 1)[-1]

    def bad(what):
        raise SnapshotError(f"{path}: malformed metadata: {where} {what}")

    if template is None:
        if value is not None and type(value) is not NULLABLE.get(name, type(value)):
            bad(f"is not {NULLABLE[name].__name__} or null")
        template = value
    if type(value) is not type(template):
        bad(f"is {type(value).__name__}, not {type(template).__name__}")
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 1 << (64 if name in WIDE else 32):
            bad(f"{value} out of range")
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key not in template and template:
                continue                                 # not ours: never read
            _check_shape(path, f"{where}.{key}", inner, template.get(key, 0 if name == "symbols" else inner))
        missing = [key for key in template if key not in value and name != "devices"]
        if missing:
            bad(f"has no {missing[0]}")
    elif isinstance(value, list):
        if template and len(value) != len(template):
            bad(f"has {len(value)} entries, not {len(template)}")
        for i, inner in enumerate(value):
            # An empty template is the TLB: [vpn, pte] pairs.
            _check_shape(path, f"{where}[{i}]", inner, template[i] if template else [0, 0])


def _open_file(path):
    """`path` opened for reading if it is a regular file -- never waiting on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise SnapshotError(f"{path}: {e.strerror}") from None
    # Checked before fdopen, which refuses a directory with an error of its own.
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SnapshotError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def _open(path):
    f = _open_file(path)
    try:
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEADER.size)
        if len(head) < 8 or head[:8] != MAGIC:
            raise SnapshotError(f"{path}: not an emu snapshot (bad magic)")
        if len(head) < HEADER.size:
            raise SnapshotError(f"{path}: truncated header")
        magic, version, kind, meta_offset, meta_length, mem_offset, mem_length, crc = HEADER.unpack(head)
        if version != VERSION:
            raise SnapshotError(f"{path}: snapshot version {version}, this emu reads version {VERSION}")
        if meta_offset != HEADER.size or meta_length > size - HEADER.size:
            raise SnapshotError(f"{path}: truncated metadata")
        blob = f.read(meta_length)
        if len(blob) != meta_length:
            raise SnapshotError(f"{path}: truncated metadata")
        if zlib.crc32(blob, zlib.crc32(head[:48])) != crc:
            raise SnapshotError(f"{path}: checksum mismatch: the file is corrupt")
        if kind not in (FULL, DIFF) or mem_offset % PAGE_SIZE or mem_offset < HEADER.size + meta_length:
            raise SnapshotError(f"{path}: malformed header")
        if mem_length and mem_offset + mem_length > size:
            raise SnapshotError(f"{path}: truncated: memory section runs past the end of the file")
        try:
            meta = json.loads(blob)
        except ValueError:
            raise SnapshotError(f"{path}: malformed metadata") from None
        return f, kind, meta, mem_offset, mem_length
    except BaseException:
        f.close()
        raise


def _header_crc(path):
    with _open_file(path) as f:
        head = f.read(HEADER.size)
    return struct.unpack_from("<I", head, 48)[0] if len(head) == HEADER.size else None
