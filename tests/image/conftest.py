"""Helpers for the image tests: hand-made layer tars and images built from them.

Layers are written member by member with tarfile, so a test can say exactly
what a (possibly hostile) layer contains.
"""

import io
import os
import tarfile
from pathlib import Path

import pytest

from minirt.image import Store, open_image
from minirt.image.write import write_image


class Members:
    """Members of a layer tar, by kind."""

    @staticmethod
    def info(name, type=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, mtime=1_000_000,
             xattrs=None, linkname=""):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = type, mode, uid, gid, mtime, linkname
        for k, v in (xattrs or {}).items():
            ti.pax_headers["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
        return ti

    @classmethod
    def file(cls, name, data=b"", **kw):
        ti = cls.info(name, **kw)
        ti.size = len(data)
        return ti, data

    @classmethod
    def dir(cls, name, mode=0o755, **kw):
        return cls.info(name, tarfile.DIRTYPE, mode=mode, **kw), None

    @classmethod
    def sym(cls, name, target, **kw):
        return cls.info(name, tarfile.SYMTYPE, mode=0o777, linkname=target, **kw), None

    @classmethod
    def link(cls, name, target, **kw):
        return cls.info(name, tarfile.LNKTYPE, linkname=target, **kw), None

    @classmethod
    def dev(cls, name, kind="c", major=1, minor=3, **kw):
        ti = cls.info(name, tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE, mode=0o666, **kw)
        ti.devmajor, ti.devminor = major, minor
        return ti, None

    @classmethod
    def fifo(cls, name, **kw):
        return cls.info(name, tarfile.FIFOTYPE, **kw), None


class RawTar:
    """Tar bytes written field by field, so that any field can be wrong."""

    FIELDS = {"name": (0, 100), "mode": (100, 108), "uid": (108, 116), "gid": (116, 124),
              "size": (124, 136), "mtime": (136, 148), "type": (156, 157), "linkname": (157, 257),
              "magic": (257, 265), "devmajor": (329, 337), "devminor": (337, 345)}

    @classmethod
    def member(cls, name, type=b"0", data=b"", **fields) -> bytes:
        """A header (fields given as bytes, raw) and its padded data."""
        values = {"name": name.encode(), "mode": b"0000644\0", "uid": b"0000000\0", "gid": b"0000000\0",
                  "size": b"%011o\0" % len(data), "mtime": b"00000000000\0", "type": type,
                  "magic": b"ustar\x0000", **fields}
        header = bytearray(512)
        for key, value in values.items():
            start, end = cls.FIELDS[key]
            header[start:start + len(value)] = value[:end - start]
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % sum(header)
        return bytes(header) + data + bytes(-len(data) % 512)

    @classmethod
    def pax(cls, records: dict, type=b"x") -> bytes:
        """A pax extended header ("x", or "g" for global) holding ``records``."""
        body = b""
        for key, value in records.items():
            text = b" %s=%s\n" % (key.encode(), value if isinstance(value, bytes) else value.encode())
            n = len(text) + len(str(len(text)))
            n += len(str(n)) - len(str(len(text)))
            body += b"%d" % n + text
        return cls.member("pax", type, body)

    @staticmethod
    def tar(*members) -> bytes:
        return b"".join(members) + bytes(1024)


@pytest.fixture(name="R")
def _raw():
    return RawTar


def layer(*members) -> bytes:
    """The bytes of an uncompressed layer tar holding ``members``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.fixture(name="T")
def _members():
    return Members


@pytest.fixture
def make_layer():
    return layer


@pytest.fixture
def image(tmp_path):
    """image(*layers, form=..., compression=...) -> path of an image holding them."""
    count = iter(range(1000))

    def make(*layers, form="oci-layout", compression=None, config=None, **kw):
        n = next(count)
        out = tmp_path / f"img{n}" if form == "oci-layout" else tmp_path / f"img{n}.tar"
        return write_image(out, list(layers), form=form, compression=compression,
                           config=config or {"Cmd": ["sh"]}, **kw)

    return make


@pytest.fixture
def unpack(tmp_path):
    """unpack(image_path, rootless=False) -> list of layer dirs in a store under tmp_path/root.

    The store returns str paths; the tests get Paths, to join and compare.
    """

    def run(path, rootless=False, root=None, id_map=None):
        store = Store(root or tmp_path / "root", rootless=rootless, id_map=id_map)
        with open_image(path) as img:
            dirs = store.unpack(img)
        assert all(type(d) is str for d in dirs)
        return [Path(d) for d in dirs]

    return run


def tree(root) -> dict:
    """A comparable picture of a tree: path -> (type, mode, uid, gid, target or content, mtime)."""
    out = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            kind = st.st_mode & 0o170000
            if os.path.islink(p):
                extra = os.readlink(p)
            elif os.path.isfile(p):
                extra = Path(p).read_bytes()
            elif kind in (0o020000, 0o060000):
                extra = st.st_rdev
            else:
                extra = None
            out[os.path.relpath(p, root)] = (kind, st.st_mode & 0o7777, st.st_uid, st.st_gid,
                                             extra, st.st_mtime_ns)
    return out


@pytest.fixture
def snapshot():
    return tree


def two_platform_layout(path):
    """An OCI layout at ``path`` whose image ``1`` is an index of two images,
    linux/amd64 and linux/arm64 (each ``cat /arch``s its name; skopeo reads one
    image from a layout: index.json names the index).  Returns the two manifests'
    descriptors and the index's."""
    from minirt.image.formats import OCI_INDEX
    from minirt.image.write import Layout

    layout = Layout(path)
    descs = []
    for arch in ("amd64", "arm64"):
        tree = Path(f"{path}-{arch}")
        tree.mkdir()
        (tree / "arch").write_text(arch)
        m, _ = layout.add_image([layout.add_layer(tree, "gzip")], {"Cmd": ["cat", "/arch"]},
                                platform=("linux", arch), index=False)
        descs.append(m)
    inner = layout.add_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs}, OCI_INDEX)
    inner["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    layout.write_index([inner])
    return descs, inner


@pytest.fixture
def two_platforms():
    return two_platform_layout
