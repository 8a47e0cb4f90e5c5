"""mkfs: build a bootable toyos disk image.

Lecture idea: "an entire environment can be distributed" -- a virtual
machine's disk is one file holding the boot code, the operating system and
its files.  This tool writes such a file for the guest OS in
``emu/guest/os``: it assembles the boot sector, the kernel and the user
programs with emu's own assembler and lays them out in toyos's tiny
read-only file system.  The layout is defined once, in
``emu/guest/os/layout.s``, which the kernel includes and this tool reads::

    sector 0        boot sector, ending in 55 aa
    sector 1        superblock: magic, directory and kernel locations
    sectors 2..3    directory: 32-byte entries (name, first sector, size)
    then            the files, each in consecutive sectors

Usage::

    python -m emu.mkfs images/toyos.img            # the standard toyos
    python -m emu.mkfs disk.img --boot B.s --kernel K.s prog.s notes.txt ...

A ``.s`` file becomes a program named after it (``user/hello.s`` -> ``hello``),
assembled to run at USER_BASE; any other file is copied as it is.
"""

import argparse
import os
import struct
import sys

from .asm import AsmError, Assembler

OS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest", "os")
LAYOUT = os.path.join(OS_DIR, "layout.s")


class MkfsError(Exception):
    """Reported as one line, `mkfs: <message>`."""


def layout(path=LAYOUT):
    """The constants of layout.s, evaluated by the assembler itself."""
    assembler = Assembler()
    assembler.assemble_file(path)
    return {name: assembler._lookup(name, 0) for name in assembler.constants}


def flat(path, base):
    """Assemble `path` into the bytes to place at `base`; it must start
    executing at its first byte."""
    image = Assembler().assemble_file(path)
    if not image.segments:
        raise MkfsError(f"{path}: assembles to nothing")
    if image.entry != base or image.segments[0][0] != base:
        raise MkfsError(f"{path}: must start at {base:#x} and begin with its entry point "
                        f"(entry is {image.entry:#x})")
    end = max(addr + len(data) for addr, data in image.segments)
    out = bytearray(end - base)
    for addr, data in image.segments:
        out[addr - base:addr - base + len(data)] = data
    return bytes(out)


def build(output, boot, kernel, files):
    """Write a disk image to `output`; returns the directory as (name, sector, size)."""
    c = layout()
    sector = c["SECTOR"]
    boot_code = flat(boot, c["BOOT_BASE"])
    if len(boot_code) > sector - 2:
        raise MkfsError(f"{boot}: the boot sector is {len(boot_code)} bytes, at most {sector - 2} fit")
    kernel_code = flat(kernel, c["KERNEL_BASE"])
    if c["KERNEL_BASE"] + len(kernel_code) > c["KERNEL_PT"]:
        raise MkfsError(f"{kernel}: the kernel runs into its page table at {c['KERNEL_PT']:#x}")
    contents = [("kernel", kernel_code)]
    for path in files:
        name, ext = os.path.splitext(os.path.basename(path))
        if ext == ".s":
            data = flat(path, c["USER_BASE"])
            if len(data) > c["USER_SIZE"] - c["ARG_SIZE"]:
                raise MkfsError(f"{path}: {len(data)} bytes, too big for a process")
        else:
            name += ext
            with open(path, "rb") as f:
                data = f.read()
        contents.append((name, data))

    names = ["."] + [name for name, _ in contents]
    if len(names) > c["NDIRENT"]:
        raise MkfsError(f"{len(names)} files; the directory holds {c['NDIRENT']}")
    for name in names:
        if not 0 < len(name.encode()) < c["NAME_MAX"]:
            raise MkfsError(f"{name!r}: a name must have 1 to {c['NAME_MAX'] - 1} bytes")
    if len(set(names)) != len(names):
        raise MkfsError("two files with the same name")

    dir_start, dir_sectors = 2, c["DIR_SECTORS"]
    next_sector = dir_start + dir_sectors
    entries = [(".", dir_start, c["NDIRENT"] * c["DIRENT"])]
    blobs = []
    for name, data in contents:
        entries.append((name, next_sector, len(data)))
        blobs.append((next_sector, data))
        next_sector += -(-len(data) // sector)

    disk = bytearray(max(next_sector, dir_start + dir_sectors) * sector)
    disk[:len(boot_code)] = boot_code
    disk[sector - 2:sector] = b"\x55\xaa"
    kernel_entry = entries[1]
    struct.pack_into("<5I", disk, sector, c["FS_MAGIC"], dir_start, dir_sectors,
                     kernel_entry[1], -(-kernel_entry[2] // sector))
    for i, (name, start, size) in enumerate(entries):
        at = dir_start * sector + i * c["DIRENT"]
        disk[at:at + c["DIRENT"]] = struct.pack(f"<{c['NAME_MAX']}sII", name.encode(), start, size)
    for start, data in blobs:
        disk[start * sector:start * sector + len(data)] = data
    tmp = f"{output}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(disk)
    os.replace(tmp, output)
    return entries


def toyos_files():
    """The standard toyos: its user programs and text files."""
    user = os.path.join(OS_DIR, "user")
    programs = sorted(os.path.join(user, n) for n in os.listdir(user)
                      if n.endswith(".s") and n != "ulib.s")
    texts = os.path.join(OS_DIR, "files")
    return programs + sorted(os.path.join(texts, n) for n in os.listdir(texts))


def build_toyos(output):
    return build(output, os.path.join(OS_DIR, "boot.s"), os.path.join(OS_DIR, "kernel.s"),
                 toyos_files())


DESCRIPTION = "Build a bootable toyos disk image."


def add_arguments(parser):
    """mkfs's options, on its own parser or on `emu mkfs`."""
    parser.add_argument("output", help="the disk image to write")
    parser.add_argument("files", nargs="*", help="programs (.s) and files to put on it "
                        "(default: toyos's own, from emu/guest/os/user and files)")
    parser.add_argument("--boot", default=os.path.join(OS_DIR, "boot.s"), help="boot sector source")
    parser.add_argument("--kernel", default=os.path.join(OS_DIR, "kernel.s"), help="kernel source")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not list the files")


def run(args):
    try:
        entries = build(args.output, args.boot, args.kernel, args.files or toyos_files())
    except (MkfsError, AsmError) as e:
        print(f"mkfs: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"mkfs: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    if not args.quiet:
        size = os.path.getsize(args.output)
        print(f"{args.output}: {size // 1024} KiB, {len(entries)} files")
        for name, start, length in entries:
            print(f"  {name:<12} sector {start:<4} {length:6} bytes")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="emu mkfs", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
