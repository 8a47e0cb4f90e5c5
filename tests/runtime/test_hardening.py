"""Hardening seen from inside the container: what root in a container may *do*.

Issue 4's promise, probed the way an attacker would: a root shell in a default
container holds docker's 14 capabilities, cannot mount, unshare, set the host
name or reach a host process, cannot write the kernel's settings in /proc/sys,
reads the masked parts of /proc and /sys as empty, runs under no_new_privs and
a seccomp filter.  The same probes under ``--privileged`` succeed where docker's
would.  Every test also checks the host afterwards: no state directory, no
cgroup and no process of the container is left.

The busybox image has no keyctl, ptrace or bpf tool; those system calls are
tested against the seccomp filter directly in tests/kernel/test_seccomp.py.
"""

import os
import subprocess
import sys

import pytest

from minirt.kernel import capabilities, masked
from minirt.kernel.security import expected_status_mask

pytestmark = pytest.mark.privileged


# -- helpers ------------------------------------------------------------------------

def sh(run, script, **options):
    r = run("sh", "-c", script, **options)
    assert r.exit_code == 0, r.stderr
    return r.stdout.decode()


def cli(state_root, *args, **kw):
    return subprocess.run([sys.executable, "-m", "minirt", "--root", state_root, *args],
                          capture_output=True, timeout=60, **kw)


def status(text):
    """The "Key:\tvalue" lines of /proc/self/status as a dict."""
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


STATUS = "cat /proc/self/status"


def host_capabilities():
    """What this (root) test process holds: a container can never get more.
    (This host's own sandbox may already lack some, e.g. CAP_SYS_RESOURCE.)"""
    return int(capabilities.status()["CapBnd"], 16)


def expected(names):
    """/proc/self/status's rendering of ``names`` as far as the host allows."""
    return f"{int(expected_status_mask(names), 16) & host_capabilities():016x}"


# -- capabilities -------------------------------------------------------------------

def test_root_keeps_dockers_default_capabilities(run):
    st = status(sh(run, STATUS))
    want = expected(capabilities.DEFAULT)
    assert want == expected_status_mask(capabilities.DEFAULT)  # the host holds all 14
    assert (st["CapEff"], st["CapPrm"], st["CapBnd"]) == (want, want, want)
    assert st["CapInh"] == st["CapAmb"] == "0" * 16


@pytest.mark.parametrize("cap_add, cap_drop", [
    ([], ["ALL"]),
    (["SYS_ADMIN"], ["chown"]),
    (["cap_net_admin", "SYS_PTRACE"], ["NET_RAW", "KILL", "SETFCAP"]),
    (["NET_ADMIN"], ["ALL"]),
    (["ALL"], ["SYS_MODULE"]),
])
def test_cap_add_and_cap_drop_change_the_sets(run, cap_add, cap_drop):
    st = status(sh(run, STATUS, cap_add=cap_add, cap_drop=cap_drop))
    want = expected(capabilities.capability_set(cap_add, cap_drop))
    assert (st["CapEff"], st["CapPrm"], st["CapBnd"]) == (want, want, want)
    assert st["CapInh"] == st["CapAmb"] == "0" * 16


def test_non_root_user_has_no_capabilities_but_the_same_bounding_set(run):
    out = sh(run, "id -u; id -g; id -G; " + STATUS, user="1000:1000", group_add=["10", "users"])
    uid, gid, groups, *rest = out.splitlines()
    assert (uid, gid) == ("1000", "1000")
    assert {"10", "100"} <= set(groups.split())
    st = status("\n".join(rest))
    assert st["CapEff"] == st["CapPrm"] == "0" * 16
    assert st["CapBnd"] == expected_status_mask(capabilities.DEFAULT)
    assert st["Uid"].split() == ["1000"] * 4 and st["Gid"].split() == ["1000"] * 4
    assert set(st["Groups"].split()) == {"10", "100"}


def test_dropping_chroot_and_mknod_takes_them_away(run):
    # Both are in docker's default set (and allowed by its seccomp profile) ...
    assert sh(run, "chroot / true && mknod /tmp/null c 1 3 && echo allowed") == "allowed\n"
    # ... and gone once dropped.
    r = run("sh", "-c", "chroot / true || echo no-chroot; mknod /tmp/null c 1 3 || echo no-mknod",
            cap_drop=["SYS_CHROOT", "MKNOD"])
    assert r.stdout.decode().split() == ["no-chroot", "no-mknod"]
    assert b"Operation not permitted" in r.stderr


# -- what root in a default container cannot do --------------------------------------

PROBES = {
    # name: (shell command, what docker's default container does)
    "mount": "mount -t tmpfs probe /tmp",
    "unshare": "unshare -r true",
    "unshare-net": "unshare -n true",
    "nsenter": "nsenter -t 1 -m true",
    "hostname": "hostname probe-name",
    "proc-sys": "echo probe > /proc/sys/kernel/hostname",
    "proc-sys-net": "echo 1 > /proc/sys/net/ipv4/ip_forward",
}


def _probe_script():
    return "; ".join(f"if {cmd} 2>/dev/null; then echo {name}=ok; else echo {name}=fail; fi"
                     for name, cmd in PROBES.items())


def _probe_results(out):
    return dict(line.split("=") for line in out.split())


def test_default_container_cannot_mount_unshare_or_change_the_kernel(run):
    results = _probe_results(sh(run, _probe_script()))
    assert results == {name: "fail" for name in PROBES}


def test_privileged_container_can_do_what_dockers_can(run):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_forward = f.read()
    results = _probe_results(sh(run, _probe_script(), privileged=True))
    # nsenter into PID 1's own mount namespace is harmless and allowed; every
    # write above goes to a namespaced setting (uts, net), never the host's.
    assert results == {name: "ok" for name in PROBES}
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_forward


def test_cap_sys_admin_alone_unlocks_mount_and_hostname(run):
    # docker's seccomp profile allows mount, unshare, sethostname to a holder of
    # CAP_SYS_ADMIN: the filter is compiled for the container's capabilities.
    out = sh(run, "mount -t tmpfs probe /tmp && hostname probe-name && hostname && unshare -n true && echo ok",
             cap_add=["SYS_ADMIN"])
    assert out == "probe-name\nok\n"


def test_privileged_gets_every_capability_the_host_has_and_no_filter(run):
    st = status(sh(run, STATUS, privileged=True))
    full = expected(capabilities.known())
    assert (st["CapEff"], st["CapPrm"], st["CapBnd"]) == (full, full, full)
    assert st["Seccomp"] == "0"
    out = sh(run, "grep ' /sys ' /proc/mounts; cat /proc/timer_list | wc -c", privileged=True)
    assert " rw," in out.splitlines()[0]
    if os.path.exists("/proc/timer_list"):
        assert int(out.splitlines()[1]) > 0  # not masked


def test_host_processes_are_invisible_and_unreachable(run):
    me = os.getpid()
    out = sh(run, f"kill -0 {me} 2>&1 && echo reached; test -e /proc/{me} && echo visible;"
                  " ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '")
    assert "reached" not in out and "visible" not in out
    # PID 1 (the shell) and the short-lived ls/grep/sort/tr: nothing from the host.
    pids = [int(p) for p in out.split()[-10:] if p.isdigit()]
    assert pids[0] == 1 and max(pids) < 20


def test_proc_sys_and_sysrq_trigger_are_read_only(run):
    out = sh(run, "grep -E ' /proc/(sys|sysrq-trigger|irq|bus|fs) ' /proc/mounts;"
                  " echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-written; true")
    mounts = {line.split()[1]: line.split()[3] for line in out.splitlines() if line.startswith("proc ")}
    for path in masked.READONLY_PATHS:
        if os.path.exists(path):
            assert mounts[path].startswith("ro"), (path, out)
    assert "sysrq-written" not in out


def test_masked_paths_read_empty(run):
    present = [p for p in masked.MASKED_PATHS if os.path.exists(p)]
    assert "/proc/timer_list" in present and "/proc/keys" in present and "/sys/firmware" in present
    script = "; ".join(f"echo {p} $(if [ -d {p} ]; then ls -A {p} | wc -l; else cat {p} | wc -c; fi)"
                       for p in present)
    sizes = dict(line.split() for line in sh(run, script).splitlines())
    assert sizes == {p: "0" for p in present}
    # Writing through a masked file changes nothing: it is /dev/null.
    sh(run, "echo probe > /proc/timer_list 2>/dev/null; true")


# -- no_new_privs and seccomp ----------------------------------------------------------

@pytest.mark.parametrize("options, nnp, mode", [
    ({}, "1", "2"),
    ({"seccomp": "unconfined"}, "1", "0"),
    ({"no_new_privileges": False}, "0", "2"),
    ({"seccomp": "unconfined", "no_new_privileges": False}, "0", "0"),
])
def test_no_new_privs_and_seccomp_defaults_and_opt_outs(run, options, nnp, mode):
    st = status(sh(run, STATUS, **options))
    assert (st["NoNewPrivs"], st["Seccomp"]) == (nnp, mode)
    # Without no_new_privs the filter is installed while CAP_SYS_ADMIN is still
    # held; that must not leave it behind.
    assert st["CapEff"] == expected_status_mask(capabilities.DEFAULT)


def test_cli_security_opts(busybox_image, state_root):
    r = cli(state_root, "run", "--rm", "--security-opt", "seccomp=unconfined",
            "--security-opt", "no-new-privileges:false", busybox_image, "cat", "/proc/self/status")
    assert r.returncode == 0, r.stderr
    st = status(r.stdout.decode())
    assert (st["NoNewPrivs"], st["Seccomp"]) == ("0", "0")


NO_MKDIR = """{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64"],
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
}"""


def test_seccomp_profile_from_a_file_is_enforced(run, tmp_path):
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(NO_MKDIR)
    r = run("sh", "-c", "touch /file && echo touched; mkdir /dir && echo made; grep Seccomp: /proc/self/status",
            seccomp=str(profile))
    out = r.stdout.decode()
    assert "touched" in out and "made" not in out and "Seccomp:\t2" in out
    assert b"Operation not permitted" in r.stderr


def test_seccomp_profile_from_a_file_via_the_cli(busybox_image, state_root, tmp_path):
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(NO_MKDIR)
    r = cli(state_root, "run", "--rm", "--security-opt", f"seccomp={profile}", busybox_image, "mkdir", "/x")
    assert r.returncode == 1 and b"Operation not permitted" in r.stderr


@pytest.mark.parametrize("text, message", [
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [', "invalid seccomp profile"),
    ('{"defaultAction": "SCMP_ACT_BOGUS"}', "SCMP_ACT_BOGUS"),
    ('["not", "an", "object"]', "seccomp profile"),
    (None, "cannot read seccomp profile"),
])
def test_bad_seccomp_profile_is_a_one_line_error_and_creates_nothing(busybox_image, state_root, tmp_path,
                                                                    text, message, host):
    profile = tmp_path / "profile.json"
    if text is not None:
        profile.write_text(text)
    containers = os.path.join(state_root, "containers")
    before = sorted(os.listdir(containers)) if os.path.isdir(containers) else []
    r = cli(state_root, "run", "--rm", "--security-opt", f"seccomp={profile}", busybox_image, "true")
    err = r.stderr.decode()
    assert r.returncode == 125, err
    assert err.startswith("minirt: ") and err.count("\n") == 1 and message in err, err
    after = sorted(os.listdir(containers)) if os.path.isdir(containers) else []
    assert after == before
    assert host.container_cgroups() == []


# -- filesystems: --read-only, volumes, --tmpfs -------------------------------------------

def test_read_only_root_with_writable_volume_and_tmpfs(run, tmp_path):
    out = sh(run, "touch /new 2>/dev/null && echo root-writable;"
                  " echo x >> /etc/passwd 2>/dev/null && echo etc-writable;"
                  " touch /tmp/t 2>/dev/null && echo tmp-writable;"
                  " echo from-container > /data/out && echo volume-ok;"
                  " echo x > /run/x && echo tmpfs-ok; true",
             read_only=True, volumes=[f"{tmp_path}:/data"], tmpfs=["/run"])
    assert out.split() == ["volume-ok", "tmpfs-ok"]
    assert (tmp_path / "out").read_text() == "from-container\n"


def test_tmpfs_size_and_default_flags_are_honoured(run):
    r = run("sh", "-c", "grep ' /run ' /proc/mounts; df -k /run | tail -1;"
                        " dd if=/dev/zero of=/run/big bs=1k count=2048 2>/dev/null || echo full",
            tmpfs=["/run:size=1m"])
    assert r.exit_code == 0, r.stderr
    mount, df, full = r.stdout.decode().splitlines()
    options = mount.split()[3].split(",")
    assert {"nosuid", "nodev", "noexec", "size=1024k"} <= set(options)
    assert df.split()[1] == "1024" and full == "full"


def test_tmpfs_options_can_lift_noexec(run):
    out = sh(run, "cp /bin/busybox /scratch/true && /scratch/true && echo ran", tmpfs=["/scratch:exec,size=4m"])
    assert out == "ran\n"
    r = run("sh", "-c", "cp /bin/busybox /scratch/true && /scratch/true", tmpfs=["/scratch"])
    assert r.exit_code == 126 and b"Permission denied" in r.stderr


# -- the command line: one-line errors, nothing left ------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--cap-add", "NOPE"], 'unknown capability: "NOPE"'),
    (["--cap-drop", "CAP_FOO"], "unknown capability"),
    (["--security-opt", "bogus"], "invalid --security-opt"),
    (["--security-opt", "no-new-privileges=maybe"], "invalid --security-opt"),
    (["--tmpfs", "relative"], "invalid --tmpfs"),
    (["--group-add", "no-such-group"], "no-such-group"),
])
def test_cli_rejects_bad_security_flags(busybox_image, state_root, args, message):
    r = cli(state_root, "run", "--rm", *args, busybox_image, "true")
    err = r.stderr.decode()
    assert r.returncode == 125, err
    assert err.startswith("minirt: ") and err.count("\n") == 1 and message in err, err


# -- devices --------------------------------------------------------------------

def test_device_nodes_can_be_made_but_not_opened(run):
    """CAP_MKNOD stays (images carry device nodes), but the devices cgroup lets a
    container open only docker's short list: not, say, the host's disk.  (The v1
    devices controller on v1 and hybrid hosts, an eBPF program on v2.)"""
    major_minor = os.major(os.stat("/").st_dev), os.minor(os.stat("/").st_dev)
    out = sh(run, f"mknod /tmp/disk b {major_minor[0]} {major_minor[1]} && echo made;"
                  " head -c1 /tmp/disk >/dev/null 2>&1 && echo opened || echo denied;"
                  " mknod /tmp/mem c 1 1 && (head -c1 /tmp/mem >/dev/null 2>&1 && echo opened || echo denied);"
                  " echo x > /dev/null && head -c1 /dev/urandom | wc -c")
    assert out.split() == ["made", "denied", "denied", "1"]
