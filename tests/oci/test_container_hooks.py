"""The hooks PID 1 runs (createContainer, startContainer): in the container's
mount namespace, with the OCI state on stdin; startContainer as the
container's user under its seccomp filter.  A failing one fails the container."""

import json
import os

import pytest

pytestmark = pytest.mark.privileged


def test_create_container_runs_before_pivot_root_in_the_containers_mount_namespace(oci, bundle, tmp_path):
    seen = tmp_path / "seen"
    # Its working directory is the rootfs (still at its host path): it can mount into it.
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {seen}; echo >> {seen}; pwd >> {seen};"
                                                     f" readlink /proc/self/ns/mnt >> {seen};"
                                                     " echo mounted > flag; mount --bind flag etc/hostname"]}
    b = bundle(["cat", "/etc/hostname"], hooks={"createContainer": [hook]})
    r = oci("run", "--bundle", b, "c1")
    assert (r.returncode, r.stdout) == (0, "mounted\n"), r.stderr
    state, cwd, mnt = seen.read_text().splitlines()
    state = json.loads(state)
    assert (state["id"], state["status"], state["pid"], state["bundle"]) == ("c1", "creating", 1, b)
    assert cwd == os.path.join(b, "rootfs")
    assert mnt != os.readlink("/proc/self/ns/mnt")   # the container's, not ours
    with open(os.path.join(b, "rootfs", "etc", "hostname")) as f:   # (the mount stayed in there)
        assert f.read() != "mounted\n"


def test_start_container_runs_at_start_not_at_create(oci, bundle, tmp_path):
    b = bundle(["true"], hooks={"startContainer": [{"path": "/bin/touch", "args": ["touch", "/ran"]}]})
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c2").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    ran = os.path.join(b, "rootfs", "ran")
    assert not os.path.exists(ran)
    assert oci("start", "c2").returncode == 0
    assert os.WEXITSTATUS(oci.reap(pid)) == 0 and os.path.exists(ran)


def test_start_container_runs_as_the_containers_user_in_its_working_directory(oci, bundle, tmp_path):
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/state; id -u > /tmp/who; pwd > /tmp/where"]}
    b = bundle(["sh", "-c", "cat /tmp/who /tmp/where; echo; cat /tmp/state"], hooks={"startContainer": [hook]},
               process__user={"uid": 1000, "gid": 1000}, process__cwd="/tmp")
    os.chmod(os.path.join(b, "rootfs", "tmp"), 0o1777)
    r = oci("run", "--bundle", b, "c3")
    assert r.returncode == 0, r.stderr
    who, where, _, state = r.stdout.splitlines()
    assert (who, where) == ("1000", "/tmp")
    state = json.loads(state)
    assert (state["id"], state["status"], state["pid"]) == ("c3", "created", 1)


def test_a_start_container_hook_runs_under_the_seccomp_filter(oci, bundle):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]}
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "mkdir /dev/shm/foo"]}
    b = bundle(["true"], linux__seccomp=profile, hooks={"startContainer": [hook]})
    r = oci("run", "--bundle", b, "c4")
    assert r.returncode == 125, r.stderr
    assert "startContainer hook /bin/sh: error running hook: killed by signal 31 (bad system call)" in r.stderr
    assert oci.ids() == []


def test_a_failing_create_container_hook_fails_create_and_leaves_nothing(oci, bundle, tmp_path):
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "echo no such library >&2; exit 3"]}
    b = bundle(["true"], hooks={"createContainer": [hook]})
    r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c5")
    assert r.returncode == 1
    assert "createContainer hook /bin/sh: error running hook: no such library" in r.stderr
    assert oci.ids() == [] and not (tmp_path / "pid").exists()


def test_a_create_container_hook_that_outlives_its_timeout_fails_create(oci, bundle, tmp_path):
    b = bundle(["true"], hooks={"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]})
    r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c6")
    assert r.returncode == 1 and "createContainer hook /bin/sleep: error running hook: timed out after 1 s" in r.stderr
    assert oci.ids() == []
