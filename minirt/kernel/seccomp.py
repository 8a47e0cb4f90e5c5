"""seccomp: a filter program the kernel runs before every system call.

Lecture idea: the system call is the only door from a process into the kernel,
so a container can be hardened by guarding that door.  With seccomp(2) a
process installs a small program (classic BPF, see ``bpf.py``) that the kernel
runs on each of its system calls, and that of all its descendants, for ever:
a filter cannot be removed, only more filters added.  The program sees

    struct seccomp_data {
        int   nr;                    offset  0  the system call's number
        __u32 arch;                  offset  4  which ABI: AUDIT_ARCH_*
        __u64 instruction_pointer;   offset  8
        __u64 args[6];               offset 16  the arguments, by value
    };

and returns a verdict: allow, fail with an errno, kill, trap, log, or ask a
supervisor (user notification: the call waits until the *seccomp agent*
holding the filter's notification descriptor answers it).  It cannot
follow pointers (a path, a struct) -- the memory could change between the check
and the use -- so rules can only look at numbers: the call and its arguments.

A *profile* (docker's JSON format, ``load_profile``; the default in
``seccomp_default.py``) says what to do per system call *name*.  This module
compiles it for one architecture, x86_64, into a program of this shape:

    ld   arch;  not AUDIT_ARCH_X86_64?   -> kill   (i386 calls via int 0x80 use
                                                   other numbers: check first)
    ld   nr;    x32 ABI bit set?         -> kill   (a third numbering, same arch)
                newer than the profile?  -> ENOSYS (libc then falls back)
    per call, in ascending order, runs of neighbours with the same verdict
    merged into one range test:
                nr in lo..hi?            -> verdict
                nr == n?                 -> argument tests -> verdict
    otherwise                            -> the default verdict

All jumps go forward a short way, as classic BPF requires, and a call costs at
most two comparisons per range; frequent calls (read, write, ...) have small
numbers and are decided first.

Read first: seccomp(2) and Documentation/userspace-api/seccomp_filter.rst.
"""

import errno
import functools
import json
import os
import re
import struct
from collections import namedtuple

from minirt.errors import RuntimeFailure, SpecError
from minirt.kernel import bpf
from minirt.kernel import libc
from minirt.kernel import security
from minirt.kernel.syscalls_x86_64 import SYSCALLS

_NAMES = {number: name for name, number in SYSCALLS.items()}

# -- what the filter sees -----------------------------------------------------

NR = 0                          # offsets into struct seccomp_data
ARCH = 4
ARGS = 16                       # args[i]: low word at 16 + 8*i, high word 4 later
AUDIT_ARCH_X86_64 = 0xC000003E  # EM_X86_64 (62) | 64-bit | little-endian
X32_SYSCALL_BIT = 0x40000000    # x32 ABI: x86_64 registers, 32-bit pointers
_SECCOMP_DATA = struct.Struct("<iIQ6Q")

# -- what it answers: the verdict's top 16 bits say what, the low 16 a detail -

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000           # SIGSYS to the caller
RET_ERRNO = 0x00050000          # | errno: the call fails, nothing happens
RET_USER_NOTIF = 0x7FC00000     # the agent answers (``security.install_filter``)
RET_TRACE = 0x7FF00000          # | message for a ptrace tracer
RET_LOG = 0x7FFC0000            # allowed, and logged
RET_ALLOW = 0x7FFF0000
RET_DATA = 0x0000FFFF

ACTIONS = {
    "SCMP_ACT_ALLOW": RET_ALLOW,
    "SCMP_ACT_ERRNO": RET_ERRNO,
    "SCMP_ACT_KILL": RET_KILL_THREAD,    # libseccomp's old name
    "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": RET_TRAP,
    "SCMP_ACT_TRACE": RET_TRACE,
    "SCMP_ACT_LOG": RET_LOG,
    "SCMP_ACT_NOTIFY": RET_USER_NOTIF,
}
NOTIFY = "SCMP_ACT_NOTIFY"
# Calls the agent may not hold up: the process that installs the filter makes
# them before the agent has its descriptor (``security.install_filter``).
NOTIFY_FORBIDDEN = ("write", "sendmsg")
OPS = ("EQ", "NE", "LT", "LE", "GT", "GE", "MASKED_EQ")
_NATIVE_ARCHES = {"amd64", "x86_64", "SCMP_ARCH_X86_64"}   # how profiles name ours


def errno_ret(number):
    return RET_ERRNO | (number & RET_DATA)


def action_name(verdict):
    """ALLOW, ERRNO(EPERM), KILL_PROCESS, ...: a verdict for people."""
    what, data = verdict & ~RET_DATA & 0xFFFFFFFF, verdict & RET_DATA
    if what == RET_ERRNO:
        return f"ERRNO({errno.errorcode.get(data, data)})"
    names = {RET_KILL_PROCESS: "KILL_PROCESS", RET_KILL_THREAD: "KILL_THREAD", RET_TRAP: "TRAP",
             RET_TRACE: "TRACE", RET_LOG: "LOG", RET_ALLOW: "ALLOW", RET_USER_NOTIF: "USER_NOTIF"}
    return names.get(what, f"{verdict:#x}")


# -- a profile, as read from docker's JSON --------------------------------------

# A profile is immutable (so compiled programs can be cached by profile).

Arg = namedtuple("Arg", "index op value value_two", defaults=(0,))
Arg.__doc__ = """One argument test; ``MASKED_EQ`` means ``(arg & value) == value_two``."""

When = namedtuple("When", "caps arches min_kernel", defaults=(frozenset(), frozenset(), ()))
When.__doc__ = """A rule's ``includes`` or ``excludes``: conditions on the container."""

Profile = namedtuple("Profile", "default_action rules source", defaults=("profile",))


class Rule(namedtuple("Rule", "names action args includes excludes", defaults=((), When(), When()))):
    __slots__ = ()

    def applies(self, caps, kernel):
        """As docker decides: includes must all hold, no exclude may."""
        inc, exc = self.includes, self.excludes
        return ((not inc.caps or inc.caps <= caps)
                and not exc.caps & caps
                and (not inc.arches or bool(inc.arches & _NATIVE_ARCHES))
                and not exc.arches & _NATIVE_ARCHES
                and (not inc.min_kernel or kernel >= inc.min_kernel)
                and (not exc.min_kernel or kernel < exc.min_kernel))


def load_profile(path, data=None, notify=False):
    """Read a seccomp profile in docker's JSON format (``data``: its bytes, if
    already read; ``notify``: see ``parse_profile``)."""
    try:
        decoded = json.loads(security.read_profile(path) if data is None else data)
    except (ValueError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: invalid seccomp profile: {e}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid seccomp profile: nested too deeply") from None
    return parse_profile(decoded, source=str(path), notify=notify)


def parse_profile(data, source="profile", notify=False):
    """Turn the decoded JSON into a ``Profile``; SpecError names what is wrong.
    SCMP_ACT_NOTIFY only with ``notify``: where there is an agent to answer
    (an OCI bundle's listenerPath), and never for the calls that hand it the
    descriptor (NOTIFY_FORBIDDEN) nor as the default action (runc's rules)."""
    def fail(message):
        raise SpecError(f"{source}: invalid seccomp profile: {message}")

    def uint(value, what, bits=64):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
            fail(f"{what} must be an integer from 0 to {(1 << bits) - 1}, not {value!r}")
        return value

    def action(rule, where, errno_value, default_errno):
        if not isinstance(rule, str) or rule not in ACTIONS:
            fail(f"{where}: unknown action {rule!r}")
        if rule == NOTIFY and not notify:
            fail(f"{where}: SCMP_ACT_NOTIFY needs a seccomp agent (an OCI bundle's linux.seccomp.listenerPath)")
        code = ACTIONS[rule]
        if code in (RET_ERRNO, RET_TRACE):
            value = default_errno if errno_value is None else errno_value
            code |= uint(value, f"{where}: errnoRet", bits=16)
        return code

    def when(obj, where):
        if obj is None:
            return When()
        if not isinstance(obj, dict):
            fail(f"{where} must be an object")
        caps = obj.get("caps") or []
        arches = obj.get("arches") or []
        if not all(isinstance(c, str) for c in caps) or not all(isinstance(a, str) for a in arches):
            fail(f"{where}: caps and arches must be lists of strings")
        kernel = ()
        if obj.get("minKernel"):
            try:
                kernel = _kernel_version(str(obj["minKernel"]), strict=True)
            except ValueError:
                fail(f"{where}: minKernel {obj['minKernel']!r} is not a version like \"4.8\"")
        caps = frozenset(c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper() for c in caps)
        return When(caps=caps, arches=frozenset(arches), min_kernel=kernel)

    def arg(obj, where):
        if not isinstance(obj, dict):
            fail(f"{where} must be an object")
        op = obj.get("op", "")
        if not isinstance(op, str) or op.removeprefix("SCMP_CMP_") not in OPS:
            fail(f"{where}: unknown op {op!r}")
        index = obj.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
            fail(f"{where}: index must be 0 to 5, not {index!r}")
        return Arg(index=index, op=op.removeprefix("SCMP_CMP_"),
                   value=uint(obj.get("value", 0), f"{where}: value"),
                   value_two=uint(obj.get("valueTwo", 0) or 0, f"{where}: valueTwo"))

    if not isinstance(data, dict):
        fail("the top level must be a JSON object")
    if "defaultAction" not in data:
        fail("defaultAction is missing")
    default_errno = data.get("defaultErrnoRet")
    if data["defaultAction"] == NOTIFY:
        fail("SCMP_ACT_NOTIFY cannot be used as default action")
    default = action(data["defaultAction"], "defaultAction", default_errno, errno.EPERM)
    for key in ("architectures", "archMap"):
        if not isinstance(data.get(key) or [], list):
            fail(f"{key} must be a list")

    rules = []
    for i, obj in enumerate(data.get("syscalls") or []):
        where = f"syscalls[{i}]"
        if not isinstance(obj, dict):
            fail(f"{where} must be an object")
        names = obj.get("names") or ([obj["name"]] if obj.get("name") else [])
        if not names or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            fail(f"{where}: names must be a non-empty list of strings")
        if not isinstance(obj.get("args") or [], list):
            fail(f"{where}: args must be a list")
        for name in NOTIFY_FORBIDDEN:
            if obj.get("action") == NOTIFY and name in names:
                fail(f"SCMP_ACT_NOTIFY cannot be used for the {name} syscall")
        rules.append(Rule(
            names=tuple(names),
            action=action(obj.get("action"), where, obj.get("errnoRet"), errno.EPERM),
            args=tuple(arg(a, f"{where}.args[{j}]") for j, a in enumerate(obj.get("args") or [])),
            includes=when(obj.get("includes"), f"{where}.includes"),
            excludes=when(obj.get("excludes"), f"{where}.excludes"),
        ))
    return Profile(default_action=default, rules=tuple(rules), source=source)


@functools.cache
def default_profile():
    from minirt.kernel.seccomp_default import PROFILE
    return parse_profile(PROFILE, source="minirt default seccomp profile")


def _kernel_version(release=None, strict=False):
    """"6.1.0-18-amd64" -> (6, 1, 0); strictly, only "X.Y" or "X.Y.Z" is accepted."""
    release = release or os.uname().release
    if strict:
        if not re.fullmatch(r"\d+\.\d+(\.\d+)?", release):
            raise ValueError(release)
        return tuple(int(p) for p in release.split("."))
    return tuple(int(p) for p in re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", release).groups() if p)


# -- the compiler -------------------------------------------------------------

def compile_profile(profile, caps=frozenset(), kernel=None):
    """The BPF program (bytes of ``struct sock_filter[]``) for this container.

    ``caps`` are the container's capabilities: docker's profiles switch rules
    on and off with them (``includes``/``excludes``).  Cached: a container
    start with the usual profile and capabilities costs nothing here.
    """
    kernel = _kernel_version(kernel) if isinstance(kernel, str) or kernel is None else tuple(kernel)
    return _compile(profile, frozenset(caps), kernel)


@functools.lru_cache(maxsize=32)
def _compile(profile, caps, kernel):
    # For one call, rules with argument tests are tried first, in profile
    # order, and the first that matches decides (``_alternatives``); then
    # the first rule without tests; then the default.  (In docker's profiles
    # a call never has two rules that disagree, so the order only matters
    # for hand-made profiles.)
    unconditional = {}   # nr -> verdict of the first rule without argument tests
    conditional = {}     # nr -> [(args, verdict)], in profile order
    for rule in profile.rules:
        if not rule.applies(caps, kernel):
            continue
        for name in rule.names:
            nr = SYSCALLS.get(name)
            if nr is None:          # another architecture's call: skipped, as docker does
                continue
            if rule.args:
                conditional.setdefault(nr, []).extend((args, rule.action) for args in _alternatives(rule.args))
            else:
                unconditional.setdefault(nr, rule.action)

    asm = bpf.Assembler()
    _check_architecture(asm)
    newest = max((SYSCALLS[n] for r in profile.rules for n in r.names if n in SYSCALLS), default=None)
    if newest is not None and profile.default_action not in (RET_ALLOW, RET_LOG):
        # A call newer than any the profile names was unknown to its author;
        # "no such call" lets libc fall back to an older one (as runc does).
        known = asm.label("known")
        asm.jump_if(bpf.JGT, newest, None, known)
        asm.ret(errno_ret(errno.ENOSYS))
        asm.place(known)

    for block in _blocks(profile.default_action, unconditional, conditional):
        after = asm.label("next")
        if isinstance(block, _Range):
            if block.lo == block.hi:
                asm.jump_if(bpf.JEQ, block.lo, None, after)
            else:
                if block.lo > 0:    # (nr >= 0 always holds)
                    asm.jump_if(bpf.JGE, block.lo, None, after)
                asm.jump_if(bpf.JGT, block.hi, after, None)
            asm.ret(block.verdict)
        else:
            asm.jump_if(bpf.JEQ, block.nr, None, after)
            for args, verdict in block.rules:
                next_rule = asm.label("rule")
                for a in args:
                    _test_argument(asm, a, next_rule)
                asm.ret(verdict)
                asm.place(next_rule)
            asm.ret(block.otherwise)
        asm.place(after)
    asm.ret(profile.default_action)
    try:
        return bpf.encode(asm.assemble())
    except ValueError as e:
        raise SpecError(f"{profile.source}: seccomp profile too complex: {e}") from None


def _alternatives(args):
    """A rule's argument tests as the alternatives that let it match: all of
    them together -- unless two test the same argument (``index 0 == 100``,
    ``index 0 == 9001``), which together could never hold: then, as docker
    and runc read such a rule, each test alone."""
    indexes = [a.index for a in args]
    if len(set(indexes)) < len(indexes):
        return [(a,) for a in args]
    return [args]


def _check_architecture(asm):
    """Kill unless this is a native x86_64 call; leave A = nr."""
    native = asm.label("native")
    asm.load(ARCH)
    asm.jump_if(bpf.JEQ, AUDIT_ARCH_X86_64, native, None)
    asm.ret(RET_KILL_PROCESS)
    asm.place(native)
    asm.load(NR)
    not_x32 = asm.label("not_x32")
    asm.jump_if(bpf.JGE, X32_SYSCALL_BIT, None, not_x32)
    asm.ret(RET_KILL_PROCESS)
    asm.place(not_x32)


class _Range:
    """Calls lo..hi, all with one verdict and no argument tests."""

    def __init__(self, lo, hi, verdict):
        self.lo, self.hi, self.verdict = lo, hi, verdict


class _Tested:
    """One call with argument tests: rules in order, then ``otherwise``."""

    def __init__(self, nr, rules, otherwise):
        self.nr, self.rules, self.otherwise = nr, rules, otherwise


def _blocks(default, unconditional, conditional):
    """Per call number, ascending; neighbours with one plain verdict merged."""
    blocks = []
    for nr in sorted(set(unconditional) | set(conditional)):
        otherwise = unconditional.get(nr, default)
        if nr in conditional:
            blocks.append(_Tested(nr, conditional[nr], otherwise))
        elif otherwise == default:
            continue        # nothing to say: the default will do
        elif blocks and isinstance(blocks[-1], _Range) and blocks[-1].hi == nr - 1 \
                and blocks[-1].verdict == otherwise:
            blocks[-1].hi = nr
        else:
            blocks.append(_Range(nr, nr, otherwise))
    return blocks


def _test_argument(asm, arg, fail):
    """Fall through if the 64-bit argument passes the test, else jump to ``fail``.

    BPF words are 32 bits, so each 64-bit argument is two loads: the high word
    decides an ordering unless it is equal, and only then the low word counts.
    """
    low = ARGS + 8 * arg.index
    high = low + 4      # little-endian: the high half comes second
    v_hi, v_lo = arg.value >> 32, arg.value & 0xFFFFFFFF
    if arg.op == "EQ":
        asm.load(high)
        asm.jump_if(bpf.JEQ, v_hi, None, fail)
        asm.load(low)
        asm.jump_if(bpf.JEQ, v_lo, None, fail)
    elif arg.op == "NE":
        passed = asm.label("ne")
        asm.load(high)
        asm.jump_if(bpf.JEQ, v_hi, None, passed)
        asm.load(low)
        asm.jump_if(bpf.JEQ, v_lo, fail, None)
        asm.place(passed)
    elif arg.op == "MASKED_EQ":
        d_hi, d_lo = arg.value_two >> 32, arg.value_two & 0xFFFFFFFF
        for offset, mask, datum in ((high, v_hi, d_hi), (low, v_lo, d_lo)):
            if mask == 0 and datum == 0:
                continue    # (x & 0) == 0 always holds: e.g. flags that fit in 32 bits
            asm.load(offset)
            asm.and_(mask)
            asm.jump_if(bpf.JEQ, datum, None, fail)
    else:
        # GT and GE pass when the high word is greater, LT and LE when it is
        # smaller; equal high words hand the decision to the low words.
        passed = asm.label("cmp")
        above, below = (passed, fail) if arg.op in ("GT", "GE") else (fail, passed)
        asm.load(high)
        asm.jump_if(bpf.JGT, v_hi, above, None)
        asm.jump_if(bpf.JEQ, v_hi, None, below)
        asm.load(low)
        if arg.op == "GT":
            asm.jump_if(bpf.JGT, v_lo, None, fail)
        elif arg.op == "GE":
            asm.jump_if(bpf.JGE, v_lo, None, fail)
        elif arg.op == "LT":
            asm.jump_if(bpf.JGE, v_lo, fail, None)
        else:  # LE
            asm.jump_if(bpf.JGT, v_lo, fail, None)
        asm.place(passed)


# -- reading a compiled program ---------------------------------------------------

def evaluate(program, nr, args=(), arch=AUDIT_ARCH_X86_64):
    """The verdict ``program`` gives a call, computed in Python like the kernel would."""
    if isinstance(nr, str):
        nr = SYSCALLS[nr]
    data = _SECCOMP_DATA.pack(nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    return bpf.run(bpf.decode(program), data)


def disassemble(program):
    """The program as text, with offsets, call numbers and verdicts named."""
    insns = bpf.decode(program)
    loaded = {}

    def comment(pc, insn):
        code, _jt, _jf, k = insn
        cls = code & 0x07
        if cls == bpf.LD:
            loaded["word"] = k
            if k == NR:
                return "nr"
            if k == ARCH:
                return "arch"
            i, half = divmod(k - ARGS, 8)
            return f"args[{i}] {'high' if half else 'low'} word"
        if cls == bpf.RET:
            return action_name(k)
        if cls == bpf.JMP and loaded.get("word") == ARCH and k == AUDIT_ARCH_X86_64:
            return "AUDIT_ARCH_X86_64"
        if cls == bpf.JMP and loaded.get("word") == NR and k in _NAMES:
            return _NAMES[k]
        return ""

    return bpf.disassemble(insns, comment)


# -- installing -------------------------------------------------------------------

def install(program, flags=0):
    """Install the filter on the calling thread; from now on every call passes it.

    Needs either no_new_privs set (so the filter cannot be used to confuse a
    setuid program) or CAP_SYS_ADMIN; ``security.apply`` orders its steps so
    that one of the two holds.
    """
    try:
        libc.seccomp_filter(program, flags)
    except OSError as e:
        raise RuntimeFailure(f"cannot install the seccomp filter: {os.strerror(e.errno)}") from None
