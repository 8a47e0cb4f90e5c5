"""The test VM's initramfs: a newc cpio archive (the format the kernel unpacks
into its first root filesystem), written here so nothing but this script and
init.sh is committed and no cpio tool is needed.

It holds a static busybox, /init (init.sh) and the modules stage 1 loads, in
dependency order (01-virtio.ko, 02-...), taken from the extracted kernel package.
"""

import gzip
import os
import stat

TRAILER = "TRAILER!!!"


class Newc:
    """Entries of a newc archive: header, name and data, each padded to 4 bytes."""

    def __init__(self):
        self.chunks = []
        self.ino = 0

    def add(self, name, mode, data=b"", rdev=(0, 0)):
        self.ino += 1
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.chunks += [header, encoded, _pad(len(header) + len(encoded)), data, _pad(len(data))]

    def directory(self, name):
        self.add(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o644):
        self.add(name, stat.S_IFREG | mode, data)

    def char_device(self, name, major, minor):
        self.add(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def bytes(self):
        self.add(TRAILER, 0)
        return b"".join(self.chunks)


def _pad(n):
    return b"\0" * (-n % 4)


def build(init_script, busybox, modules):
    """The gzip-compressed archive: /init, /bin/busybox, /modules/NN-name.ko."""
    archive = Newc()
    for d in ("bin", "dev", "proc", "sys", "modules"):
        archive.directory(d)
    archive.char_device("dev/console", 5, 1)  # init's stdio, before devtmpfs is mounted
    archive.file("init", _read(init_script), 0o755)
    archive.file("bin/busybox", _read(busybox), 0o755)
    for i, path in enumerate(modules, 1):
        archive.file(f"modules/{i:02d}-{os.path.basename(path)}", _read(path))
    return gzip.compress(archive.bytes(), compresslevel=1)


def _read(path):
    with open(path, "rb") as f:
        return f.read()
