"""The cgroup v2 device filter: the compiled program in the interpreter, in the
kernel's verifier, and attached to a real cgroup2 directory."""

import errno
import itertools
import os
import stat

import pytest

from minirt.kernel import cgroups, devicefilter, ebpf
from minirt.kernel.cgroups import DEVICE_ALLOW

PARENT = os.environ.get("MINIRT_CGROUP_PARENT", "minirt-test")
ACCESSES = ["".join(c) for n in (1, 2, 3) for c in itertools.combinations("rwm", n)]


@pytest.fixture(scope="module")
def default_program():
    return devicefilter.compile_filter(DEVICE_ALLOW)


def _reference(allow, kind, major, minor, access):
    """The v1 devices controller's rule, in plain Python: some single rule
    matches the device and grants every access asked for."""
    return any(k in (kind, "a") and ma in (major, "*") and mi in (minor, "*") and set(access) <= set(acc)
               for k, ma, mi, acc in allow)


# -- in the interpreter -----------------------------------------------------------

def test_every_entry_of_the_default_list_is_allowed(default_program):
    for kind, major, minor, access in DEVICE_ALLOW:
        for n in range(1, len(access) + 1):
            for asked in itertools.combinations(access, n):
                for k in ("b", "c") if kind == "a" else (kind,):
                    for ma in (0, 1, 136, 4095) if major == "*" else (major,):
                        for mi in (0, 3, 200, 1 << 19) if minor == "*" else (minor,):
                            assert devicefilter.evaluate(default_program, k, ma, mi, "".join(asked)), \
                                (k, ma, mi, asked)


@pytest.mark.parametrize("kind, major, minor, access, why", [
    ("c", 1, 1, "r", "/dev/mem"),
    ("c", 1, 11, "w", "/dev/kmsg"),
    ("b", 8, 0, "r", "the host's first disk"),
    ("b", 7, 0, "rw", "a loop device"),
    ("c", 10, 232, "rw", "/dev/kvm"),
    ("c", 4, 1, "w", "a host console tty"),
    ("c", 10, 201, "r", "next to tun, not tun"),
])
def test_other_devices_cannot_be_opened(default_program, kind, major, minor, access, why):
    assert not devicefilter.evaluate(default_program, kind, major, minor, access), why


def test_any_device_node_can_be_made(default_program):
    for kind, major, minor in (("c", 1, 1), ("b", 8, 0), ("b", 7, 0), ("c", 4095, (1 << 20) - 1)):
        assert devicefilter.evaluate(default_program, kind, major, minor, "m")
        assert not devicefilter.evaluate(default_program, kind, major, minor, "rm")


def test_the_program_agrees_with_the_v1_rule_everywhere(default_program):
    custom = [("c", 1, 3, "r"), ("c", 1, "*", "m"), ("b", 7, "*", "w"), ("a", 5, 1, "rw")]
    for allow in (DEVICE_ALLOW, custom):
        program = default_program if allow is DEVICE_ALLOW else devicefilter.compile_filter(allow)
        for kind, major, minor, access in itertools.product(
                "bc", (0, 1, 5, 7, 10, 136), (0, 1, 2, 3, 5, 7, 8, 9, 200), ACCESSES):
            assert devicefilter.evaluate(program, kind, major, minor, access) == \
                _reference(allow, kind, major, minor, access), (allow is DEVICE_ALLOW, kind, major, minor, access)


def test_an_empty_list_denies_everything_and_allow_all_stops_early():
    deny = devicefilter.compile_filter([])
    assert not devicefilter.evaluate(deny, "c", 1, 3, "r")
    everything = devicefilter.compile_filter([("a", "*", "*", "rwm"), ("c", 1, 3, "r")])
    assert devicefilter.evaluate(everything, "b", 8, 0, "rwm")
    # The second rule could never be reached, so it is not emitted at all.
    assert ebpf.disassemble(everything).splitlines()[-2:] == ["   6: r0 = 1", "   7: exit"]


@pytest.mark.parametrize("rule, message", [
    (("x", 1, 3, "r"), "type must be"),
    (("c", -1, 3, "r"), "not a device number"),
    (("c", 1, "3", "r"), "not a device number"),
    (("c", 1, 3, "rx"), "access must be"),
    (("c", 1, 3, ""), "access must be"),
])
def test_malformed_rules_are_refused(rule, message):
    with pytest.raises(ValueError, match=message):
        devicefilter.compile_filter([rule])


def test_the_listing_names_fields_and_verdicts(default_program):
    lines = devicefilter.disassemble(default_program).splitlines()
    assert lines[0].endswith("; access_type")
    assert "if r2 != 2 goto" in lines[6] and lines[6].endswith("; not c")
    assert lines[7].endswith("; asks for r or w")
    assert lines[-2].endswith("; deny")


# -- in the kernel ----------------------------------------------------------------

@pytest.mark.privileged
@pytest.mark.parametrize("allow", [DEVICE_ALLOW, [], [("a", "*", "*", "rwm")], [("b", 7, "*", "rw")]])
def test_the_verifier_accepts_the_programs(allow):
    fd = ebpf.load(devicefilter.compile_filter(allow), ebpf.PROG_TYPE_CGROUP_DEVICE,
                   attach_type=ebpf.ATTACH_CGROUP_DEVICE)
    os.close(fd)


def _v2_trees():
    v2 = [t for t in cgroups.hierarchies() if t.version == "v2"]
    if not v2:
        pytest.skip("no cgroup2 mount on this host")
    return v2[:1]


def _outcome(action):
    try:
        action()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]


def _open(path, flags):
    return _outcome(lambda: os.close(os.open(path, flags)))


def _mknod(path, kind, major, minor):
    mode = (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | 0o600
    return _outcome(lambda: os.mknod(path, mode, os.makedev(major, minor)))


def _restrict(cg, allow=cgroups.DEVICE_ALLOW):
    """Make ``cg`` and give it a device list (docker's by default); a cgroup
    that cannot take it is removed again."""
    cg.create()
    try:
        assert cg.restrict_devices(allow) is True
    except BaseException:
        cg.remove()
        raise


def _in_cgroup(cg, in_child, fn):
    """Run ``fn`` in a child process placed in ``cg``; remove the cgroup after."""
    def child():
        cg.add(os.getpid())
        return fn()

    try:
        status, result = in_child(child)
    finally:
        cg.remove()
    assert os.WIFEXITED(status) and isinstance(result, dict), result
    return result


def _null_and_a_node(cg, in_child, path, kind, major, minor):
    """In ``cg``: open /dev/null, make the device node ``path``, open it."""
    def checks():
        return {"null": _open("/dev/null", os.O_RDWR), "mknod": _mknod(path, kind, major, minor),
                "node": _open(path, os.O_RDONLY)}

    return _in_cgroup(cg, in_child, checks)


@pytest.mark.privileged
def test_the_default_list_on_a_real_cgroup2_directory(tmp_path, in_child):
    """/dev/null and its copy open; copies of /dev/kmsg and a loop device, made
    in the same directory, do not -- though making them is allowed."""
    cg = cgroups.CgroupV2(f"/{PARENT}/devfilter", _v2_trees())
    _restrict(cg)
    kmsg = str(tmp_path / "kmsg")
    os.mknod(kmsg, stat.S_IFCHR | 0o600, os.makedev(1, 11))
    assert _open(kmsg, os.O_RDONLY) == "ok"     # outside the cgroup: the node itself is fine

    def checks():
        return {
            "null rw": _open("/dev/null", os.O_RDWR),
            "urandom": _open("/dev/urandom", os.O_RDONLY),
            "mknod null": _mknod(str(tmp_path / "null"), "c", 1, 3),
            "null copy": _open(str(tmp_path / "null"), os.O_WRONLY),
            "kmsg": _open(kmsg, os.O_RDONLY),
            "mknod loop": _mknod(str(tmp_path / "loop"), "b", 7, 0),
            "loop": _open(str(tmp_path / "loop"), os.O_RDONLY),
        }

    assert _in_cgroup(cg, in_child, checks) == {
        "null rw": "ok", "urandom": "ok", "mknod null": "ok", "null copy": "ok",
        "kmsg": "EPERM", "mknod loop": "ok", "loop": "EPERM"}
    assert not cg.exists()


@pytest.mark.privileged
def test_access_and_mknod_rules_on_a_real_cgroup2_directory(tmp_path, in_child):
    cg = cgroups.CgroupV2(f"/{PARENT}/devfilter-custom", _v2_trees())
    _restrict(cg, [("c", 1, 3, "r"), ("c", 1, "*", "m"), ("b", 7, "*", "m")])

    def checks():
        return {
            "null r": _open("/dev/null", os.O_RDONLY),
            "null w": _open("/dev/null", os.O_WRONLY),
            "null rw": _open("/dev/null", os.O_RDWR),
            "zero r": _open("/dev/zero", os.O_RDONLY),
            "mknod c 1:5": _mknod(str(tmp_path / "zero"), "c", 1, 5),
            "mknod c 5:0": _mknod(str(tmp_path / "tty"), "c", 5, 0),
            "mknod b 7:3": _mknod(str(tmp_path / "loop3"), "b", 7, 3),
            "mknod b 8:0": _mknod(str(tmp_path / "sda"), "b", 8, 0),
        }

    assert _in_cgroup(cg, in_child, checks) == {
        "null r": "ok", "null w": "EPERM", "null rw": "EPERM", "zero r": "EPERM",
        "mknod c 1:5": "ok", "mknod c 5:0": "EPERM", "mknod b 7:3": "ok", "mknod b 8:0": "EPERM"}


@pytest.mark.privileged
def test_the_host_driver_restricts_devices(tmp_path, in_child):
    """Whatever this host has -- here the v1 devices controller of a hybrid
    host, elsewhere the eBPF program -- the container gets the same list."""
    cg = cgroups.for_container("devices", PARENT)
    _restrict(cg)
    assert _null_and_a_node(cg, in_child, str(tmp_path / "mem"), "c", 1, 1) == {
        "null": "ok", "mknod": "ok", "node": "EPERM"}


@pytest.mark.privileged
def test_v1_without_a_devices_controller_uses_the_cgroup2_tree(tmp_path, in_child):
    """A hybrid host without the devices controller still gets the list: as an
    eBPF program in its cgroup2 tree.  (On a pure v2 host this is a v1 driver
    over the cgroup2 tree alone, which takes the same path.)"""
    trees = [t for t in cgroups.hierarchies() if t.version == "v1" and "pids" in t.controllers]
    cg = cgroups.CgroupV1(f"/{PARENT}/devfilter-v1", trees + _v2_trees())
    _restrict(cg)
    assert _null_and_a_node(cg, in_child, str(tmp_path / "loop"), "b", 7, 0) == {
        "null": "ok", "mknod": "ok", "node": "EPERM"}
