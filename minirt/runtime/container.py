"""The parent's side of a container: create, start, wait, stop, delete.

Lecture idea: there is no "container" object in the kernel, only a process with
namespaces and a cgroup.  One ``clone(2)`` makes it: the flags give the child
new pid, uts, ipc, net (and, rootless, user) namespaces, and clone3's
``CLONE_INTO_CGROUP`` has it born inside its cgroup2 cgroup
(``cgroups.clone_into``).  In the foreground minirt itself is its parent, as
runc is:

    minirt (parent)          creates the state directory and the cgroup, clones
      └─ container init      PID 1 of the new pid namespace: builds the rootfs
                             and execs the command (``init.py``)

A detached container (``run -d``) needs a parent that outlives minirt: a
forked *helper* clones PID 1 instead and then becomes the container's
*monitor* (``monitor.py``, as conmon is for podman), which records the exit
status and cleans up.  A program with several threads, which may not clone
from Python, forks PID 1 into namespaces its thread steps into and out of
(``namespaces.fork_into``; pytest-xdist's workers have two threads), and
gets the helper in the foreground only where that cannot be done: a user
namespace to make, or namespaces to join by path.

The start-up handshake, over the channels of ``channel.py``:

1. PID 1 (rootless): waits for IDS_WRITTEN; the parent writes its uid/gid maps first.
   Then it enters its v1 cgroups, unshares the mount namespace and builds its
   root filesystem.
2. parent: (told by the helper, if there is one, that PID 1 exists) moves PID
   1 into its cgroup2 cgroup if it could not be born there, brings its
   loopback up (rootful), plugs in its network and records "running", then
   says PLACED — while PID 1 is already building its root filesystem.
3. PID 1: waits for PLACED, then unshares the cgroup namespace (so that its
   own cgroup is its "/"), drops privileges and execs.  Why it could not, if it
   could not, comes back on the failure channel; end-of-file there means the
   command is running.  (From an OCI bundle, PID 1 says CREATED instead and
   waits on exec.fifo for ``start``.)

Everything the container owns is recorded in its state directory before it is
made, so ``minirt rm`` / ``system prune`` can always remove it; mounts need no
cleanup at all: they exist only in the container's mount namespace, which the
kernel tears down with its last process.
"""

import errno
import os
# The C half of `signal`, under its usual name: the Python half builds enums of
# every signal, 0.7 ms of each `minirt run` for names nobody prints.
import _signal as signal
import sys
import time

from minirt import lightjson
from minirt.errors import MinirtError, RuntimeFailure, exit_status
from minirt.kernel import cgroups
from minirt.runtime import channel, lifecycle, network, state

# What only making a container needs (the image store's leases, libc through
# cffi, PID 1's code, seccomp) is imported where it is made: ``minirt-runc
# start``, ``state``, ``kill`` and ``delete`` each load a container in a fresh
# Python, and those modules would be half of each one's time.

HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
127.0.0.1\t{hostname}
"""


class Launch:
    """What the parent prepared for the container's init (inherited across fork)."""

    def __init__(self, rootfs, upper, work, etc_files, *, rootless=False, capabilities=frozenset(),
                 seccomp_program=None, networks=()):
        self.rootfs, self.upper, self.work = rootfs, upper, work   # overlay: merged, upper, work dirs
        self.etc_files = etc_files              # hostname, hosts, resolv.conf: the host files to bind
        self.rootless = rootless
        self.capabilities = capabilities        # what root in the container keeps
        self.seccomp_program = seccomp_program  # compiled here; what init installs (None once its trampoline has it)
        self.networks = networks                # eth0, eth1...: addresses, eth0's gateway (bridge networks)
        # Filled in by Container.start: the handshake's channels (channel.py)
        self.failure = None                     # PID 1 -> parent: why exec did not happen
        self.placed = None                      # parent -> PID 1: PLACED
        self.ids = None                         # parent -> PID 1, in a user namespace: IDS_WRITTEN
        self.console_fd = self.console_path = None
        self.stdio = (0, 1, 2)                  # the container's stdin, stdout, stderr (without a tty)
        self.netns_fd = None                    # --network container:NAME: the namespace to join
        self.cgroup_entry = None                # cgroups.Entry: PID 1 walks into its cgroup by itself
        # An OCI bundle's container (spec.oci), which waits for `start` (oci_init.py):
        self.joins = ()                         # [(namespace, fd)]: namespaces given by path
        self.created = None                     # PID 1 -> parent: CREATED, waiting for start
        self.listener = None                    # PID 1 -> parent: its seccomp filter's agent's descriptor
        self.fifo_fd = None                     # exec.fifo, O_PATH: opened for writing, it waits
        self.fifo_dir_fd = None                 # its directory, O_PATH: PID 1 removes it once let go
        self.bind_trees = {}                    # {mount's index: its source's copy}, for a user namespace
        self.preserved = ()                     # --preserve-fds: the caller's 3, 4, ... passed on as they are
        self.trampoline_fd = None               # what execs the command (init.trampoline_for): kept by the parent
        self.loopback_by_parent = False         # the parent brings PID 1's lo up (Container._start says when)

    def channels(self):
        return [c for c in (self.failure, self.placed, self.ids, self.created, self.listener) if c is not None]

    def child_side(self):
        """In a child (the helper, PID 1): let go of the parent's ends of the channels."""
        for c in self.channels():
            c.child_side()

    def descriptors(self):
        """The file descriptors above, all that PID 1 keeps of what it inherits."""
        entry = self.cgroup_entry
        return (*(c.child_end for c in self.channels()), self.console_fd, self.netns_fd, *self.stdio,
                self.fifo_fd, self.fifo_dir_fd, self.trampoline_fd, *(fd for _, fd in self.joins),
                *self.bind_trees.values(), *self.preserved,
                *(entry.tasks + [entry.cgroup2] if entry is not None else ()))


class Container:
    def __init__(self, spec, root):
        self.spec = spec
        self.root = os.path.abspath(root)
        self.dir = os.path.join(state.containers_dir(self.root), spec.id)
        self.cgroup = (cgroups.at(spec.oci["cgroups_path"]) if spec.oci
                       else cgroups.for_container(spec.id, spec.cgroup_parent))
        self.pid = None           # host pid of the container's PID 1
        self.helper = None        # host pid of the helper (the monitor when detached)
        self._child = None        # the process we forked and must reap: the helper, or PID 1
        self.detached = False
        self.console = None       # master side of the pty, with spec.tty
        self.exit_code = None
        self.oom_killed = False
        self._privileges = None   # (capabilities, seccomp program)
        self._endpoints = ()      # its interfaces on bridge networks, if any
        self._busy = None         # state.hold's descriptor while we create or start it

    @classmethod
    def load(cls, root, ref):
        """The container named, or with the id (prefix) ``ref``, from its state directory."""
        from minirt.spec import ContainerSpec

        root = os.path.abspath(root)
        cid = state.resolve(root, ref)
        spec = ContainerSpec.from_json(state.read_json(os.path.join(state.containers_dir(root), cid, "config.json")))
        c = cls(spec, root)
        c.detached = True
        info = c.state()
        c.pid, c.helper = info.get("pid"), info.get("monitor_pid")
        # Where it was made: a rootless one's depends on where its minirt ran.
        c.cgroup = cgroups.at(info["cgroup"]) if info.get("cgroup") else None
        return c

    def state(self):
        return state.load(self.root, self.spec.id)

    @property
    def id(self):
        return self.spec.id

    # -- create ---------------------------------------------------------------

    def create(self):
        """The state directory, name, /etc files and cgroup. Undone by ``delete``."""
        try:
            self._create()
        except BaseException:
            self._release_layers()  # nothing will use them
            raise

    def _release_layers(self):
        """Give back the lease on its image's layers (``api.prepare`` takes it,
        if it holds one).  A bundle's container (a rootfs of its own, no
        image) has none: ``minirt-runc create`` need not import the store."""
        if not self.spec.rootfs:
            from minirt.image.store import release

            release(self.spec.id)

    def _create(self):
        from minirt.runtime import userns

        self._privileges = _privileges(self.spec, self.root)  # a bad profile fails here, before anything exists
        network.validate(self.root, self.spec)     # so does a bad --network or -p
        remapped = userns.host_root(self.spec.uid_map, self.spec.gid_map)  # who mounts its overlay
        group = remapped[1] if remapped else None
        try:
            state.private_root(self.root, group)
            state.private_dir(state.containers_dir(self.root), group)
            # Held from its first instant to the end of start(): prune must
            # not take a container that is not yet complete (nor, between
            # mkdir and flock, its directory: containers/ is held meanwhile).
            new = os.path.join(state.containers_dir(self.root), f".new-{self.spec.id}")
            making = state.hold(state.containers_dir(self.root), shared=True)
            try:
                os.mkdir(new, 0o700)
                self._busy = state.hold(new)
            finally:
                os.close(making)
            os.rename(new, self.dir)
        except OSError as e:
            self._let_go()
            raise RuntimeFailure(f"creating container {self.spec.id[:12]}: {e.strerror or e}") from None
        try:
            if group is not None:
                state.private_dir(self.dir, group)
            if self.spec.rootfs:  # ready (an OCI bundle's): PID 1 waits on exec.fifo for `start`
                os.mkfifo(os.path.join(self.dir, "exec.fifo"), 0o600)
                if remapped:  # PID 1 opens it as the container's root
                    os.chown(os.path.join(self.dir, "exec.fifo"), *remapped)
                if self._by_runtime():
                    state.write_text(os.path.join(self.dir, "by-runtime"), "")
            else:
                for sub in ("upper", "work", "rootfs"):
                    os.mkdir(os.path.join(self.dir, sub), 0o755)
                userns.hand_over([os.path.join(self.dir, d) for d in ("upper", "work")],
                                 self.spec.uid_map, self.spec.gid_map)
            if not self.spec.remove:  # (a --rm container's exit status goes with it)
                state.reserve(self.dir)
            held = None
            if any(m.volume for m in self.spec.mounts):
                from minirt.runtime import volumes  # (only then: `run` without one pays nothing)

                held = volumes.attach(self.root, self.spec)  # a named one made on first use, an anonymous one now
            try:
                state.write_json(os.path.join(self.dir, "config.json"), self.spec.to_json())
            finally:
                if held is not None:
                    os.close(held)  # config.json names the volumes: `volume rm` sees them used
            self._release_layers()  # config.json names them now
            lifecycle.move(self.dir, lifecycle.CREATED, id=self.spec.id, name=self.spec.name,
                           created_at=time.time(), image=self.spec.image,
                           cgroup=self.cgroup.path if self.cgroup is not None else None,
                           cgroup_dirs=self.cgroup.dirs if self.cgroup is not None else [])
            if self.spec.name:
                state.claim_name(self.root, self.spec.name, self.spec.id)
            _crash_point("create")
            if not self.spec.rootfs:  # (an engine's bundle brings its own /etc files and network)
                state.write_text(os.path.join(self.dir, "hostname"), self.spec.hostname + "\n")
                state.write_text(os.path.join(self.dir, "hosts"), HOSTS.format(hostname=self.spec.hostname))
                state.write_text(os.path.join(self.dir, "resolv.conf"), _resolv_conf())
            self._create_cgroup()
            _crash_point("cgroup")
            if not self.spec.rootfs:
                network.setup(self)  # address, published ports, /etc/hosts
            _crash_point("network")
        except (OSError, MinirtError) as e:
            self.delete(force_remove=True)
            self._let_go()
            if isinstance(e, MinirtError):
                raise
            raise RuntimeFailure(f"creating container {self.spec.id[:12]}: {e.strerror or e}") from None

    def _create_cgroup(self):
        """The container's cgroup, with its limits.

        An unprivileged user usually may not create cgroups (unless systemd
        delegated a subtree); then a container without limits runs without a
        cgroup of its own, and one with limits is refused with a clear error.
        """
        limits = cgroups.Resources(**self.spec.resources)
        try:
            self.cgroup.create()
        except PermissionError:
            if os.geteuid() == 0 or limits.any():
                raise RuntimeFailure(f"cannot create cgroup {self.cgroup.path}: permission denied"
                                     " (resource limits need a writable, delegated cgroup)") from None
            self.cgroup = None
            state.update(self.dir, cgroup=None, cgroup_dirs=[])
            return
        if limits.any():
            self.cgroup.set_limits(limits)
        if self.spec.oci:
            if self.spec.oci["device_rules"] is not None:
                self.cgroup.restrict_devices(self.spec.oci["device_rules"])
        elif not self.spec.privileged:
            self.cgroup.restrict_devices()

    def _launch(self):
        if self._privileges is None:
            self._privileges = _privileges(self.spec, self.root)
        return Launch(
            rootfs=self.spec.rootfs or os.path.join(self.dir, "rootfs"),
            upper=os.path.join(self.dir, "upper"),
            work=os.path.join(self.dir, "work"),
            etc_files={} if self.spec.rootfs else {
                name: os.path.join(self.dir, name) for name in ("hostname", "hosts", "resolv.conf")},
            rootless=self.spec.rootless,
            capabilities=self._privileges[0],
            seccomp_program=self._privileges[1],
            networks=network.endpoints(self.state()) if network.mode(self.spec) == "bridge" else (),
        )

    # -- start ----------------------------------------------------------------

    def start(self, stdio=(0, 1, 2), detach=False, preserve_fds=0):
        """Clone the container's init (or fork a helper that does); return once
        the command runs.

        ``stdio`` are the host file descriptors that become the container's
        stdin, stdout and stderr (ignored with a tty).  With ``detach`` the
        helper becomes a monitor that outlives us, and the container's output
        goes to stdout.log and stderr.log in its state directory.
        ``preserve_fds``: our descriptors 3 .. 3+N-1 reach the command as they are.

        Raises CommandNotFound / CommandNotExecutable / RuntimeFailure with the
        container's own explanation when it could not get as far as ``exec``.
        """
        try:
            self._start(stdio, detach, tuple(range(3, 3 + preserve_fds)))
        finally:
            self._let_go()  # it runs (or failed): prune may judge it now

    def _let_go(self):
        if self._busy is not None:
            os.close(self._busy)
            self._busy = None

    def _start(self, stdio, detach, preserved):
        from minirt.kernel import libc
        from minirt.runtime import init

        self.detached = detach
        self.exit_code = None
        launch = self._launch()
        launch.preserved = preserved
        launch.trampoline_fd, launch.seccomp_program = init.trampoline_for(self.spec, launch.seccomp_program)
        if self.cgroup is not None:
            try:
                launch.cgroup_entry = self.cgroup.open_entry()
            except OSError as e:
                raise RuntimeFailure(f"opening cgroup {self.cgroup.path}: {e.strerror}") from None
        try:
            launch.netns_fd = network.netns_fd(self.root, self.spec)
        except BaseException:
            if launch.cgroup_entry is not None:
                launch.cgroup_entry.close()
            raise
        self._endpoints = launch.networks
        if self.spec.oci:
            self._open_bundle_doors(launch)
        # A new network namespace's lo is down.  Where we may enter PID 1's
        # (we are root, it has no user namespace) we bring lo up from here while
        # PID 1 builds its root: that is PID 1's time, the container's start-up.
        launch.loopback_by_parent = ("net" in self.spec.namespaces and launch.netns_fd is None
                                     and not self.spec.oci and not self.spec.rootless)
        # A helper clones PID 1 for a detached container (it becomes the
        # monitor), for a user namespace given by path (the helper enters it:
        # no process can leave one), and for a program with threads (Python
        # may not clone then) whose PID 1 needs a user namespace or joins
        # namespaces by path; else a threaded program forks PID 1 into its
        # namespaces (``namespaces.fork_into``; pytest-xdist's workers have two threads).
        threaded = not libc.single_threaded()
        helped = detach or "user" in dict(launch.joins) or (threaded and (self.spec.rootless or bool(launch.joins)))
        born = channel.Channel(down=False) if helped else None   # helper -> parent: PID 1 exists
        launch.failure = channel.Channel(down=False)
        launch.placed = channel.Channel(down=True, gone="the container could not be placed in its cgroup")
        if self.spec.rootless:
            launch.ids = channel.Channel(down=True, gone="minirt gave up before writing the id maps")
        opened = []
        if detach:
            stdio = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)] + [
                os.open(os.path.join(self.dir, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
                for name in ("stdout.log", "stderr.log")]
            opened = stdio
        launch.stdio = tuple(stdio)
        if self.spec.tty and not detach:
            from minirt.runtime import tty  # (termios and friends: only for -t)

            self.console, launch.console_fd = os.openpty()
            launch.console_path = os.ttyname(launch.console_fd)
            if self.spec.oci:  # (an engine's console has no size of ours to copy)
                tty.set_winsize(self.console, *(self.spec.oci["console_size"] or (0, 0)))
            else:
                tty.copy_winsize(0, self.console)

        if helped:
            first = os.fork()
            if first == 0:
                _helper_main(self, launch, born, inherited=(self.console,))  # never returns
            pid1_born = None  # the helper will say
            if detach:
                os.waitpid(first, 0)
            else:
                self.helper = self._child = first
        else:  # in the foreground, as runc does: minirt itself is PID 1's parent
            pid1, inside = _spawn_pid1(self.spec, launch, threaded)
            if pid1 == 0:
                init.main(self.spec, launch)  # never returns
            pid1_born, self._child = (pid1, inside), pid1

        for c in launch.channels() + ([born] if helped else []):
            c.parent_side()
        init.close_all([launch.console_fd, launch.netns_fd, launch.fifo_fd, launch.fifo_dir_fd,
                        *(fd for _, fd in launch.joins),
                        *launch.bind_trees.values()] + opened)
        if launch.cgroup_entry is not None:
            launch.cgroup_entry.close()
        try:
            report = self._handshake(pid1_born, born, launch)
        except BaseException:
            self._kill_helper()
            raise
        if report:
            if self._child or lifecycle.is_running(self.state()):  # (detached, a monitor records its exit)
                self.wait()
            channel.raise_failure(report, self.spec.args[0])

    def _open_bundle_doors(self, launch):
        """An OCI bundle's container: the namespaces it joins, its exec.fifo and
        the channel on which it says it waits for `start`."""
        # PID 1's steps for a bundle, imported here for it: in a user namespace
        # it may not read the host's Python library (nor after pivot_root).
        from minirt.kernel import namespaces
        from minirt.runtime import init, oci_init  # noqa: F401

        joins = []
        try:
            for name, path in self.spec.oci["joins"].items():
                joins.append((name, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
                if namespaces.kind(joins[-1][1]) != name:
                    init.close_all([fd for _, fd in joins])
                    raise RuntimeFailure(f"linux.namespaces: {path} is not a {name} namespace")
            launch.fifo_fd = os.open(os.path.join(self.dir, "exec.fifo"), os.O_PATH | os.O_CLOEXEC)
            if not self._by_runtime():
                launch.fifo_dir_fd = os.open(self.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            if self.spec.rootless or "user" in self.spec.oci["joins"]:
                launch.bind_trees = _bind_trees(self.spec.oci["mounts"])
        except OSError as e:
            init.close_all([fd for _, fd in joins] + [launch.fifo_fd, launch.fifo_dir_fd])
            launch.fifo_fd = launch.fifo_dir_fd = None
            raise RuntimeFailure(f"opening {e.filename}: {e.strerror}") from None
        launch.joins = joins
        launch.created = channel.Channel(down=False, gone="the runtime that created the container went away")
        if self.spec.oci.get("seccomp_listener"):  # its seccomp filter's agent (seccomp_agent.py)
            launch.listener = channel.FdChannel()

    def _by_runtime(self):
        """Whether an OCI bundle's ``start`` and ``delete`` have more to do than
        minirt-runc's front door does (then ``by-runtime`` in its directory tells
        it to leave them to the runtime): hooks to run after the start or the
        delete, or a PID 1 that may not remove exec.fifo from this directory,
        being another user on the host (a remapped root, or a user namespace
        it joins)."""
        from minirt.runtime import userns

        hooks = self.spec.oci["hooks"]
        return bool(hooks.get("poststart") or hooks.get("poststop")) or "user" in self.spec.oci["joins"] or \
            userns.host_root(self.spec.uid_map, self.spec.gid_map) is not None

    def _handshake(self, born, born_channel, launch):
        """The parent's half of the start-up (see the module docstring).
        ``born`` is (PID 1's pid, born inside its cgroup2 cgroup), or None if
        the helper will say it on ``born_channel``.  Returns PID 1's failure
        report: empty once the command runs (or, from an OCI bundle, once it
        waits for `start`).  However it ends, our channels close: a PID 1
        still waiting then gives up."""
        try:
            if born is None:
                said = born_channel.receive_born()
                if said is None:  # the helper failed: its report says why
                    return launch.failure.outcome()
                born, self.helper = said[:2], said[2]
                _crash_point("helper-ready")
            self.pid, inside = born
            if network.mode(self.spec) == network.SLIRP:  # while PID 1 lets us open its namespaces
                network.start_slirp(self.dir, self.pid, self.state().get("ports", ()))
            if self.spec.rootless:
                from minirt.kernel import namespaces

                namespaces.write_id_maps(self.pid, self.spec.uid_map, self.spec.gid_map)
                if not launch.ids.send(channel.IDS_WRITTEN):
                    return launch.failure.outcome()  # PID 1 already failed: its report says why
            if self.cgroup is not None and not inside:
                try:  # PID 1 could not be born in its cgroup2 cgroup: move it there
                    self.cgroup.add(self.pid, versions=("v2",))
                except ProcessLookupError:
                    return launch.failure.outcome()  # PID 1 already failed: its report says why
            if launch.loopback_by_parent:
                from minirt.kernel import links

                try:
                    links.link_up_in(self.pid)
                except (FileNotFoundError, ProcessLookupError):
                    return launch.failure.outcome()  # PID 1 already failed: its report says why
                except OSError as e:
                    raise RuntimeFailure(f"bringing up the container's loopback: {e.strerror}") from None
            if self._endpoints:  # its network namespace exists: plug in the cables
                network.attach(self._endpoints, self.pid, self.root, self.spec.id)
            if launch.created is not None:  # an OCI bundle's: created, until `start`
                from minirt.runtime import hooks

                state.update(self.dir, pid=self.pid, pid_start=state.start_time(self.pid))
                for stage in ("prestart", "createRuntime"):  # its namespaces exist, its rootfs not yet
                    hooks.run(self.spec.oci["hooks"], stage, hooks.state(self.spec, self.pid, "creating"))
                launch.placed.send(channel.PLACED)
                if launch.listener is not None:
                    from minirt.runtime import seccomp_agent

                    if seccomp_agent.receive_and_send(launch.listener, self.spec.oci["seccomp_listener"],
                                                      hooks.state(self.spec, self.pid, "creating")) is None:
                        return launch.failure.outcome()  # PID 1 failed before its filter: its report says why
                return b"" if launch.created.receive() == channel.CREATED else launch.failure.outcome()
            recorder = self.helper or os.getpid()  # who will record the exit: the monitor, or we
            lifecycle.move(self.dir, lifecycle.RUNNING, pid=self.pid, pid_start=state.start_time(self.pid),
                           monitor_pid=recorder, monitor_start=state.start_time(recorder),
                           started_at=time.time(), finished_at=None, exit_code=None, oom_killed=False,
                           error=None, detached=self.detached, health=None)
            _crash_point("running")
            launch.placed.send(channel.PLACED)  # (if PID 1 has already failed, its report says why)
            return launch.failure.outcome()
        finally:
            for c in launch.channels() + ([born_channel] if born_channel is not None else []):
                c.close()

    def restart(self, by_policy=False):
        """``minirt start``: run a stopped container again, detached, on the same
        writable layer (what it wrote before is still there); a start by hand
        sets its RestartCount back to 0 (``restarts.py``).  ``by_policy``: its
        monitor's restart, which counts, and happens only if it is still
        "restarting", not stopped by hand meanwhile.  Returns whether it started."""
        self._busy = state.hold(self.dir)  # (held by `stop` too, to say "stopped by hand")
        try:
            info = self.state()
            if by_policy and (info.get("status") != lifecycle.RESTARTING or info.get("stopped_by_hand")):
                self._let_go()
                return False
            counts = ({"restart_count": info.get("restart_count", 0) + 1} if by_policy
                      else {"restart_count": 0, "restart_delay": None, "stopped_by_hand": False})
            if info.get("status") == lifecycle.EXITED:  # (recorded as running, if its monitor died: say it)
                counts.update((k, info.get(k)) for k in ("status", "exit_code", "finished_at", "error"))
            state.update(self.dir, **counts)
            state.reserve(self.dir)  # (spent if it filled the disk last time)
            self.cgroup = cgroups.for_container(self.spec.id, self.spec.cgroup_parent)
            self._create_cgroup()
            state.update(self.dir, cgroup=self.cgroup.path if self.cgroup is not None else None)
        except BaseException:
            self._let_go()
            raise
        self.start(detach=True)
        return True

    # -- run time --------------------------------------------------------------

    def signal(self, signum):
        """Deliver ``signum`` to the container's PID 1 (from the host side)."""
        _crash_point("signal")
        info = self.state() if self.detached else {
            "status": lifecycle.RUNNING if self.exit_code is None else lifecycle.EXITED, "pid": self.pid}
        if lifecycle.is_running(info) and info.get("pid"):
            try:
                os.kill(info["pid"], signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout=None):
        """Wait for PID 1 to exit; return docker's exit code (128+N for signal N)."""
        if self.exit_code is not None:
            return self.exit_code
        if self._child:
            self.exit_code = exit_status(os.waitpid(self._child, 0)[1])
            self.oom_killed = self.cgroup is not None and self.cgroup.oom_killed()
            if self.spec.remove:
                return self.exit_code  # (its record goes next, in `delete`: not worth a write)
            try:
                lifecycle.move(self.dir, lifecycle.EXITED, exit_code=self.exit_code, oom_killed=self.oom_killed,
                               finished_at=time.time())
            except OSError:
                pass  # not recorded (ps will say "unknown"), but the exit code is still the caller's
            except lifecycle.InvalidTransition:
                pass  # a restart whose PID 1 failed before it ran: it stays exited as it was
            return self.exit_code
        # Detached: the monitor records the exit; we watch the state.
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        while True:
            info = self.state()
            if info.get("status") == lifecycle.EXITED:
                self.exit_code, self.oom_killed = info.get("exit_code"), bool(info.get("oom_killed"))
                return self.exit_code
            if info.get("status") == lifecycle.CREATED:
                raise RuntimeFailure(f"container {self.spec.id[:12]} is not running")
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after ``timeout`` seconds, as ``docker stop``;
        no restart policy brings it back."""
        self.stopped_by_hand()
        self.signal(signal.SIGTERM)
        if self.wait(timeout=timeout) is None:
            self.signal(signal.SIGKILL)
            self.wait()
        return self.exit_code

    def kill(self, signum):
        """``minirt kill``: ``signum`` to PID 1, and no restart policy brings it back."""
        self.stopped_by_hand()
        self.signal(signum)

    def stopped_by_hand(self):
        """docker's HasBeenManuallyStopped: its restart policy is not applied
        until it is started by hand (``restarts.py``).  Said while holding the
        container, so that a restart under way ends first (and is then stopped)."""
        if not self.detached:
            return  # (in the foreground: no monitor, no policy)
        try:
            busy = state.hold(self.dir)
        except FileNotFoundError:
            return  # removed meanwhile
        try:
            state.update(self.dir, stopped_by_hand=True)
        finally:
            os.close(busy)

    def _kill_helper(self):
        for pid in (self.pid, self.helper):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._child:
            self.wait()

    # -- delete ---------------------------------------------------------------

    def delete(self, force_remove=False):
        """After the container ran in the foreground: remove the cgroup (killing
        what is left) and, with --rm, the state directory."""
        if self._child and self.exit_code is None:
            self._kill_helper()
        if self.console is not None:
            os.close(self.console)
            self.console = None
        try:
            if self.cgroup is not None:
                self.cgroup.remove()
        except OSError as e:
            raise RuntimeFailure(f"removing cgroup {self.cgroup.path}: {e.strerror}") from None
        finally:
            if self.spec.remove or force_remove:
                self.remove_files(volumes=force_remove)  # (a failed create's anonymous volumes are new)

    def remove(self, force=False, volumes=False):
        """``minirt rm``: everything of the container, from any state; with
        ``volumes`` (``rm -v``), its anonymous volumes too."""
        info = self.state()
        if lifecycle.is_up(info):
            if not force:
                raise MinirtError(f"container {self.spec.id[:12]} is {info['status']}: stop it first or use rm -f")
            self.stopped_by_hand()  # (a restarting one's monitor then gives up: exited)
            self.signal(signal.SIGKILL)
            self.wait(timeout=10)
            # The monitor records the exit, then exits: rm returns once it has.
            deadline = time.monotonic() + 5
            while state.alive(info.get("monitor_pid"), info.get("monitor_start")) and time.monotonic() < deadline:
                time.sleep(0.002)
        if self.cgroup is not None:
            self.cgroup.remove()
        self.remove_files(volumes=volumes)

    def remove_files(self, volumes=False):
        """The state directory, name and address; the anonymous volumes with
        ``volumes`` or --rm (as docker's ``run --rm`` takes them)."""
        if network.mode(self.spec) == "bridge":
            network.release(self.root, self.spec.id)  # veth, ports, address, peers' /etc/hosts
        if self.spec.name:
            state.release_name(self.root, self.spec.name, self.spec.id)
        # Rename first: from that instant the container is gone for everyone,
        # even if the (possibly long) tree removal is interrupted.
        doomed = os.path.join(os.path.dirname(self.dir), f".removing-{self.spec.id}")
        try:
            os.rename(self.dir, doomed)
        except FileNotFoundError:
            return
        try:  # overlayfs leaves work/work with mode 0: rootless, we must open it to empty it
            os.chmod(os.path.join(doomed, "work", "work"), 0o700)
        except OSError:
            pass
        state.remove_renamed(doomed)
        if (volumes or self.spec.remove) and any(m.anonymous for m in self.spec.mounts):
            from minirt.runtime import volumes as kept

            kept.remove_anonymous(self.root, self.spec)

    # -- Python API ------------------------------------------------------------

    def exec(self, args, *, env=(), workdir=None, user=None, input=None):
        """Run ``args`` inside the running container; return (exit code, stdout, stderr)."""
        from minirt.runtime import exec as execution
        from minirt.runtime.capture import Result, captured

        args = list(args)

        def start(stdio):
            pid, err = execution.start(self, args, env=env, workdir=workdir, user=user,
                                       interactive=input is not None, stdio=stdio)
            report = execution.wait_for_exec(err)
            if report:
                os.waitpid(pid, 0)
                execution.raise_report(report, args[0])
            return pid

        pid, out, err = captured(start, input)
        return Result(exit_status(os.waitpid(pid, 0)[1]), out, err, self.id)

    def logs(self):
        """(stdout, stderr) of a detached container so far."""
        out = []
        for name in ("stdout.log", "stderr.log"):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    out.append(f.read())
            except FileNotFoundError:
                out.append(b"")
        return tuple(out)


    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.remove(force=True)
        except MinirtError:
            pass


def _crash_point(name):
    """Fault injection for the crash tests: ``MINIRT_CRASH_AT=name`` makes the
    process that reaches this point kill itself with SIGKILL, as a crash would."""
    if os.environ.get("MINIRT_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _privileges(spec, root):
    """The capability set and compiled seccomp filter the container will get."""
    from minirt.kernel import security

    caps = security.capability_set(cap_add=spec.cap_add, cap_drop=spec.cap_drop, privileged=spec.privileged)
    agent = spec.oci and spec.oci.get("seccomp_listener")  # (an OCI bundle's: SCMP_ACT_NOTIFY's agent)
    if agent:
        from minirt.runtime import seccomp_agent

        seccomp_agent.check_kernel()
    profile = spec.oci and spec.oci.get("seccomp")  # an OCI bundle's profile, inline in its config.json
    program = security.seccomp_program(spec.seccomp, spec.privileged, caps, cache=state.seccomp_cache(root),
                                       profile=lightjson.dumps(profile).encode() if profile else None,
                                       notify=bool(agent))
    return caps, program


def _bind_trees(mount_list):
    """{index: copy} of a bundle's bind mounts' sources, made here (``libc.open_tree``)
    for PID 1 in a user namespace: its root, a host uid without the host root's
    rights, may not reach a source that the runtime can (runc opens them
    beforehand too).  Where the kernel or our privileges do not allow it, none."""
    from minirt.kernel import libc

    trees = {}
    for i, m in enumerate(mount_list):
        if m["type"] == "bind":
            try:
                trees[i] = libc.open_tree(m["source"], recursive="rbind" in m["options"])
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOSYS):
                    for fd in trees.values():
                        os.close(fd)
                    raise OSError(e.errno, os.strerror(e.errno), m["source"]) from None
    return trees


def _spawn_pid1(spec, launch, threaded=False):
    """Create the container's PID 1 with one clone: in its new namespaces (all
    but mnt, which it makes for itself, and cgroup, which waits until it is
    placed) and, where clone3 allows, inside its cgroup2 cgroup.  Returns
    (pid, born inside the cgroup2 cgroup); pid is 0 in PID 1.  A ``threaded``
    caller forks it into its namespaces instead (no user namespace, none
    joined by path: see ``Container._start``), outside its cgroup2 cgroup."""
    from minirt.kernel import libc, namespaces

    skip = ("mnt", "cgroup") + (("net",) if launch.netns_fd is not None else ())  # container:NAME: joined
    flags = 0
    for ns in spec.namespaces:
        if ns not in skip:
            flags |= namespaces.FLAGS[ns]
    if threaded:
        return namespaces.fork_into(flags), False
    pid_ns = dict(launch.joins).get("pid")
    if pid_ns is None:
        return cgroups.clone_into(launch.cgroup_entry, flags)
    # An OCI bundle's pid namespace given by path: a process enters one only by
    # being born there, so we step in for this one child, then back to our own.
    ours = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(pid_ns, libc.CLONE_NEWPID)
        pid, inside = cgroups.clone_into(launch.cgroup_entry, flags)
    except BaseException:
        libc.setns(ours, libc.CLONE_NEWPID)
        os.close(ours)
        raise
    if pid:  # (PID 1 lets go of it with the rest of what it inherited)
        libc.setns(ours, libc.CLONE_NEWPID)
        os.close(ours)
    return pid, inside


def _helper_main(container, launch, born, inherited):
    """The helper (see the module docstring): spawn PID 1, say so on ``born``,
    then wait for it or become its monitor.  Never returns: whatever happens,
    it must not go back into the code of the program that forked it.
    ``inherited`` are more of our parent's descriptors, to let go of first
    (with its ends of the channels)."""
    from minirt.kernel import libc
    from minirt.runtime import init

    try:
        launch.child_side()
        born.child_side()
        init.close_all(inherited)
        if container.detached:
            # Double fork: the monitor must not stay our child (nobody would
            # reap it), and it gets a session of its own, away from our terminal.
            os.setsid()
            if os.fork():
                os._exit(0)
        else:
            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # die with minirt
        user_ns = dict(launch.joins).get("user")
        if user_ns is not None:  # an OCI bundle's: PID 1 is born in it, its new namespaces owned by it
            libc.setns(user_ns, libc.CLONE_NEWUSER)
        pid1, inside = _spawn_pid1(container.spec, launch)
        if pid1 == 0:
            init.main(container.spec, launch)  # never returns
        born.send_born(pid1, inside, os.getpid())
        # Hold on to nothing: a pipe end kept open here (the container's stdin,
        # say) would keep the other side from ever seeing end-of-file.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        # Signals are for the container, sent to PID 1 directly; Ctrl-C on
        # minirt's terminal must not kill the helper and orphan the container.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(s, signal.SIG_IGN)
        if container.detached:
            _become_monitor(container, pid1)
        os._exit(exit_status(os.waitpid(pid1, 0)[1]))
    except BaseException as e:  # noqa: BLE001
        launch.failure.send_failure(e if isinstance(e, (MinirtError, OSError)) else RuntimeFailure(str(e)))
        os._exit(125)


def _become_monitor(container, pid1):
    """Replace this (large) forked Python with the small monitor program.

    A fresh interpreter that imports only what the monitor needs is a fraction
    of the size of a copy of minirt, and a host runs one per container.
    """
    from minirt.spec import health_enabled

    probing = health_enabled(container.spec.healthcheck)  # (then the monitor forks a prober: health.py)
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # -S keeps site from running, and with it the packages minirt depends on
    # (cffi, for kernel/libc.py) off the path: name their directories.
    packages = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
    env = {"PYTHONPATH": os.pathsep.join([package_parent] + packages),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if "MINIRT_CRASH_AT" in os.environ:
        env["MINIRT_CRASH_AT"] = os.environ["MINIRT_CRASH_AT"]
    # Let go of minirt's stdin/stdout/stderr: as long as we hold them, whoever
    # reads minirt's output (`id=$(minirt run -d ...)`) never sees end-of-file.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        # A script, not -m: runpy alone would add ~0.9 MB to every monitor.
        # -P keeps the script's directory (minirt/runtime, with its tty.py) off sys.path.
        monitor_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monitor.py")
        os.execve(sys.executable, [sys.executable, "-S", "-P", monitor_py, container.dir, str(pid1)]
                  + (["probe"] if probing else []), env)
    except OSError:
        # The interpreter cannot be executed from here (e.g. it lives where a
        # user namespace may not look): monitor from this copy rather than
        # leave PID 1 without a parent.
        from minirt.runtime import monitor
        os._exit(monitor.main(container.dir, pid1, probing))


def _resolv_conf():
    """The host's resolver configuration, minus nameservers on the host's loopback
    (127.0.0.53 and friends), which inside the container would mean itself."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    kept = [line for line in lines if not (line.startswith("nameserver") and line.split()[1:2]
                                           and (line.split()[1].startswith("127.") or line.split()[1] == "::1"))]
    return "\n".join(kept) + "\n"
