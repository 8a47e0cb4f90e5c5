"""Capabilities: root's power, cut into pieces, and most pieces taken away.

Lecture idea: "root in a container is not root on the host".  Since Linux 2.2
the all-powerful uid 0 is split into some forty *capabilities* (CAP_SYS_ADMIN to
mount, CAP_NET_ADMIN to configure networks, CAP_SYS_MODULE to load kernel code,
...).  A container keeps only the few that ordinary programs need as root
(docker's default 14, below), so that even a root shell inside cannot load a
module, change the clock or reconfigure the host's network.

Every process has five sets of capabilities, shown as hex masks in
/proc/<pid>/status:

    CapBnd  bounding     the ceiling: nothing outside it can ever be gained again,
                         not even by executing a setuid-root or file-capability binary
    CapPrm  permitted    what the process may switch on
    CapEff  effective    what the kernel actually checks right now
    CapInh  inheritable  what may pass through execve to a program with file caps
    CapAmb  ambient      what passes through execve to any program (non-root too)

What execve does with them (capabilities(7)) decides how we set them:

* a process running as **root** gets, after execve, permitted = effective =
  its bounding set (plus inheritable).  So for root the bounding set *is* the
  result, and it must be cut down first, while we still hold CAP_SETPCAP.
* a **non-root** process gets, after execve of an ordinary binary, empty
  permitted and effective sets (ambient aside).  That is what docker gives a
  container started with ``-u 1000``: CapEff 0, CapBnd the default 14.

Like docker since 20.10.14 (CVE-2022-24769) the inheritable set is left empty,
and with it the ambient set (the kernel keeps ambient within permitted and
inheritable), so no capability can slip through execve unasked.

Read first: capabilities(7), "Transformation of capabilities during execve()".
The calls go through python-prctl (``PR_CAPBSET_DROP``, ``capset``).
"""

# python-prctl's C layer: it takes capability *numbers*, so capabilities newer
# than python-prctl's own name list (CAP_CHECKPOINT_RESTORE) work as well.
import _prctl

from minirt.errors import SpecError

# <linux/capability.h>: capability number by name.  A fact table; the kernel
# running us may know fewer (see ``last_cap``).
NUMBERS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# Docker's default set: what a container's root keeps.  Enough to chown files,
# bind port 80, change user, send signals, use ping (NET_RAW) and create device
# nodes (which the devices cgroup / absent /dev entries still restrict).
DEFAULT = frozenset({
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
})

_last_cap = None


def last_cap():
    """The highest capability number the running kernel knows."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap = min(int(f.read()), max(NUMBERS.values()))
        except OSError:  # /proc not mounted: trust the table
            _last_cap = max(NUMBERS.values())
    return _last_cap


def known():
    """All capability names the running kernel supports (``--privileged``)."""
    top = last_cap()
    return frozenset(name for name, number in NUMBERS.items() if number <= top)


def _normalize(name, flag):
    """"chown", "CAP_CHOWN", "cap_chown" -> "CAP_CHOWN"; "all" -> "ALL"."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in known():
        raise SpecError(f'{flag}: unknown capability: "{name}"')
    return full


def capability_set(cap_add=(), cap_drop=(), privileged=False, default=DEFAULT):
    """The capabilities a container gets, computed as docker does.

    ``--privileged`` gets every capability (and ignores the lists).  Otherwise:
    ``--cap-add ALL`` means everything except what is dropped; ``--cap-drop ALL``
    means exactly what is added; else the default set minus the drops plus the
    adds.  Names are case-insensitive, with or without ``CAP_``.
    """
    if privileged:
        return known()
    adds = {_normalize(n, "--cap-add") for n in cap_add}
    drops = {_normalize(n, "--cap-drop") for n in cap_drop}
    if "ALL" in adds:
        return frozenset(known() - drops)
    if "ALL" in drops:
        return frozenset(adds - {"ALL"})
    return frozenset((set(default) - drops) | adds)


def numbers(names):
    return {NUMBERS[n] for n in names}


def mask(names):
    """The capability set as a bit mask, as the kernel stores it."""
    bits = 0
    for n in numbers(names):
        bits |= 1 << n
    return bits


def names_in(bits):
    """The capability names of a bit mask (a /proc status Cap* field, parsed)."""
    return frozenset(name for name, number in NUMBERS.items() if bits >> number & 1)


def expected_status_mask(names):
    """The set as /proc/self/status prints it, e.g. "00000000a80425fb"."""
    return f"{mask(names):016x}"


# -- changing the sets of the calling process ---------------------------------

def bounding_set():
    """Capability numbers in this process's bounding set."""
    return {c for c in range(last_cap() + 1) if _prctl.prctl(_prctl.PR_CAPBSET_READ, c)}


def permitted_set():
    """Capability numbers in this process's permitted set."""
    permitted = _prctl.get_caps([], list(range(last_cap() + 1)), [])[_prctl.CAP_PERMITTED]
    return {c for c, on in permitted.items() if on}


def limit_bounding_set(keep):
    """Drop every capability not in ``keep`` (numbers) from the bounding set.

    Needs CAP_SETPCAP in the effective set, so this comes before anything
    else is dropped.  Irreversible, for this process and all it executes.
    """
    for c in range(last_cap() + 1):
        if c not in keep:
            _prctl.prctl(_prctl.PR_CAPBSET_DROP, c)


def set_process_sets(keep):
    """Effective = permitted = ``keep`` (numbers); inheritable (and so ambient) empty.

    ``keep`` must lie within the current permitted set: capset can only lower it.
    """
    everything = range(last_cap() + 1)
    dropped = [c for c in everything if c not in keep]
    kept = list(keep)
    _prctl.set_caps(kept, kept, [], dropped, dropped, list(everything))


def keep_capabilities_across_setuid():
    """Make the coming setuid() from root keep the permitted set.

    Without this the kernel empties all sets when a process changes from uid 0
    to another uid, and we could no longer set the sets we want.  The flag is
    cleared by execve, so it cannot leak into the container's program.
    """
    _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 1)


def drop_capabilities(keep):
    """Reduce this (root) process to the capabilities named in ``keep``.

    Bounding set first (it needs CAP_SETPCAP), then effective/permitted/
    inheritable.  A capability the process does not hold (one the host's own
    runtime already took away) cannot be given back and is silently left out,
    so the result is ``keep`` intersected with what we had.
    """
    wanted = numbers(keep) & permitted_set()
    limit_bounding_set(wanted)
    set_process_sets(wanted)
    return wanted


def status(pid="self"):
    """The Cap* lines of /proc/<pid>/status: {"CapEff": "00000000a80425fb", ...}."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if line.startswith("Cap"))



def clear_effective():
    """Switch every capability off, keeping the permitted set: a process
    running as root gets them back from its next execve."""
    _prctl.set_caps([], [], [], list(range(last_cap() + 1)), [], [])
