"""Control groups: how much a container may use.

Lecture idea: namespaces hide, cgroups limit.  A cgroup is a directory in a
special filesystem; writing a pid into its ``cgroup.procs`` file moves that
process (and its future children) in, and the files beside it hold the limits
and the accounting.

Linux has two versions and hosts differ, so there is one interface and two
drivers, chosen by looking at what is mounted, never assumed:

- **v2** (unified, most current distributions): one tree at /sys/fs/cgroup.
- **v1** (older and "hybrid" hosts): one tree per controller, e.g.
  /sys/fs/cgroup/memory, /sys/fs/cgroup/pids; a hybrid host adds a cgroup2 tree
  without controllers at /sys/fs/cgroup/unified, which we join too so tools
  that look there (systemd, ``/proc/PID/cgroup`` line ``0::``) see the container.

A container's cgroup is ``/<parent>/<id>`` from the root of each tree, as docker
does, so that it does not depend on where minirt itself was started.
"""

import errno
import os
import signal
import time

MOUNTINFO = "/proc/self/mountinfo"


def _mounts():
    """(mountpoint, fstype, device) of every cgroup filesystem mounted here."""
    found = []
    with open(MOUNTINFO) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0]
            if fstype in ("cgroup", "cgroup2"):
                fields = left.split()
                mountpoint = fields[4].replace("\\040", " ")
                found.append((mountpoint, fstype, fields[2]))
    return found


def detect():
    """'v2', 'v1' (including hybrid), or None when no cgroup filesystem is mounted."""
    kinds = {fstype for _, fstype, _ in _mounts()}
    if "cgroup" in kinds:
        return "v1"
    if "cgroup2" in kinds:
        return "v2"
    return None


class Cgroup:
    """One container's cgroup: the same directory name in one or more trees."""

    version = None

    def __init__(self, path, dirs):
        self.path = path          # e.g. "/minirt/3f2a..." — what the container sees as "/"
        self.dirs = dirs          # the absolute directories that make up the cgroup

    def create(self):
        made = []
        try:
            for d in self.dirs:
                os.makedirs(d, exist_ok=True)
                made.append(d)
        except OSError:
            for d in reversed(made):
                _rmdir_quietly(d)
            raise

    def add(self, pid):
        """Move ``pid`` into the cgroup (in every tree)."""
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def pids(self):
        pids = set()
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids.update(int(line) for line in f if line.strip())
            except FileNotFoundError:
                pass
        return sorted(pids)

    def exists(self):
        return any(os.path.isdir(d) for d in self.dirs)

    def kill(self):
        """SIGKILL everything still in the cgroup."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, timeout=5.0):
        """Kill what is left and remove the directories.

        Killed processes leave the cgroup asynchronously, so ``rmdir`` may briefly
        report EBUSY; retry until the deadline.
        """
        deadline = time.monotonic() + timeout
        for d in self.dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    self.kill()
                    time.sleep(0.005)
        for d in self.dirs:
            # The parent ("/minirt") goes too once its last container has gone.
            _rmdir_quietly(os.path.dirname(d))


class CgroupV2(Cgroup):
    version = "v2"

    def kill(self):
        # cgroup.kill (Linux 5.14) kills the whole tree atomically, even processes
        # forking at that moment; fall back to one signal per pid.
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.kill"), "w") as f:
                    f.write("1")
                return
            except (FileNotFoundError, PermissionError):
                pass
        super().kill()


class CgroupV1(Cgroup):
    version = "v1"

    def create(self):
        super().create()
        # A new v1 cpuset cgroup starts with no cpus and no memory nodes, and a
        # process cannot join it until both are filled in from the parent.
        for d in self.dirs:
            if os.path.exists(os.path.join(d, "cpuset.cpus")):
                _inherit_cpuset(d)


def _inherit_cpuset(d):
    parent = os.path.dirname(d)
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(os.path.join(d, name)) as f:
            if f.read().strip():
                continue
        with open(os.path.join(parent, name)) as f:
            value = f.read().strip()
        if not value:
            _inherit_cpuset(parent)
            with open(os.path.join(parent, name)) as f:
                value = f.read().strip()
        with open(os.path.join(d, name), "w") as f:
            f.write(value)


def _rmdir_quietly(path):
    try:
        os.rmdir(path)
    except OSError:
        pass


def for_container(name, parent="minirt"):
    """The cgroup a container named ``name`` gets on this host (not yet created)."""
    path = "/" + "/".join(p for p in (parent.strip("/"), name) if p)
    mounts = _mounts()
    version = "v1" if any(fstype == "cgroup" for _, fstype, _ in mounts) else "v2"
    dirs = []
    seen = set()
    for mountpoint, _fstype, device in mounts:
        if device in seen:  # the same hierarchy mounted twice
            continue
        seen.add(device)
        dirs.append(os.path.join(mountpoint, path.lstrip("/")))
    cls = CgroupV1 if version == "v1" else CgroupV2
    return cls(path, dirs)
