"""What ``minirt-runc spec`` writes and ``minirt-runc features`` says.

Lecture idea: a runtime describes itself.  ``spec`` writes the starting
config.json a user edits (the same defaults as ``runc spec``: a shell as
root, docker's capability set without the extras, the usual /proc, /dev,
/sys mounts, masked and read-only paths); ``features`` tells an engine which
parts of the OCI runtime spec this runtime honours (runc's JSON shape).
"""

import minirt
from minirt.kernel import capabilities, masked
from minirt.oci import bundle
from minirt.runtime import hooks
from minirt.spec import OCI_VERSION

# runc spec's mounts, in order.
MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
]


def config():
    caps = sorted(capabilities.DEFAULT)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "minirt",
        "mounts": MOUNTS,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            # (runc 1.1's: no cgroup namespace, so that /proc/PID/cgroup shows the host's paths)
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(masked.MASKED_PATHS),
            "readonlyPaths": list(masked.READONLY_PATHS),
        },
    }


def features():
    from minirt.kernel import seccomp

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(hooks.STAGES),
        "mountOptions": sorted(set(bundle.mount_options())),
        "linux": {
            "namespaces": sorted(bundle.NAMESPACES),
            "capabilities": sorted(capabilities.known()),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(seccomp.ACTIONS), "operators": sorted(
                "SCMP_CMP_" + op for op in seccomp.OPS), "archs": ["SCMP_ARCH_X86_64"]},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
        },
        "annotations": {"io.github.minirt.version": minirt.__version__},
    }
