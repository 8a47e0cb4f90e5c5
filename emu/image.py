"""The program image: what the assembler writes and the machine loads.

Lecture idea: "an entire environment can be distributed" -- a VM image is a
file that holds everything a machine needs to start.  Ours is tiny: the bytes
to put in memory, where to start, and the symbol table (so the disassembler and
debugger can speak in names, not numbers).

Layout (all integers little-endian):

  magic     6 bytes  "EMUIMG"
  version   u16      1
  entry     u32      address of the first instruction
  nsegments u32      then per segment: address u32, length u32, bytes
  nsymbols  u32      then per symbol:  value u32, name length u16, name (UTF-8)
  crc32     u32      of everything before it
"""

import struct
import zlib

MAGIC = b"EMUIMG"
VERSION = 1


class ImageError(ValueError):
    """A file that is not a valid image; the message is one line."""


class Image:
    def __init__(self, segments=(), entry=0, symbols=None):
        self.segments = [(addr, bytes(data)) for addr, data in segments]
        self.entry = entry
        self.symbols = dict(symbols or {})

    def to_bytes(self):
        out = bytearray(MAGIC + struct.pack("<HII", VERSION, self.entry, len(self.segments)))
        for addr, data in self.segments:
            out += struct.pack("<II", addr, len(data)) + data
        out += struct.pack("<I", len(self.symbols))
        for name, value in sorted(self.symbols.items(), key=lambda item: (item[1], item[0])):
            encoded = name.encode()
            out += struct.pack("<IH", value & 0xFFFFFFFF, len(encoded)) + encoded
        out += struct.pack("<I", zlib.crc32(out))
        return bytes(out)

    @classmethod
    def from_bytes(cls, blob):
        if not blob.startswith(MAGIC):
            raise ImageError("not an emu image (bad magic)")
        if len(blob) < len(MAGIC) + 14:
            raise ImageError("truncated image")
        body, (crc,) = blob[:-4], struct.unpack("<I", blob[-4:])
        version = struct.unpack_from("<H", blob, len(MAGIC))[0]
        if version != VERSION:
            raise ImageError(f"unsupported image version {version} (this emu reads version {VERSION})")
        if zlib.crc32(body) != crc:
            raise ImageError("checksum mismatch: the image is corrupt or truncated")
        try:
            pos = len(MAGIC) + 2
            entry, count = struct.unpack_from("<II", body, pos)
            pos += 8
            segments = []
            for _ in range(count):
                addr, length = struct.unpack_from("<II", body, pos)
                pos += 8
                if pos + length > len(body):
                    raise ImageError("segment runs past the end of the image")
                segments.append((addr, body[pos:pos + length]))
                pos += length
            (count,) = struct.unpack_from("<I", body, pos)
            pos += 4
            symbols = {}
            for _ in range(count):
                value, length = struct.unpack_from("<IH", body, pos)
                pos += 6
                symbols[body[pos:pos + length].decode()] = value
                pos += length
        except (struct.error, UnicodeDecodeError) as e:
            raise ImageError(f"malformed image: {e}") from None
        if pos != len(body):
            raise ImageError("malformed image: trailing bytes")
        return cls(segments, entry, symbols)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def read(cls, path):
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def symbol_for(self, addr):
        """The name of a label at `addr`, preferring one that does not start
        with a dot (local labels) or an underscore."""
        names = sorted((n for n, v in self.symbols.items() if v == addr),
                       key=lambda n: (n.startswith((".", "_")), n))
        return names[0] if names else None
