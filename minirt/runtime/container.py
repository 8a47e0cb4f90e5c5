"""The parent's side of a container: create, start, wait, delete.

Lecture idea: there is no "container" object in the kernel, only a process with
namespaces and a cgroup.  Making one takes three processes, because of one rule
of pid namespaces — ``unshare(CLONE_NEWPID)`` moves only the caller's future
children:

    minirt (parent)          creates the state directory and the cgroup, forks
      └─ helper              waits until the parent has put it into the cgroup,
         │                   unshares the namespaces, forks, then waits
         └─ container init   PID 1 of the new pid namespace: builds the rootfs
                             and execs the command (``init.py``)

The helper stays, like ``unshare --fork``, to pass PID 1's exit status back
as its own; the parent forwards signals to PID 1 directly.  The order of the
pipe handshake is what makes the cgroup namespace right: the helper is moved
into the cgroup *before* it unshares, so the container sees its own cgroup as
"/".

Everything the container owns is recorded (the state directory) before it is
made, and ``delete`` removes all of it; mounts need no cleanup at all because
they exist only in the container's mount namespace, which dies with it.
"""

import dataclasses
import os
import signal
import time

from minirt.errors import CommandNotExecutable, CommandNotFound, MinirtError, RuntimeFailure
from minirt.kernel import cgroups, libc, namespaces, security
from minirt.runtime import init, state, tty

HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
127.0.0.1\t{hostname}
"""


@dataclasses.dataclass
class Launch:
    """What the parent prepared for the container's init (inherited across fork)."""

    rootfs: str
    upper: str
    work: str
    etc_files: dict
    error_fd: int = -1
    console_fd: int = None
    console_path: str = None
    stdio: tuple = (0, 1, 2)     # the container's stdin, stdout, stderr (without a tty)
    rootless: bool = False
    capabilities: frozenset = frozenset()   # what root in the container keeps
    seccomp_program: bytes = None           # compiled here, installed by init


class Container:
    def __init__(self, spec, root):
        self.spec = spec
        self.root = os.path.abspath(root)
        self.dir = os.path.join(self.root, "containers", spec.id)
        self.cgroup = cgroups.for_container(spec.id, spec.cgroup_parent)
        self.pid = None           # host pid of the container's PID 1
        self.helper = None        # host pid of the helper process
        self.console = None       # master side of the pty, with spec.tty
        self.exit_code = None
        self.oom_killed = False
        self._privileges = None   # (capabilities, seccomp program), checked before anything is made

    # -- create ---------------------------------------------------------------

    def create(self):
        """The state directory, /etc files and cgroup. Undone by ``delete``."""
        self._privileges = _privileges(self.spec)  # a bad profile fails here, before anything exists
        try:
            os.makedirs(os.path.join(self.root, "containers"), exist_ok=True)
            os.mkdir(self.dir, 0o711)
            for sub in ("upper", "work", "rootfs"):
                os.mkdir(os.path.join(self.dir, sub), 0o755)
            state.write_json(os.path.join(self.dir, "config.json"), self.spec.to_json())
            self._save_state("created")
            state.write_text(os.path.join(self.dir, "hostname"), self.spec.hostname + "\n")
            state.write_text(os.path.join(self.dir, "hosts"), HOSTS.format(hostname=self.spec.hostname))
            state.write_text(os.path.join(self.dir, "resolv.conf"), _resolv_conf())
            self._create_cgroup()
        except (OSError, MinirtError) as e:
            self.delete(force_remove=True)
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
            return
        if limits.any():
            self.cgroup.set_limits(limits)

    def _launch(self):
        return Launch(
            rootfs=os.path.join(self.dir, "rootfs"),
            upper=os.path.join(self.dir, "upper"),
            work=os.path.join(self.dir, "work"),
            etc_files={name: os.path.join(self.dir, name) for name in ("hostname", "hosts", "resolv.conf")},
            rootless=self.spec.rootless,
            capabilities=self._privileges[0],
            seccomp_program=self._privileges[1],
        )

    # -- start ----------------------------------------------------------------

    def start(self, stdio=(0, 1, 2)):
        """Fork the helper and the container's init; return once the command runs.

        ``stdio`` are the host file descriptors that become the container's
        stdin, stdout and stderr (ignored with a tty).

        Raises CommandNotFound / CommandNotExecutable / RuntimeFailure with the
        container's own explanation when it could not get as far as ``exec``.
        """
        launch = self._launch()
        go_r, go_w = os.pipe2(os.O_CLOEXEC)      # parent -> helper: "id maps and cgroup done"
        pid_r, pid_w = os.pipe2(os.O_CLOEXEC)    # helper -> parent: "ready", then PID 1's host pid
        err_r, err_w = os.pipe2(os.O_CLOEXEC)    # init -> parent: why exec did not happen
        launch.error_fd = err_w
        launch.stdio = tuple(stdio)
        if self.spec.tty:
            self.console, launch.console_fd = os.openpty()
            launch.console_path = os.ttyname(launch.console_fd)
            tty.copy_winsize(0, self.console)

        helper = os.fork()
        if helper == 0:
            os.close(go_w)
            os.close(pid_r)
            os.close(err_r)
            if self.console is not None:
                os.close(self.console)
            _helper_main(self.spec, launch, go_r, pid_w)

        self.helper = helper
        for fd in (go_r, pid_w, err_w, launch.console_fd):
            if fd is not None:
                os.close(fd)
        try:
            try:
                if os.read(pid_r, 1) == b"r":  # else the helper failed; its report follows
                    if self.spec.rootless:
                        namespaces.write_id_maps(helper, self.spec.uid_map, self.spec.gid_map)
                    if self.cgroup is not None:
                        self.cgroup.add(helper)
                    os.write(go_w, b"1")
            finally:
                os.close(go_w)
            pid = _read_all(pid_r)
            self.pid = int(pid) if pid else None
            report = _read_all(err_r).decode(errors="replace")
        except BaseException:
            self._kill_helper()
            raise
        if report:
            self.wait()
            code, _, message = report.partition(" ")
            raise {126: CommandNotExecutable, 127: CommandNotFound}.get(int(code), RuntimeFailure)(message)
        self._save_state("running")

    # -- run time --------------------------------------------------------------

    def signal(self, signum):
        """Deliver ``signum`` to the container's PID 1 (from the host side)."""
        if self.pid is not None and self.exit_code is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self):
        """Wait for PID 1 to exit; return docker's exit code (128+N for signal N)."""
        if self.exit_code is None:
            _, status = os.waitpid(self.helper, 0)
            code = os.waitstatus_to_exitcode(status)
            self.exit_code = code if code >= 0 else 128 - code
            self.oom_killed = self.cgroup is not None and self.cgroup.oom_killed()
            self._save_state("exited")
        return self.exit_code

    def _kill_helper(self):
        for pid in (self.pid, self.helper):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.helper:
            self.wait()

    # -- delete ---------------------------------------------------------------

    def delete(self, force_remove=False):
        """Remove the cgroup (killing what is left) and, with --rm, the state directory."""
        if self.helper and self.exit_code is None:
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
                import shutil  # lazily: it pulls in compression modules

                shutil.rmtree(self.dir, ignore_errors=True)

    def _save_state(self, status):
        data = {
            "id": self.spec.id,
            "status": status,
            "pid": self.pid,
            "helper_pid": self.helper,
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "cgroup": self.cgroup.path if self.cgroup is not None else None,
            "time": time.time(),
        }
        if os.path.isdir(self.dir):
            state.write_json(os.path.join(self.dir, "state.json"), data)


def _privileges(spec):
    """The capability set and compiled seccomp filter the container will get."""
    caps = security.capability_set(cap_add=spec.cap_add, cap_drop=spec.cap_drop, privileged=spec.privileged)
    profile = security.seccomp_profile(spec.seccomp, spec.privileged)
    program = security.compile_profile(profile, caps=caps) if profile is not None else None
    return caps, program


def _helper_main(spec, launch, go_r, pid_w):
    """The middle process (see the module docstring). Never returns."""
    try:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # die with minirt
        # The user namespace comes first and alone: the parent must write its id
        # maps before anything else is created, because every other namespace
        # made from here on is owned by it, and mounting needs a mapped root.
        if spec.rootless:
            namespaces.unshare(["user"])
        os.write(pid_w, b"r")
        if os.read(go_r, 1) != b"1":
            os._exit(125)  # the parent gave up (e.g. could not write the id maps)
        os.close(go_r)
        if spec.rootless:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        namespaces.unshare([ns for ns in spec.namespaces if ns != "user"])
        pid1 = os.fork()
        if pid1 == 0:
            os.close(pid_w)
            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            init.main(spec, launch)  # never returns
        os.write(pid_w, str(pid1).encode())
        # Hold on to nothing: a pipe end kept open here (the container's stdin,
        # say) would keep the other side from ever seeing end-of-file.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        # The parent forwards signals to PID 1 itself; Ctrl-C on minirt's
        # terminal must not kill the helper and orphan the container.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(s, signal.SIG_IGN)
        while True:
            try:
                _, status = os.waitpid(pid1, 0)
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
    except BaseException as e:  # noqa: BLE001
        init._report(launch.error_fd, e if isinstance(e, (MinirtError, OSError)) else RuntimeFailure(str(e)))
        os._exit(125)


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _resolv_conf():
    """The host's resolver configuration, minus nameservers on the host's loopback
    (127.0.0.53 and friends), which inside the container would mean itself."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    kept = [l for l in lines if not (l.startswith("nameserver") and l.split()[1:2] and
                                     (l.split()[1].startswith("127.") or l.split()[1] == "::1"))]
    return "\n".join(kept) + "\n"
