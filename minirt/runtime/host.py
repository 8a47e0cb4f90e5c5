"""What this host offers containers: ``minirt version`` and ``minirt info``.

Lecture idea: a container runtime is a client of kernel features, not a
hypervisor.  Whether containers can run here, and how isolated they are, is
decided by what the kernel has: overlayfs for the layers, cgroups (v1, v2, or
both: "hybrid") for limits, seccomp and user namespaces for confinement.
docker's ``version`` and ``info`` print these facts; so does minirt, found out
from /proc and /sys rather than assumed.  The field names are docker's, so that
``minirt info --format '{{.CgroupVersion}}'`` reads as it does with docker.
"""

import os
import subprocess

import minirt
from minirt.kernel import cgroups
from minirt.runtime import lifecycle, state
from minirt.spec import default_network, on_path


def build():
    """The git commit minirt runs from, as docker's ``build`` ("unknown" outside a checkout)."""
    try:
        out = subprocess.run(["git", "-C", os.path.dirname(minirt.__file__), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def platform():
    from minirt.image.formats import HOST_PLATFORM
    return "/".join(HOST_PLATFORM)


def cgroup_layout(trees=None):
    """'v2', 'v1', or 'hybrid' (v1 controller trees and a cgroup2 tree beside them)."""
    trees = cgroups.hierarchies() if trees is None else trees
    versions = {t.version for t in trees}
    return "hybrid" if versions == {"v1", "v2"} else cgroups.detect(trees) or "none"


def features():
    """{feature: available} for what minirt uses of the kernel."""
    return {
        "overlayfs": "\toverlay\n" in _read("/proc/filesystems"),
        "seccomp filters": os.path.exists("/proc/sys/kernel/seccomp/actions_avail"),
        "user namespaces": _read("/proc/sys/user/max_user_namespaces").strip() not in ("", "0"),
        "unprivileged user namespaces": _read("/proc/sys/kernel/unprivileged_userns_clone", "1").strip() == "1",
        "cgroups " + cgroup_layout(): cgroup_layout() != "none",
        "nftables (published ports)": on_path("nft"),
        "slirp4netns (rootless networks)": on_path("slirp4netns"),
    }


def info(root):
    """docker's ``info`` fields for the state root ``root``."""
    from minirt.runtime.catalog import Catalog

    statuses = []
    for cid in state.container_ids(root):
        try:
            statuses.append(state.load(root, cid).get("status"))
        except (OSError, ValueError, minirt.MinirtError):
            pass
    running = statuses.count(lifecycle.RUNNING)
    paused = statuses.count(lifecycle.PAUSED)
    layout = cgroup_layout()
    security = ["name=seccomp,profile=builtin", "name=no-new-privileges", "name=cgroupns"]
    if os.geteuid() != 0:
        security.append("name=rootless")
    if features()["user namespaces"]:
        security.append("name=userns")
    return {
        "ID": "", "Name": os.uname().nodename, "ServerVersion": minirt.__version__,
        "Containers": len(statuses), "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": len(statuses) - running - paused, "Images": len(Catalog(root).list()),
        "Driver": "overlay", "DockerRootDir": os.path.abspath(root),
        "CgroupDriver": "cgroupfs", "CgroupVersion": {"v2": "2", "none": ""}.get(layout, "1"),
        "CgroupLayout": layout, "KernelVersion": os.uname().release,
        "OperatingSystem": _os_name(), "OSType": "linux", "Architecture": os.uname().machine,
        "NCPU": os.cpu_count() or 0, "MemTotal": _mem_total(), "SecurityOptions": security,
        "DefaultNetwork": default_network(),
    }


def _os_name():
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip('"')
    return "Linux"


def _mem_total():
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _read(path, missing=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return missing
