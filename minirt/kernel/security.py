"""Privileges: what the container's processes may still ask of the kernel.

Lecture idea: namespaces decide what a container can *see*; this decides what it
may *do* with what it sees.  Three independent locks, applied by the
container's first process as its very last steps before it executes the
container's program:

    capabilities    root's powers cut down to docker's 14  (``capabilities.py``)
    no_new_privs    execve can never grant more: setuid bits and file
                    capabilities stop working
    seccomp         a filter on every system call          (``seccomp.py``,
                                                            ``seccomp_default.py``)

The runtime computes the capability set and compiles the seccomp profile in
the parent, where a mistake is reported before anything exists, and calls, in
the container's PID 1, after pivot_root and after the user is resolved,
instead of changing groups, gid and uid itself::

    caps = security.capability_set(cap_add, cap_drop, privileged)
    program = security.seccomp_program(option, privileged, caps, cache=DIR)   # before the clone
    security.apply(caps=caps, no_new_privs=True, seccomp_program=program,
                   uid=uid, gid=gid, groups=groups)
    os.execve(...)

Why the order inside ``apply`` is what it is: see its docstring.
"""

import os

import _prctl

from minirt.digests import sha256
from minirt.errors import RuntimeFailure
from minirt.kernel import capabilities, libc
from minirt.kernel.capabilities import capability_set, expected_status_mask  # noqa: F401

_SYS_ADMIN = capabilities.NUMBERS["CAP_SYS_ADMIN"]
PROFILE_LIMIT = 4 << 20  # bytes of a seccomp profile file; docker's default has 20 KB

# What a compiled program depends on besides its profile and capabilities:
# the compiler and docker's profile, as minirt's own files.
_COMPILER = ("seccomp.py", "seccomp_default.py", "bpf.py", "syscalls_x86_64.py", "capabilities.py")


def seccomp_program(option=None, privileged=False, caps=frozenset(), cache=None, profile=None, notify=False):
    """The seccomp filter for ``--security-opt seccomp=OPTION``, compiled for
    the container's capabilities (BPF bytes), or None for no filter.

    As docker picks it: no option, the default profile, or none with
    ``--privileged``; "unconfined", none; else a profile file.

    The same inputs always compile to the same bytes, and compiling means
    importing the compiler and docker's profile, some 2 ms of every container
    start.  So the program is kept in the directory ``cache`` (if given),
    named by a hash of everything it depends on: the profile (the file's
    content), the capabilities, the kernel release (docker's profile has
    rules for newer kernels only) and the compiler's own files (a new minirt
    compiles again).  ``notify``: the profile may use SCMP_ACT_NOTIFY (there
    is an agent to answer: ``seccomp.parse_profile``).
    """
    if option == "unconfined" or (not option and privileged):
        return None
    if profile is None:  # (else the caller has the profile's bytes: an OCI bundle's, say; option names it)
        profile = read_profile(option) if option else None  # once: a pipe cannot be read twice
    key = _program_key(profile, caps, notify) if cache else None
    if key:
        try:
            with open(os.path.join(cache, key), "rb") as f:
                program = f.read()
            if program and len(program) % 8 == 0:  # whole instructions, or compile again
                return program
        except OSError:
            pass
    from minirt.kernel import seccomp  # only now: see above

    chosen = seccomp.load_profile(option, profile, notify) if option else seccomp.default_profile()
    program = seccomp.compile_profile(chosen, caps=caps)
    if key:
        _keep(cache, key, program)
    return program


def read_profile(path):
    """The bytes of a seccomp profile file, bounded (``minirt.bounded``)."""
    from minirt import bounded  # only now: most containers get the default profile

    return bounded.read(path, "seccomp profile", PROFILE_LIMIT)


def _program_key(profile, caps, notify=False):
    """A hash of what a compiled program depends on (``profile``: the
    profile file's bytes, None for the default); None if the compiler's files
    cannot be found."""
    h = sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        for name in _COMPILER:
            st = os.stat(os.path.join(here, name))
            h.update(f"{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    except OSError:
        return None
    if profile is not None:
        h.update(b"profile " + profile + b"\n")
    if notify:  # (without an agent, the same profile is refused)
        h.update(b"notify\n")
    h.update(f"caps {sorted(caps)}\nkernel {os.uname().release}\n".encode())
    return h.hexdigest()


def _keep(cache, key, program):
    """Write the program into the cache, atomically; a cache that cannot be
    written is no error."""
    tmp = os.path.join(cache, f".tmp-{os.getpid()}-{key}")
    try:
        os.makedirs(cache, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(program)
        os.replace(tmp, os.path.join(cache, key))
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def set_no_new_privs():
    """From now on execve cannot raise privileges (setuid bits, file caps).

    Inherited by every child and irreversible.  It also lets an unprivileged
    process install seccomp filters: a filter could otherwise trick a setuid
    program into misbehaving, e.g. by failing its setuid() call.
    """
    _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)


def conceal(title=b"minirt"):
    """Hide this copy of the host's minirt from the container it is entering.

    Done first by every process minirt puts into a container before it
    execs (``minirt exec``'s, PID 1, ``--init``'s reaper), as runc's nsexec
    does.  Until execve such a process is the host's Python: its
    executable, its descriptors and the environment and command line it was
    started with are the host's.

    * Not dumpable: /proc/PID/environ, fd/, exe, mem, cwd, root then open
      only for CAP_SYS_PTRACE in the user namespace the process was started
      in (the host's), not for the container's root, not even for a process
      of the same uid.  The kernel makes a process dumpable again only when
      it executes a program (and, with fs.suid_dumpable=1, when its uid
      changes: ``apply`` says so once more).
    * The command line and environment block overwritten: /proc/PID/cmdline
      is there for everyone to read, environ for the privileged (the
      process's own copy, os.environ, is elsewhere and stays).
    """
    fd = os.open("/proc/self/stat", os.O_RDONLY)
    try:
        # arg_start, arg_end, env_start, env_end: fields 48-51, counted after
        # the command name in parentheses (which may hold spaces).
        fields = os.read(fd, 4096).rpartition(b")")[2].split()
    finally:
        os.close(fd)
    start, end = int(fields[45]), int(fields[48])
    fd = os.open("/proc/self/mem", os.O_WRONLY)
    try:
        os.pwrite(fd, title[:end - start - 1].ljust(end - start, b"\0"), start)
    finally:
        os.close(fd)
    # Only now: /proc/self/mem is then root's (a rootless PID 1 could no longer open it).
    _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)


def apply(caps, no_new_privs=True, seccomp_program=None, uid=0, gid=0, groups=None, seccomp_listener=None):
    """Become the container's user with the container's privileges.  Run as root.

    ``groups=None`` leaves the supplementary groups alone (a user namespace
    whose setgroups is denied); a list replaces them.  The order matters:

    1. Bounding set first: dropping from it needs CAP_SETPCAP, which we may be
       about to lose.
    2. PR_SET_KEEPCAPS, then groups, gid, uid.  Changing from uid 0 to another
       uid would otherwise empty the permitted set, and we still need it for
       step 3 (this is runc's order; execve clears the flag again).  Changing
       the uid also empties the effective set, which step 3 restores.
    3. Effective = permitted = the container's set for root; inheritable
       (and with it ambient) empty.  A non-root user gets none (only its
       bounding set shows the 14, as with docker): execve would empty its
       sets anyway, and a set still held at execve is what no_new_privs
       lets a file-capability program keep (the kernel grants such a
       program no more than the caller's permitted set, so a
       ``cap_setuid+ep`` command would run with CAP_SETUID).
    4. no_new_privs, then the seccomp filter, as late as possible, so that as
       few of our own calls as possible have to pass it (usually the
       trampoline installs it, just before the command's execve, and
       ``seccomp_program`` is None here: see ``init.prepare_exec``).  Without
       no_new_privs the kernel wants CAP_SYS_ADMIN to install a filter, so
       then the filter goes in *before* step 3 drops it (runc does the same),
       and the filter must allow capset (docker's profile does).

    ``seccomp_listener``: see ``install_filter``.
    """
    held = capabilities.permitted_set()
    bounding = capabilities.numbers(caps) & held    # what we lack we cannot give
    keep = bounding if uid == 0 else set()
    try:
        capabilities.limit_bounding_set(bounding)
        capabilities.keep_capabilities_across_setuid()
    except OSError as e:
        raise RuntimeFailure(f"cannot drop capabilities: {e.strerror}") from None
    if groups is not None:
        os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)  # (see conceal) until execve
    try:
        if seccomp_program is not None and not no_new_privs:
            capabilities.set_process_sets(keep | ({_SYS_ADMIN} & held))
            install_filter(seccomp_program, seccomp_listener)
            seccomp_program = None
        capabilities.set_process_sets(keep)
        if no_new_privs:
            set_no_new_privs()
    except OSError as e:
        raise RuntimeFailure(f"cannot drop capabilities: {e.strerror}") from None
    if seccomp_program is not None:
        install_filter(seccomp_program, seccomp_listener)


def install_filter(program, listener=None):
    """Install the seccomp filter ``program`` on the calling thread.

    With ``listener`` (a function of one descriptor) the filter has an agent:
    the kernel hands out a descriptor on which the filter's SCMP_ACT_NOTIFY
    calls arrive, ``listener`` passes it on (to the runtime, which sends it to
    the agent), and we let go of ours.  From here on such a call of ours waits
    until the agent answers it, so ``listener`` must use none of them: the
    profile may not notify write or sendmsg (``seccomp.NOTIFY_FORBIDDEN``);
    any later one waits only until the agent has the descriptor.  Once the
    agent's copy closes too, the kernel fails those calls with ENOSYS.
    """
    try:
        fd = libc.seccomp_filter(program, libc.SECCOMP_FILTER_FLAG_NEW_LISTENER if listener else 0)
    except OSError as e:
        raise seccomp_failure(e.errno) from None
    if listener:
        try:
            listener(fd)
        finally:
            os.close(fd)


def seccomp_failure(err):
    """The error for a seccomp filter the kernel refused with errno ``err``
    (here, or in the trampoline)."""
    return RuntimeFailure(f"cannot install the seccomp filter: {os.strerror(err)}")
