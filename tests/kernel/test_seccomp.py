"""seccomp: profiles, the compiled BPF program, and the filter in a real process."""

import errno
import fcntl
import json
import os
import signal
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.errors import SpecError
from minirt.kernel import libc, seccomp, security
from minirt.kernel.capabilities import DEFAULT
from minirt.kernel.seccomp import RET_ALLOW, RET_KILL_PROCESS, errno_ret
from minirt.kernel.syscalls_x86_64 import SYSCALLS

EPERM = errno_ret(errno.EPERM)
ENOSYS = errno_ret(errno.ENOSYS)
AUDIT_ARCH_I386 = 0x40000003
CLONE_NEWUSER = 0x10000000
PERSONALITY_QUERY = 0xFFFFFFFF
READ_IMPLIES_EXEC = 0x0400000


@pytest.fixture(scope="module")
def default_program():
    return seccomp.compile_profile(seccomp.default_profile(), caps=DEFAULT, kernel="6.1")


def _profile(*syscalls, default="SCMP_ACT_ALLOW", **extra):
    return seccomp.parse_profile({"defaultAction": default, "syscalls": list(syscalls), **extra})


# -- reading docker's JSON ---------------------------------------------------------

def _write(tmp_path, content):
    path = tmp_path / "profile.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize("content, message", [
    ("{not json", "invalid seccomp profile"),
    ([], "top level must be a JSON object"),
    ({"syscalls": []}, "defaultAction is missing"),
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "unknown action 'SCMP_ACT_MAYBE'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]},
     "SCMP_ACT_NOTIFY needs a seccomp agent"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     r"syscalls\[0\].args\[0\]: unknown op"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "index must be 0 to 5"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                      "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
     "value must be an integer"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]},
     "names must be a non-empty list"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                      "includes": {"minKernel": "four"}}]},
     "minKernel 'four'"),
])
def test_bad_profiles_get_one_line_errors_naming_the_file(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(SpecError, match=message) as info:
        seccomp.load_profile(path)
    assert str(info.value).startswith(path + ": ")
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read seccomp profile"):
        seccomp.load_profile(str(tmp_path / "nope.json"))


def test_unknown_and_foreign_syscall_names_are_skipped():
    profile = _profile({"names": ["no_such_call", "chown32", "mkdir"], "action": "SCMP_ACT_ERRNO"})
    program = seccomp.compile_profile(profile)
    assert seccomp.evaluate(program, "mkdir") == EPERM
    assert seccomp.evaluate(program, "chown") == RET_ALLOW


def test_errno_values():
    profile = _profile({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
                       {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
                       default="SCMP_ACT_ERRNO", defaultErrnoRet=errno.ENOENT)
    program = seccomp.compile_profile(profile)
    assert seccomp.evaluate(program, "mkdir") == errno_ret(errno.EACCES)
    assert seccomp.evaluate(program, "rmdir") == EPERM
    assert seccomp.evaluate(program, "read") == errno_ret(errno.ENOENT)


def test_choosing_the_profile():
    default = seccomp.compile_profile(seccomp.default_profile(), caps=DEFAULT)
    assert security.seccomp_program(caps=DEFAULT) == default
    assert security.seccomp_program(privileged=True) is None
    assert security.seccomp_program("unconfined") is None


# -- the program's shape -------------------------------------------------------------

def test_program_checks_the_architecture_first(default_program):
    text = seccomp.disassemble(default_program).splitlines()
    assert text[0].split(";")[0].split(":")[1].strip() == "ld   [4]"
    assert "AUDIT_ARCH_X86_64" in text[1]
    assert "KILL_PROCESS" in text[2]
    assert seccomp.evaluate(default_program, SYSCALLS["read"], arch=AUDIT_ARCH_I386) == RET_KILL_PROCESS


def test_x32_calls_are_killed(default_program):
    assert seccomp.evaluate(default_program, 0x40000000 | SYSCALLS["getpid"]) == RET_KILL_PROCESS


def test_calls_newer_than_the_profile_get_enosys(default_program):
    newest = max(SYSCALLS[n] for r in seccomp.default_profile().rules for n in r.names)
    assert seccomp.evaluate(default_program, newest + 1) == ENOSYS
    assert seccomp.evaluate(default_program, "mseal") == ENOSYS
    # ... but not under a deny-list: there the default (allow) is the answer.
    program = seccomp.compile_profile(_profile({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}))
    assert seccomp.evaluate(program, "mseal") == RET_ALLOW


def test_neighbouring_calls_share_one_range_test(default_program):
    program = seccomp.disassemble(default_program)
    assert len(default_program) // 8 < 160      # ~300 allowed calls in ~40 ranges
    assert "keyctl" not in program              # denied by default: never mentioned


# -- the default profile's verdicts, call by call ------------------------------------

DENIED = """keyctl add_key request_key bpf kexec_load kexec_file_load mount umount2 unshare
    setns pivot_root reboot swapon swapoff init_module finit_module delete_module acct
    settimeofday clock_settime open_by_handle_at perf_event_open quotactl lookup_dcookie
    userfaultfd iopl ioperm create_module get_kernel_syms query_module nfsservctl uselib
    ustat sysfs _sysctl kcmp fsopen fsmount fsconfig fspick open_tree move_mount syslog
    mbind set_mempolicy move_pages vhangup sethostname setdomainname""".split()
ALLOWED = """read write openat execve exit_group futex rt_sigaction mmap ptrace process_vm_readv
    wait4 arch_prctl adjtimex capset setuid setgroups prctl seccomp name_to_handle_at""".split()


@pytest.mark.parametrize("name", DENIED)
def test_default_denies(default_program, name):
    assert seccomp.evaluate(default_program, name) == EPERM


@pytest.mark.parametrize("name", ALLOWED)
def test_default_allows(default_program, name):
    assert seccomp.evaluate(default_program, name) == RET_ALLOW


@pytest.mark.parametrize("name, args, verdict", [
    ("clone", [0x11], RET_ALLOW),                                   # fork: SIGCHLD only
    ("clone", [0x003D0F00], RET_ALLOW),                             # pthread_create's flags
    ("clone", [CLONE_NEWUSER | 0x11], EPERM),
    ("clone", [0x00020000 | 0x11], EPERM),                          # CLONE_NEWNS
    ("clone", [0x1_0000_0011], RET_ALLOW),                          # high bits are not namespaces
    ("clone3", [], ENOSYS),
    ("socket", [socket.AF_INET], RET_ALLOW),
    ("socket", [40], EPERM),                                        # AF_VSOCK
    ("socket", [0x1_0000_0028], RET_ALLOW),                         # 64-bit compare: not 40
    ("personality", [0], RET_ALLOW),
    ("personality", [PERSONALITY_QUERY], RET_ALLOW),
    ("personality", [READ_IMPLIES_EXEC], EPERM),
])
def test_default_argument_rules(default_program, name, args, verdict):
    assert seccomp.evaluate(default_program, name, args) == verdict


@pytest.mark.parametrize("cap, name, args", [
    ("CAP_SYS_ADMIN", "mount", []), ("CAP_SYS_ADMIN", "clone", [CLONE_NEWUSER]),
    ("CAP_SYS_ADMIN", "clone3", []), ("CAP_SYS_TIME", "settimeofday", []),
    ("CAP_SYS_PTRACE", "kcmp", []), ("CAP_SYS_MODULE", "init_module", []),
    ("CAP_SYS_BOOT", "reboot", []), ("CAP_SYS_CHROOT", "chroot", []),
])
def test_added_capabilities_switch_rules_on(name, args, cap):
    program = seccomp.compile_profile(seccomp.default_profile(), caps=DEFAULT | {cap})
    assert seccomp.evaluate(program, name, args) == RET_ALLOW


def test_chroot_needs_cap_sys_chroot_which_is_a_default():
    program = seccomp.compile_profile(seccomp.default_profile(), caps=DEFAULT - {"CAP_SYS_CHROOT"})
    assert seccomp.evaluate(program, "chroot") == EPERM


def test_min_kernel():
    old = seccomp.compile_profile(seccomp.default_profile(), caps=DEFAULT, kernel="4.4.0-210-generic")
    assert seccomp.evaluate(old, "ptrace") == EPERM
    new = seccomp.compile_profile(seccomp.default_profile(), caps=DEFAULT, kernel="4.8.0")
    assert seccomp.evaluate(new, "ptrace") == RET_ALLOW


def _reference(profile, caps, kernel, nr, args):
    """What the profile means, evaluated directly, for comparison with the program."""
    names = [n for n, v in SYSCALLS.items() if v == nr]
    rules = [r for r in profile.rules if r.applies(caps, kernel) and set(names) & set(r.names)]
    newest = max(SYSCALLS[n] for r in profile.rules for n in r.names if n in SYSCALLS)
    if nr > newest and profile.default_action != RET_ALLOW:
        return ENOSYS
    for rule in rules:
        if rule.args and all(_holds(a, args[a.index]) for a in rule.args):
            return rule.action
    return next((r.action for r in rules if not r.args), profile.default_action)


def _holds(arg, x):
    v = arg.value
    return {"EQ": x == v, "NE": x != v, "LT": x < v, "LE": x <= v, "GT": x > v, "GE": x >= v,
            "MASKED_EQ": x & v == arg.value_two}[arg.op]


@pytest.mark.parametrize("caps", [DEFAULT, DEFAULT | {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}, frozenset()])
def test_every_call_gets_what_the_profile_says(caps):
    profile = seccomp.default_profile()
    program = seccomp.compile_profile(profile, caps=caps, kernel="6.1")
    for nr in range(max(SYSCALLS.values()) + 3):
        for first in (0, 0x11, CLONE_NEWUSER, 40, PERSONALITY_QUERY, 1 << 40):
            args = [first, 0, 0, 0, 0, 0]
            assert seccomp.evaluate(program, nr, args) == _reference(profile, caps, (6, 1), nr, args), (nr, first)


# -- 64-bit arguments in 32-bit BPF -------------------------------------------------

U64 = st.one_of(st.sampled_from([0, 1, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, (1 << 64) - 1, 0x1_0000_0005,
                                 0x1_0000_0004, 0x1_0000_0006, 0x5, 0x2_0000_0005]),
                st.integers(0, (1 << 64) - 1))


@settings(max_examples=400, deadline=None)
@given(op=st.sampled_from(seccomp.OPS), value=U64, value_two=U64, x=U64, index=st.integers(0, 5))
def test_64_bit_comparisons_match_python(op, value, value_two, x, index):
    arg = {"index": index, "value": value, "valueTwo": value_two, "op": "SCMP_CMP_" + op}
    profile = _profile({"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM, "args": [arg]})
    program = seccomp.compile_profile(profile)
    args = [0] * 6
    args[index] = x
    expected = errno_ret(errno.EDOM) if _holds(profile.rules[0].args[0], x) else RET_ALLOW
    assert seccomp.evaluate(program, "getpid", args) == expected


def test_conditions_in_one_rule_must_all_hold():
    profile = _profile({"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 10, "op": "SCMP_CMP_GT"}]})
    program = seccomp.compile_profile(profile)
    assert seccomp.evaluate(program, "getpid", [1, 11]) == EPERM
    assert seccomp.evaluate(program, "getpid", [1, 10]) == RET_ALLOW
    assert seccomp.evaluate(program, "getpid", [2, 11]) == RET_ALLOW


def test_one_argument_tested_twice_means_either_test():
    # (runc's seccomp.bats: a rule "index 0 == 100, index 0 == 9001" lets both through)
    profile = _profile({"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 100, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 9001, "op": "SCMP_CMP_EQ"}]},
        default="SCMP_ACT_ERRNO")
    program = seccomp.compile_profile(profile)
    assert [seccomp.evaluate(program, "getpid", [a]) for a in (100, 9001, 0)] == [RET_ALLOW, RET_ALLOW, EPERM]


def test_notify_only_where_an_agent_answers_and_never_for_write():
    rule = {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}
    with pytest.raises(SpecError, match="SCMP_ACT_NOTIFY needs a seccomp agent"):
        _profile(rule)
    program = seccomp.compile_profile(seccomp.parse_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]},
                                                            notify=True))
    assert seccomp.evaluate(program, "mkdir") == seccomp.RET_USER_NOTIF
    assert seccomp.action_name(seccomp.RET_USER_NOTIF) == "USER_NOTIF"
    for data, message in [({"defaultAction": "SCMP_ACT_NOTIFY"}, "cannot be used as default action"),
                          ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [dict(rule, names=["write"])]},
                           "cannot be used for the write syscall")]:
        with pytest.raises(SpecError, match=message):
            seccomp.parse_profile(data, notify=True)


def test_a_profile_with_notify_is_compiled_apart_from_one_without(tmp_path):
    profile = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}).encode()
    assert security.seccomp_program("bundle", cache=str(tmp_path), profile=profile, notify=True)
    with pytest.raises(SpecError, match="needs a seccomp agent"):  # not from the cache
        security.seccomp_program("bundle", cache=str(tmp_path), profile=profile)


# -- for real: a filter installed in a child process ----------------------------------

def test_a_filter_with_an_agent_hands_over_its_descriptor(raw_syscall):
    # The child installs the filter and sends its descriptor; we answer its mkdir.
    program = seccomp.compile_profile(seccomp.parse_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}, notify=True))
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            security.set_no_new_privs()
            handed = []
            security.install_filter(program, lambda fd: handed.append(fd) or socket.send_fds(theirs, [b"f"], [fd]))
            kept = os.path.exists(f"/proc/self/fd/{handed[0]}")  # (the agent's copy must be the only one)
            result, err = raw_syscall("mkdir", 0, 0o755)  # (NULL: the agent answers before the kernel looks)
            os._exit(100 + err if (result, kept) == (-1, False) else 1)
        finally:
            os._exit(2)
    theirs.close()
    _, [listener], _, _ = socket.recv_fds(ours, 1, 1)
    ours.close()
    try:
        notif = bytearray(80)  # struct seccomp_notif: id, pid, flags, nr, arch, ip, args[6]
        fcntl.ioctl(listener, 0xC0502100, notif, True)  # SECCOMP_IOCTL_NOTIF_RECV
        nid, who, nr = struct.unpack_from("=QIxxxxi", notif)
        assert (who, nr) == (pid, SYSCALLS["mkdir"])
        fcntl.ioctl(listener, 0xC0182101, bytearray(struct.pack("=QqiI", nid, -1, -errno.ENOMEDIUM, 0)), True)
    finally:
        os.close(listener)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 100 + errno.ENOMEDIUM


def _nnp_and(program):
    security.set_no_new_privs()
    seccomp.install(program)


def test_default_filter_for_real(in_child, raw_syscall, default_program):
    def probe():
        keyctl_before = raw_syscall("keyctl", 0, (1 << 64) - 3, 0)
        _nnp_and(default_program)
        result = {"keyctl_before": keyctl_before[1], "keyctl": raw_syscall("keyctl", 0, (1 << 64) - 3, 0)[1],
                  "add_key": raw_syscall("add_key", 0, 0, 0, 0, 0)[1],
                  "bpf": raw_syscall("bpf", 0, 0, 0)[1],
                  "personality": raw_syscall("personality", READ_IMPLIES_EXEC)[1],
                  "personality_query": raw_syscall("personality", PERSONALITY_QUERY)[1]}
        try:
            libc.unshare(libc.CLONE_NEWUTS)
            result["unshare"] = 0
        except OSError as e:
            result["unshare"] = e.errno
        pid, err = raw_syscall("clone", CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)     # (only if the filter failed to stop it)
        if pid > 0:
            os.waitpid(pid, 0)
        result["clone_newuser"] = err
        try:
            socket.socket(40, socket.SOCK_STREAM).close()
            result["vsock"] = 0
        except OSError as e:
            result["vsock"] = e.errno
        child = os.fork()           # plain fork (clone without namespace flags) still works
        if child == 0:
            os._exit(7)
        result["fork"] = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        spawned = os.posix_spawn("/bin/busybox", ["true"], {})  # glibc tries clone3 first
        result["posix_spawn"] = os.waitstatus_to_exitcode(os.waitpid(spawned, 0)[1])
        result["clone3"] = raw_syscall("clone3", 0, 0)[1]
        return result

    status, result = in_child(probe)
    assert os.waitstatus_to_exitcode(status) == 0
    assert result.pop("keyctl_before") != errno.EPERM   # the kernel itself would have answered
    assert result == {"keyctl": errno.EPERM, "add_key": errno.EPERM, "bpf": errno.EPERM,
                      "personality": errno.EPERM, "personality_query": 0, "unshare": errno.EPERM,
                      "clone_newuser": errno.EPERM, "vsock": errno.EPERM, "fork": 7, "posix_spawn": 0,
                      "clone3": errno.ENOSYS}


@pytest.mark.privileged
def test_mount_is_denied_for_real(in_child, default_program, tmp_path):
    def probe():
        # A private mount namespace first: should the filter fail, nothing leaks.
        libc.unshare(libc.CLONE_NEWNS)
        libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
        _nnp_and(default_program)
        try:
            libc.mount("none", str(tmp_path), "tmpfs")
            return 0
        except OSError as e:
            return e.errno

    assert in_child(probe)[1] == errno.EPERM


def test_wrong_abi_is_killed_for_real(in_child, raw_syscall, default_program):
    def probe():
        _nnp_and(default_program)
        raw_syscall(0x40000000 | SYSCALLS["getpid"])
        return "survived"

    status, result = in_child(probe)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, (status, result)


def test_64_bit_comparisons_in_the_kernel(in_child, raw_syscall):
    value, mask = 0x1_0000_0005, 0xF000_0000_0000_000F
    ops = {"getpid": "EQ", "getppid": "NE", "getuid": "LT", "geteuid": "LE", "getgid": "GT",
           "getegid": "GE", "gettid": "MASKED_EQ"}
    rules = [{"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM,
              "args": [{"index": 2, "op": "SCMP_CMP_" + op, "value": mask if op == "MASKED_EQ" else value,
                        "valueTwo": 0x1000_0000_0000_0005}]}
             for name, op in ops.items()]
    profile = _profile(*rules)
    program = seccomp.compile_profile(profile)
    samples = [0, 5, 4, 6, 0xFFFFFFFF, 1 << 32, value - 1, value, value + 1, 0x2_0000_0005, 0x2_0000_0004,
               0x1000_0000_0000_0005, 0x1000_0000_0000_0015, 0x1100_0000_0000_0005, (1 << 64) - 1]

    def probe():
        _nnp_and(program)
        return {name: [raw_syscall(name, 0, 0, x)[1] == errno.EDOM for x in samples] for name in ops}

    status, result = in_child(probe)
    assert os.waitstatus_to_exitcode(status) == 0, result
    for rule in profile.rules:
        name = rule.names[0]
        assert result[name] == [_holds(rule.args[0], x) for x in samples], (name, rule.args[0].op)


def test_a_docker_json_profile_applied(in_child, tmp_path):
    path = _write(tmp_path, {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat", "not_a_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["unlink", "unlinkat"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_CHOWN"]}},
        ]})
    program = seccomp.compile_profile(seccomp.load_profile(path), caps=DEFAULT)
    target = tmp_path / "d"

    def probe():
        _nnp_and(program)
        outcome = {}
        for what, call in (("mkdir", lambda: os.mkdir(target)), ("listdir", lambda: os.listdir(tmp_path))):
            try:
                call()
                outcome[what] = 0
            except OSError as e:
                outcome[what] = e.errno
        return outcome

    assert in_child(probe)[1] == {"mkdir": errno.EACCES, "listdir": 0}
    assert not target.exists()
    assert seccomp.evaluate(program, "rmdir") == RET_ALLOW       # rule needs CAP_SYS_ADMIN
    assert seccomp.evaluate(program, "unlink") == RET_ALLOW      # rule excluded by CAP_CHOWN


@pytest.mark.privileged
def test_without_no_new_privs_a_non_root_user_still_gets_the_filter(exec_in_child, default_program):
    def become():
        security.apply(caps=DEFAULT, no_new_privs=False, seccomp_program=default_program, uid=1000, gid=1000,
                       groups=[])

    status, out = exec_in_child(become, ["/bin/busybox", "cat", "/proc/self/status"])
    assert os.waitstatus_to_exitcode(status) == 0, out
    fields = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert (fields["Seccomp"].strip(), fields["NoNewPrivs"].strip(), fields["CapEff"].strip()) == ("2", "0", "0" * 16)


@pytest.mark.privileged
def test_apply_installs_the_filter_last(in_child, raw_syscall, default_program):
    def probe():
        security.apply(caps=DEFAULT, seccomp_program=default_program, uid=1000, gid=1000, groups=[])
        with open("/proc/self/status") as f:
            fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        return {"seccomp": fields["Seccomp"], "nnp": fields["NoNewPrivs"],
                "keyctl": raw_syscall("keyctl", 0, (1 << 64) - 3, 0)[1], "uid": os.getresuid()}

    status, result = in_child(probe)
    assert result == {"seccomp": "2", "nnp": "1", "keyctl": errno.EPERM, "uid": [1000, 1000, 1000]}


# -- the compiled-program cache ------------------------------------------------------

def test_the_cache_keeps_what_the_compiler_made(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    first = security.seccomp_program(None, False, DEFAULT, cache=cache)
    assert first == seccomp.compile_profile(seccomp.default_profile(), caps=DEFAULT)
    [name] = os.listdir(cache)

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")
    monkeypatch.setattr(seccomp, "compile_profile", no_compiling)
    assert security.seccomp_program(None, False, DEFAULT, cache=cache) == first   # from the cache
    monkeypatch.undo()
    # Other capabilities, another program (docker's profile depends on them).
    more = security.seccomp_program(None, False, DEFAULT | {"CAP_SYS_ADMIN"}, cache=cache)
    assert more != first and len(os.listdir(cache)) == 2


def test_a_damaged_cache_entry_is_compiled_again(tmp_path):
    cache = str(tmp_path / "cache")
    good = security.seccomp_program(None, False, DEFAULT, cache=cache)
    [name] = os.listdir(cache)
    (tmp_path / "cache" / name).write_bytes(good[:-3])  # not whole instructions
    assert security.seccomp_program(None, False, DEFAULT, cache=cache) == good
    assert (tmp_path / "cache" / name).read_bytes() == good


def test_a_profile_file_is_keyed_by_its_content(tmp_path):
    cache = str(tmp_path / "cache")
    path = _write(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW",
                             "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})
    assert seccomp.evaluate(security.seccomp_program(path, False, DEFAULT, cache=cache), "mkdir") == EPERM
    _write(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW",
                      "syscalls": [{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]})
    program = security.seccomp_program(path, False, DEFAULT, cache=cache)
    assert seccomp.evaluate(program, "mkdir") == RET_ALLOW and seccomp.evaluate(program, "rmdir") == EPERM


def test_no_filter_unconfined_or_privileged(tmp_path):
    assert security.seccomp_program("unconfined", False, DEFAULT, cache=str(tmp_path)) is None
    assert security.seccomp_program(None, True, DEFAULT, cache=str(tmp_path)) is None
    assert os.listdir(tmp_path) == []


def test_a_bad_profile_is_refused_and_not_cached(tmp_path):
    cache = str(tmp_path / "cache")
    path = _write(tmp_path, {"defaultAction": "SCMP_ACT_FROB"})
    with pytest.raises(SpecError):
        security.seccomp_program(path, False, DEFAULT, cache=cache)
    with pytest.raises(SpecError, match="cannot read seccomp profile"):
        security.seccomp_program(str(tmp_path / "nope.json"), False, DEFAULT, cache=cache)
    assert not os.path.exists(cache) or os.listdir(cache) == []
