"""minirt-runc's commands, as an engine calls them (../shared/conformance/engine-argv.txt)."""

import json
import os
import signal
import socket
import threading
import time

import pytest

import minirt

pytestmark = pytest.mark.privileged


def wait_for(check, timeout=10):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read_terminal(master, last):
    """What a terminal's ``master`` shows until the line ``last`` (or its end), as
    lines without the terminal's carriage returns; the master is closed then."""
    got = b""
    while last not in got:
        try:
            chunk = os.read(master, 1024)
        except OSError:  # (EIO: no process holds the terminal any more)
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    return got.replace(b"\r", b"").split(b"\n")


def test_create_waits_for_start_then_runs(oci, bundle, tmp_path):
    out = tmp_path / "out"
    b = bundle(["sh", "-c", "echo started; exec sleep 100"])
    with open(out, "w") as f:
        r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c1", stdout=f)
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "pid").read_text())  # written before create returned
    s = oci.state("c1")
    assert {k: s[k] for k in ("ociVersion", "id", "pid", "status", "bundle", "rootfs", "owner", "annotations")} == {
        "ociVersion": "1.0.2", "id": "c1", "pid": pid, "status": "created", "bundle": b,
        "rootfs": os.path.join(b, "rootfs"), "owner": "", "annotations": {}}
    assert s["created"].endswith("Z")
    r = oci("exec", "c1", "sh", "-c", "echo $$; hostname")  # runc lets one join a created container
    assert (r.returncode, r.stdout.split()[1:]) == (0, ["minirt"]) and int(r.stdout.split()[0]) > 1, r.stderr
    time.sleep(0.2)
    assert out.read_text() == ""  # the command has not run yet
    assert oci("start", "c1").returncode == 0
    wait_for(lambda: out.read_text() == "started\n")
    assert oci.state("c1")["status"] == "running"
    r = oci("start", "c1")
    assert r.returncode == 1 and "cannot start a container that is running" in r.stderr
    r = oci("delete", "c1")
    assert r.returncode == 1 and "not stopped: running" in r.stderr
    assert oci("kill", "c1", "KILL").returncode == 0
    assert os.WTERMSIG(oci.reap(pid)) == signal.SIGKILL
    s = oci.state("c1")
    assert (s["status"], s["pid"]) == ("stopped", 0)
    r = oci("kill", "c1", "9")
    assert r.returncode == 1 and "container not running" in r.stderr
    assert oci("delete", "c1").returncode == 0
    assert oci.ids() == []
    r = oci("state", "c1")
    assert r.returncode == 1 and "container does not exist: c1" in r.stderr


def test_delete_force_of_a_created_container(oci, bundle, tmp_path):
    assert oci("create", "--bundle", bundle(["true"]), "--pid-file", str(tmp_path / "pid"), "c2").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    r = oci("delete", "c2")
    assert r.returncode == 1 and "not stopped: created" in r.stderr
    assert oci("delete", "--force", "c2").returncode == 0
    oci.reap(pid)
    assert oci.ids() == []
    assert oci("delete", "--force", "c2").returncode == 0  # gone already: runc says nothing either


def test_run_in_the_foreground_exits_with_the_commands_status_and_deletes(oci, bundle):
    r = oci("run", "--bundle", bundle(["sh", "-c", "echo out; echo err >&2; id; exit 7"],
                                      process__user={"uid": 0, "gid": 0, "additionalGids": [3]}), "c3")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\nuid=0(root) gid=0(root) groups=3(sys)\n", "err\n")
    assert oci.ids() == []


def test_kill_by_name_and_all_pause_resume_ps(oci, bundle, tmp_path):
    b = bundle(["sh", "-c", "trap 'echo got HUP; exit 3' HUP; sleep 100 & wait"])
    out = tmp_path / "out"
    with open(out, "w") as f:
        assert oci("create", "-b", b, "--pid-file", str(tmp_path / "pid"), "c4", stdout=f).returncode == 0
    pid = int((tmp_path / "pid").read_text())
    assert oci("start", "c4").returncode == 0
    wait_for(lambda: len(json.loads(oci("ps", "--format", "json", "c4").stdout)) == 2)
    assert pid in json.loads(oci("ps", "--format", "json", "c4").stdout)
    assert oci("pause", "c4").returncode == 0
    assert oci.state("c4")["status"] == "paused"
    for bad in ("SIGNOPE", "SIG_DFL", "²", "99"):  # ('²' is a digit to str.isdigit, not to int)
        r = oci("kill", "c4", bad)
        assert r.returncode == 1 and f"invalid signal {bad!r}" in r.stderr and "Traceback" not in r.stderr
    r = oci("exec", "c4", "true")
    assert r.returncode == 255 and "cannot exec in a paused container" in r.stderr  # runc's status for exec
    resume = threading.Timer(0.5, oci, ("resume", "c4"))
    resume.start()
    r = oci("exec", "--ignore-paused", "c4", "echo", "ok")  # born frozen, runs once resumed
    resume.join()
    assert (r.returncode, r.stdout) == (0, "ok\n")
    assert oci.state("c4")["status"] == "running"
    assert oci("kill", "c4", "hup").returncode == 0
    assert os.WEXITSTATUS(oci.reap(pid)) == 3
    assert out.read_text() == "got HUP\n"
    r = oci("kill", "c4", "0")
    assert r.returncode == 1 and "container not running" in r.stderr
    assert oci("kill", "--all", "c4", "0").returncode == 0  # stopped: --all signals whatever is left, as runc
    assert oci("delete", "c4").returncode == 0


def test_list_exec_and_a_detached_exec(oci, bundle, tmp_path):
    b = bundle(["sleep", "100"])
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c5").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    assert oci("start", "c5").returncode == 0
    listed = json.loads(oci("list", "--format", "json").stdout)
    assert [(s["id"], s["pid"], s["status"]) for s in listed] == [("c5", pid, "running")]
    r = oci("exec", "c5", "sh", "-c", "echo $((6*7)); exit 5")
    assert (r.returncode, r.stdout) == (5, "42\n")
    r = oci("exec", "--user", "1000:1001", "--additional-gids", "7", "c5", "id")
    assert r.stdout == "uid=1000 gid=1001 groups=7\n", r.stderr  # the groups given, no more
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sleep", "100"], "cwd": "/", "env": ["PATH=/bin"],
                                   "user": {"uid": 0, "gid": 0}}))
    r = oci("exec", "--process", str(process), "--detach", "--pid-file", str(tmp_path / "exec.pid"), "c5")
    assert r.returncode == 0, r.stderr
    exec_pid = int((tmp_path / "exec.pid").read_text())
    with open(f"/proc/{exec_pid}/cmdline", "rb") as f:
        assert f.read() == b"sleep\x00100\x00"
    os.kill(exec_pid, signal.SIGKILL)
    assert os.WTERMSIG(oci.reap(exec_pid)) == signal.SIGKILL  # adopted by us, the subreaper
    r = oci("exec", "c5", "no-such-command")
    assert r.returncode == 255 and 'exec: "no-such-command": executable file not found' in r.stderr
    assert oci("delete", "--force", "c5").returncode == 0
    oci.reap(pid)


def test_terminal_goes_over_the_console_socket(oci, bundle, tmp_path):
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    b = bundle(["sh", "-c", "stty size; tty; echo done"], process__terminal=True,
               process__consoleSize={"height": 33, "width": 99})
    r = oci("create", "--bundle", b, "--console-socket", path, "--pid-file", str(tmp_path / "pid"), "c6")
    assert r.returncode == 0, r.stderr
    conn, _ = listener.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    conn.close()
    listener.close()
    assert oci("start", "c6").returncode == 0
    lines = read_terminal(fds[0], b"done")
    oci.reap(int((tmp_path / "pid").read_text()))
    assert lines[:3] == [b"33 99", b"/dev/console", b"done"]
    assert oci("delete", "c6").returncode == 0


def test_errors_go_to_the_log_in_runcs_json_shape(oci, tmp_path):
    r = oci.log("state", "nothere")
    assert r.returncode == 1
    line = json.loads(open(oci.log_path).read().splitlines()[-1])
    assert (line["level"], line["msg"]) == ("error", "container does not exist: nothere")
    assert line["time"].endswith("Z")


def test_version_spec_features_and_refused_flags(oci, tmp_path):
    r = oci("--version")
    assert r.returncode == 0 and r.stdout.splitlines() == [f"minirt-runc version {minirt.__version__}", f"commit: minirt {minirt.__version__}",
                                                          "spec: 1.0.2"]
    r = oci("spec", "--bundle", str(tmp_path))
    assert r.returncode == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["process"]["args"] == ["sh"] and config["root"] == {"path": "rootfs", "readonly": True}
    assert [n["type"] for n in config["linux"]["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]  # runc's
    r = oci("spec", "--bundle", str(tmp_path))
    assert r.returncode == 1 and "exists" in r.stderr
    features = json.loads(oci("features").stdout)
    assert "rbind" in features["mountOptions"] and "SCMP_ACT_ERRNO" in features["linux"]["seccomp"]["actions"]
    assert features["linux"]["apparmor"] == {"enabled": False}
    assert "rro" in features["mountOptions"] and "startContainer" in features["hooks"]
    r = oci("--systemd-cgroup", "list")
    assert r.returncode == 1 and "--systemd-cgroup is not supported" in r.stderr
    r = oci("frobnicate")
    assert r.returncode == 3 and "No help topic for 'frobnicate'" in r.stderr  # runc's words and status
    r = oci("create", "--bogus", "x")
    assert r.returncode == 1 and "flag provided but not defined: -bogus" in r.stderr


def test_help_names_runc_and_each_command(oci):
    for argv in (["-h"], ["--help"], []):
        r = oci(*argv)
        assert r.returncode == 0 and r.stdout.splitlines()[:2] == [
            "NAME:", "   runc - Open Container Initiative runtime (minirt-runc, minirt's implementation)"]
    for command in ("delete", "exec", "checkpoint", "restore"):
        r = oci(command, "--help")
        assert r.returncode == 0 and r.stdout.splitlines()[1].startswith(f"   runc {command} - ")
    r = oci("checkpoint", "c1")
    assert r.returncode == 1 and "checkpoint is not supported by minirt" in r.stderr
    r = oci("foo", "-h")
    assert r.returncode == 3 and "No help topic for 'foo'" in r.stderr


def test_hooks_get_the_state_on_stdin(oci, bundle, tmp_path):
    seen = tmp_path / "seen"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"cat >> {seen}; echo >> {seen}"]}
    b = bundle(["true"], hooks={"prestart": [hook], "createRuntime": [hook], "poststart": [hook],
                                "poststop": [hook]})
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c7").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    assert oci("start", "c7").returncode == 0
    oci.reap(pid)
    assert oci("delete", "c7").returncode == 0
    states = [json.loads(line) for line in seen.read_text().splitlines()]
    assert [(s["status"], s["pid"]) for s in states] == [
        ("creating", pid), ("creating", pid), ("running", pid), ("stopped", 0)]
    assert {s["id"] for s in states} == {"c7"} and {s["bundle"] for s in states} == {b}


def test_a_failing_prestart_hook_fails_create_and_leaves_nothing(oci, bundle, tmp_path):
    b = bundle(["true"], hooks={"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no network >&2; exit 1"]}]})
    r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c8")
    assert r.returncode == 1 and "prestart hook /bin/sh: error running hook: no network" in r.stderr
    assert oci.ids() == [] and not (tmp_path / "pid").exists()


def test_update_sets_the_cgroups_limits(oci, bundle, tmp_path):
    b = bundle(["sleep", "100"])
    cgroup = json.loads(open(os.path.join(b, "config.json")).read())["linux"]["cgroupsPath"]
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c9").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"memory": {"limit": 64 << 20}, "pids": {"limit": 42}}))
    assert oci("update", "--resources", str(resources), "c9").returncode == 0
    assert oci("update", "--pids-limit", "43", "c9").returncode == 0
    v1, v2 = f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes", f"/sys/fs/cgroup{cgroup}/memory.max"
    assert open(v1 if os.path.exists(v1) else v2).read().strip() == str(64 << 20)
    pids = f"/sys/fs/cgroup/pids{cgroup}/pids.max"
    assert open(pids if os.path.exists(pids) else f"/sys/fs/cgroup{cgroup}/pids.max").read().strip() == "43"
    r = oci("update", "--resources", str(tmp_path / "none.json"), "c9")
    assert r.returncode == 1 and "none.json: No such file" in r.stderr
    assert oci("delete", "--force", "c9").returncode == 0
    oci.reap(pid)


def test_start_and_delete_import_only_what_they_use(oci, bundle, tmp_path, monkeypatch, runtime_path):
    """An engine runs its runtime four or five times per container, each a fresh
    Python where the front door does not make the call (test_front_door.py):
    start and delete load the container without what only making one needs,
    and containerd's last ``delete --force``, of a container already gone,
    loads none.  (create needs the image store only for an image's container.)"""
    oci = type(oci)(os.path.join(os.path.dirname(runtime_path), "minirt-oci"), oci.root, oci.log_path)
    making = {"subprocess", "minirt.kernel.libc", "minirt.kernel.security", "minirt.runtime.init",
              "minirt.image.store", "minirt.kernel.trampoline", "signal"}
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    r = oci("create", "--bundle", bundle(["true"]), "--pid-file", str(tmp_path / "pid"), "c10")
    assert r.returncode == 0, r.stderr
    assert "minirt.runtime.init" in r.stderr and "minirt.image.store" not in r.stderr  # (a bundle holds no lease)
    pid = int((tmp_path / "pid").read_text())
    for args in (("start", "c10"), ("delete", "c10"), ("delete", "--force", "c10")):
        r = oci(*args)
        assert r.returncode == 0, r.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
        assert not imported & making, (args, imported & making)
        loaded = {"minirt.oci.commands", "minirt.runtime.container"} & imported
        assert loaded == (set() if "--force" in args else {"minirt.oci.commands", "minirt.runtime.container"}), args
        if args[0] == "start":
            oci.reap(pid)


def _cgroup2_options():
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split(" - ")[1] for line in f if " - cgroup2 " in line)


def test_without_a_cgroup_namespace_its_own_cgroup_is_its_sys_fs_cgroup(oci, bundle):
    """As runc: the container's own cgroup directories are bound there (the root
    cgroup has no pids.max), and the host's cgroup2 mount keeps its options
    (a fresh cgroup2 mount in the host's cgroup namespace would reset them)."""
    before = _cgroup2_options()
    b = bundle(["sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"],
               linux__namespaces=[{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")],
               linux__resources={"pids": {"limit": 43}})
    r = oci("run", "--bundle", b, "n1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "43\n"
    assert _cgroup2_options() == before


def test_a_user_namespace_from_the_bundles_mappings(oci, bundle, reachable):
    b = bundle(["sh", "-c", "id -u; cat /proc/self/uid_map; stat -c %U /bin"],
               linux__namespaces=[{"type": t} for t in ("pid", "mount", "ipc", "uts", "network", "cgroup", "user")],
               linux__uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
               linux__gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}])
    r = oci("run", "--bundle", reachable(b), "u1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0", "100000", "65536", "nobody"]  # (the rootfs is the host root's)
    assert oci.ids() == []


@pytest.mark.parametrize("cgroupns", [True, False])
def test_sys_fs_cgroup_shows_the_containers_cgroup_in_a_user_namespace(oci, bundle, reachable, cgroupns):
    """With its own cgroup namespace each tree is mounted; without (runc's
    default spec), each tree's directory of the container's cgroup is bound."""
    kinds = ("pid", "mount", "ipc", "uts", "network", "user") + (("cgroup",) if cgroupns else ())
    b = bundle(["sh", "-c", "f=/sys/fs/cgroup/pids/cgroup.procs; [ -e $f ] || f=/sys/fs/cgroup/cgroup.procs;"
                            " while read p; do echo $p; done < $f"],  # (builtins only: sh is the one process)
               linux__namespaces=[{"type": t} for t in kinds],
               linux__uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
               linux__gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}])
    r = oci("run", "--bundle", reachable(b), "u2")
    assert (r.returncode, r.stdout) == (0, "1\n"), r.stderr  # its own cgroup's processes: PID 1 alone


def test_a_second_container_in_a_cgroup_with_processes_is_made_with_a_warning(oci, bundle, tmp_path):
    b = bundle(["sleep", "100"])
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid1"), "c12").returncode == 0
    r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid2"), "c13")  # the same cgroupsPath
    assert r.returncode == 0 and "warning: the container's cgroup is not empty" in r.stderr
    for cid, pid_file in (("c13", "pid2"), ("c12", "pid1")):
        assert oci("delete", "--force", cid).returncode == 0
        oci.reap(int((tmp_path / pid_file).read_text()))
    assert oci.ids() == []


def test_a_container_in_a_frozen_cgroup_is_refused(oci, bundle, tmp_path):
    from minirt.kernel import cgroups

    b = bundle(["true"])
    cgroup = cgroups.at(json.loads(open(os.path.join(b, "config.json")).read())["linux"]["cgroupsPath"])
    cgroup.create()
    try:
        cgroup.freeze(True)
        r = oci("create", "--bundle", b, "c14")
        assert r.returncode == 1 and "container's cgroup unexpectedly frozen" in r.stderr
        assert oci.ids() == [] and cgroup.exists()  # nothing made, the caller's cgroup left as it was
    finally:
        cgroup.freeze(False)
        cgroup.remove()


def test_exec_joins_the_containers_cgroups_as_the_host_names_them(oci, bundle, tmp_path):
    b = bundle(["sleep", "100"])
    cgroup = json.loads(open(os.path.join(b, "config.json")).read())["linux"]["cgroupsPath"]
    assert oci("run", "--detach", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c15").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    with open(f"/proc/{pid}/cgroup") as f:
        init = f.read()
    r = oci("exec", "c15", "cat", "/proc/self/cgroup")  # no cgroup namespace in runc's default spec
    assert r.returncode == 0 and r.stdout == init and r.stdout.splitlines()[-1] == f"0::{cgroup}"
    assert oci("delete", "--force", "c15").returncode == 0
    oci.reap(pid)


def test_ps_kill_and_delete_reach_the_cgroups_below_the_containers(oci, bundle, tmp_path):
    from minirt.kernel import cgroups

    b = bundle(["sleep", "100"])
    cgroup = cgroups.at(json.loads(open(os.path.join(b, "config.json")).read())["linux"]["cgroupsPath"])
    assert oci("run", "--detach", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c16").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    assert oci("exec", "--detach", "--pid-file", str(tmp_path / "sleep"), "c16", "sleep", "100").returncode == 0
    sleeper = int((tmp_path / "sleep").read_text())
    # A cgroup below the container's, with a process in it (v1: in the memory tree only,
    # where the parent's cgroup.procs no longer lists it).
    d = next(d for t, d in zip(cgroup.trees, cgroup.dirs) if "memory" in t.controllers or t.version == "v2")
    os.mkdir(os.path.join(d, "sub"))
    with open(os.path.join(d, "sub", "cgroup.procs"), "w") as f:
        f.write(str(sleeper))
    assert sorted(json.loads(oci("ps", "--format", "json", "c16").stdout)) == sorted([pid, sleeper])
    header, *lines = oci("ps", "c16").stdout.splitlines()  # the host's ps -ef, its lines of theirs
    assert header.split()[:3] == ["UID", "PID", "PPID"] and sorted(int(line.split()[1]) for line in lines) == sorted(
        [pid, sleeper])
    header, *lines = oci("ps", "c16", "-o", "pid,comm").stdout.splitlines()
    assert header.split() == ["PID", "COMMAND"] and [line.split()[1] for line in lines] == ["sleep", "sleep"]
    r = oci("ps", "c16", "-bogus")
    assert r.returncode == 1 and "ps -bogus: error: unsupported SysV option" in r.stderr
    r = oci("exec", "-t", "c16", "sh", "-c", "readlink /proc/self/fd/0; readlink /proc/self/fd/1; exit 3")
    assert r.returncode == 3 and r.stdout.split() == ["/dev/pts/0"] * 2  # a pty: its master relayed by us
    r = oci("exec", "-t", "--detach", "c16", "true")
    assert r.returncode == 255 and "cannot allocate a terminal without --console-socket" in r.stderr
    assert oci("kill", "--all", "c16", "KILL").returncode == 0
    for p in (sleeper, pid):
        assert os.WTERMSIG(oci.reap(p)) == signal.SIGKILL
    assert oci("delete", "c16").returncode == 0
    assert not cgroup.exists() and oci.ids() == []
