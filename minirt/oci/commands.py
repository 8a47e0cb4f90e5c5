"""The OCI runtime's operations on its state root: what runc's commands do.

Lecture idea: the OCI runtime spec's life cycle, driven from outside.  Each
operation is a separate, short-lived process (the engine calls the command
line once per step), so everything lives in the state root (``--root``,
one directory per container, as minirt's own: ``runtime/state.py``) and in
the kernel:

    create   the container is made (``Container.create`` + ``start``, as
             ``minirt run`` does), but PID 1 stops before its command, blocked
             opening ``exec.fifo``; its pid goes to the pid file and ``create``
             exits: PID 1 is reparented to the engine's shim, which reaps it
    start    opens exec.fifo for reading: PID 1 goes on, removes the fifo and
             becomes the command
    state    the recorded state (``runtime/lifecycle.py``) corrected by the
             kernel and exec.fifo: a PID 1 that is gone means "stopped", a
             "created" one whose fifo is gone "running" (as runc: a container
             is created while its fifo is there)
    kill     a signal to PID 1 (``--all``: to every process of its cgroup)
    pause    the cgroup freezer; resume thaws
    delete   the cgroup and the state directory (``--force`` kills first)

minirt-runc's front door (``minirt-runc``, beside this module) makes start,
and delete of a stopped container, itself, without Python, where there is no
more to them than this (no poststart or poststop hooks: ``by-runtime``).
"""

import os
import stat
import sys
import time

from minirt.errors import MinirtError
from minirt.runtime import hooks, lifecycle, state

from minirt.spec import OCI_VERSION

# The runtime's core (``Container``, the handshake's channels) is imported
# where a container is loaded or made: an engine's last ``delete --force`` of
# a container that is already gone, say, needs none of it.


class OciError(MinirtError):
    pass


def check_id(cid):
    """runc's rule for container ids: letters, digits and ``_+-.``; not . or .."""
    if not cid or cid in (".", "..") or not all(ch.isalnum() or ch in "_+-." for ch in cid) or not cid.isascii():
        raise OciError(f"invalid container id {cid!r}: letters, digits and _+-. only")
    return cid


def load(root, cid):
    """The container ``cid`` (its exact id: engines never abbreviate) in ``root``."""
    check_id(cid)
    if not os.path.isdir(os.path.join(state.containers_dir(root), cid)):
        raise OciError(f"container does not exist: {cid}")
    from minirt.runtime.container import Container

    return Container.load(root, cid)


def _quiet(_message):
    pass


# runc's --debug lines name the steps of its init (nsexec, init(), ...); the
# scripts that read them look for those names.  minirt's steps of the same
# purpose are said under them, with what minirt did.
def create(root, cid, bundle_dir, pid_file=None, console_socket=None, relay=False, preserve_fds=0, debug=_quiet):
    """Make the container; return it with PID 1 waiting for ``start``.  Its
    terminal's master goes to ``console_socket``, or stays ours to ``relay``;
    our descriptors 3 .. 3+``preserve_fds``-1 go to its process as they are.
    ``debug(line)`` is told each step."""
    from minirt.oci import bundle
    from minirt.runtime.container import Container

    check_id(cid)
    if os.path.isdir(os.path.join(state.containers_dir(root), cid)):
        raise OciError(f"container with id exists: {cid}")
    spec = bundle.load(bundle_dir, cid)
    if spec.tty and not console_socket and not relay:
        raise OciError("cannot allocate a terminal without --console-socket")
    if console_socket and not spec.tty:
        raise OciError("--console-socket given but process.terminal is false")
    container = Container(spec, root)
    if container.cgroup is not None:  # a cgroup made beforehand (cgroupsPath): runc's checks
        if container.cgroup.frozen():
            raise OciError(f"container's cgroup unexpectedly frozen: {container.cgroup.path}")
        if container.cgroup.pids():  # (allowed, as runc allows it: said)
            print(f"minirt-runc: warning: the container's cgroup is not empty: {container.cgroup.path}"
                  " holds processes already", file=sys.stderr)
    container.create()
    try:
        debug(f"nsexec container setup: cloning PID 1 of {cid} into its namespaces and cgroup")
        container.start(preserve_fds=preserve_fds)
        debug(f"child process in init(): PID 1 ({container.pid}) built the root filesystem, waits on exec.fifo")
        if console_socket:
            _send_console(console_socket, container.console)
        if pid_file:
            state.write_text(os.path.abspath(pid_file), str(container.pid), mode=0o644)
    except BaseException:
        container.delete(force_remove=True)
        raise
    return container


def run_foreground(container):
    """``run`` without --detach: we are PID 1's parent; forward the signals
    meant for the container, relay its terminal, return its exit status."""
    import signal

    def forward(signum, _frame):
        try:
            os.kill(container.pid, signum)
        except ProcessLookupError:
            pass

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, forward)
    if container.console is not None:
        from minirt.runtime import tty

        tty.relay(container.console, interactive=True)
    return container.wait()


def _send_console(path, master):
    """Pass the pty's master to whoever listens on ``path`` (the engine's
    console socket), as runc does: one SCM_RIGHTS message."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            socket.send_fds(sock, [b"/dev/ptmx"], [master])
    except OSError as e:
        raise OciError(f"console socket {path}: {e.strerror or e}") from None


def status(container):
    """The container's OCI status, its recorded state checked against the
    kernel, and a created one's against its exec.fifo (the front door's
    ``start`` records nothing)."""
    info = container.state()
    recorded = info.get("status")
    if recorded == lifecycle.EXITED or not state.alive(info.get("pid"), info.get("pid_start")):
        return lifecycle.EXITED, info
    if recorded == lifecycle.CREATED and not _waits_for_start(container):
        return lifecycle.RUNNING, info
    return recorded, info


def _waits_for_start(container):
    """Its exec.fifo is there (a fifo: a plain file of that name is what the
    front door's open makes where another start removed it meanwhile)."""
    try:
        return stat.S_ISFIFO(os.lstat(os.path.join(container.dir, "exec.fifo")).st_mode)
    except FileNotFoundError:
        return False


def oci_state(container):
    """runc's ``state`` JSON."""
    current, info = status(container)
    oci = container.spec.oci
    return {"ociVersion": OCI_VERSION, "id": container.id,
            "pid": info.get("pid") if current != lifecycle.EXITED else 0,
            "status": lifecycle.OCI_NAMES[current], "bundle": oci["bundle"], "rootfs": container.spec.rootfs,
            "created": rfc3339(info.get("created_at")), "owner": "", "annotations": oci["annotations"]}


def rfc3339(seconds):
    seconds = seconds or 0.0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e9):09d}Z"


def start(container, debug=_quiet):
    """Let PID 1 go on from exec.fifo to its command."""
    from minirt.runtime import channel

    current, info = status(container)
    if current != lifecycle.CREATED:
        raise OciError(f"cannot start a container that is {lifecycle.OCI_NAMES[current]}")
    fifo_path = os.path.join(container.dir, "exec.fifo")
    try:
        started = channel.let_start(fifo_path, lambda: state.alive(info["pid"], info.get("pid_start")))
    except FileNotFoundError:
        raise OciError("cannot start a container that has already been started") from None
    if not started:
        raise OciError("the container's init exited before it was started")
    debug(f"init: closing the pipe to signal completion: PID 1 ({info['pid']}) was let go through exec.fifo"
          f" and executes {container.spec.args[0]}")
    try:
        os.unlink(fifo_path)   # (PID 1's to remove, but where by-runtime says it may not)
    except FileNotFoundError:
        pass
    lifecycle.move(container.dir, lifecycle.RUNNING, started_at=time.time())
    try:
        hooks.run(container.spec.oci["hooks"], "poststart", hooks.state(container.spec, info["pid"], "running"))
    except MinirtError as e:  # (too late to undo the start: said, not failed, as runc's warning)
        print(f"minirt-runc: warning: {e}", file=sys.stderr)


def exec_process(container, process, pid_file=None, console_socket=None, detach=False, preserve_fds=0,
                 ignore_paused=False, sub_cgroups=None, debug=_quiet):
    """Run ``process`` (a ``bundle.Process``) in the running container; with
    ``detach`` return at once (the engine's shim adopts it), else wait and
    return its exit status.  A paused container is refused, unless
    ``ignore_paused``: then the process is born frozen, and runs once resumed.
    ``sub_cgroups`` ({controller or "": path}) puts it in cgroups below the
    container's (``exec --cgroup``)."""
    from minirt.errors import exit_status
    from minirt.runtime import exec as execution

    current, _ = status(container)  # (created: PID 1 waits for start, in its namespaces already)
    if current == lifecycle.PAUSED and not ignore_paused:
        raise OciError("cannot exec in a paused container (use --ignore-paused to override)")
    if current == lifecycle.EXITED:
        raise OciError("cannot exec in a stopped container")
    if process.terminal and not console_socket and detach:
        raise OciError("cannot allocate a terminal without --console-socket")
    master = ours = theirs = None
    if process.terminal:  # made inside, on the container's devpts, as runc makes it
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        debug(f"nsexec container setup: a process joins the namespaces and cgroup of {container.id}")
        pid, err = execution.start(container, process.args, env=process.env, workdir=process.cwd,
                                   user=process.user, groups=process.groups, interactive=True,
                                   outlive=detach, preserve_fds=preserve_fds, sub_cgroups=sub_cgroups,
                                   tty_socket=theirs, tty_size=process.console_size or (0, 0))
        if ours is not None:
            theirs.close()
            theirs = None
            _, fds, _, _ = socket.recv_fds(ours, 16, 1)
            master = fds[0] if fds else None  # (none: it failed first, its report says why)
            if master is not None and console_socket:
                _send_console(console_socket, master)
        debug(f"child process in init(): {pid} joined the container, becomes its user")
        report = execution.wait_for_exec(err)
        if report:
            if pid and not detach:
                os.waitpid(pid, 0)
            execution.raise_report(report, process.args[0])
        debug(f"setns_init: about to exec: done, {pid} executed {process.args[0]} (its exec channel closed)")
        if master is not None and not console_socket:  # in the foreground, we relay its terminal (as runc)
            from minirt.runtime import tty

            tty.relay(master, interactive=os.isatty(0))
    finally:
        if master is not None:
            os.close(master)
        for sock in (ours, theirs):
            if sock is not None:
                sock.close()
    if pid_file:
        state.write_text(os.path.abspath(pid_file), str(pid))
    return 0 if detach else exit_status(os.waitpid(pid, 0)[1])


def events(container, interval, once=False):
    """runc's events of a running or paused container: {"type": "stats", ...}
    at once, then (unless ``once``) every ``interval`` seconds until it stops,
    and {"type": "oom", ...} when the OOM killer has struck in its cgroup."""
    from minirt.oci import stats

    current, _ = status(container)
    if current not in (lifecycle.RUNNING, lifecycle.PAUSED) or container.cgroup is None:
        raise OciError(f"container with id {container.id} is not running")
    oom = container.cgroup.oom_killed()
    while True:
        yield {"type": "stats", "id": container.id, "data": stats.read(container.cgroup)}
        if once:
            return
        time.sleep(interval)
        if not oom and container.cgroup.oom_killed():
            oom = True
            yield {"type": "oom", "id": container.id}
        if status(container)[0] == lifecycle.EXITED:
            return


def kill(container, signum, all_processes=False):
    """``signum`` (0: only check) to PID 1, or with ``all_processes`` to every
    process of the cgroup and of the cgroups below it, and to PID 1 even if
    it has left them: then a stopped container is no error (its stragglers
    are what --all is for)."""
    current, info = status(container)
    if current == lifecycle.EXITED and not all_processes:
        raise OciError("container not running")
    targets = [info["pid"]] if current != lifecycle.EXITED else []
    if all_processes and container.cgroup:
        targets += container.cgroup.pids()
    for pid in targets:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def update(container, limits):
    """Set the cgroup's limits (``cgroups.Resources`` fields) of a live
    container, paused or not (it stays so); those not given stay as they are."""
    from minirt.kernel import cgroups

    current, _ = status(container)
    if current == lifecycle.EXITED:
        raise OciError("container not running")
    if container.cgroup is None:
        raise OciError(f"container {container.id} has no cgroup of its own to update")
    container.cgroup.set_limits(cgroups.Resources(**limits))


def pause(container):
    _freeze(container, True)


def resume(container):
    _freeze(container, False)


def _freeze(container, frozen):
    """The cgroup freezer: a running container becomes paused, or back."""
    before, after = (lifecycle.RUNNING, lifecycle.PAUSED) if frozen else (lifecycle.PAUSED, lifecycle.RUNNING)
    current, info = status(container)
    if current != before:
        raise OciError(f"container not {lifecycle.OCI_NAMES[before]}: it is {lifecycle.OCI_NAMES[current]}")
    if info.get("status") == lifecycle.CREATED:  # started by the front door, which records nothing
        lifecycle.move(container.dir, lifecycle.RUNNING)
    container.cgroup.freeze(frozen)
    lifecycle.move(container.dir, after)


def delete(container, force=False):
    """Remove a stopped container; with ``force`` one in any state."""
    current, info = status(container)
    if current != lifecycle.EXITED:
        if not force:
            raise OciError(f"cannot delete container {container.id} that is not stopped: "
                           f"{lifecycle.OCI_NAMES[current]}")
        if current == lifecycle.PAUSED:
            container.cgroup.freeze(False)  # (v1: frozen processes die only once thawed)
        kill(container, 9, all_processes=True)
        deadline = time.monotonic() + 10
        while state.alive(info["pid"], info.get("pid_start")):
            if time.monotonic() > deadline:
                raise OciError(f"cannot delete container {container.id}: its init (pid {info['pid']})"
                               " outlived SIGKILL for 10 s")
            time.sleep(0.002)
    if container.cgroup is not None:
        container.cgroup.remove()
    container.remove_files()
    try:
        hooks.run(container.spec.oci["hooks"], "poststop", hooks.state(container.spec, 0, "stopped"))
    except MinirtError as e:  # (the container is gone either way)
        print(f"minirt-runc: warning: {e}", file=sys.stderr)


def containers(root):
    """Every container of ``root``, loaded (those that vanish meanwhile skipped)."""
    from minirt.runtime.container import Container

    out = []
    for cid in state.container_ids(root):
        try:
            out.append(Container.load(root, cid))
        except (MinirtError, OSError, ValueError):
            continue
    return out


def processes(container):
    """The pids of the container's cgroup."""
    return container.cgroup.pids() if container.cgroup is not None else []
