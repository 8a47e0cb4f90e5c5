"""Defining VMs: create, modify, remove, clone, and snapshots of stopped ones.

Lecture idea: VirtualBox's "defining" step -- a VM is a definition before it
is a running machine.  Everything here changes files in the home
(``store.py``) under its lock, and checks everything before it changes
anything, so bad input changes nothing.  What touches a running machine is
the host's (``host.py``).
"""

import os
import shutil
import time

from .. import mkfs, qcow2
from ..devices.disk import Disk, DiskError
from ..isa import MMIO_BASE, PAGE_SIZE
from ..vmm import MAX_MEMORY
from . import disks
from .store import LIVE, VMError, check_name, write_json

TOYOS = "toyos"             # --image toyos: an overlay on the home's toyos disk


def check_memory(size, virtualization="none"):
    if not PAGE_SIZE <= size <= MMIO_BASE or size % PAGE_SIZE:
        raise VMError(f"--memory {size}: must be a multiple of {PAGE_SIZE} "
                      f"between {PAGE_SIZE} and {MMIO_BASE:#x} bytes")
    if virtualization != "none" and size > MAX_MEMORY:
        # The monitor keeps its page tables above the guest's RAM.
        raise VMError(f"--memory {size}: at most {MAX_MEMORY:#x} bytes under the monitor "
                      f"(--virtualization {virtualization})")
    return size


def check_share(share):
    if not 1 <= share <= 1000:
        raise VMError(f"--cpu-share {share}: must be between 1 and 1000")
    return share


def check_disk(path):
    """A disk image the disk device can open (raw or qcow2, whole sectors)."""
    try:
        Disk(path, readonly=True).image.close()
    except DiskError as e:
        raise VMError(f"--disk {e}") from None
    return os.path.abspath(path)


def create(home, name, memory, disk=None, program=None, share=1, virtualization="none"):
    """Define VM `name`.  `program` is an assembled Image to load, or
    TOYOS; without one the VM boots its disk.  `virtualization`: how it
    runs (emu.vmm.VIRTUALIZATION)."""
    check_name(name)
    check_memory(memory, virtualization)
    check_share(share)
    if disk is not None:
        disk = check_disk(disk)
    if program is None and disk is None:
        raise VMError(f"vm {name}: nothing to run: give --disk IMAGE or --image PROGRAM|toyos")
    if program == TOYOS and disk is not None:
        raise VMError(f"vm {name}: --image toyos brings its own disk; --disk is for a program or a disk to boot")
    directory = home.vm_dir(name)
    with home.locked():
        if os.path.exists(directory):
            raise VMError(f"vm {name}: already exists")
        tmp = home.file("vms", f".new-{name}-{os.getpid()}")
        os.mkdir(tmp, 0o700)
        try:
            vm = {"name": name, "memory": memory, "cpu_share": share, "program": None, "disk": None,
                  "virtualization": virtualization,
                  "state": "poweroff", "host": None, "reason": None, "exit_status": None,
                  "created": time.time(), "snapshots": {}}
            if program == TOYOS:
                base = _toyos(home)
                disk = disks.new_overlay(tmp, base)
            elif program is not None:
                with open(os.path.join(tmp, "program.img"), "wb") as f:
                    f.write(program.to_bytes())
                vm["program"] = "program.img"
            if disk is not None:
                # Relative to the VM's directory, whose final name is the same depth as tmp.
                vm["disk"] = os.path.relpath(disk, tmp)
            write_json(os.path.join(tmp, "vm.json"), vm)
            os.rename(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return vm


def _toyos(home):
    """The home's toyos disk, built once; VMs use it through overlays only."""
    path = home.file("images", "toyos.img")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        mkfs.build_toyos(tmp)
        os.chmod(tmp, 0o444)              # a shared base never changes
        os.replace(tmp, path)
    return path


def stopped(home, name, doing):
    """The definition of `name`, which must not be running (caller holds the lock)."""
    vm = home.read(name)
    if vm["state"] in LIVE:
        raise VMError(f"vm {name}: is {vm['state']}; {doing} needs it powered off "
                      f"(emu vm poweroff {name})")
    return vm


def modify(home, name, memory=None, share=None, disk=None, virtualization=None):
    """Change a stopped VM's definition.  A saved state is a bare machine's
    (emu/vmm/monitor.py), so the virtualization may change under it."""
    if memory is not None:
        check_memory(memory, virtualization or "none")
    if share is not None:
        check_share(share)
    if disk is not None:
        disk = check_disk(disk)
    with home.locked():
        vm = stopped(home, name, "modify")
        if vm["state"] == "saved" and (memory is not None or disk is not None):
            raise VMError(f"vm {name}: has a saved state for its present memory and disk; "
                          f"start it, or discard the state first (emu vm discardstate {name})")
        if memory is not None:
            vm["memory"] = memory
        if virtualization is not None:
            check_memory(vm["memory"], virtualization)
            vm["virtualization"] = virtualization
        if share is not None:
            vm["cpu_share"] = share
        if disk is not None:
            vm["disk"] = home.ref_to(name, disk)
        home.write(vm)
    return vm


def discard(home, name):
    """Forget a saved state: the VM boots afresh next time."""
    with home.locked():
        vm = stopped(home, name, "discard")
        if vm["state"] != "saved":
            raise VMError(f"vm {name}: has no saved state (it is {vm['state']})")
        os.unlink(os.path.join(home.vm_dir(name), "saved.snap"))
        vm["state"] = "poweroff"
        home.write(vm)


def _chains(home, but=(None, None)):
    """(VM, whose, chain) for every disk of the home: each VM's present disk
    (whose: None) and its snapshots' (whose: the snapshot); a chain is its
    files, top first.  `but`: a (VM, snapshot) left out."""
    for name in home.names():
        vm = home.read(name)
        disks_of = [(None, vm["disk"])] + [(snap, s["disk"]) for snap, s in vm["snapshots"].items()]
        for whose, ref in disks_of:
            if ref is None or (name, whose) == but:
                continue
            try:
                yield name, whose, disks.chain_paths(home.path_of(name, ref))
            except (OSError, qcow2.ImageError):
                continue                  # a broken disk holds nothing of anyone's


def used_by_others(home, name):
    """{file: VM} of every disk file another VM's disks (and snapshots) read."""
    return {path: other for other, _, chain in _chains(home) if other != name for path in chain}


def remove(home, name, delete_disks=False):
    with home.locked():
        vm = stopped(home, name, "rm")
        directory = home.vm_dir(name)
        disk = home.path_of(name, vm["disk"])
        external = []
        if delete_disks and disk is not None:
            external = [p for p in disks.chain_paths(disk) if not p.startswith(home.path + os.sep)]
        for path, other in used_by_others(home, name).items():
            if os.path.dirname(path) == directory or path in external:
                raise VMError(f"vm {name}: its disk {os.path.basename(path)} is the base of "
                              f"vm {other}'s disk; remove {other} first")
        # Renamed away first: the name is free at once, and a crash halfway leaves a
        # hidden directory, never half a VM.
        trash = home.file("vms", f".rm-{name}-{os.getpid()}")
        os.rename(directory, trash)
    shutil.rmtree(trash)
    for path in external:
        os.unlink(path)


def clone(home, name, new, linked=False):
    """A new VM with `name`'s definition and a disk of its own: a full
    copy, or (`linked`) an overlay on `name`'s disk, frozen for both."""
    check_name(new)
    with home.locked():
        vm = stopped(home, name, "clone")
        directory = home.vm_dir(new)
        if os.path.exists(directory):
            raise VMError(f"vm {new}: already exists")
        tmp = home.file("vms", f".new-{new}-{os.getpid()}")
        os.mkdir(tmp, 0o700)
        try:
            copy = {**vm, "name": new, "state": "poweroff", "host": None, "reason": None,
                    "exit_status": None, "created": time.time(), "snapshots": {}}
            if vm["program"] is not None:
                shutil.copyfile(home.path_of(name, vm["program"]), os.path.join(tmp, "program.img"))
            disk = home.path_of(name, vm["disk"])
            if disk is not None and linked:
                vm["disk"] = home.ref_to(name, disks.freeze(home.vm_dir(name), disk))
                copy["disk"] = os.path.relpath(disks.new_overlay(tmp, disk), tmp)
            elif disk is not None:
                copy["disk"] = os.path.relpath(disks.full_copy(disk, os.path.join(tmp, "disk.img")), tmp)
            write_json(os.path.join(tmp, "vm.json"), copy)
            os.rename(tmp, directory)
            home.write(vm)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return copy


# -- snapshots of a VM that is not running (a running one's are the host's) ------------

def snapshot_path(home, name, snap):
    """Beside saved.snap, which a restore links to it: the disk a snapshot
    names, relative to itself, is found from either."""
    return os.path.join(home.vm_dir(name), f"snapshot-{check_name(snap, 'snapshot')}.snap")


def take(home, name, snap):
    """Freeze the disk; keep the saved state, if there is one."""
    with home.locked():
        vm = stopped(home, name, "an offline snapshot")
        if snap in vm["snapshots"]:
            raise VMError(f"vm {name}: snapshot {snap} already exists")
        path = snapshot_path(home, name, snap)
        state = None
        if vm["state"] == "saved":
            os.link(os.path.join(home.vm_dir(name), "saved.snap"), path)   # never written in place
            state = os.path.basename(path)
        disk = home.path_of(name, vm["disk"])
        if disk is not None:
            vm["disk"] = home.ref_to(name, disks.freeze(home.vm_dir(name), disk))
        vm["snapshots"][snap] = {"state": state, "taken": time.time(),
                                 "disk": None if disk is None else home.ref_to(name, disk)}
        home.write(vm)


def restore(home, name, snap):
    """Go back to `snap`: a new overlay on its disk; its state becomes the saved state."""
    with home.locked():
        vm = stopped(home, name, "snapshot restore")
        taken = _snapshot(vm, snap)
        directory = home.vm_dir(name)
        saved = os.path.join(directory, "saved.snap")
        if os.path.exists(saved):
            os.unlink(saved)
        if taken["state"] is not None:
            os.link(os.path.join(directory, taken["state"]), saved)
        if taken["disk"] is not None:
            current = home.path_of(name, vm["disk"])
            vm["disk"] = home.ref_to(name, disks.new_overlay(directory, home.path_of(name, taken["disk"])))
            if os.path.dirname(current) == directory:
                os.unlink(current)        # the present, given up: never a base (freezing replaces it)
        vm["state"] = "saved" if taken["state"] is not None else "poweroff"
        home.write(vm)


def delete(home, name, snap, reopen=None):
    """Forget snapshot `snap`: its state, and its disk layer, if emu made it
    and nothing else names it.  As VirtualBox merges a deleted snapshot's
    differencing image, the layer is merged into the one disk built on it
    (``qcow2.stream``: that disk reads the same, and reads the layer's
    backing file directly), or deleted if none is; so chains do not grow
    for ever and no layer is left that nothing reads.  Two disks built on
    it (a snapshot taken after it, and the present restored from it) are
    refused, as VirtualBox refuses them.  A live VM's snapshots are deleted
    by its host, which gives `reopen`: called once its disk's files have
    changed (even if merging failed halfway), to open them afresh."""
    with home.locked():
        vm = home.read(name)
        if vm["state"] in LIVE and reopen is None:
            raise VMError(f"vm {name}: is {vm['state']} now; try again")
        taken = _snapshot(vm, snap)
        directory = home.vm_dir(name)
        layer, into = home.path_of(name, taken["disk"]), None
        if layer is not None and os.path.dirname(layer) == directory:
            layer, into = _merge_target(home, name, snap, layer)
        else:
            layer = None                  # not a layer emu made (a --disk image): it stays
        if into is not None:
            try:
                qcow2.stream(into)
            except qcow2.ImageError as e:
                raise VMError(f"vm {name}: snapshot {snap} not deleted: {e}") from None
            finally:
                if reopen is not None:
                    reopen()
        del vm["snapshots"][snap]
        home.write(vm)
        for path in (layer, taken["state"] and os.path.join(directory, taken["state"])):
            if path is not None:
                os.unlink(path)


def _merge_target(home, name, snap, layer):
    """(the layer to delete or None, the disk to merge it into or None) for
    snapshot `snap`'s `layer`; a VMError if it cannot go."""
    named, built_on = False, {}
    for owner, whose, chain in _chains(home, but=(name, snap)):
        if layer in chain:
            at = chain.index(layer)
            named = named or at == 0
            if at > 0:
                label = (f"vm {owner}'s disk" if owner != name else
                         "the current state" if whose is None else f"snapshot {whose}")
                built_on.setdefault(chain[at - 1], label)
    if named:
        return None, None                 # another snapshot's layer too: it stays
    if len(built_on) > 1:
        raise VMError(f"vm {name}: snapshot {snap} cannot be deleted: {len(built_on)} disks are built on "
                      f"its layer ({', '.join(sorted(built_on.values()))}); delete the other snapshots first")
    if not built_on:
        return layer, None                # its branch was given up: nothing reads it
    (into, label), = built_on.items()
    if os.path.dirname(into) != home.vm_dir(name):
        raise VMError(f"vm {name}: snapshot {snap} cannot be deleted: its layer is the base of {label}")
    return layer, into


def _snapshot(vm, snap):
    if snap not in vm["snapshots"]:
        raise VMError(f"vm {vm['name']}: no snapshot {snap!r}")
    return vm["snapshots"][snap]
