"""The test VM's kernel: Debian's stable one (the package linux-image-amd64
depends on), fetched with apt-get download and unpacked into the project's
cache, never installed on the host.  `make install` runs this, so CI needs only
the package registries.

    python3 tests/vm/kernel.py [CACHE]   fetch if missing; print the directory
"""

import glob
import os
import shutil
import subprocess
import sys

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Resolved: the guest bind-mounts paths under it, and a symlink (a worktree
# sharing its main tree's cache) would point into the guest's initramfs.
CACHE = os.path.realpath(os.path.join(PROJECT, ".cache", "vm"))


class Kernel:
    """An unpacked kernel package: vmlinuz, its version and its modules."""

    def __init__(self, root):
        self.root = root
        self.vmlinuz = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))[0]
        self.version = os.path.basename(self.vmlinuz).removeprefix("vmlinuz-")
        self.modules = os.path.join(root, "lib", "modules", self.version)

    def with_dependencies(self, names):
        """The .ko files that load `names`, dependencies first, each once."""
        out = subprocess.run(["modprobe", "-d", self.root, "-S", self.version, "--show-depends", "-a", *names],
                             check=True, capture_output=True, text=True).stdout
        paths = [line.split()[1] for line in out.splitlines() if line.startswith("insmod ")]
        return list(dict.fromkeys(paths))


def package():
    """The versioned package behind the linux-image-amd64 metapackage."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"],
                         check=True, capture_output=True, text=True).stdout
    return next(w.split()[1] for w in out.splitlines() if w.strip().startswith("Depends: linux-image-"))


def fetch(cache=CACHE):
    name = package()
    root = os.path.join(cache, name)
    if not os.path.exists(os.path.join(root, ".complete")):
        for old in glob.glob(os.path.join(cache, "*")):
            shutil.rmtree(old)
        os.makedirs(root)
        subprocess.run(["apt-get", "download", "-q", name], cwd=cache, check=True)
        deb, = glob.glob(os.path.join(cache, name + "_*.deb"))
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        os.unlink(deb)
        kernel = Kernel(root)
        # The package's postinst would run depmod; modprobe needs its modules.dep.
        subprocess.run(["depmod", "-b", root, kernel.version], check=True)
        open(os.path.join(root, ".complete"), "w").close()
    return Kernel(root)


if __name__ == "__main__":
    print(fetch(*sys.argv[1:]).root)
