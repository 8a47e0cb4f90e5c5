"""The table of contents of a plain tar file, read from its 512-byte headers.

Lecture idea: "Docker Images" travel as tar files, and tar is about the simplest
container format there is: a 512-byte header (name, size, type, ...), then the
member's bytes padded to a multiple of 512, again and again, until a block of
zeros.  To find ``index.json`` in a 2 GB ``docker save`` we read only the
headers, jumping over each member's data to the next header.

Python's ``tarfile`` does the same, but importing it costs ~4.5 ms (it pulls in
shutil, bz2, lzma and grp), a sixth of ``minirt run``'s start-up budget; the
outer archive of an image needs only names, types, sizes, offsets and link
targets.  Layers, which need everything (owners, modes, xattrs, devices), are
still read with tarfile, by layers.py, and only when one must be unpacked.

A name longer than 100 bytes has three spellings, all in use:

- **ustar** (POSIX.1-1988): a 155-byte ``prefix`` field, joined with "/";
- **GNU**: a member of type ``L`` (long name) or ``K`` (long link target)
  just before, whose data is the name;
- **pax** (POSIX.1-2001): a member of type ``x`` just before, whose data holds
  ``"<length> <key>=<value>\\n"`` records; ``path``, ``linkpath`` and ``size``
  override the header.  Type ``g`` records apply to all later members.

Read ``read_index`` first.
"""

import os

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)

# The member types the image readers tell apart; every other one is "other".
_TYPES = {b"0": "file", b"\0": "file", b"7": "file", b"1": "hardlink", b"2": "symlink", b"5": "dir"}


class TarFormatError(ValueError):
    """The file is not a tar, or a damaged one.  ``truncated`` says which."""

    def __init__(self, message: str, truncated: bool = False):
        super().__init__(message)
        self.truncated = truncated


class Member:
    """One member: ``type`` is file, dir, symlink, hardlink or other; ``offset``
    is where its data starts in the file."""

    __slots__ = ("name", "type", "size", "offset", "linkname")

    def __init__(self, name, type, size, offset, linkname):
        self.name, self.type, self.size, self.offset, self.linkname = name, type, size, offset, linkname

    def __repr__(self):
        return f"Member({self.name!r}, {self.type!r}, size={self.size}, offset={self.offset})"


def read_index(fd: int) -> list[Member]:
    """The members of the uncompressed tar file open at ``fd``, in order.

    Raises TarFormatError.  Reads with pread, so the file offset is untouched.
    """
    file_size = os.fstat(fd).st_size
    members: list[Member] = []
    pos = 0
    global_pax: dict[str, str] = {}
    pax: dict[str, str] = {}
    long_name = long_link = None
    while True:
        header = os.pread(fd, BLOCK, pos)
        if not header or header == ZERO_BLOCK:
            break  # end of archive: two zero blocks, or (leniently, like tar) end of file
        if len(header) < BLOCK:
            raise TarFormatError(f"header at offset {pos} cut short", truncated=True)
        _check_header(header, pos)
        size = _number(header[124:136], pos)
        kind = header[156:157]
        data = pos + BLOCK
        if kind in (b"x", b"g", b"L", b"K"):  # extensions describing the next member
            body = _read_data(fd, data, size, file_size)
            if kind == b"x":
                pax = {**global_pax, **_pax_records(body, pos)}
            elif kind == b"g":
                global_pax.update(_pax_records(body, pos))
            elif kind == b"L":
                long_name = _text(body)
            else:
                long_link = _text(body)
            pos = data + _padded(size)
            continue
        pax = pax or global_pax
        if kind == b"S" or any(k.startswith("GNU.sparse.") for k in pax):
            # Sparse members keep a map of holes before (or inside) the data.
            raise TarFormatError(f"sparse member at offset {pos} (not used in images)")
        name = pax.get("path") or long_name or _ustar_name(header)
        linkname = pax.get("linkpath") or long_link or _text(header[157:257])
        if "size" in pax:
            size = _pax_number(pax["size"], pos)
        type_ = _TYPES.get(kind, "other")
        if kind == b"\0" and name.endswith("/"):
            type_ = "dir"  # pre-POSIX tar marked directories by a trailing slash
        if data + size > file_size:
            raise TarFormatError(f"member {name} ends past end of file", truncated=True)
        members.append(Member(name, type_, size, data, linkname))
        pos = data + _padded(size)
        pax, long_name, long_link = {}, None, None
    return members


def _check_header(header: bytes, pos: int) -> None:
    # The checksum is the sum of the header's bytes with its own field read as
    # spaces.  POSIX sums them unsigned; some old tars summed signed chars.
    stored = _number(header[148:156], pos)
    rest = header[:148] + b"        " + header[156:]
    unsigned = sum(rest)
    if stored != unsigned and stored != unsigned - 256 * sum(b >> 7 for b in rest):
        raise TarFormatError(f"bad header checksum at offset {pos}")


def _number(field: bytes, pos: int) -> int:
    """A numeric header field: octal text, or (GNU, for big values) base-256."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise TarFormatError(f"bad number {field!r} in header at offset {pos}") from None


def _pax_number(text: str, pos: int) -> int:
    if not text.isdigit():
        raise TarFormatError(f"bad pax size {text!r} at offset {pos}")
    return int(text)


def _pax_records(body: bytes, pos: int) -> dict[str, str]:
    """Parse ``"<length> <key>=<value>\\n"`` records; length counts the whole record."""
    records = {}
    body = body.rstrip(b"\0")
    while body:
        length, space, _ = body.partition(b" ")
        if not space or not length.isdigit() or not len(length) < int(length) <= len(body):
            raise TarFormatError(f"bad pax record at offset {pos}")
        record, body = body[:int(length)], body[int(length):]
        key, eq, value = record[len(length) + 1:-1].partition(b"=")
        if not eq or not record.endswith(b"\n"):
            raise TarFormatError(f"bad pax record at offset {pos}")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return records


def _ustar_name(header: bytes) -> str:
    name = _text(header[0:100])
    # Only POSIX ustar ("ustar\0" "00") has a prefix field; GNU's magic is
    # "ustar  \0" and keeps other things in those bytes.
    if header[257:265] == b"ustar\x0000":
        prefix = _text(header[345:500])
        if prefix:
            name = prefix + "/" + name
    return name


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _read_data(fd: int, offset: int, size: int, file_size: int) -> bytes:
    if size > 1 << 20:
        raise TarFormatError(f"extended header at offset {offset - BLOCK} is {size} bytes")
    if offset + size > file_size:
        raise TarFormatError(f"extended header at offset {offset - BLOCK} cut short", truncated=True)
    return os.pread(fd, size, offset)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK
