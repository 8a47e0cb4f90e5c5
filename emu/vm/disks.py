"""A VM's disks: its own overlays, frozen layers, linked and full copies.

Lecture idea: VMs share "memory, disk, network bandwidth", and "checkpoint
files can be huge".  A VM never copies a disk to checkpoint or clone it: its
current disk is *frozen* (never written again) and a new, empty qcow2
overlay on it becomes the VM's disk.  A snapshot keeps the frozen layer; a
linked clone gets an overlay of its own on the same frozen layer, so parent
and clone share every byte they have not written (as VirtualBox's
differencing images).  Deleting a snapshot merges its layer into the one
disk built on it (``qcow2.stream``, in ``manage.delete``), so a chain does
not grow for ever.  Disks emu makes for a VM live in the VM's directory,
named ``disk-N.qcow2``; a disk given with ``--disk`` stays where it is.
"""

import os

from .. import qcow2


def new_overlay(directory, backing):
    """An empty overlay on `backing`, in `directory`, under a fresh name."""
    n = 0
    while os.path.exists(path := os.path.join(directory, f"disk-{n}.qcow2")):
        n += 1
    qcow2.create(path, backing=os.path.abspath(backing))
    return path


def freeze(directory, disk):
    """Freeze `disk` (a path); returns the overlay that replaces it."""
    return new_overlay(directory, disk)


def full_copy(source, path):
    """A raw copy of what `source` (a whole backing chain) holds."""
    image = qcow2.open_image(source, readonly=True)
    try:
        with open(path, "xb") as f:
            for offset in range(0, image.size, 1 << 20):
                f.write(image.read(offset, min(1 << 20, image.size - offset)))
    finally:
        image.close()
    return path


def chain_paths(path):
    """Every file `path`'s disk reads: itself and its backing files."""
    image = qcow2.open_image(path, readonly=True)
    try:
        return [os.path.abspath(layer.path) for layer in qcow2.chain(image)]
    finally:
        image.close()
