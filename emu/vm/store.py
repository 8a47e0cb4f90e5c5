"""The home of a host's virtual machines: definitions on disk, locks, states.

Lecture idea: in VirtualBox a virtual machine is first of all a *definition*
-- memory, disks, a name -- kept in files, that exists whether or not it
runs; "defining, launching, stopping, checkpointing" are changes to those
files.  This module is that registry, as ``VBoxManage`` keeps it under
``~/VirtualBox VMs``:

  HOME/defs.lock        flock: held while any definition changes (briefly,
                        never while waiting for another process)
  HOME/host.lock        flock: held by the host process for its whole life;
                        it holds the host's id
  HOME/spawn.lock       flock: starting the host, talking to it, and the
                        host's exit when idle, one at a time
  HOME/images/          shared base images (toyos.img)
  HOME/vms/NAME/vm.json the definition (written beside and renamed into place)
  HOME/vms/NAME/...     its program, its own disks, saved state, snapshots,
                        console.log (and console.log.1: consolelog.py)

A definition's ``state`` is poweroff, saved, running, paused or aborted, and
a running or paused one names the host running it.  Whether that host still
lives is judged by its lock, not by a pid (a pid is reused; a lock dies with
its process): a running VM whose host is gone is ``aborted``, whatever the
file says, so ``list`` tells the truth after any crash without writing.
"""

import contextlib
import fcntl
import json
import os
import re

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
STATES = ("poweroff", "saved", "running", "paused", "aborted")
LIVE = ("running", "paused")


class VMError(Exception):
    """Reported as one line, `emu: <message>`; nothing was changed."""


def default_home():
    home = os.environ.get("EMU_HOME")
    if home:
        return home
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "emu")


def check_name(name, what="VM"):
    if not NAME.match(name):
        raise VMError(f"{what} name {name!r}: use letters, digits, '.', '_' and '-' "
                      "(up to 64, not starting with a punctuation mark)")
    return name


def write_json(path, value):
    """Write `value` to `path` whole or not at all: beside it, then rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def flock(path, mode=fcntl.LOCK_EX):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)


class Home:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        try:
            os.makedirs(os.path.join(self.path, "vms"), mode=0o700, exist_ok=True)
        except OSError as e:
            raise VMError(f"{self.path}: cannot use as the VM home: {e.strerror}") from None

    def file(self, *parts):
        return os.path.join(self.path, *parts)

    def vm_dir(self, name):
        return self.file("vms", name)

    def locked(self):
        """Hold this while reading a definition in order to change it."""
        return flock(self.file("defs.lock"))

    # -- definitions -------------------------------------------------------------

    def names(self):
        return sorted(name for name in os.listdir(self.file("vms"))
                      if os.path.isfile(os.path.join(self.vm_dir(name), "vm.json")))

    def read(self, name):
        """The definition of VM `name`, its state corrected for a dead host."""
        check_name(name)
        try:
            with open(os.path.join(self.vm_dir(name), "vm.json")) as f:
                vm = json.load(f)
        except FileNotFoundError:
            raise VMError(f"vm {name}: no such VM (emu vm list shows them)") from None
        except (OSError, ValueError) as e:
            raise VMError(f"vm {name}: unreadable definition: {e}") from None
        if vm["state"] in LIVE and vm.get("host") != self.host_id():
            vm["state"] = "aborted"
        return vm

    def write(self, vm):
        """Write a definition (the caller holds `locked()`)."""
        write_json(os.path.join(self.vm_dir(vm["name"]), "vm.json"), vm)

    def update(self, name, **changes):
        with self.locked():
            vm = self.read(name)
            vm.update(changes)
            self.write(vm)
            return vm

    def path_of(self, name, ref):
        """A file a definition names: relative to the VM's directory."""
        return None if ref is None else os.path.normpath(os.path.join(self.vm_dir(name), ref))

    def ref_to(self, name, path):
        return os.path.relpath(path, self.vm_dir(name))

    # -- the host process --------------------------------------------------------

    def host_id(self):
        """The id of the live host process of this home, or None.  A host
        holds host.lock for its life: if we can take it, no host lives."""
        try:
            fd = os.open(self.file("host.lock"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            return os.pread(fd, 64, 0).decode() or None
        finally:
            os.close(fd)

    def socket_name(self):
        """The host's control socket: in the abstract namespace, so that it
        goes with the process, even one killed by SIGKILL (nothing is left
        behind), and has no path-length limit; named after the home's inode."""
        st = os.stat(self.path)
        return f"\0emu-vm-host-{st.st_dev:x}-{st.st_ino:x}"
