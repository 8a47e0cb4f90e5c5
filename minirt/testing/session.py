"""A test session's share of the host, and the sweep of sessions that died.

Lecture idea: everything a container runtime makes on the host -- state,
cgroups, mounts, bridges -- is recorded before it is made (``system prune``
is the recovery path), so a crash can always be cleaned up by whoever
comes next, if only it can tell the dead from the living.  Each pytest
process (each pytest-xdist worker too) gets a run directory named after the
session's id::

    BASE/runs/SESSION-WORKER/      flock()ed by its process for as long as it lives
        root/                      its minirt state root (containers, layers, networks, volumes)
            containers ->          a link to MEMORY/minirt-pytest-SESSION-WORKER-XXXX, a directory
                                   in RAM (tmpfs), unless ``on_disk``
    cgroup parent                  minirt-pytest-SESSION-WORKER

A test's containers live for a test: their state files and writable layers
are made and removed some ten at a time each.  On a disk every one is
metadata for the filesystem to write (and on these hosts' ext4, mounted with
``discard``, each freed block a synchronous discard): in RAM, none, and a
test under pytest-xdist runs 10% faster.  Where RAM is short (less than 1 GiB
free in MEMORY, docker's 64 MiB /dev/shm say) or cannot carry what overlayfs
writes in an upper directory (user.* extended attributes, for a rootless
run: tmpfs has them since Linux 6.6), the containers stay on disk.

A run directory whose lock can be taken belongs to a process that is gone
(the kernel drops a flock with its last holder, SIGKILL included): the next
session's start removes its containers (by force: a SIGKILLed session's
background containers still run), prunes its root and cgroup parent, and
deletes it.  A run is made under ``.new-PID-NAME`` and renamed once locked,
so that no sweep ever takes one being made.
"""

import fcntl
import os
import shutil
import stat
import tempfile

CGROUP_PREFIX = "minirt-pytest-"
MEMORY = "/dev/shm"      # a tmpfs on every Linux
MEMORY_FREE = 1 << 30    # what it must have free for a run's containers to live there


def default_base():
    """Where sessions keep their runs and the shared image cache: one directory per user."""
    return os.path.join(tempfile.gettempdir(), f"minirt-pytest-{os.geteuid()}")


class Run:
    """One pytest process's state root and cgroup parent, locked while it
    lives, and the runner of its containers."""

    def __init__(self, base, session, worker, on_disk=False):
        from minirt.testing.runner import Runner

        self.name = f"{session}-{worker}"
        self.runner = Runner()  # runs its containers (runner.py), from the first one on
        self.runs = os.path.join(base, "runs")
        self.dir = os.path.join(self.runs, self.name)
        self.root = os.path.join(self.dir, "root")
        self.cgroup_parent = CGROUP_PREFIX + self.name
        self.lock = None
        self.made = 0  # networks, volumes and projects named so far: a name is never used twice
        self.on_disk = on_disk

    def unique(self, kind):
        """A name of the run's own: SESSION-WORKER-KINDN."""
        self.made += 1
        return f"{self.name}-{kind}{self.made}"

    def open(self):
        os.makedirs(self.runs, exist_ok=True)
        making = os.path.join(self.runs, f".new-{os.getpid()}-{self.name}")
        os.makedirs(os.path.join(making, "root"))
        memory = None if self.on_disk else memory_dir(self.name)
        if memory is not None:
            os.symlink(memory, os.path.join(making, "root", "containers"))
        self.lock = os.open(making, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        os.rename(making, self.dir)
        return self

    def close(self, keep=False):
        """Remove all of the run (``keep``: leave it, unlocked, for the next session's sweep)."""
        self.runner.close()
        if not keep:
            clean(self.dir, self.name)
        os.close(self.lock)


def memory_dir(name):
    """A directory of the run's own in RAM for its containers, or None (see above)."""
    try:
        free = os.statvfs(MEMORY)
        if free.f_bavail * free.f_frsize < MEMORY_FREE:
            return None
        path = tempfile.mkdtemp(prefix=f"minirt-pytest-{name}-", dir=MEMORY)  # (0700, a name no one guessed)
    except OSError:
        return None
    if os.geteuid() != 0:
        try:
            os.setxattr(path, "user.minirt", b"")  # (a rootless overlay's upper directory needs them)
        except OSError:
            os.rmdir(path)
            return None
    return path


def clean(directory, name):
    """Remove every container, network, volume and cgroup of the run in ``directory``, then the run."""
    from minirt.api import containers, host  # (here: a session with nothing to sweep never imports them)
    from minirt.errors import MinirtError

    root = os.path.join(directory, "root")
    memory = _memory_of(directory, name)
    if memory is None and os.path.islink(os.path.join(root, "containers")):
        os.unlink(os.path.join(root, "containers"))  # (RAM emptied since, by a reboot; or no run's)
    if os.path.isdir(os.path.join(root, "containers")):
        for _info, _config, state_dir in containers.listing(root, all=True):
            try:
                containers.load(root, os.path.basename(state_dir)).remove(force=True, volumes=True)
            except MinirtError:
                pass  # gone meanwhile, or broken: prune takes what is left
    if os.path.isdir(root):
        host.prune(root, volumes=True, cgroup_parents=[CGROUP_PREFIX + name])
    remove(directory, name)


def remove(directory, name):
    """The run's directory, and its containers' in RAM."""
    memory = _memory_of(directory, name)
    if memory is not None:
        shutil.rmtree(memory, ignore_errors=True)
    shutil.rmtree(directory, ignore_errors=True)


def _memory_of(directory, name):
    """Where the run's root/containers link leads, if that is a directory
    that ``memory_dir`` made for it (ours, in MEMORY, of its name): nothing
    else is removed by following a link."""
    try:
        memory = os.readlink(os.path.join(directory, "root", "containers"))
        st = os.lstat(memory)
    except OSError:
        return None
    if os.path.dirname(memory) != MEMORY or not os.path.basename(memory).startswith(f"minirt-pytest-{name}-") \
            or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return None
    return memory


def sweep(base):
    """Clean up the runs of sessions that died (SIGKILL, a crash, a machine reset); their names."""
    runs = os.path.join(base, "runs")
    try:
        names = os.listdir(runs)
    except FileNotFoundError:
        return []
    swept = []
    for name in names:
        directory = os.path.join(runs, name)
        if name.startswith(".new-"):
            if not os.path.exists(f"/proc/{name.split('-')[1]}"):
                remove(directory, name.split("-", 2)[2])  # died before it held anything
            continue
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # another sweep took it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # alive
        try:
            if os.path.isdir(directory):
                clean(directory, name)
                swept.append(name)
        finally:
            os.close(fd)
    return swept
