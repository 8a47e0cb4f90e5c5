"""Control groups: how much a container may use.

Lecture idea: namespaces hide, cgroups limit.  A cgroup is a directory in a
special filesystem; writing a pid into its ``cgroup.procs`` file moves that
process (and its future children) in, and the files beside it hold the limits
(``memory.max``, ``pids.max``, ...) and the accounting (``memory.events``).

Linux has two versions and hosts differ, so there is one interface and two
drivers, chosen by looking at what is mounted, never assumed:

- **v2** (unified, most current distributions): one tree at /sys/fs/cgroup,
  controllers switched on for children through ``cgroup.subtree_control``.
- **v1** (older and "hybrid" hosts): one tree per controller, e.g.
  /sys/fs/cgroup/memory, /sys/fs/cgroup/pids, each with its own file names.  A
  hybrid host adds a cgroup2 tree without controllers (/sys/fs/cgroup/unified);
  the container joins it too, so ``/proc/PID/cgroup``'s ``0::`` line is right.

A container's cgroup is ``/<parent>/<id>`` from the root of each tree, as docker
does, so that it does not depend on where minirt itself was started.  The
parent (``/minirt``) stays when its last container goes, as docker's does:
making and removing it for every container would cost some 20 mkdir and rmdir
calls per run; ``minirt system prune`` removes it when it is empty
(``remove_empty_parent``).

There are three ways into a cgroup, and their speed differs by a factor of 20:

1. Write a pid into ``cgroup.procs`` (any tree).  This takes a global lock, the
   kernel's ``cgroup_threadgroup_rwsem``, whose first writer after a quiet
   spell waits for an RCU grace period: 5-20 ms, once per container start.
2. v1: a single-threaded process writes ``0`` ("myself") into ``tasks``.
   Moving one thread that is the caller needs no global lock (recent kernels):
   0.4 ms here.  ``enter`` does this in the container's PID 1.
3. v2: be born there.  ``clone3(CLONE_INTO_CGROUP)`` creates the process
   inside the cgroup; nothing moves at all.  ``clone_into`` does this.

So the parent opens the doors (``Cgroup.open_entry``: it has the rights), PID 1
walks in by itself, and only where that is impossible (no clone3, say) does the
parent fall back to 1 (``Cgroup.add``).

Rootless (``rootless_base``, as rootless podman with its cgroupfs manager):
an ordinary user may only make cgroups inside a cgroup2 subtree delegated to
it (systemd's ``user@UID.service``, Delegate=yes: the user owns the
directory, its ``cgroup.procs`` and ``cgroup.subtree_control``).  The
container's cgroup is ``/<subtree>/<parent>/<id>``, in the cgroup2 tree only:
v1 has no safe delegation, so a rootless container never has a v1 cgroup (on
a hybrid host it is placed in the controller-less cgroup2 tree, and a limit
is refused).  Two kernel rules shape it.  A process may be moved only by a
writer of the ``cgroup.procs`` of the common ancestor of where it is and where
it goes: minirt must itself run inside the subtree, and the subtree's top is
that ancestor.  And a cgroup that hands controllers down (``subtree_control``)
may hold no process of its own: the subtree's processes (the user's shell,
minirt) move into the leaf ``init`` first (``LEAF``, where systemd keeps a
manager's own processes, and docker-in-docker its shell).

The cgroup also decides which device files the container may open or make
(``DEVICE_ALLOW``, docker's list): v1 writes it into the devices controller's
``devices.allow``; v2 has no such file and attaches an eBPF program that the
kernel runs on every device access instead (``devicefilter.py``, ``ebpf.py``).
"""

import errno
import os
# The C half of `signal`, under its usual name: the Python half builds enums of
# every signal, 0.7 ms of each `minirt run` for names nobody prints.
import _signal as signal
import time

from minirt.errors import RuntimeFailure

MOUNTINFO = "/proc/self/mountinfo"


# (Plain classes rather than dataclasses or namedtuples: importing `dataclasses`
# costs ~8 ms, `collections` 2 ms, of minirt's 30 ms start-up budget.)

class Hierarchy:
    """One mounted cgroup tree: its mount point, "v1" or "v2", and the
    controllers it has (v1: what the tree controls; v2: what it offers)."""

    __slots__ = ("mountpoint", "version", "controllers")

    def __init__(self, mountpoint, version, controllers):
        self.mountpoint, self.version, self.controllers = mountpoint, version, controllers

    def __repr__(self):
        return f"Hierarchy({self.mountpoint!r}, {self.version!r}, {sorted(self.controllers)})"


def hierarchies(mountinfo=MOUNTINFO):
    """Every cgroup tree mounted here, each once (a tree may be mounted twice)."""
    found, seen = [], set()
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, options = (right.split() + ["", ""])[:3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            fields = left.split()
            device, mountpoint = fields[2], fields[4].replace("\\040", " ")
            if device in seen:
                continue
            seen.add(device)
            if fstype == "cgroup":
                controllers = frozenset(o for o in options.split(",") if o not in ("rw", "ro"))
                found.append(Hierarchy(mountpoint, "v1", controllers))
            else:
                found.append(Hierarchy(mountpoint, "v2", _read_words(mountpoint, "cgroup.controllers")))
    return found


def detect(trees=None):
    """'v1' when any v1 controller tree is mounted (v1 and hybrid hosts), 'v2' when
    only the unified tree is, None without cgroups."""
    trees = hierarchies() if trees is None else trees
    if any(h.version == "v1" for h in trees):
        return "v1"
    return "v2" if trees else None


class Resources:
    """Limits; None means "not limited" (or, to ``update``, "leave as it is").

    Docker's terms (``minirt run``'s flags):
    memory        bytes (--memory); -1 unlimited
    memory_swap   bytes of memory+swap (--memory-swap); -1 unlimited; 0 leaves
                  it as it is; None: docker's default on v1, twice ``memory``
    pids_limit    (--pids-limit); <= 0 unlimited
    cpus          (--cpus) e.g. 1.5: a quota of that many CFS periods
    cpu_shares    (--cpu-shares), relative weight, default 1024
    cpuset_cpus   (--cpuset-cpus) e.g. "0-1,3"

    and the rest of an OCI bundle's linux.resources (runc's rules):
    memory_reservation   bytes the kernel tries to leave the container (soft limit)
    cpu_quota, cpu_period  microseconds of CPU per period (quota -1: unlimited),
                  each set alone if given alone (the other stays)
    cpu_rt_period, cpu_rt_runtime  the same for realtime tasks (cgroup v1 only)
    cpuset_mems   memory nodes e.g. "0"
    blkio_weight  relative I/O weight, 10 to 1000
    blkio_weight_device  ((major, minor, weight), ...): a device's own weight
    unified       {cgroup v2 file: value}, written as given, last (v2 only)
    """

    __slots__ = ("memory", "memory_swap", "pids_limit", "cpus", "cpu_shares", "cpuset_cpus",
                 "memory_reservation", "cpu_quota", "cpu_period", "cpu_rt_period", "cpu_rt_runtime",
                 "cpuset_mems", "blkio_weight", "blkio_weight_device", "unified")

    def __init__(self, **limits):
        for name in self.__slots__:
            setattr(self, name, limits.pop(name, None))
        if limits:
            raise TypeError(f"unknown limits: {', '.join(sorted(limits))}")

    def any(self):
        return any(getattr(self, name) is not None for name in self.__slots__)

    def quota_period(self):
        """(quota, period) in microseconds, either None when not given;
        ``cpus`` is a quota of that many periods of 100 ms."""
        if self.cpus is not None:
            return round(self.cpus * CPU_PERIOD), CPU_PERIOD
        return self.cpu_quota, self.cpu_period


CPU_PERIOD = 100_000  # microseconds, as docker

# The device files a container may open (type, major, minor; "*" = any), as
# docker's default.  Device *creation* (mknod, "m") stays allowed for every
# device: an image may carry device nodes; what matters is that the container
# cannot open, say, the host's disk through a node it made itself.
DEVICE_ALLOW = (
    ("c", "*", "*", "m"), ("b", "*", "*", "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"),   # null, zero, full
    ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"),                       # random, urandom
    ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),   # tty, console, ptmx
    ("c", 136, "*", "rwm"),                                      # /dev/pts/*
    ("c", 10, 200, "rwm"),                                       # tun
)


class Cgroup:
    """One container's cgroup: the same directory name in one or more trees."""

    version = None

    def __init__(self, path, trees, delegated=False):
        self.path = path   # e.g. "/minirt/3f2a..." — what the container sees as "/"
        self.trees = trees
        self.delegated = delegated  # rootless, in the subtree delegated to the user
        self.dirs = [os.path.join(t.mountpoint, path.lstrip("/")) for t in trees]

    def create(self):
        made = []
        try:
            for d in self.dirs:
                _makedirs(d)
                made.append(d)
        except OSError:
            for d in reversed(made):
                _rmdir_quietly(d)
            raise

    def add(self, pid, versions=("v1", "v2")):
        """Move ``pid`` into the cgroup, in every tree of the given versions."""
        for tree, d in zip(self.trees, self.dirs):
            if tree.version in versions:
                try:
                    _write(d, "cgroup.procs", pid)
                except PermissionError:
                    if not self.delegated:
                        raise
                    raise RuntimeFailure(f"cannot move a process into cgroup {self.path}: permission denied"
                                         " (rootless, minirt must run inside the cgroup subtree"
                                         " delegated to the user)") from None

    def below(self, subs):
        """The cgroups below this one where ``exec --cgroup`` puts a process,
        as runc 1.1 reads it: ``subs`` maps a controller to a path below
        the container's cgroup in that controller's tree (the others stay
        at the container's own), or "" to a path for every tree."""
        known = {c for tree in self.trees if tree.version == "v1" for c in tree.controllers}
        for controller in subs:
            if controller and controller not in known:
                raise RuntimeFailure(f"unknown controller {controller} in SubCgroupPaths")
        inner = type(self)(self.path, self.trees, self.delegated)
        for i, (tree, d) in enumerate(zip(self.trees, self.dirs)):
            sub = subs[""] if "" in subs else next((subs[c] for c in tree.controllers if c in subs), None)
            if sub is None:
                continue
            target = os.path.normpath(os.path.join(d, sub.lstrip("/")))
            if target != d and not target.startswith(d + "/"):
                raise RuntimeFailure(f"{sub} is not a sub cgroup path")
            if not os.path.isdir(target):
                raise RuntimeFailure(f"error adding pid to cgroups: {target}/cgroup.procs: no such file or directory")
            inner.dirs[i] = target
        return inner

    def open_entry(self):
        """The doors a new process walks in through by itself (see the module
        docstring): an open ``tasks`` file per v1 tree, and the v2 tree's
        directory for clone3.  Opened by the parent, which has the rights; a
        PID 1 in a user namespace could not open them."""
        tasks, cgroup2 = [], None
        try:
            for tree, d in zip(self.trees, self.dirs):
                if tree.version == "v1":
                    tasks.append(os.open(os.path.join(d, "tasks"), os.O_WRONLY | os.O_CLOEXEC))
                else:
                    cgroup2 = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            Entry(tasks, cgroup2).close()
            raise
        return Entry(tasks, cgroup2)

    def pids(self):
        """Every process in the cgroup, or in a cgroup below it (one its
        processes made: a v1 parent's cgroup.procs does not list them)."""
        pids = set()
        for top in self.dirs:
            for d, _subdirs, _files in os.walk(top):
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
        """Kill what is left and remove the directories, those its processes
        made below it first.

        Killed processes leave the cgroup asynchronously, so ``rmdir`` may briefly
        report EBUSY; retry until the deadline.
        """
        deadline = time.monotonic() + timeout
        below = []  # the trees where it holds cgroups of its own processes' making, or processes
        for top in self.dirs:
            try:
                os.rmdir(top)  # (the usual case, at once: one call a tree, no walk)
            except FileNotFoundError:
                pass
            except OSError:
                below.append(top)
        for d in [sub for top in below for sub, _dirs, _files in os.walk(top, topdown=False)]:
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

    def set_limits(self, res):
        """Write the limits in ``res``.  RuntimeFailure names one that cannot
        be set, and then the others are put back as they were.

        Some limits bound one another: memory and memory+swap (v1: memory <=
        memory+swap), a CFS period and its quota under a parent's quota.  So a
        value the kernel refuses (EINVAL) while its partner still has its old
        value is tried again once the others are written, as runc orders them.
        """
        files = list(self._limit_files(res))  # (its checks come before any write)
        done, later = [], []
        try:
            for d, name, value in files:
                old = _old_value(d, name)
                try:
                    _write(d, name, value)
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise _limit_failure(d, name, value, e) from None
                    later.append((d, name, value, old))
                    continue
                done.append((d, name, old))
            for d, name, value, old in later:
                try:
                    _write(d, name, value)
                except OSError as e:
                    raise _limit_failure(d, name, value, e) from None
                done.append((d, name, old))
        except RuntimeFailure:
            _put_back(done)
            raise

    def _dir_for(self, controller):
        for tree, d in zip(self.trees, self.dirs):
            if controller in tree.controllers:
                return d
        raise RuntimeFailure(f"cgroup controller {controller!r} is not available on this host")


class CgroupV2(Cgroup):
    version = "v2"

    def enable_controllers(self, wanted):
        """Switch controllers on in every ancestor's ``cgroup.subtree_control``.

        v2 hands a controller down one level at a time; a cgroup only gets
        ``memory.max`` if its parent enabled "memory" for its children.
        """
        top = self.trees[0].mountpoint
        parts = self.path.strip("/").split("/")
        for depth in range(len(parts)):
            d = os.path.join(top, *parts[:depth])
            available = _read_words(d, "cgroup.controllers")
            missing = set(wanted) - available
            if missing:
                raise RuntimeFailure(f"cgroup controller(s) {', '.join(sorted(missing))} not delegated to {d}")
            enabled = _read_words(d, "cgroup.subtree_control")
            todo = " ".join(f"+{c}" for c in sorted(set(wanted) - enabled))
            if todo:
                try:
                    self._hand_down(d, todo)
                except OSError as e:
                    raise RuntimeFailure(f"cannot enable {todo} in {d}: {e.strerror}") from None

    def _hand_down(self, d, todo):
        try:
            _write(d, "cgroup.subtree_control", todo)
        except OSError as e:
            # EBUSY: ``d`` holds processes.  In the user's own subtree they
            # are the user's (a shell, minirt itself): into the leaf with them.
            if e.errno != errno.EBUSY or not self.delegated:
                raise
            _evacuate(d)
            _write(d, "cgroup.subtree_control", todo)

    def set_limits(self, res):
        # (first: a controller's files appear once its parent hands it down)
        wanted = {controller for controller, fields in _V2_CONTROLLERS
                  if any(getattr(res, field) is not None for field in fields)}
        wanted |= {name.split(".")[0] for name in res.unified or ()} - {"cgroup"}
        if wanted:
            self.enable_controllers(wanted)
        super().set_limits(res)

    def _limit_files(self, res):
        """v2's files, converted from the v1 terms of docker and OCI as runc does."""
        d = self.dirs[0]
        if res.memory is not None or res.memory_swap is not None or res.memory_reservation is not None:
            # memory.swap.max is swap alone, not memory+swap; written first
            swap = v2_swap(res.memory_swap or 0, res.memory or 0)
            if swap or (res.memory_swap or 0) > 0:
                yield d, "memory.swap.max", "max" if swap == -1 else swap
            if res.memory:
                yield d, "memory.max", "max" if res.memory == -1 else res.memory
            if res.memory_reservation:
                yield d, "memory.low", "max" if res.memory_reservation == -1 else res.memory_reservation
        if res.pids_limit is not None:
            yield d, "pids.max", res.pids_limit if res.pids_limit > 0 else "max"
        quota, period = res.quota_period()
        if quota or period:
            # cpu.max holds both; the one not given stays as it is
            try:
                old_quota, old_period = _read(d, "cpu.max").split()
            except FileNotFoundError:
                old_quota, old_period = "max", CPU_PERIOD
            quota = old_quota if not quota else "max" if quota < 0 else quota
            yield d, "cpu.max", f"{quota} {period or old_period}"
        if res.cpu_shares:
            # runc's mapping of v1 shares [2, 262144] onto v2 weight [1, 10000].
            yield d, "cpu.weight", 1 + ((res.cpu_shares - 2) * 9999) // 262142
        if res.cpu_rt_period or res.cpu_rt_runtime:
            raise RuntimeFailure("realtime CPU limits (cpu.rt_period_us, cpu.rt_runtime_us) need cgroup v1")
        if res.cpuset_cpus:
            yield d, "cpuset.cpus", res.cpuset_cpus
        if res.cpuset_mems:
            yield d, "cpuset.mems", res.cpuset_mems
        if res.blkio_weight or res.blkio_weight_device:
            # The BFQ scheduler's own weights when it is there (per device
            # too); else io.weight, [10, 1000] mapped onto [1, 10000].
            bfq = os.path.exists(os.path.join(d, "io.bfq.weight"))
            if res.blkio_weight:
                yield (d, "io.bfq.weight", res.blkio_weight) if bfq else \
                    (d, "io.weight", 1 + (res.blkio_weight - 10) * 9999 // 990)
            for major, minor, weight in (res.blkio_weight_device or ()) if bfq else ():
                yield d, "io.bfq.weight", f"{major}:{minor} {weight}"
        for name, value in (res.unified or {}).items():  # (last: they override what is above)
            yield d, name, value

    def oom_killed(self):
        return _keyed(self.dirs[0], "memory.events").get("oom_kill", 0) > 0

    def restrict_devices(self, allow=DEVICE_ALLOW):
        """Allow only the devices in ``allow``.  v2 has no devices files: the
        list becomes an eBPF program attached to the cgroup (``devicefilter.py``).

        Returns True once attached, False, as runc does, where minirt may not load BPF programs
        (rootless, or itself inside a user namespace); such a container cannot
        make device nodes, and the host's own permissions guard the ones it
        is given.
        """
        return _attach_device_filter(self.dirs[0], self.path, allow)

    def freeze(self, frozen):
        """Stop (or let go on) every process of the cgroup: cgroup.freeze, then
        cgroup.events says when the last one has stopped."""
        _write(self.dirs[0], "cgroup.freeze", int(frozen))
        _wait_for(lambda: _keyed(self.dirs[0], "cgroup.events").get("frozen") == int(frozen), self.path)

    def frozen(self):
        """Whether the cgroup exists and is frozen (or freezing)."""
        try:
            return _read(self.dirs[0], "cgroup.freeze").strip() == "1"
        except FileNotFoundError:
            return False

    def kill(self):
        # cgroup.kill (Linux 5.14) kills the whole tree atomically, even processes
        # forking at that moment; fall back to one signal per pid.
        try:
            _write(self.dirs[0], "cgroup.kill", 1)
        except OSError:
            super().kill()


# Which v2 controller each limit needs.
_V2_CONTROLLERS = (
    ("memory", ("memory", "memory_swap", "memory_reservation")), ("pids", ("pids_limit",)),
    ("cpu", ("cpus", "cpu_shares", "cpu_quota", "cpu_period")), ("cpuset", ("cpuset_cpus", "cpuset_mems")),
    ("io", ("blkio_weight", "blkio_weight_device")),
)


def v2_swap(memory_swap, memory):
    """memory.swap.max from v1's memory+swap (0: leave it; -1: unlimited),
    runc's rules and words: memory -1 alone lifts the swap limit as well."""
    if memory == -1 and memory_swap == 0:
        return -1
    if memory_swap in (-1, 0):
        return memory_swap
    if memory in (0, -1):
        raise RuntimeFailure("unable to set swap limit without memory limit")
    if memory < 0:
        raise RuntimeFailure(f"invalid memory value: {memory}")
    if memory_swap < memory:
        raise RuntimeFailure("memory+swap limit should be >= memory limit")
    return memory_swap - memory


class CgroupV1(Cgroup):
    version = "v1"

    def create(self):
        super().create()
        # A new v1 cpuset cgroup starts with no cpus and no memory nodes, and a
        # process cannot join it until both are filled in from the parent.  (Not
        # so the cgroup2 tree beside the v1 ones, even where it offers cpuset.)
        for tree, d in zip(self.trees, self.dirs):
            if tree.version == "v1" and "cpuset" in tree.controllers:
                _inherit_cpuset(d)

    def _limit_files(self, res):
        if res.memory is not None or res.memory_swap is not None or res.memory_reservation is not None:
            mem = self._dir_for("memory")
            has_swap = os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes"))
            swap = res.memory_swap
            if swap is None and res.memory is not None:
                # docker's default: as much swap as memory; -1: unlimited both
                swap = (-1 if res.memory == -1 else 2 * res.memory) if has_swap else 0
            elif res.memory == -1 and not swap and has_swap:
                swap = -1  # (runc: --memory -1 alone lifts the swap limit as well)
            if swap and not has_swap:
                raise RuntimeFailure("--memory-swap: this kernel does not account swap (no memory.memsw)")
            # (memory <= memory+swap at each step: set_limits retries the refused one)
            if res.memory:
                yield mem, "memory.limit_in_bytes", res.memory
            if swap:
                yield mem, "memory.memsw.limit_in_bytes", swap
            if res.memory_reservation:
                yield mem, "memory.soft_limit_in_bytes", res.memory_reservation
        if res.pids_limit is not None:
            yield self._dir_for("pids"), "pids.max", res.pids_limit if res.pids_limit > 0 else "max"
        quota, period = res.quota_period()
        if quota or period or res.cpu_shares or res.cpu_rt_period or res.cpu_rt_runtime:
            cpu = self._dir_for("cpu")
            if res.cpu_shares:
                yield cpu, "cpu.shares", res.cpu_shares
            if period:
                yield cpu, "cpu.cfs_period_us", period
            if quota:
                yield cpu, "cpu.cfs_quota_us", quota
            if res.cpu_rt_period:
                yield cpu, "cpu.rt_period_us", res.cpu_rt_period
            if res.cpu_rt_runtime:
                yield cpu, "cpu.rt_runtime_us", res.cpu_rt_runtime
        if res.cpuset_cpus:
            yield self._dir_for("cpuset"), "cpuset.cpus", res.cpuset_cpus
        if res.cpuset_mems:
            yield self._dir_for("cpuset"), "cpuset.mems", res.cpuset_mems
        if res.blkio_weight or res.blkio_weight_device:
            blkio = self._dir_for("blkio")
            # blkio.weight with the CFQ scheduler (before Linux 5.0), else BFQ's own files
            prefix = "blkio." if os.path.exists(os.path.join(blkio, "blkio.weight")) else "blkio.bfq."
            if res.blkio_weight:
                yield blkio, prefix + "weight", res.blkio_weight
            for major, minor, weight in res.blkio_weight_device or ():
                yield blkio, prefix + "weight_device", f"{major}:{minor} {weight}"
        if res.unified:
            raise RuntimeFailure("unified (cgroup v2) limits need cgroup v2, and this host's controllers are on v1")

    def freeze(self, frozen):
        """Stop (or let go on) every process of the cgroup: the freezer
        controller's freezer.state reads FROZEN once the last one has stopped."""
        d = self._dir_for("freezer")
        want = "FROZEN" if frozen else "THAWED"
        _write(d, "freezer.state", want)
        _wait_for(lambda: _read(d, "freezer.state").strip() == want, self.path)

    def frozen(self):
        """Whether the cgroup exists and is frozen (or freezing)."""
        try:
            return _read(self._dir_for("freezer"), "freezer.state").strip() != "THAWED"
        except (FileNotFoundError, RuntimeFailure):  # (no such cgroup; no freezer tree)
            return False

    def oom_killed(self):
        try:
            return _keyed(self._dir_for("memory"), "memory.oom_control").get("oom_kill", 0) > 0
        except RuntimeFailure:
            return False

    def restrict_devices(self, allow=DEVICE_ALLOW):
        """Deny every device, then allow ``allow`` (the v1 devices controller).

        Without a devices controller, a hybrid host's cgroup2 tree takes the
        list as an eBPF program instead, as on v2.  (With one, the v1 list is
        enough: the kernel would run both, and both would say the same.)
        """
        try:
            d = self._dir_for("devices")
        except RuntimeFailure:
            unified = [u for tree, u in zip(self.trees, self.dirs) if tree.version == "v2"]
            return bool(unified) and _attach_device_filter(unified[0], self.path, allow)
        _write(d, "devices.deny", "a")
        fd = os.open(os.path.join(d, "devices.allow"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            for kind, major, minor, access in allow:  # one rule a write(2), all through one open
                os.write(fd, f"{kind} {major}:{minor} {access}".encode())
        finally:
            os.close(fd)
        return True


def _attach_device_filter(cgroup_dir, path, allow):
    # Imported here, not at the top: only a cgroup2 device filter needs the
    # eBPF machine, so importing cgroups (every minirt command does) stays cheap.
    from minirt.kernel import devicefilter

    try:
        devicefilter.install(cgroup_dir, allow)
    except OSError as e:
        if e.errno == errno.EPERM and _unprivileged():
            return False
        raise RuntimeFailure(f"cannot attach the device filter to cgroup {path}: {e.strerror}") from None
    return True


def _unprivileged():
    """Not root, or root only inside a user namespace: bpf(2) needs
    CAP_SYS_ADMIN (or CAP_BPF) in the host's user namespace."""
    if os.geteuid() != 0:
        return True
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _inherit_cpuset(d):
    parent = os.path.dirname(d)
    for name in ("cpuset.cpus", "cpuset.mems"):
        if _read(d, name):
            continue
        value = _read(parent, name)
        if not value:
            _inherit_cpuset(parent)
            value = _read(parent, name)
        _write(d, name, value)


def _wait_for(done, path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"cgroup {path}: the freezer did not settle in {timeout:.0f} s")
        time.sleep(0.001)


def _read(d, name):
    # (os.open, not open(): a file object costs more to make than the read itself)
    fd = os.open(os.path.join(d, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode().strip()
    finally:
        os.close(fd)


def _read_words(d, name):
    try:
        return frozenset(_read(d, name).split())
    except OSError:
        return frozenset()


def _keyed(d, name):
    """A flat-keyed cgroup file ("key value" per line) as a dict."""
    try:
        return {k: int(v) for k, v in (line.split() for line in _read(d, name).splitlines())}
    except (OSError, ValueError):
        return {}


def _write(d, name, value):
    # (open()'s "w" flags: a cgroup's files exist, a test's stand-in tree's may not)
    fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _limit_failure(d, name, value, error):
    if name == "memory.limit_in_bytes" and error.errno == errno.EBUSY:  # (v1: below what is in use; runc's words)
        usage, peak = (_read(d, f"memory.{kind}usage_in_bytes") for kind in ("", "max_"))
        return RuntimeFailure(f"unable to set memory limit to {value} (current usage: {usage}, peak usage: {peak})")
    return RuntimeFailure(f"cannot set cgroup limit {name}={value}: {error.strerror}")


def _old_value(d, name):
    """A limit file's value, to put back; None for a file of several lines
    (per-device weights), which cannot be written back whole."""
    try:
        old = _read(d, name)
    except OSError:
        return None
    return None if "\n" in old else old


def _put_back(written):
    """Undo limits already written (newest first); one that its partner
    still blocks gets a second try, as in ``set_limits``."""
    pending = [(d, name, old) for d, name, old in reversed(written) if old is not None]
    for _ in range(2):
        failed = []
        for d, name, old in pending:
            try:
                _write(d, name, old)
            except OSError:
                failed.append((d, name, old))
        pending = failed


def _makedirs(d, attempts=100):
    """``mkdir -p d`` while ``system prune`` may remove the empty parent at any
    moment, possibly between our making the parent and making ``d`` in it.
    Then make both again."""
    for _ in range(attempts - 1):
        try:
            return os.makedirs(d, exist_ok=True)
        except FileNotFoundError:
            continue
    os.makedirs(d, exist_ok=True)


def _evacuate(d, attempts=100):
    """Move every process of ``d`` into its leaf ``LEAF`` (as long as they
    fork, new ones may appear: until none is left)."""
    leaf = os.path.join(d, LEAF)
    os.makedirs(leaf, exist_ok=True)
    for _ in range(attempts):
        pids = _read(d, "cgroup.procs").split()
        if not pids:
            return
        for pid in pids:
            try:
                _write(leaf, "cgroup.procs", pid)
            except ProcessLookupError:
                pass  # exited meanwhile
    raise OSError(errno.EBUSY, f"processes keep appearing in {d}")


def _rmdir_quietly(path):
    try:
        os.rmdir(path)
    except OSError:
        pass


def remove_empty_parent(parent="minirt", trees=None):
    """Remove the cgroup parent in every tree if no container cgroup is left
    in it (``system prune``); return True if it was there and is gone."""
    if not parent.strip("/"):
        return False  # containers directly under the root: nothing of ours to remove
    dirs = for_container("", parent, trees).dirs
    present = [d for d in dirs if os.path.isdir(d)]
    for d in present:
        _rmdir_quietly(d)  # fails, and stays, while a container's cgroup is inside
    return bool(present) and not any(os.path.isdir(d) for d in present)


def for_container(name, parent="minirt", trees=None):
    """The cgroup a container named ``name`` gets on this host (not yet
    created); rootless, inside the subtree delegated to the caller, if any."""
    trees = hierarchies() if trees is None else trees
    base = rootless_base(trees) if os.geteuid() != 0 else None
    return at("/".join(p for p in (base, parent.strip("/"), name) if p), trees)


def at(path, trees=None):
    """The cgroup at ``path`` (as recorded in a container's state), for this
    caller: root's in every tree, a rootless user's in the cgroup2 tree."""
    trees = hierarchies() if trees is None else trees
    path = "/" + path.strip("/")
    unified = [t for t in trees if t.version == "v2"][:1]
    if os.geteuid() != 0 and unified:
        return CgroupV2(path, unified, delegated=True)
    if detect(trees) == "v1":
        return CgroupV1(path, trees)
    return CgroupV2(path, unified)


LEAF = "init"  # where a delegated subtree's own processes go (see the module docstring)


def rootless_base(trees):
    """The top of the cgroup2 subtree delegated to this (unprivileged) user
    that holds the caller, as a path from the tree's root; None if the
    caller is in none."""
    unified = [t for t in trees if t.version == "v2"][:1]
    if not unified:
        return None
    path = own_paths().get("")
    top = None
    while path and _owned(os.path.join(unified[0].mountpoint, path.lstrip("/"))):
        top, path = path, (os.path.dirname(path) if path != "/" else None)
    return top


def own_paths():
    """This process's cgroup in each tree, from /proc/self/cgroup: each
    controller (or a named tree's "name=systemd") -> its path; cgroup2's
    under ""."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(","):  # ("".split(",") is [""]: cgroup2's line)
                paths[name] = path
    return paths


def _owned(d):
    """Delegated to us: what a delegatee needs is ours (systemd's Delegate=yes
    chowns the directory, cgroup.procs and cgroup.subtree_control)."""
    uid = os.geteuid()
    try:
        return all(os.stat(os.path.join(d, name)).st_uid == uid
                   for name in ("", "cgroup.procs", "cgroup.subtree_control"))
    except OSError:
        return False


# -- entering by oneself ------------------------------------------------------------

class Entry:
    """Open doors into one cgroup: ``tasks`` file descriptors of its v1 trees,
    and a descriptor of its v2 directory (or None)."""

    __slots__ = ("tasks", "cgroup2")

    def __init__(self, tasks, cgroup2):
        self.tasks, self.cgroup2 = tasks, cgroup2

    def close(self):
        for fd in self.tasks + ([self.cgroup2] if self.cgroup2 is not None else []):
            os.close(fd)


def clone_into(entry, flags=0):
    """A new process, as fork makes one, but born inside ``entry``'s v2 cgroup
    if clone3 allows.

    ``flags`` are namespace flags for the child (``CLONE_NEWPID``: it becomes
    PID 1 of a new pid namespace).  Returns ``(pid, born_inside)``, pid being
    0 in the child.  Where clone3 is missing (before Linux 5.7, or filtered by
    seccomp) or refuses (no write access to the cgroup), this is the older
    clone(2), and the caller must move the child into the v2 cgroup the slow
    way.  The caller must be single-threaded (see ``libc.clone3``).
    """
    # Imported here: the monitor imports this module too, and it runs without
    # site-packages, where cffi lives (``monitor.py``).
    from minirt.kernel import libc

    if entry is not None and entry.cgroup2 is not None:
        try:
            return libc.clone3(flags | libc.CLONE_INTO_CGROUP, cgroup=entry.cgroup2), True
        except OSError:
            pass
    # Without namespaces to ask for, os.fork does it, and more safely (it runs
    # Python's own fork bookkeeping); with them, only clone(2) can.
    return (libc.clone(flags) if flags else os.fork()), False


def enter(entry):
    """Step into every v1 tree's cgroup: the calling process, which must be
    single-threaded, writes 0 ("myself") into each ``tasks`` file."""
    for fd in entry.tasks:
        os.write(fd, b"0")
