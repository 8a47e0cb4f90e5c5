"""A VM's console log: the guest's latest output, in bounded space.

Lecture idea: many VMs share one host's "memory, disk, network bandwidth",
and a guest that prints for ever must not fill the host's disk.  The log is
rotated as Docker's json-file driver does it with ``max-size`` and
``max-file=2``: output goes to ``console.log``; once that holds MAX_SIZE
bytes it is renamed ``console.log.1`` (replacing the one before) and a new
``console.log`` begins.  So a VM's logs never take much more than
2 x MAX_SIZE bytes, and the last MAX_SIZE bytes the guest wrote, at least,
are always there: ``console.log.1`` then ``console.log``, in order.
"""

import os

MAX_SIZE = 1 << 20          # bytes in console.log before it is rotated


class ConsoleLog:
    """A file-like log at `path` (appended to), rotated at MAX_SIZE."""

    def __init__(self, path):
        self.path = path
        self.file = open(path, "ab")
        self.size = self.file.tell()

    def write(self, data):
        self.file.write(data)
        self.size += len(data)
        if self.size >= MAX_SIZE:
            self.file.close()
            os.replace(self.path, self.path + ".1")
            self.file = open(self.path, "ab")
            self.size = 0

    def flush(self):
        self.file.flush()

    def close(self):
        self.file.close()
