"""`make test-vm`: the privileged test suite on a pure cgroup v2 machine with an
older kernel (Debian stable's), in qemu with KVM.

The guest sees the host's root filesystem read-only through virtio-9p (with an
in-memory overlay on top, see init.sh), so it runs this very tree with the
host's Python and packages, and a sparse scratch disk as its /tmp;
guest_init.py runs the suite and writes its exit
status to a second, writable 9p share, which becomes this script's status.
qemu has a hard time limit; on failure or time-out the guest's console output
(printed live as it comes) is followed by a one-line verdict.
"""

import os
import subprocess
import sys
import tempfile
import time

import initramfs
import kernel

HERE = os.path.dirname(os.path.abspath(__file__))
# Stage 1 needs 9p over virtio-pci, overlayfs, and virtio-blk with ext4 for the
# scratch disk; everything else the guest's modprobe loads on demand from the
# same package.
STAGE1_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_blk", "ext4"]
# The guest's /tmp is an ext4 file system on a sparse scratch disk, as /tmp is
# on most hosts: a tmpfs there would lack user.* xattrs before Linux 6.6,
# which rootless and --userns=remap stores need for opaque directories.
SCRATCH_SIZE = 16 << 30
# The privileged tests of these: under KVM, all those about the kernel and the
# runtime; under qemu's emulator, some ten times slower, the ones about what
# differs on a cgroup v2 machine (limits, OOM from memory.events, the eBPF
# device filter, exec into v2 cgroups, rootless with and without a delegated
# subtree), so that CI stays within its time.
TESTS = {
    "kvm": ["tests/runtime", "tests/kernel"],
    "tcg": ["tests/kernel", "tests/runtime/test_limits.py",
            "tests/runtime/test_lifecycle.py::test_exec_joins_every_namespace_cgroup_privilege_and_root",
            "tests/runtime/test_rootless.py::test_rootless_limits_without_delegated_cgroups_are_a_clear_error",
            *(f"tests/runtime/test_rootless.py::test_rootless_delegated_{name}" for name in (
                "cgroup_holds_the_container_exec_joins_and_rm_removes_it", "foreground_run_cleans_up",
                "exec_from_outside_the_subtree_is_a_clear_error", "limits_are_enforced"))],
}


def selection(accel):
    chosen = os.environ.get("MINIRT_VM_TESTS")
    return chosen.split() if chosen else TESTS.get(accel, TESTS["kvm"])
# The suite's time limit in seconds, by accelerator: under KVM it takes a few
# minutes; qemu's emulator is some ten times slower.  Boot, mounts and power-off
# get BOOT_ALLOWANCE on top.
SUITE_TIMEOUT = {"kvm": 600, "tcg": 2400}
BOOT_ALLOWANCE = 120


def accelerator():
    """KVM, unless this host's KVM is PVM (a nested hypervisor that runs only
    kernels built for it, as inside some cloud sandboxes): then qemu's own
    emulator, slower but the same machine to the guest."""
    if os.environ.get("MINIRT_VM_ACCEL"):
        return os.environ["MINIRT_VM_ACCEL"]
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and not os.path.exists("/sys/module/kvm_pvm"):
        return "kvm"
    print("test-vm: KVM cannot boot a stock kernel here; using qemu's emulator (tcg)", file=sys.stderr)
    return "tcg"


def scratch_disk(path):
    """An empty ext4 file system in a sparse file of SCRATCH_SIZE bytes."""
    with open(path, "wb") as f:
        f.truncate(SCRATCH_SIZE)
    subprocess.run(["mkfs.ext4", "-q", "-F", path], check=True)
    return path


def qemu_command(k, initrd, results, scratch, accel, timeout, tests):
    append = ["console=ttyS0", "quiet", "loglevel=3", "panic=-1", "cgroup_no_v1=all",
              f"vm_kernel={k.version}", f"vm_modules={k.modules}", f"vm_project={kernel.PROJECT}",
              f"vm_python={sys.executable}", f"vm_timeout={timeout}", f"vm_tests={','.join(tests)}"]
    return ["qemu-system-x86_64", "-accel", accel + (",thread=multi" if accel == "tcg" else ""),
            "-cpu", "max", "-smp", "2", "-m", "4096",
            "-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
            "-kernel", k.vmlinuz, "-initrd", initrd, "-append", " ".join(append),
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={results},mount_tag=results,security_model=none",
            "-drive", f"file={scratch},format=raw,if=virtio,cache=unsafe"]


# The guest mounts fresh file systems here (tmpfs; /tmp the scratch disk),
# over whatever the host has in them.
GUEST_MOUNTS = ("/tmp/", "/run/", "/dev/")


def main():
    if (kernel.PROJECT + "/").startswith(GUEST_MOUNTS):
        return verdict(f"the project at {kernel.PROJECT} is hidden in the guest by its own "
                       f"file systems on {', '.join(GUEST_MOUNTS)}: move it elsewhere", 125)
    k = kernel.fetch()
    with tempfile.TemporaryDirectory(prefix="minirt-vm-") as work:
        initrd = os.path.join(work, "initrd.gz")
        with open(initrd, "wb") as f:
            f.write(initramfs.build(os.path.join(HERE, "init.sh"), "/bin/busybox",
                                    k.with_dependencies(STAGE1_MODULES)))
        results = os.path.join(work, "results")
        os.mkdir(results)
        accel = accelerator()
        timeout = int(os.environ.get("MINIRT_VM_TIMEOUT", SUITE_TIMEOUT.get(accel, 600)))
        scratch = scratch_disk(os.path.join(work, "scratch.img"))
        start = time.monotonic()
        try:
            subprocess.run(qemu_command(k, initrd, results, scratch, accel, timeout, selection(accel)),
                           stdin=subprocess.DEVNULL, timeout=timeout + BOOT_ALLOWANCE)
        except subprocess.TimeoutExpired:
            return verdict(f"TIMED OUT: qemu killed after {timeout + BOOT_ALLOWANCE} s", 124)
        took = f"{time.monotonic() - start:.0f} s"
        try:
            with open(os.path.join(results, "status")) as f:
                status = int(f.read())
        except (OSError, ValueError):
            return verdict(f"FAILED: the guest stopped after {took} without reporting a status", 125)
    if status:
        return verdict(f"FAILED: the suite exited with {status} in the guest ({took})", status)
    print(f"test-vm: passed on Linux {k.version}, cgroup v2 only ({took})")
    return 0


def verdict(message, status):
    print(f"test-vm: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
