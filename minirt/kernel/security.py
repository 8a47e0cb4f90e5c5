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

The runtime calls, in the container's PID 1, after pivot_root and after the
user is resolved, instead of changing groups, gid and uid itself::

    caps = security.capability_set(cap_add, cap_drop, privileged)
    profile = security.default_profile()   # or load_profile(path), or None
    program = security.compile_profile(profile, caps=caps)   # cached; may run before fork
    security.apply(caps=caps, no_new_privs=True, seccomp_program=program,
                   uid=uid, gid=gid, groups=groups)
    os.execve(...)

Why the order inside ``apply`` is what it is: see its docstring.
"""

import os

import _prctl

from minirt.errors import RuntimeFailure
from minirt.kernel import capabilities, seccomp
from minirt.kernel.capabilities import capability_set, expected_status_mask  # noqa: F401
from minirt.kernel.seccomp import compile_profile, default_profile, load_profile  # noqa: F401

_SYS_ADMIN = capabilities.NUMBERS["CAP_SYS_ADMIN"]


def seccomp_profile(option=None, privileged=False):
    """The profile for ``--security-opt seccomp=OPTION``, as docker picks it.

    No option: the default profile, or none for ``--privileged`` (docker runs
    privileged containers unconfined).  "unconfined": none.  Else a file name.
    """
    if option == "unconfined" or (not option and privileged):
        return None
    if not option:
        return default_profile()
    return load_profile(option)


def set_no_new_privs():
    """From now on execve cannot raise privileges (setuid bits, file caps).

    Inherited by every child and irreversible.  It also lets an unprivileged
    process install seccomp filters: a filter could otherwise trick a setuid
    program into misbehaving, e.g. by failing its setuid() call.
    """
    _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)


def apply(caps, no_new_privs=True, seccomp_program=None, uid=0, gid=0, groups=None):
    """Become the container's user with the container's privileges.  Run as root.

    ``groups=None`` leaves the supplementary groups alone (a user namespace
    whose setgroups is denied); a list replaces them.  The order matters:

    1. Bounding set first: dropping from it needs CAP_SETPCAP, which we may be
       about to lose.
    2. PR_SET_KEEPCAPS, then groups, gid, uid.  Changing from uid 0 to another
       uid would otherwise empty the permitted set, and we still need it for
       step 3 (this is runc's order; execve clears the flag again).  Changing
       the uid also empties the effective set, which step 3 restores.
    3. Effective = permitted = the container's set; inheritable (and with it
       ambient) empty.  A non-root user still loses them all at execve, as
       with docker: only its bounding set shows the 14.
    4. no_new_privs, then the seccomp filter, as late as possible, so that as
       few of our own calls as possible have to pass it.  Without
       no_new_privs the kernel wants CAP_SYS_ADMIN to install a filter, so
       then the filter goes in *before* step 3 drops it (runc does the same),
       and the filter must allow capset (docker's profile does).
    """
    held = capabilities.permitted_set()
    keep = capabilities.numbers(caps) & held    # what we lack we cannot give
    try:
        capabilities.limit_bounding_set(keep)
        capabilities.keep_capabilities_across_setuid()
    except OSError as e:
        raise RuntimeFailure(f"cannot drop capabilities: {e.strerror}") from None
    if groups is not None:
        os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    try:
        if seccomp_program is not None and not no_new_privs:
            capabilities.set_process_sets(keep | ({_SYS_ADMIN} & held))
            seccomp.install(seccomp_program)
            seccomp_program = None
        capabilities.set_process_sets(keep)
        if no_new_privs:
            set_no_new_privs()
    except OSError as e:
        raise RuntimeFailure(f"cannot drop capabilities: {e.strerror}") from None
    if seccomp_program is not None:
        seccomp.install(seccomp_program)
