"""``minirt exec``: one more process inside a running container.

Lecture idea: a container is nothing but namespaces and a cgroup, so entering
one is joining them: ``setns(2)`` on each of PID 1's ``/proc/PID/ns/*`` files,
the cgroup (entered as PID 1 entered it: born in the cgroup2 cgroup by
clone3, walking into the v1 ones by itself; see ``kernel/cgroups.py``), and
then the same last steps as the container's own init — user, working
directory, capabilities, no_new_privs, seccomp, execve.  Joining the mount
namespace also moves us into the container's root filesystem (its root is the
namespace's root), so no chroot is needed.  As with ``run``, joining a pid
namespace only affects children, hence one more fork.

Until its execve the joining process is a copy of the host's minirt, which a
process of the container can watch in /proc: before it joins anything it
hides (``security.conceal``) and lets go of every descriptor of its caller's
but the command's stdio; and it executes the command through the trampoline,
as PID 1 does (``init.execute``).
"""

import os
import signal

from minirt import spec as specs
from minirt.errors import MinirtError, RuntimeFailure, exit_status
from minirt.kernel import cgroups, libc, namespaces, security
from minirt.runtime import channel, init, lifecycle, oci_init, users

# Order matters: the user namespace first (it grants the rights to join the
# others), the mount namespace after the ones whose files live in /proc.
JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")


class NotRunning(MinirtError):
    pass


def start(container, args, *, env=(), workdir=None, user=None, tty_fd=None, interactive=False,
          stdio=(0, 1, 2), outlive=False, groups=None, preserve_fds=0, sub_cgroups=None, tty_socket=None,
          tty_size=(0, 0)):
    """Start ``args`` in ``container``; return (pid to wait for, its failure
    channel for ``wait_for_exec``).
    With ``outlive`` the process does not die with us and is not our child
    (``minirt-runc exec --detach``, as runc's: the engine's shim, its
    subreaper, adopts and waits for it); the pid returned is then its own.
    ``groups``: the supplementary groups exactly (an OCI process's
    additionalGids, with ``user`` "UID:GID"), instead of looking them up.
    ``preserve_fds``: our descriptors 3 .. 3+N-1 reach the process as they are.
    ``sub_cgroups``: it goes into cgroups below the container's (``Cgroup.below``).
    ``tty_socket`` (a socket, instead of ``tty_fd``): the process makes its
    terminal inside, on the container's devpts (``tty.open_pty``), of
    ``tty_size``, and sends its master back on it (SCM_RIGHTS)."""
    info = container.state()
    # (an OCI container that is created has a PID 1, waiting for start, to join)
    if not (lifecycle.is_running(info) or (container.spec.oci and info.get("status") == lifecycle.CREATED)):
        raise NotRunning(f"container {container.id[:12]} is not running")
    spec = container.spec
    pid1 = info["pid"]
    preserved = tuple(range(3, 3 + preserve_fds))
    fds = {}
    try:
        joined = spec.oci["joins"] if spec.oci else ()  # (an OCI bundle's, given by path: PID 1's too)
        for ns in JOIN_ORDER:
            if ns in spec.namespaces or ns in joined:
                fds[ns] = os.open(f"/proc/{pid1}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):  # it exited since we looked
        init.close_all(fds.values())
        raise NotRunning(f"container {container.id[:12]} is not running") from None
    if tty_socket is not None:  # (what _enter uses then, loaded while the host's library is in reach)
        import socket  # noqa: F401

        from minirt.runtime import tty  # noqa: F401
    launch = container._launch()
    caps, program = launch.capabilities, launch.seccomp_program
    agent = spec.oci.get("seccomp_listener") if spec.oci and program is not None else None
    cgroup = cgroups.at(info["cgroup"]) if info.get("cgroup") else None
    try:
        if sub_cgroups and cgroup is not None:
            cgroup = cgroup.below(sub_cgroups)
    except RuntimeFailure:
        init.close_all(fds.values())
        raise
    try:
        entry = cgroup.open_entry() if cgroup is not None else None
    except OSError as e:
        init.close_all(fds.values())
        raise RuntimeFailure(f"opening cgroup {cgroup.path}: {e.strerror}") from None
    failure = channel.Channel(down=False)
    adopted = channel.Channel(down=False) if outlive else None  # the joining process's child's pid
    listener = channel.FdChannel() if agent else None  # its seccomp filter's descriptor, for the agent
    # Born in the cgroup2 cgroup where clone3 may be used (one thread only).
    child, inside = cgroups.clone_into(entry) if libc.single_threaded() else (os.fork(), False)
    if child == 0:
        try:
            # Before anything of the container is joined: not dumpable, the
            # caller's command line and environment wiped, and nothing kept
            # of what the caller left open but the descriptors we need.
            security.conceal()
            for c in (failure, adopted, listener):
                if c is not None:
                    c.child_side()
            console = tty_socket.fileno() if tty_socket is not None else tty_fd
            init.close_others([failure.writer, adopted and adopted.writer, listener and listener.writer,
                               console, *preserved,
                               *(() if console is not None else stdio), *fds.values(),
                               *(entry.tasks + [entry.cgroup2] if entry is not None else ())])
            if not outlive:
                libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if entry is not None:  # before the cgroup namespace, whose root it is
                cgroups.enter(entry)
                if not inside:
                    cgroup.add(os.getpid(), versions=("v2",))
                entry.close()
            for ns, fd in fds.items():
                libc.setns(fd, namespaces.FLAGS[ns])
                os.close(fd)
            grandchild = os.fork()  # the pid namespace applies to children only
            if grandchild == 0:
                if adopted is not None:
                    adopted.close()
                if tty_socket is not None:
                    tty_fd = _make_tty(tty_socket, tty_size, failure)
                _enter(spec, args, env, workdir, (user, groups), tty_fd, interactive, stdio, caps, program, failure,
                       preserved, listener)
            if outlive:  # it is on its own: its adopter learns its pid from ours
                adopted.send_pid(grandchild)
                os._exit(0)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(s, signal.SIG_IGN)
            os._exit(exit_status(os.waitpid(grandchild, 0)[1]))
        except BaseException as e:  # noqa: BLE001
            failure.send_failure(e, "joining the container")
            os._exit(125)
    failure.parent_side()
    if listener is not None:
        listener.parent_side()
    init.close_all(fds.values())
    if entry is not None:
        entry.close()
    if outlive:
        adopted.parent_side()
        pid = adopted.receive_pid()
        adopted.close()
        os.waitpid(child, 0)
        if pid is None:  # it failed before: the report says why
            if listener is not None:
                listener.close()
            return None, failure
        child = pid
    if listener is not None:
        from minirt.runtime import hooks, seccomp_agent

        try:
            seccomp_agent.receive_and_send(listener, agent, hooks.state(spec, pid1, "running"))
        except BaseException:
            failure.close()
            if not outlive:
                os.waitpid(child, 0)  # (the process is killed: its parent follows)
            raise
        finally:
            listener.close()
    return child, failure


def _make_tty(sock, size, failure):
    """In the container: a terminal on its devpts; its master goes back on ``sock``."""
    import socket  # (loaded already: start)

    from minirt.runtime import tty

    try:
        master, slave = tty.open_pty()
        tty.set_winsize(master, *size)
        socket.send_fds(sock, [b"pty"], [master])
    except BaseException as e:  # noqa: BLE001
        failure.send_failure(e, "making the terminal")
        os._exit(125)
    os.close(master)
    sock.close()
    return slave


def _enter(spec, args, env, workdir, identity, tty_fd, interactive, stdio, caps, program, failure, preserved,
           listener=None):
    """In the container's namespaces: become its user with its privileges, exec.
    ``listener``: the FdChannel for the seccomp filter's agent's descriptor, if it has one."""
    step = "setting up stdio"
    try:
        init.setup_stdio(tty_fd, stdio, interactive)
        step = "resolving the user"
        user, groups = identity
        who = (users.exact(user, groups) if groups is not None
               else users.resolve(user if user is not None else spec.user, extra_groups=spec.group_add))
        environment = dict(item.split("=", 1) for item in specs.merge_env(spec.env, env))
        environment.setdefault("HOME", who.home)
        if spec.oci:
            oci_init.own_stdio(spec, who.uid, tty_fd is not None)
        step = "entering the working directory"
        os.chdir(workdir or spec.cwd)
        step = "loading the exec trampoline"
        exec_fd, program = init.prepare_exec(program, spec.no_new_privileges and listener is None)
        step = "dropping privileges"
        security.apply(caps=caps, no_new_privs=spec.no_new_privileges, seccomp_program=program,
                       uid=who.uid, gid=who.gid, groups=None if init.setgroups_denied() else who.groups,
                       seccomp_listener=listener and listener.send_fd)
        init.execute(args, environment, failure, exec_fd, preserved)
    except BaseException as e:  # noqa: BLE001
        failure.send_failure(e, step)
    os._exit(125)


def wait_for_exec(failure):
    """The failure report of an exec that failed before execve, or b'' once it ran."""
    try:
        return failure.outcome()
    finally:
        failure.close()


raise_report = channel.raise_failure
