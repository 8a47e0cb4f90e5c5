"""The container's side: from a forked process to the container's command.

Lecture idea: a container is *made*, step by step, by its own first process,
which is already inside fresh namespaces (see ``container.py``) and then builds
its world before it becomes the user's program:

    ids        in a user namespace: wait until the parent has written our id maps
    hide       keep none of the caller's descriptors; not dumpable, the host's
               command line and environment wiped (``security.conceal``)
    cgroup     step into our v1 cgroups (the cgroup2 one we were born in)
    rootfs     overlay of the image layers, volumes, tmpfs, /proc, /dev, /sys, /etc files
    pivot      pivot_root into it; the host's filesystem is gone
    masks      hide and write-protect the parts of /proc and /sys that are the host's;
               with --read-only, the root itself
    identity   hostname, loopback network (and eth0, eth1..., once the parent has moved them in)
    placed     wait until the parent has done its part (recorded us, moved us into
               our cgroup2 cgroup if we could not be born there), then unshare the
               cgroup namespace (meanwhile all of the above ran in parallel)
    privileges groups, gid, uid, capabilities, no_new_privs, seccomp (security.py);
               after this we could no longer mount anything (a bundle's filter
               with a seccomp agent goes in before ``start``: seccomp_agent.py)
    exec       the command replaces this Python process and becomes PID 1, by way
               of the trampoline (``kernel/trampoline.py``): never is the host's
               Python the executable that executes it (with --init the
               trampoline stays as PID 1, the reaper, and forks the command)

Nothing here returns: the process either ``exec``s or reports why it could not
on the failure channel and exits (and so does the trampoline); that channel
and the handshake's other messages are ``channel.py``'s.  The parent turns
that report into docker's exit codes (125 setup failed, 126 cannot execute,
127 not found).
"""

import errno
import fcntl
import os
# The C half of `signal`, under its usual name: the Python half builds enums of
# every signal, 0.7 ms of each `minirt run` for names nobody prints.
import _signal as signal
import termios

from minirt.errors import RuntimeFailure, exec_error, exit_status
from minirt.kernel import cgroups, libc, links, masked, mounts, namespaces, security, trampoline
from minirt.runtime import channel, users

# Signals Python changes for itself (SIGPIPE ignored, SIGINT raising
# KeyboardInterrupt, ...); the container's command must start with the defaults.
_RESET_SIGNALS = sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})


def main(spec, launch):
    """Run in the container's first process.  Never returns: whatever happens,
    it must not go back into the code of the program it was cloned from.
    Of what it inherited it keeps only what ``launch`` names."""
    step = "starting"  # named in the error message if a step fails
    try:
        if spec.oci:
            from minirt.runtime import oci_init  # (imported already by our parent: Container.start)
        launch.child_side()                 # our parent's ends of the handshake's channels
        close_others(launch.descriptors())  # and whatever else it, or its caller, had open
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # die with our parent
        if launch.ids is not None:
            # In a new user namespace we are nobody until the parent has
            # written our id maps.  (Writing them needs us dumpable, as in
            # runc; our pid namespace is still empty.)
            step = "waiting for the id maps"
            launch.ids.expect(channel.IDS_WRITTEN)
        # Hidden from the container (security.conceal) before we become its
        # root: with --userns=remap that changes our uid on the host, after
        # which /proc/self/mem, which conceal writes, would be root's.
        security.conceal()
        joined = dict(launch.joins)
        if launch.ids is not None or "user" in joined:  # (a user namespace given by path: born in it)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        if "user" in joined:
            step = "checking the user namespace's id maps"
            oci_init.check_id_maps(spec)
        if launch.netns_fd is not None:  # --network container:NAME: join its network namespace
            step = "joining the network namespace"
            libc.setns(launch.netns_fd, libc.CLONE_NEWNET)
            os.close(launch.netns_fd)
        for name, fd in launch.joins:  # an OCI bundle's namespaces given by path
            step = f"joining the {name} namespace"
            if name not in ("pid", "user"):  # (those we were born in: container._spawn_pid1, _helper_main)
                libc.setns(fd, namespaces.FLAGS[name])
            os.close(fd)
        if launch.cgroup_entry is not None:
            step = "joining the cgroup"  # first, so that all that follows is accounted there
            cgroups.enter(launch.cgroup_entry)
            launch.cgroup_entry.close()
        step = "setting up stdio"
        setup_stdio(launch.console_fd, launch.stdio, spec.interactive)
        if spec.oci:  # its mounts show cgroups: be placed, in our own cgroup namespace, first
            step = "waiting to be placed"
            _placed(spec, launch)
        step = "preparing the root filesystem"
        if "mnt" in spec.namespaces:
            namespaces.unshare(["mnt"])
        if spec.oci:
            oci_init.rootfs(spec, launch)
        else:
            _setup_rootfs(spec, launch)
        step = "pivot_root"
        mounts.pivot_root(launch.rootfs)
        step = "masking paths"
        if spec.oci:
            oci_init.finish(spec)
        elif not spec.privileged:
            masked.apply()
        if spec.read_only and not spec.oci:
            mounts.remount_readonly("/")
        step = "setting the hostname"
        if spec.hostname or not spec.oci:
            libc.sethostname(spec.hostname)
        if "net" in spec.namespaces and not launch.loopback_by_parent:
            links.link_up("lo")
        if not spec.oci:
            step = "waiting to be placed"
            _placed(spec, launch)
        for i, net in enumerate(launch.networks):  # the parent has moved our ends of the veth pairs in
            step = f"configuring {net['interface']}"
            links.configure(net["interface"], net["address"], net["prefixlen"], net["gateway"] if i == 0 else None)
        step = "resolving the user"
        user = (users.exact(spec.user, spec.group_add) if spec.oci
                else users.resolve(spec.user, extra_groups=spec.group_add))
        env = _environment(spec, user)
        if spec.oci:
            oci_init.own_stdio(spec, user.uid, launch.console_fd is not None)
        step = f"entering the working directory {spec.cwd}"
        _enter_workdir(spec.cwd, user, spec.read_only)
        hooked = _hooked(spec)
        # The trampoline, and the filter it does not install itself (our parent's ``trampoline_for``)
        exec_fd, seccomp_program = launch.trampoline_fd, launch.seccomp_program
        if spec.oci:
            step = "setting the process's limits"
            oci_init.process(spec)
            step = "looking up the command"
            _check_command(spec.args[0], env)
            if launch.listener is not None:
                # A filter with an agent: `create` must hand the agent its
                # descriptor, so it goes in now, as runc's does (we still hold
                # CAP_SYS_ADMIN; the calls up to execve pass it too).
                step = "installing the seccomp filter"
                security.install_filter(seccomp_program, launch.listener.send_fd)
                seccomp_program = None
            step = "waiting for start"
            oci_init.wait_for_start(launch)
        step = "dropping privileges"
        # In a rootless user namespace setgroups(2) is forbidden: keep the groups we have.
        security.apply(caps=launch.capabilities, no_new_privs=spec.no_new_privileges,
                       seccomp_program=seccomp_program, uid=user.uid, gid=user.gid,
                       groups=None if setgroups_denied() else user.groups)
        if hooked:
            step = "running the startContainer hooks"
            oci_init.started(spec)
        if spec.init and exec_fd is None:  # (else the trampoline is the reaper)
            _reaper(spec, env, launch)
        execute(spec.args, env, launch.failure, exec_fd, launch.preserved)
    except BaseException as e:  # noqa: BLE001 — everything must reach the parent
        if not launch.failure.send_failure(e, step) and spec.oci:
            # After `start` nobody reads the channel any more (runc's init logs
            # the error instead): the container's stderr is where it is seen.
            os.write(2, b"minirt-runc: " + channel.encode_failure(e, step).split(b" ", 1)[1] + b"\n")
    os._exit(125)


def _placed(spec, launch):
    """Wait until the parent has placed us (see container.py), then enter a
    cgroup namespace of our own: its root is the cgroup we are in now."""
    launch.placed.expect(channel.PLACED)
    if "cgroup" in spec.namespaces:
        namespaces.unshare(["cgroup"])


def _check_command(command, env):
    """Refuse, at create time as runc does, a command that no path would run."""
    for path in _search_path(command, env):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return
    raise exec_error(command, errno.ENOENT if not any(map(os.path.exists, _search_path(command, env)))
                     else errno.EACCES)


def close_all(fds):
    """Close each file descriptor in ``fds``; None stands for one never opened."""
    for fd in fds:
        if fd is not None:
            os.close(fd)


def close_others(keep):
    """Close every file descriptor but those in ``keep`` (None is ignored):
    what a process must not carry into a container, such as the descriptors
    its caller inherited to minirt without close-on-exec (a directory among
    them is a way out to the host's files)."""
    low = 0
    for fd in sorted({fd for fd in keep if fd is not None}):
        if fd > low:  # (closerange(0, 0) would close them all: close_range(0, -1))
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def setup_stdio(console_fd, stdio, interactive):
    """stdin, stdout, stderr: the pty (as controlling terminal) or the given fds."""
    os.setsid()  # own session: the terminal's Ctrl-C reaches us only through our pty
    if console_fd is not None:
        fcntl.ioctl(console_fd, termios.TIOCSCTTY, 0)
        stdio = [console_fd] * 3
    else:
        stdio = list(stdio)
    if not interactive:
        stdio[0] = os.open("/dev/null", os.O_RDONLY)
    # Duplicate first, then install: a source fd may itself be 0, 1 or 2
    # (and with 0, 1 or 2 closed, a copy may already be where it belongs,
    # still close-on-exec as os.dup makes it).
    copies = [os.dup(fd) for fd in stdio]
    for target, fd in enumerate(copies):
        if fd == target:
            os.set_inheritable(fd, True)
        else:
            os.dup2(fd, target)
            os.close(fd)
    if not interactive and stdio[0] > 2:
        os.close(stdio[0])  # our /dev/null, now copied to 0


def _setup_rootfs(spec, launch):
    mounts.make_private()
    root = launch.rootfs
    mounts.mount_overlay(root, spec.layers, launch.upper, launch.work, userxattr=launch.rootless)
    if any(m.volume for m in spec.mounts):  # an empty volume gets the image's content (docker's copy-up)
        from minirt.runtime.volumes import copy_up

        for m in spec.mounts:
            if m.volume:
                copy_up(mounts.secure_join(root, m.destination), m.source)
    mounts.mount_proc(root)
    # In a user namespace mknod is refused: bind the host's device files instead.
    mounts.mount_dev(root, mknod=not launch.rootless, console=launch.console_path)
    mounts.mount_sys(root, readonly=not spec.privileged)
    for name, source in launch.etc_files.items():
        mounts.bind(source, mounts.make_mountpoint(root, f"/etc/{name}", is_dir=False))
    for t in spec.tmpfs:
        mounts.mount_tmpfs(root, t)
    # Volumes last, so that a volume on /etc/hosts or under /dev wins, as in docker.
    for m in spec.mounts:
        target = mounts.make_mountpoint(root, m.destination, is_dir=os.path.isdir(m.source))
        mounts.bind(m.source, target, readonly=m.readonly)


def _environment(spec, user):
    env = dict(item.split("=", 1) for item in spec.env)
    env.setdefault("HOME", user.home)
    return env


def _enter_workdir(cwd, user, read_only=False):
    if not os.path.isdir(cwd) and not read_only:
        os.makedirs(cwd, 0o755, exist_ok=True)  # docker creates a missing WORKDIR
        os.chown(cwd, user.uid, user.gid)
    os.chdir(cwd)


def setgroups_denied():
    """True in a rootless user namespace, where the kernel forbids setgroups(2)."""
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def _reset_signals():
    """What execve keeps: the signals ignored (SIGPIPE and SIGXFSZ by Python,
    and any the host ignored: SIGHUP under nohup) and the blocked ones.  A
    handled signal is back to its default after execve anyway; Python's view
    (``getsignal``: None for one it did not set) spares a system call for each
    of the other sixty."""
    for s in _RESET_SIGNALS:
        if signal.getsignal(s) in (signal.SIG_IGN, None):
            try:
                signal.signal(s, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def trampoline_for(spec, seccomp_program):
    """``prepare_exec`` for PID 1, whose filter is ``seccomp_program``: (the
    trampoline it will execute its command through, the filter it must still
    install).  Made by the parent before the clone, once for every container
    with the same filter (``trampoline.shared``); made in PID 1, after the
    clone, it was a quarter of a millisecond of its start-up."""
    try:
        return prepare_exec(seccomp_program, _filter_last(spec), reaper=spec.init, load=trampoline.shared)
    except OSError as e:
        raise RuntimeFailure(f"loading the exec trampoline: {e.strerror}") from None


def _filter_last(spec):
    """Whether the trampoline installs the filter (see ``prepare_exec``): not
    where startContainer hooks must run under it, as runc's do, nor where its
    agent must get its descriptor before ``start``: then it goes in before."""
    return spec.no_new_privileges and not _hooked(spec) and not (spec.oci and spec.oci.get("seccomp_listener"))


def _hooked(spec):
    """An OCI bundle's startContainer hooks: run by PID 1, as its user, before its command."""
    return bool(spec.oci and spec.oci["hooks"].get("startContainer"))


def prepare_exec(seccomp_program, filter_last, reaper=False, load=trampoline.create):
    """Load the trampoline that will execute the command (``kernel/trampoline.py``),
    before ``security.apply`` (no filter yet to pass): (its memfd, or None
    where there is none; the seccomp filter that ``apply`` must still install).

    With ``filter_last`` (it needs no_new_privs) the trampoline carries the
    filter and installs it as its last step before the command's execve
    (with ``reaper``, before it forks: the reaper is filtered too).
    Else ``apply`` installs it (without no_new_privs that needs CAP_SYS_ADMIN,
    which ``apply`` drops), and the filter must allow the trampoline's
    execveat (docker's does).  With ``reaper`` (``--init``) the trampoline
    stays as PID 1, reaping, and runs the command as its child.  ``load``
    makes the memfd (``trampoline.create``, or ``shared`` to keep it).
    """
    fd = load(seccomp_program if filter_last else None, reaper)
    return fd, seccomp_program if fd is None or not filter_last else None


def execute(args, env, failure, trampoline_fd=None, preserved=()):
    """Replace this process with the command, through the trampoline where
    there is one; on failure raise docker's error (the trampoline reports
    it on the ``failure`` channel instead, for ``channel.raise_failure``).
    The command gets stdin, stdout, stderr and the descriptors ``preserved``."""
    close_others((0, 1, 2, failure.writer, trampoline_fd, *preserved))
    for fd in preserved:
        os.set_inheritable(fd, True)
    _reset_signals()
    paths = _search_path(args[0], env)
    if trampoline_fd is not None:
        try:
            trampoline.execute(trampoline_fd, failure.writer, paths, args, env)
        except OSError as e:
            raise RuntimeFailure(f"executing the trampoline: {e.strerror}") from None
    raise exec_error(args[0], _execvp(paths, args, env))


def _search_path(file, env):
    """The paths execvp(3) tries for ``file``: the kernel's execve knows only
    paths, looking a bare name up in the container's $PATH is the C library's
    work (an empty entry: the working directory)."""
    if "/" in file:
        return [file]
    return [os.path.join(directory, file) for directory in env.get("PATH", os.defpath).split(":")]


def _execvp(paths, args, env):
    """Execute the first of ``paths`` that runs, as glibc's execvp: on past a
    file that cannot run, and if nothing runs, return the first error other
    than "not there" (EACCES rather than ENOENT), else the last.  (The
    trampoline does the same.)

    (Not os.execvpe: it imports `warnings`, and after pivot_root the host's
    Python library is out of reach, so everything init uses is imported
    before.)"""
    first = last = None
    for path in paths:
        try:
            os.execve(path, args, env)
        except OSError as e:
            last = e.errno
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                first = first or e.errno
    return first or last


def _reaper(spec, env, launch):
    """``--init`` where there is no trampoline to be the reaper: stay as PID 1,
    run the command as a child, reap every orphan.

    A shell or a program that never expected to be PID 1 neither reaps adopted
    zombies nor reacts to SIGTERM (PID 1 ignores signals it has no handler for);
    this small init does both: it forwards signals to the command and exits with
    the command's status once the command is gone.  (It stays a copy of the
    host's Python, not dumpable: the trampoline's reaper is not even that.)
    """
    failure = channel.Channel(down=False)
    try:
        child = os.fork()
    except OSError as e:  # (the trampoline's report says the same)
        raise RuntimeFailure(f"--init: starting the command: fork: {e.strerror}") from None
    if child == 0:
        failure.child_side()
        try:
            execute(spec.args, env, failure, preserved=launch.preserved)
        except BaseException as e:  # noqa: BLE001
            failure.send_failure(e)
        os._exit(125)
    failure.parent_side()
    report = failure.outcome()
    failure.close()
    if report:
        os.write(launch.failure.writer, report)  # passed on to our parent as it is
        os._exit(125)
    launch.failure.close()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
        signal.signal(s, lambda signum, _frame: _forward(child, signum))
    close_others((0, 1, 2))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(exit_status(status))


def _forward(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
