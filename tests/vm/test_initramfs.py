"""The test VM's initramfs (``make test-vm`` boots it; this needs no VM): what
initramfs.py writes must be an archive another newc reader, busybox's cpio,
unpacks to exactly the files that went in."""

import gzip
import importlib.util
import stat
import subprocess
from pathlib import Path

_spec = importlib.util.spec_from_file_location("initramfs", Path(__file__).with_name("initramfs.py"))
initramfs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(initramfs)


def test_busybox_cpio_unpacks_the_initramfs_as_built(tmp_path):
    init = tmp_path / "init.sh"
    init.write_text("#!/bin/busybox sh\necho stage 1\n")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(bytes(range(256)) * 16 + b"x")  # an odd size: the data is padded
    modules = []
    for name in ("virtio.ko", "9p.ko"):
        modules.append(tmp_path / name)
        modules[-1].write_bytes(name.encode() * 3)

    archive = gzip.decompress(initramfs.build(init, busybox, modules))
    listing = subprocess.run(["busybox", "cpio", "-t", "-v"], input=archive,
                             capture_output=True, check=True).stdout.decode().splitlines()
    assert [(line.split()[0], line.split()[-1]) for line in listing] == [
        ("drwxr-xr-x", "bin"), ("drwxr-xr-x", "dev"), ("drwxr-xr-x", "proc"), ("drwxr-xr-x", "sys"),
        ("drwxr-xr-x", "modules"), ("crw-------", "dev/console"), ("-rwxr-xr-x", "init"),
        ("-rwxr-xr-x", "bin/busybox"), ("-rw-r--r--", "modules/01-virtio.ko"),
        ("-rw-r--r--", "modules/02-9p.ko")]

    out = tmp_path / "out"
    out.mkdir()
    files = ["init", "bin/busybox", "modules/01-virtio.ko", "modules/02-9p.ko"]
    subprocess.run(["busybox", "cpio", "-i", "-d", *files], input=archive, cwd=out, capture_output=True,
                   check=True)
    assert (out / "init").read_bytes() == init.read_bytes()
    assert (out / "bin/busybox").read_bytes() == busybox.read_bytes()
    assert [(out / f"modules/{n}").read_bytes() for n in ("01-virtio.ko", "02-9p.ko")] == [
        b"virtio.ko" * 3, b"9p.ko" * 3]


def test_the_console_node_is_character_device_5_1():
    archive = gzip.decompress(initramfs.build(__file__, __file__, []))
    name = archive.index(b"dev/console\0")
    header = archive[name - 110:name]  # newc: "070701", then 13 hex fields of 8
    fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
    assert header[:6] == b"070701" and stat.S_ISCHR(fields[1]) and fields[9:11] == [5, 1]
