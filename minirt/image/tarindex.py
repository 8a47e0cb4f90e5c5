"""Tar headers: the table of contents of an image archive, and the members of a layer.

Lecture idea: "Docker Images" travel as tar files, and tar is about the simplest
container format there is: a 512-byte header (name, size, type, ...), then the
member's bytes padded to a multiple of 512, again and again, until a block of
zeros.  To find ``index.json`` in a 2 GB ``docker save`` we read only the
headers, jumping over each member's data to the next header.

This is minirt's one tar reader, used twice: ``read_index`` lists the outer
archive of an image (by pread, without reading the blobs), and
``iter_members`` walks a layer as it streams past (layers.py writes each
member out).  Python's ``tarfile`` is not used: importing it costs ~4.5 ms
(a sixth of ``minirt run``'s start-up budget), and it trusts its input in ways
a layer from the internet must not be trusted -- a negative size, a PAX number
that is not one (``mtime=nan``, ``uid=-1``), a damaged header in the middle
(which tarfile takes for the end of the archive).  Here every field of every
header is checked, and anything odd is a TarFormatError naming its offset.

A name longer than 100 bytes has three spellings, all in use:

- **ustar** (POSIX.1-1988): a 155-byte ``prefix`` field, joined with "/";
- **GNU**: a member of type ``L`` (long name) or ``K`` (long link target)
  just before, whose data is the name;
- **pax** (POSIX.1-2001): a member of type ``x`` just before, whose data holds
  ``"<length> <key>=<value>\\n"`` records; ``path``, ``linkpath``, ``size``,
  ``uid``, ``gid``, ``mtime`` and ``atime`` override the header, and
  ``SCHILY.xattr.*`` carry extended attributes.  Type ``g`` records apply to
  all later members.

Sparse members are refused: the OCI layer specification says they SHOULD NOT
be used, and no image tool writes them.

Read ``iter_members`` first.
"""

import os

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)

# The member types the image readers tell apart; every other one is "other".
_TYPES = {b"0": "file", b"\0": "file", b"7": "file", b"1": "hardlink", b"2": "symlink",
          b"3": "chardev", b"4": "blockdev", b"5": "dir", b"6": "fifo"}
_HAS_DATA = ("file", "other")   # the rest are header-only: a size there is ignored, as Go's tar does
_MAX_ID = (1 << 32) - 2         # uid_t; 2^32-1 is chown's "leave unchanged"
_MAX_NUMBER = (1 << 63) - 1     # base-256 fields may be 95 bits long; none needs more than 63
_OCTAL = b"01234567"


class TarFormatError(ValueError):
    """The file is not a tar, or a damaged one.  ``truncated`` says which."""

    def __init__(self, message: str, truncated: bool = False):
        super().__init__(message)
        self.truncated = truncated


class Member:
    """One member.  ``type`` is file, dir, symlink, hardlink, chardev, blockdev,
    fifo or other (``flag`` is then the header's type byte); ``offset`` is where
    its data starts; times are in nanoseconds; ``pax`` holds its pax records."""

    __slots__ = ("name", "type", "flag", "size", "offset", "linkname", "mode", "uid", "gid",
                 "mtime", "atime", "devmajor", "devminor", "pax")

    def __repr__(self):
        return f"Member({self.name!r}, {self.type!r}, size={self.size}, offset={self.offset})"


def read_index(fd: int) -> list[Member]:
    """The members of the uncompressed tar file open at ``fd``, in order.

    Raises TarFormatError.  Reads with pread, so the file offset is untouched.
    """
    file_size = os.fstat(fd).st_size
    members = []
    for m in iter_members(lambda n, pos: os.pread(fd, n, pos)):
        if m.offset + m.size > file_size:
            raise TarFormatError(f"member {m.name} ends past end of file", truncated=True)
        members.append(m)
    return members


def iter_members(read_at):
    """The members of a tar whose bytes ``read_at(n, pos)`` returns, in order.

    ``pos`` only grows, so ``read_at`` may be a forward-only stream; the
    caller may read a member's data (``size`` bytes at ``offset``) before it
    asks for the next member.  Raises TarFormatError.
    """
    pos = 0
    global_pax: dict[str, str] = {}
    pax: dict[str, str] = {}
    long_name = long_link = None
    while True:
        header = read_at(BLOCK, pos)
        if not header or header == ZERO_BLOCK:
            return  # end of archive: two zero blocks, or (leniently, like tar) end of file
        if len(header) < BLOCK:
            raise TarFormatError(f"header at offset {pos} cut short", truncated=True)
        _check_header(header, pos)
        size = _number(header[124:136], pos, "size")
        kind = header[156:157]
        data = pos + BLOCK
        if kind in (b"x", b"g", b"L", b"K"):  # extensions describing the next member
            body = _read_data(read_at, data, size, pos)
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
        m = Member()
        m.name = pax.get("path") or long_name or _ustar_name(header)
        m.linkname = pax.get("linkpath") or long_link or _text(header[157:257])
        if "\0" in m.name or "\0" in m.linkname:
            raise TarFormatError(f"name with a NUL byte at offset {pos}")
        m.type = _TYPES.get(kind, "other")
        if kind == b"\0" and m.name.endswith("/"):
            m.type = "dir"  # pre-POSIX tar marked directories by a trailing slash
        m.flag = kind.decode("latin-1")
        m.size = _pax_number(pax, "size", pos, size)
        m.offset = data
        m.mode = _number(header[100:108], pos, "mode")
        m.uid = _pax_number(pax, "uid", pos, _number(header[108:116], pos, "uid"))
        m.gid = _pax_number(pax, "gid", pos, _number(header[116:124], pos, "gid"))
        if m.uid > _MAX_ID or m.gid > _MAX_ID:
            raise TarFormatError(f"owner {m.uid}:{m.gid} out of range at offset {pos}")
        m.mtime = _pax_time(pax, "mtime", pos, _number(header[136:148], pos, "mtime") * 1_000_000_000)
        m.atime = _pax_time(pax, "atime", pos, m.mtime)
        m.devmajor = _number(header[329:337], pos, "devmajor")
        m.devminor = _number(header[337:345], pos, "devminor")
        m.pax = pax
        yield m
        pos = data + (_padded(m.size) if m.type in _HAS_DATA else 0)
        pax, long_name, long_link = {}, None, None


def _check_header(header: bytes, pos: int) -> None:
    # The checksum is the sum of the header's bytes with its own field read as
    # spaces.  POSIX sums them unsigned; some old tars summed signed chars.
    stored = _number(header[148:156], pos, "checksum")
    rest = header[:148] + b"        " + header[156:]
    unsigned = sum(rest)
    if stored != unsigned and stored != unsigned - 256 * sum(b >> 7 for b in rest):
        raise TarFormatError(f"bad header checksum at offset {pos}")


def _number(field: bytes, pos: int, what: str = "number") -> int:
    """A numeric header field: octal digits, or (GNU, for big values) base-256.

    Only that: int() would also take a sign, "0o", "_" and non-ASCII digits.
    """
    if field[:1] == b"\x80":
        value = int.from_bytes(field[1:], "big")
        if value <= _MAX_NUMBER:
            return value
    else:
        digits = field.split(b"\0", 1)[0].strip(b" ")
        if not digits.translate(None, _OCTAL):
            return int(digits or b"0", 8)
    raise TarFormatError(f"bad {what} {field!r} in header at offset {pos}")


def _pax_number(pax: dict, key: str, pos: int, default: int) -> int:
    text = pax.get(key)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise TarFormatError(f"bad pax {key} {text!r} at offset {pos}")
    return int(text)


def _pax_time(pax: dict, key: str, pos: int, default: int) -> int:
    """A pax time ("1700000000.25", maybe negative) in nanoseconds, exactly (no float)."""
    text = pax.get(key)
    if text is None:
        return default
    whole, _, fraction = text.removeprefix("-").partition(".")
    if not (whole + fraction).isascii() or not whole.isdigit() or not (fraction.isdigit() or not fraction) \
            or len(whole) > 11:
        raise TarFormatError(f"bad pax {key} {text!r} at offset {pos}")
    ns = int(whole) * 1_000_000_000 + int((fraction + "000000000")[:9])
    return -ns if text.startswith("-") else ns


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


def _read_data(read_at, offset: int, size: int, pos: int) -> bytes:
    if size > 1 << 20:
        raise TarFormatError(f"extended header at offset {pos} is {size} bytes")
    data = read_at(size, offset)
    if len(data) < size:
        raise TarFormatError(f"extended header at offset {pos} cut short", truncated=True)
    return data


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK
