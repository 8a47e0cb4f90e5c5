"""A bundle's config.json: what minirt-runc honours, and bad bundles refused
with one line, a non-zero exit and nothing left behind."""

import json
import os

import pytest

from minirt.errors import SpecError
from minirt.kernel import cgroups
from minirt.oci import bundle as bundles

pytestmark = pytest.mark.privileged

BAD = [
    ({"process__args": []}, "process.args must be a non-empty list of strings"),
    ({"process__cwd": "relative"}, "process.cwd 'relative' must be an absolute path"),
    ({"process__user": {"uid": -1}}, "process.user.uid must be an integer"),
    ({"process__capabilities": {"bounding": ["CAP_NOPE"]}}, "unknown capability 'CAP_NOPE'"),
    ({"process__user": {"uid": 1}, "process__capabilities": {"bounding": ["CAP_CHOWN"], "ambient": ["CAP_CHOWN"]}},
     "process.capabilities.ambient is not supported for a user other than root"),
    ({"process__capabilities": {"bounding": ["CAP_KILL"], "ambient": ["CAP_CHOWN"]}},
     "process.capabilities.ambient holds a capability the bounding set lacks"),
    ({"process__rlimits": [{"type": "RLIMIT_NOPE", "hard": 1, "soft": 1}]}, "unknown type 'RLIMIT_NOPE'"),
    ({"process__rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}]}, "soft 2 is above hard 1"),
    ({"process__frobnicate": True}, "process.frobnicate is not supported"),
    ({"root__path": "missing"}, "root.path"),
    ({"mounts": [{"destination": "rel", "type": "tmpfs"}]}, "mounts[0].destination must be an absolute path"),
    ({"mounts": [{"destination": "/x", "type": "nfs"}]}, "mount type 'nfs' is not supported"),
    ({"mounts": [{"destination": "/x", "type": "bind", "source": "/nonexistent-src"}]},
     "source /nonexistent-src: no such file or directory"),
    ({"mounts": [{"destination": "/x", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"]}]},
     "bind mount option 'idmap' is not supported"),
    ({"linux__namespaces": [{"type": "pid"}]}, "a container needs a mount namespace of its own or given"),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "time"}]}, "unknown namespace type 'time'"),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"}]},
     "a user namespace needs linux.uidMappings"),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "time", "path": "/proc/1/ns/time"}]},
     "unknown namespace type 'time'"),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "user"}]}, "a user namespace needs linux.uidMappings"),
    ({"linux__cgroupsPath": "system.slice:minirt:x"}, "systemd's slice:prefix:name form"),
    ({"linux__resources": {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}},
     "linux.resources.hugepageLimits is not supported"),
    ({"linux__resources": {"unified": {"memory.min": "131072"}}},
     "invalid configuration: linux.resources.unified needs cgroup v2") if cgroups.detect() == "v1" else
    ({"linux__resources": {"unified": {"../memory.min": "131072"}}},
     "unified resource '../memory.min' must be a file name of the form CONTROLLER.PARAMETER"),
    ({"linux__resources": {"memory": {"kernel": 1}}}, "linux.resources.memory.kernel is not supported"),
    ({"linux__resources": {"cpu": {"period": 100}}},
     "linux.resources.cpu.period must be an integer from 1000 to 1000000, not 100"),
    ({"linux__resources": {"memory": {"limit": 64 << 20, "swap": 32 << 20}}},
     "memory+swap limit should be >= memory limit"),
    ({"linux__resources": {"Memory": {"Limit": "64m"}}}, "linux.resources.memory.limit must be an integer"),
    ({"linux__resources": {"cpu": {"mems": "0-"}}}, "linux.resources.cpu.mems must be a list such as"),
    ({"linux__resources": {"blockIO": {"weightDevice": [{"major": 7, "minor": 0, "weight": 5000}]}}},
     "linux.resources.blockIO.weightDevice[0].weight must be an integer from 10 to 1000, not 5000"),
    ({"linux__resources": {"blockIO": {"throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1}]}}},
     "linux.resources.blockIO.throttleReadBpsDevice is not supported"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_NOPE"}}, "unknown action 'SCMP_ACT_NOPE'"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}}, "linux.seccomp.listenerPath is not set"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "@agent", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}}, "listenerPath must be an absolute path, not '@agent'"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": 7}},
     "linux.seccomp.listenerPath must be a string"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}}, "SCMP_ACT_NOTIFY cannot be used as default action"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x", "syscalls": [
        {"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}},
     "SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x", "syscalls": [
        {"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]}},
     "SCMP_ACT_NOTIFY cannot be used for the sendmsg syscall"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent/agent.sock",
                         "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}},
     "failed to connect with seccomp agent specified in the seccomp profile: /nonexistent/agent.sock"),
    ({"linux__intelRdt": {"closID": "x"}}, "linux.intelRdt is not supported"),
    ({"hooks": {"beforeAll": [{"path": "/bin/true"}]}}, "hooks.beforeAll is not a hook of the OCI runtime spec"),
    ({"hooks": {"prestart": [{"path": "true"}]}}, "hooks.prestart[0].path must be an absolute path"),
    ({"linux__resources": {"devices": [{"allow": True, "access": "rwm"}, {"allow": False, "access": "rwm"}]}},
     "only lists that begin by denying all"),
    ({"linux__resources": {"devices": [{"allow": False, "access": "rwm"},
                                       {"allow": True, "type": "c", "major": 10, "access": "rwm"},
                                       {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]}},
     "denying part of an allowed range"),
    ({"linux__rootfsPropagation": "sideways"}, "linux.rootfsPropagation 'sideways' is not one of"),
    ({"process__args": ["no-such-command"]}, 'exec: "no-such-command": executable file not found in $PATH'),
    ({"linux__sysctl": {"kernel.no_such_sysctl": "1"}}, "sysctl kernel.no_such_sysctl=1"),
]


@pytest.mark.parametrize("changes, message", BAD, ids=[m for _, m in BAD])
def test_a_bad_bundle_is_one_line_in_the_log_and_leaves_nothing(oci, bundle, changes, message, tmp_path):
    b = bundle(["true"], **changes)
    cgroup = json.loads(open(os.path.join(b, "config.json")).read())["linux"].get("cgroupsPath", "")
    r = oci.log("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "bad")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    logged = [json.loads(line) for line in open(oci.log_path)]
    assert [line["level"] for line in logged] == ["error"] and message in logged[0]["msg"]
    assert oci.ids() == [] and not os.path.exists(tmp_path / "pid")
    assert not [t for t in os.listdir("/sys/fs/cgroup") if cgroup and os.path.exists(f"/sys/fs/cgroup/{t}{cgroup}")]


def test_a_missing_bundle_or_bad_json(oci, tmp_path):
    r = oci("create", "--bundle", str(tmp_path / "none"), "x")
    assert r.returncode == 1 and "config.json: no such file" in r.stderr
    (tmp_path / "config.json").write_text("{not json")
    r = oci("create", "--bundle", str(tmp_path), "x")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    r = oci("create", "--bundle", str(tmp_path), "../escape")
    assert r.returncode == 1 and "invalid container id '../escape'" in r.stderr
    assert oci.ids() == []


def test_config_maps_onto_a_container_spec(busybox_rootfs, tmp_path):
    os.symlink(busybox_rootfs, tmp_path / "rootfs")
    config = {
        "process": {"args": ["sh"], "env": ["A=1"], "cwd": "/w", "user": {"uid": 5, "gid": 6, "additionalGids": [7]},
                    "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"]},
                    "noNewPrivileges": True, "terminal": True, "consoleSize": {"height": 3, "width": 4},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}], "oomScoreAdj": 100},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "h",
        "mounts": [{"destination": "/data", "type": "bind", "source": "/tmp", "options": ["ro", "rprivate"]}],
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "network", "path": "/proc/1/ns/net"}],
                  "cgroupsPath": "/a/b",
                  "resources": {"memory": {"limit": 1 << 30, "swap": 2 << 30}, "cpu": {"quota": 50000, "period": 100000},
                                "pids": {"limit": 99}, "blockIO": {"weight": 0},
                                "devices": [{"allow": False, "access": "rwm"},
                                            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]},
                  "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"], "sysctl": {"net.ipv4.ip_forward": "1"}},
    }
    spec = bundles.from_config(config, str(tmp_path), "cid")
    assert (spec.args, spec.env, spec.cwd, spec.user, spec.group_add, spec.hostname) == (
        ["sh"], ["A=1"], "/w", "5:6", ["7"], "h")
    assert spec.namespaces == ("mnt", "pid") and spec.oci["joins"] == {"net": "/proc/1/ns/net"}
    assert (spec.cap_add, spec.cap_drop, spec.no_new_privileges, spec.tty, spec.read_only) == (
        ["CAP_CHOWN", "CAP_KILL"], ["ALL"], True, True, True)
    assert spec.resources == {"memory": 1 << 30, "memory_swap": 2 << 30, "cpu_quota": 50000, "cpu_period": 100000,
                              "pids_limit": 99}
    assert spec.oci["device_rules"][-1] == ("c", 10, 229, "rw")
    docker = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
              {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]  # (its list ends so)
    assert bundles.from_config({**config, "linux": {**config["linux"], "resources": {"devices": docker}}},
                               str(tmp_path), "c").oci["device_rules"][-1] == ("c", 1, 3, "rwm")
    assert spec.oci["cgroups_path"] == "/a/b" and spec.oci["console_size"] == [3, 4]
    assert spec.oci["mounts"] == [{"destination": "/data", "type": "bind", "source": "/tmp",
                                   "options": ["ro", "rprivate", "rbind"]}]
    assert spec.oci["rlimits"] == [["RLIMIT_NOFILE", 512, 1024]] and spec.oci["oom_score_adj"] == 100
    assert spec.rootfs == str(tmp_path / "rootfs") and spec.seccomp == "unconfined"
    with pytest.raises(SpecError, match="relative"):
        bundles.from_config({**config, "process": {**config["process"], "cwd": "relative"}}, str(tmp_path), "c")


def test_relative_and_missing_cgroups_paths_are_under_the_callers_cgroup():
    own = bundles.cgroups_path("x", "cid").rsplit("/", 1)[0]
    assert bundles.cgroups_path("", "cid") == f"{own}/cid".replace("//", "/")
    assert bundles.cgroups_path("/abs//p/", "cid") == "/abs/p"
