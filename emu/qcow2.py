"""Disk images: raw files, and qcow2 copy-on-write overlays on a backing image.

Lecture idea: many virtual machines share "memory, disk, network bandwidth";
ten VMs booted from one image need not hold ten copies of it.  An *overlay*
starts empty and names a read-only *backing* image: a read of a cluster the
overlay does not hold goes to the backing file (or reads as zeros), the first
write to a cluster copies it into the overlay and changes it there.  The base
never changes, so any number of linked clones can share it; `commit`
folds an overlay's changes back into its base, and `stream` folds a middle
layer of a chain into the overlay above it (the other way round: the
overlay stops needing that layer).

The format is QEMU's qcow2 (docs/interop/qcow2.txt in QEMU), versions 2 and
3, so qemu-img can check, convert and inspect what emu writes.  Numbers are
big-endian; the file is made of clusters (64 KiB by default):

  cluster 0        header, header extensions, the backing file's name
  L1 table         one entry per L2 table: its offset (0: none yet)
  L2 tables        one cluster each; an entry per guest cluster: the host
                   offset of its data, a flag "reads as zeros", or a
                   compressed cluster (read with zlib, as QEMU writes them)
  refcount table   offsets of refcount blocks, which count the references
                   to every host cluster: metadata and data alike

New clusters are appended at the end of the file.  Each write goes in the
order data, refcount, then the pointer to it (refcount before data for
allocations), so a crash can leak a cluster but never lose one.  The L1 and L2
tables and the refcount table are read once at open and cached (every entry
is checked against the file then, so a corrupt image is refused at open, not
in the middle of a guest's run); refcount blocks are read when first needed.
Reads of clusters the overlay does not hold never touch the overlay's file.
Not supported (refused at open with one line): encryption, external data
files, extended L2 entries, zstd compression, and writing to an image with
internal snapshots; the refcount table does not grow (one cluster of it
covers 16 TiB of 64 KiB clusters).
"""

import array
import os
import stat
import struct
import sys
import zlib

MAGIC = b"QFI\xfb"
HEADER_V2 = struct.Struct(">4sIQIIQIIQQIIQ")      # the 72 bytes of version 2
HEADER_V3 = struct.Struct(">QQQII")               # the 32 more of version 3: features, refcount order, length
EXT_END, EXT_BACKING_FORMAT = 0, 0xE2792ACA
OFFSET = 0x00FF_FFFF_FFFF_FE00                    # bits 9-55: a cluster's offset
COPIED = 1 << 63                                  # refcount is exactly 1: write in place
COMPRESSED = 1 << 62
ZERO = 1                                          # (version 3) the cluster reads as zeros
INCOMPATIBLE = {0: "dirty (refcounts need repair: qemu-img check -r all)", 1: "marked corrupt",
                2: "external data file", 3: "compression other than zlib", 4: "extended L2 entries"}
DEFAULT_CLUSTER_BITS = 16
MAX_CHAIN = 64                                    # backing files of backing files, at most
MAX_L1 = 1 << 22                                  # entries (QEMU's limit: 32 MiB of L1 table)

# What a guest cluster is, as _lookup finds it.
UNALLOCATED, DATA, ZEROS, DEFLATED = "unallocated", "data", "zeros", "compressed"


class ImageError(ValueError):
    """A disk image that cannot be used, or an I/O on it that failed; one line."""


def open_image(path, readonly=False, _seen=()):
    """A Raw or Qcow2 image, told apart by the magic number, never by the
    name.  Raises OSError if `path` cannot be opened as asked, ImageError
    for anything wrong inside it or its backing chain."""
    flags = os.O_RDONLY if readonly else os.O_RDWR
    fd = os.open(path, flags | os.O_NONBLOCK)     # O_NONBLOCK: a FIFO must not hang us
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        kind = Qcow2 if os.pread(fd, 4, 0) == MAGIC else Raw
        return kind(path, fd, readonly, _seen)
    except BaseException:
        os.close(fd)
        raise


def chain(image):
    """`image` and its backing files, top first."""
    while image is not None:
        yield image
        image = image.backing


class Raw:
    """A plain file: byte n of the disk is byte n of the file."""

    format = "raw"
    backing = None

    def __init__(self, path, fd, readonly, _seen=()):
        self.path, self.fd, self.readonly = path, fd, readonly
        self.size = os.fstat(fd).st_size

    def read(self, offset, length):
        """`length` bytes from `offset`; past the end, zeros (a backing file
        may be shorter than its overlay)."""
        data = os.pread(self.fd, length, offset) if offset < self.size else b""
        return data.ljust(length, b"\0")

    def write(self, offset, data):
        if self.readonly:
            raise ImageError(f"{self.path}: opened read-only")
        if os.pwrite(self.fd, data, offset) != len(data):
            raise ImageError(f"{self.path}: short write")
        self.size = max(self.size, offset + len(data))

    def flush(self):
        os.fsync(self.fd)

    def close(self):
        os.close(self.fd)


class Qcow2:
    """A qcow2 image: read and write at byte offsets of the virtual disk."""

    format = "qcow2"

    def __init__(self, path, fd, readonly, _seen=()):
        self.path, self.fd, self.readonly = path, fd, readonly
        self.backing = None
        self._file_size = os.fstat(fd).st_size
        self._read_header()
        self._read_tables()
        self._open_backing(_seen)

    # -- opening: everything is checked before it is used -------------------------------

    def _bad(self, what):
        raise ImageError(f"{self.path}: {what}")

    def _read_header(self):
        head = os.pread(self.fd, HEADER_V2.size + HEADER_V3.size, 0)
        if len(head) < HEADER_V2.size:
            self._bad("truncated qcow2 header")
        (_, self.version, backing_offset, backing_length, self.cluster_bits, self.size, crypt,
         self.l1_size, self.l1_offset, self.rc_offset, rc_clusters, self.snapshots,
         _) = HEADER_V2.unpack_from(head)
        if self.version not in (2, 3):
            self._bad(f"qcow2 version {self.version} is not supported (only 2 and 3)")
        if self.version == 3:
            if len(head) < HEADER_V2.size + HEADER_V3.size:
                self._bad("truncated qcow2 header")
            incompatible, _, self.autoclear, self.refcount_order, header_length = \
                HEADER_V3.unpack_from(head, HEADER_V2.size)
        else:
            incompatible, self.autoclear, self.refcount_order, header_length = 0, 0, 4, HEADER_V2.size
        if not 9 <= self.cluster_bits <= 21:
            self._bad(f"cluster size 2^{self.cluster_bits} is out of range (2^9 to 2^21)")
        cs = self.cluster_size = 1 << self.cluster_bits
        if crypt:
            self._bad(f"encrypted (method {crypt}): not supported")
        for bit in range(64):
            if incompatible >> bit & 1 and not (bit == 0 and self.readonly):
                self._bad(f"qcow2 feature {INCOMPATIBLE.get(bit, f'bit {bit} (unknown)')}: not supported")
        if self.refcount_order > 6:
            self._bad(f"refcount order {self.refcount_order} is out of range (at most 6)")
        if not self.readonly and self.refcount_order < 3:
            self._bad(f"{1 << self.refcount_order}-bit refcounts: not supported for writing")
        if not self.readonly and self.snapshots:
            self._bad("has internal snapshots: not supported for writing")
        if header_length % 8 or not HEADER_V2.size <= header_length <= cs or \
                self.version == 3 and header_length < HEADER_V2.size + HEADER_V3.size:
            self._bad(f"header length {header_length} is malformed")
        if self.size % 512:
            self._bad(f"virtual size {self.size} is not a whole number of 512-byte sectors")
        first = os.pread(self.fd, cs, 0)
        self.header_length = header_length
        self.backing_format = self._extensions(first, header_length)
        self.backing_name = None
        if backing_offset:
            if backing_length > 1023 or backing_offset + backing_length > len(first):
                self._bad("backing file name lies outside the first cluster")
            try:
                self.backing_name = first[backing_offset:backing_offset + backing_length].decode()
            except UnicodeDecodeError:
                self._bad("backing file name is not UTF-8")
            if not self.backing_name or "\0" in self.backing_name:
                self._bad(f"backing file name {self.backing_name!r} is not a file name")
        if self.autoclear and not self.readonly:
            # Features we do not keep up to date must be marked stale (the spec's rule).
            self._pwrite(88, bytes(8))
            self.autoclear = 0
        self._rc_clusters = rc_clusters

    def _extensions(self, first, at):
        """The backing file format from the header extensions, or None; the
        other extensions, kept as they are, in `self.extensions`."""
        backing_format = None
        self.extensions = []
        while True:
            if at + 8 > len(first):
                self._bad("header extensions run past the first cluster")
            kind, length = struct.unpack_from(">II", first, at)
            if kind == EXT_END:
                return backing_format
            if at + 8 + length > len(first):
                self._bad("header extensions run past the first cluster")
            if kind == EXT_BACKING_FORMAT:
                backing_format = first[at + 8:at + 8 + length].decode("ascii", "replace")
            else:
                self.extensions.append((kind, first[at + 8:at + 8 + length]))
            at += 8 + (length + 7) // 8 * 8

    def _read_tables(self):
        cs = self.cluster_size
        self.l2_entries = cs // 8
        needed = -(-self.size // (cs * self.l2_entries))
        if not needed <= self.l1_size <= MAX_L1:
            self._bad(f"L1 table of {self.l1_size} entries does not fit a disk of {self.size} bytes")
        self.l1 = self._table(self.l1_offset, self.l1_size * 8, "L1 table")
        self.l2 = {}                      # L2 tables by offset, all of them, checked
        for entry in self.l1:
            offset = entry & OFFSET
            if offset and offset not in self.l2:
                self.l2[offset] = self._table(offset, cs, "L2 table")
                for e in self.l2[offset]:
                    self._check_entry(e)
        self.rc_table = self._table(self.rc_offset, self._rc_clusters * cs, "refcount table")
        for entry in self.rc_table:
            self._check_cluster(entry & ~0x1FF, "refcount block")
        self.rc_blocks = {}
        self.rc_width = 1 << self.refcount_order >> 3          # bytes per refcount
        self.rc_entries = cs * 8 >> self.refcount_order
        self.end = -(-self._file_size // cs) * cs               # where new clusters go
        self._inflated = (None, None)                           # (offset, data): the last compressed cluster

    def _table(self, offset, length, name):
        if offset % self.cluster_size or offset == 0 or offset + length > self._file_size:
            self._bad(f"{name} at {offset:#x} lies outside the file or is not cluster-aligned")
        table = array.array("Q", os.pread(self.fd, length, offset))
        if sys.byteorder == "little":
            table.byteswap()
        return table

    def _check_cluster(self, offset, name):
        if offset and (offset % self.cluster_size or offset >= self._file_size):
            self._bad(f"{name} at {offset:#x} lies beyond the end of the file or is not cluster-aligned")

    def _check_entry(self, entry):
        if entry & COMPRESSED:
            offset = self._deflated(entry)[0]
            if offset >= self._file_size:
                self._bad(f"compressed cluster at {offset:#x} lies beyond the end of the file")
        else:
            self._check_cluster(entry & OFFSET, "data cluster")

    def _open_backing(self, seen):
        if self.backing_name is None:
            return
        here = os.path.dirname(os.path.abspath(self.path))
        path = os.path.join(here, self.backing_name)
        real = os.path.realpath(self.path)
        seen = (*seen, real)
        if os.path.realpath(path) in seen:
            self._bad(f"backing chain loop: {self.backing_name} is already in the chain")
        if len(seen) > MAX_CHAIN:
            self._bad(f"backing chain longer than {MAX_CHAIN} images")
        if self.backing_format not in (None, "raw", "qcow2"):
            self._bad(f"backing file format {self.backing_format!r}: not supported")
        try:
            # A base is never written through its overlay.
            self.backing = open_image(path, readonly=True, _seen=seen)
        except OSError as e:
            self._bad(f"backing file {self.backing_name}: {e.strerror}")
        if self.backing_format and self.backing.format != self.backing_format:
            self.backing.close()
            self._bad(f"backing file {self.backing_name} is {self.backing.format}, "
                      f"not {self.backing_format} as the header says")

    # -- the guest's view ---------------------------------------------------------------

    def read(self, offset, length):
        """`length` bytes of the virtual disk from `offset` (zeros past its end)."""
        out = bytearray()
        end = offset + length
        while offset < end:
            n = min(end, (offset | (self.cluster_size - 1)) + 1) - offset
            out += self._read_in_cluster(offset, n)
            offset += n
        return bytes(out)

    def _read_in_cluster(self, offset, n):
        kind, entry = self._lookup(offset)
        within = offset & (self.cluster_size - 1)
        if kind == DATA:
            return os.pread(self.fd, n, (entry & OFFSET) + within).ljust(n, b"\0")
        if kind == DEFLATED:
            return self._inflate(entry)[within:within + n]
        if kind == UNALLOCATED and self.backing is not None:
            return self.backing.read(offset, n)
        return bytes(n)

    def _lookup(self, offset):
        """(kind, L2 entry) of the guest cluster holding `offset`."""
        if offset >= self.size:
            return ZEROS, 0
        l1_index, l2_index = divmod(offset >> self.cluster_bits, self.l2_entries)
        table = self.l2.get(self.l1[l1_index] & OFFSET)
        entry = table[l2_index] if table is not None else 0
        if entry & COMPRESSED:
            return DEFLATED, entry
        if entry & ZERO and self.version == 3:
            return ZEROS, entry
        return (DATA if entry & OFFSET else UNALLOCATED), entry

    def _deflated(self, entry):
        """(host offset, length) of a compressed cluster's data."""
        x = 62 - (self.cluster_bits - 8)
        offset = entry & ((1 << x) - 1)
        sectors = (entry & ((1 << 62) - 1)) >> x
        return offset, (sectors + 1) * 512 - (offset & 511)

    def _inflate(self, entry):
        offset, length = self._deflated(entry)
        if self._inflated[0] != offset:
            try:
                data = zlib.decompressobj(-15).decompress(os.pread(self.fd, length, offset),
                                                          self.cluster_size)
            except zlib.error:
                data = b""
            if len(data) != self.cluster_size:
                self._bad(f"compressed cluster at {offset:#x} is corrupt")
            self._inflated = (offset, data)
        return self._inflated[1]

    def write(self, offset, data):
        """Write `data` at `offset` of the virtual disk, copying a cluster into
        this image the first time it is written."""
        if self.readonly:
            self._bad("opened read-only")
        if offset + len(data) > self.size:
            self._bad(f"write past the end of the {self.size}-byte disk")
        view = memoryview(data)
        done = 0
        while done < len(data):
            at = offset + done
            n = min(len(data) - done, self.cluster_size - (at & (self.cluster_size - 1)))
            self._write_in_cluster(at, view[done:done + n])
            done += n

    def _write_in_cluster(self, offset, data):
        kind, entry = self._lookup(offset)
        within = offset & (self.cluster_size - 1)
        if kind == DATA and entry & COPIED:
            self._pwrite((entry & OFFSET) + within, data)
            return
        # Copy on write: the cluster's whole content goes to a new cluster of ours.
        start = offset - within
        if len(data) == self.cluster_size:
            content = data
        else:
            content = bytearray(self._read_in_cluster(start, self.cluster_size))
            content[within:within + len(data)] = data
        new = self._allocate()
        self._pwrite(new, content)
        self._set_l2(start, new | COPIED)
        if kind == DEFLATED:
            host, length = self._deflated(entry)
            for cluster in range(host >> self.cluster_bits, (host + length - 1 >> self.cluster_bits) + 1):
                self._add_ref(cluster << self.cluster_bits, -1)
        elif entry & OFFSET:
            self._add_ref(entry & OFFSET, -1)

    def _set_l2(self, offset, entry):
        l1_index, l2_index = divmod(offset >> self.cluster_bits, self.l2_entries)
        table_offset = self.l1[l1_index] & OFFSET
        if not table_offset:
            table_offset = self._allocate()
            self._pwrite(table_offset, bytes(self.cluster_size))
            self.l2[table_offset] = array.array("Q", bytes(self.cluster_size))
            self.l1[l1_index] = table_offset | COPIED
            self._pwrite(self.l1_offset + 8 * l1_index, struct.pack(">Q", self.l1[l1_index]))
        self.l2[table_offset][l2_index] = entry
        self._pwrite(table_offset + 8 * l2_index, struct.pack(">Q", entry))

    # -- host clusters and their reference counts ---------------------------------------

    def _allocate(self):
        """A new cluster at the end of the file, its refcount 1."""
        offset = self.end
        self.end += self.cluster_size
        self._add_ref(offset, 1)
        return offset

    def _add_ref(self, offset, delta):
        index = offset >> self.cluster_bits
        block_index, slot = divmod(index, self.rc_entries)
        if block_index >= len(self.rc_table):
            self._bad("refcount table is full (it does not grow)")
        block_offset = self.rc_table[block_index] & ~0x1FF
        if not block_offset:
            block_offset = self.end          # a new block, which counts itself too
            self.end += self.cluster_size
            self._pwrite(block_offset, bytes(self.cluster_size))
            self.rc_blocks[block_offset] = bytearray(self.cluster_size)
            self.rc_table[block_index] = block_offset
            self._pwrite(self.rc_offset + 8 * block_index, struct.pack(">Q", block_offset))
            self._add_ref(block_offset, 1)
        block = self.rc_blocks.get(block_offset)
        if block is None:
            block = self.rc_blocks[block_offset] = bytearray(os.pread(self.fd, self.cluster_size, block_offset))
        at = slot * self.rc_width
        count = int.from_bytes(block[at:at + self.rc_width], "big") + delta
        if not 0 <= count < 1 << (8 * self.rc_width):
            self._bad(f"refcount of cluster {offset:#x} would be {count}: the image is corrupt")
        block[at:at + self.rc_width] = count.to_bytes(self.rc_width, "big")
        self._pwrite(block_offset + at, block[at:at + self.rc_width])

    def _pwrite(self, offset, data):
        try:
            written = os.pwrite(self.fd, data, offset)
        except OSError as e:
            self._bad(f"write failed: {e.strerror}")
        if written != len(data):
            self._bad("short write")

    # -- whole-image operations ---------------------------------------------------------

    def holds(self, offset, length):
        """Whether this image itself (not a backing file) holds any of the
        `length` bytes from `offset`."""
        end = min(offset + length, self.size)
        return any(self._lookup(at)[0] != UNALLOCATED for at in
                   range(offset & -self.cluster_size, end, self.cluster_size))

    def set_backing(self, backing):
        """Name `backing` (an open image, or None: no backing file) in the
        header, in the first cluster's one write.  What this image reads
        changes unless `backing` reads as the old backing file did."""
        if self.readonly:
            self._bad("opened read-only")
        name = b""
        extensions = self.extensions
        if backing is not None:
            here = os.path.dirname(os.path.abspath(self.path))
            name = os.path.relpath(os.path.abspath(backing.path), here).encode()
            extensions = [*extensions, (EXT_BACKING_FORMAT, backing.format.encode())]
        tail = _extension_bytes(extensions) + name
        if len(name) > 1023 or self.header_length + len(tail) > self.cluster_size:
            self._bad("the backing file's name does not fit in the header")
        first = bytearray(os.pread(self.fd, self.cluster_size, 0))
        first[self.header_length:] = tail.ljust(self.cluster_size - self.header_length, b"\0")
        struct.pack_into(">QI", first, 8, self.header_length + len(tail) - len(name) if name else 0, len(name))
        self._pwrite(0, first)

    def allocated(self):
        """Guest clusters this image holds (data, zeros or compressed), in order."""
        count = -(-self.size // self.cluster_size)
        return [i for i in range(count) if self._lookup(i << self.cluster_bits)[0] != UNALLOCATED]

    def flush(self):
        os.fsync(self.fd)
        if self.backing is not None and not self.backing.readonly:
            self.backing.flush()

    def close(self):
        if self.backing is not None:
            self.backing.close()
        os.close(self.fd)


# -- creating and committing ------------------------------------------------------------

def create(path, size=None, backing=None, cluster_bits=DEFAULT_CLUSTER_BITS, replace=False):
    """Write a new, empty qcow2 image (version 3).  With `backing`, the
    image is an overlay on it: its name is stored relative to `path`, and
    the size defaults to the backing image's.  Never replaces an existing
    file unless `replace`; written beside and renamed into place."""
    if os.path.lexists(path) and not replace:
        raise ImageError(f"{path}: already exists")
    backing_name = backing_format = None
    if backing is not None:
        try:
            base = open_image(backing, readonly=True)
        except OSError as e:
            raise ImageError(f"{backing}: {e.strerror}") from None
        base.close()
        backing_format = base.format
        backing_name = os.path.relpath(os.path.abspath(backing), os.path.dirname(os.path.abspath(path)))
        if size is None:
            size = -(-base.size // 512) * 512
    if size is None:
        raise ImageError(f"{path}: a size is needed (--size) when there is no backing file")
    if size <= 0 or size % 512:
        raise ImageError(f"{path}: size {size} is not a positive whole number of 512-byte sectors")
    cs = 1 << cluster_bits
    l1_size = -(-size // (cs * (cs // 8)))
    l1_clusters = max(1, -(-l1_size * 8 // cs))
    clusters = 3 + l1_clusters                     # header, refcount table and block, L1
    if clusters > cs * 8 // 16 or len((backing_name or "").encode()) > 1023:
        raise ImageError(f"{path}: too large a disk for {cs}-byte clusters")

    extensions = _extension_bytes([(EXT_BACKING_FORMAT, backing_format.encode())] if backing_format else [])
    header_length = HEADER_V2.size + HEADER_V3.size
    backing_bytes = (backing_name or "").encode()
    backing_offset = header_length + len(extensions) if backing_name else 0
    header = HEADER_V2.pack(MAGIC, 3, backing_offset, len(backing_bytes), cluster_bits, size, 0,
                            l1_size, 3 * cs, cs, 1, 0, 0) + HEADER_V3.pack(0, 0, 0, 4, header_length)
    image = bytearray(clusters * cs)
    image[:len(header) + len(extensions) + len(backing_bytes)] = header + extensions + backing_bytes
    struct.pack_into(">Q", image, cs, 2 * cs)                  # refcount table -> the block
    struct.pack_into(f">{clusters}H", image, 2 * cs, *[1] * clusters)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(image)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ImageError(f"{path}: {e.strerror}") from None


def _extension_bytes(extensions):
    """Header extensions, (kind, data) each, padded to 8 bytes, and their end."""
    out = b""
    for kind, data in extensions:
        out += struct.pack(">II", kind, len(data)) + data.ljust(-(-len(data) // 8) * 8, b"\0")
    return out + struct.pack(">II", EXT_END, 0)


def stream(path):
    """Make the overlay at `path` independent of its backing image, a
    qcow2 layer, whose own backing file takes its place: first every
    cluster the layer holds and the overlay does not is copied into the
    overlay, so what `path` reads never changes (QEMU's block-stream; or
    `qemu-img rebase` onto the backing's backing).  The layer is left as
    it was, for the caller to delete once nothing reads it.  Returns the
    clusters copied."""
    try:
        image = open_image(path)
    except OSError as e:
        raise ImageError(f"{path}: {e.strerror}") from None
    try:
        layer = image.backing
        if image.format != "qcow2" or layer is None or layer.format != "qcow2":
            raise ImageError(f"{path}: not a qcow2 overlay on a qcow2 image")
        copied = 0
        for start in range(0, image.size, image.cluster_size):
            n = min(image.cluster_size, image.size - start)
            # (Past the layer's end it reads zeros, which its backing file may not.)
            if not image.holds(start, n) and (layer.holds(start, n) or start + n > layer.size):
                image.write(start, image.read(start, n))
                copied += 1
        image.flush()                     # the data is in before the header stops naming the layer
        image.set_backing(layer.backing)
        image.flush()
        return copied
    finally:
        image.close()


def commit(path):
    """Write the clusters an overlay holds into its backing image and empty
    the overlay (what `qemu-img commit` does).  Returns the clusters written."""
    overlay = open_image(path, readonly=True)
    try:
        if overlay.backing is None:
            raise ImageError(f"{path}: has no backing file to commit to")
        backing_path = overlay.backing.path
        overlay.backing.close()
        try:
            overlay.backing = open_image(backing_path, readonly=False)
        except OSError as e:
            raise ImageError(f"{backing_path}: {e.strerror}") from None
        if overlay.size > overlay.backing.size:
            raise ImageError(f"{path}: {overlay.size} bytes, larger than its backing file "
                             f"{overlay.backing_name} ({overlay.backing.size} bytes)")
        clusters = overlay.allocated()
        cs = overlay.cluster_size
        for index in clusters:
            start = index * cs
            overlay.backing.write(start, overlay.read(start, min(cs, overlay.size - start)))
        overlay.backing.flush()
        create(path, overlay.size, backing_path, overlay.cluster_bits, replace=True)
        return len(clusters)
    finally:
        overlay.close()
