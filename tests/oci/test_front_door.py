"""minirt-runc's front door (minirt/oci/minirt-runc): the bash script that an
engine runs, which makes ``start`` and ``delete`` (of a stopped container, or
by force of one that is gone) without starting Python and hands everything
else to the runtime beside it."""

import os
import shutil
import signal
import subprocess

import pytest

from minirt.runtime import state

pytestmark = pytest.mark.privileged


def test_start_and_delete_never_reach_the_runtime(oci, bundle, runtime_path, tmp_path):
    out, log = tmp_path / "out", tmp_path / "log.json"
    b = bundle(["sh", "-c", "echo started"])
    runtime_path.calls()
    with open(out, "w") as f:  # (the shim's words: --root, --log, --log-format json on every call)
        r = oci.log("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "f1", stdout=f)
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "pid").read_text())
    assert os.path.exists(os.path.join(oci.root, "containers", "f1", "exec.fifo"))
    log.unlink()
    r = oci.log("start", "f1")
    assert (r.returncode, r.stderr) == (0, "")
    assert log.read_text() == ""  # made, as runc makes it at every call
    assert not os.path.exists(os.path.join(oci.root, "containers", "f1", "exec.fifo"))  # PID 1 removed it
    assert os.WEXITSTATUS(oci.reap(pid)) == 0
    assert out.read_text() == "started\n"
    cgroups = state.read_json(os.path.join(oci.root, "containers", "f1", "state.json"))["cgroup_dirs"]
    assert cgroups and all(os.path.isdir(d) for d in cgroups)  # (one a hierarchy: 1 on cgroup v2)
    r = oci.log("delete", "f1")
    assert (r.returncode, r.stderr) == (0, "")
    assert not any(os.path.exists(d) for d in cgroups) and oci.ids() == []
    r = oci.log("delete", "--force", "f1")
    assert (r.returncode, r.stderr) == (0, "")
    assert [words[words.index("--log-format") + 2] for words in runtime_path.calls()] == ["create"]
    assert log.read_text() == ""


def test_a_stopped_containers_cgroup_with_one_below_it_is_removed_by_the_runtime(oci, bundle, runtime_path,
                                                                                  tmp_path):
    assert oci("create", "--bundle", bundle(["true"]), "--pid-file", str(tmp_path / "pid"), "f7").returncode == 0
    assert oci("start", "f7").returncode == 0
    oci.reap(int((tmp_path / "pid").read_text()))
    cgroups = state.read_json(os.path.join(oci.root, "containers", "f7", "state.json"))["cgroup_dirs"]
    os.mkdir(os.path.join(cgroups[-1], "below"))  # (as exec --cgroup's, or the container's own making)
    runtime_path.calls()
    r = oci("delete", "f7")
    assert (r.returncode, r.stderr) == (0, "")
    assert runtime_path.calls() == [["--root", oci.root, "delete", "f7"]]
    assert not any(os.path.exists(d) for d in cgroups) and oci.ids() == []


def test_delete_of_a_live_container_is_the_runtimes(oci, bundle, runtime_path, tmp_path):
    assert oci("create", "--bundle", bundle(["true"]), "--pid-file", str(tmp_path / "pid"), "f8").returncode == 0
    runtime_path.calls()
    r = oci("delete", "f8")
    assert (r.returncode, r.stderr) == (1, "minirt-runc: cannot delete container f8 that is not stopped: created\n")
    assert oci("delete", "--force", "f8").returncode == 0
    assert runtime_path.calls() == [["--root", oci.root, "delete", "f8"], ["--root", oci.root, "delete", "--force", "f8"]]
    oci.reap(int((tmp_path / "pid").read_text()))
    assert oci.ids() == []


def test_a_delete_cut_short_is_finished_by_force(oci, runtime_path):
    """A directory left without its files (its delete killed half-way) is no
    container: ``delete`` says so, ``delete --force`` removes it, as runc's."""
    left = os.path.join(oci.root, "containers", "f9")
    os.makedirs(left)
    state.write_text(os.path.join(left, "state.json"), '{"id": "f9", "pid": null}\n')
    r = oci("delete", "f9")
    assert r.returncode == 1 and r.stderr == f"minirt-runc: {left}/config.json: No such file or directory\n"
    assert oci("delete", "--force", "f9").returncode == 0
    assert not os.path.exists(left)


def test_a_started_containers_state_is_running_and_it_can_be_paused(oci, bundle, tmp_path):
    assert oci("create", "--bundle", bundle(["sleep", "100"]), "--pid-file", str(tmp_path / "pid"), "f2").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    assert oci("start", "f2").returncode == 0
    assert oci.state("f2")["status"] == "running"  # recorded "created", but its fifo is gone
    r = oci("start", "f2")
    assert r.returncode == 1 and "cannot start a container that is running" in r.stderr
    # What a second start racing the first leaves (bash's <> makes the file it opens):
    # a plain file by the fifo's name, which is no fifo to anyone.
    open(os.path.join(oci.root, "containers", "f2", "exec.fifo"), "w").close()
    assert oci.state("f2")["status"] == "running"
    r = oci("start", "f2", timeout=10)
    assert r.returncode == 1 and "cannot start a container that is running" in r.stderr
    assert oci("pause", "f2").returncode == 0
    assert oci.state("f2")["status"] == "paused"
    assert oci("resume", "f2").returncode == 0
    assert oci.state("f2")["status"] == "running"
    assert oci("delete", "--force", "f2").returncode == 0
    assert os.WTERMSIG(oci.reap(pid)) == signal.SIGKILL


@pytest.mark.parametrize("args, error", [
    (["start"], '"start" requires a container id'),
    (["start", "a/b"], "invalid container id 'a/b': letters, digits and _+-. only"),
    (["start", "a", "b"], '"start" requires a container id'),
    (["start", "--force", "nope"], "flag provided but not defined: -force"),
    (["start", "nope"], "container does not exist: nope"),
    (["--bogus", "start", "x"], "flag provided but not defined: -bogus"),
    (["--log-format", "xml", "start", "x"], "--log-format must be text or json, not 'xml'"),
    (["delete", "nope"], "container does not exist: nope"),
    (["delete", "--force=maybe", "nope"], "invalid boolean value 'maybe' for -force"),
    (["--root"], "flag needs an argument: -root"),
])
def test_what_it_does_not_make_goes_to_the_runtime_with_the_same_words(oci, runtime_path, args, error):
    runtime_path.calls()
    r = oci(*args)
    assert r.returncode == 1 and r.stderr == f"minirt-runc: {error}\n"
    assert runtime_path.calls() == [["--root", oci.root, *args]]
    assert oci.ids() == []


@pytest.mark.parametrize("stage", ["poststart", "poststop"])
def test_a_container_with_a_hook_after_start_or_delete_is_the_runtimes(oci, bundle, runtime_path, tmp_path, stage):
    ran = tmp_path / "ran"
    b = bundle(["true"], hooks={stage: [{"path": "/bin/touch", "args": ["touch", str(ran)]}]})
    assert oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "f3").returncode == 0
    assert os.path.exists(os.path.join(oci.root, "containers", "f3", "by-runtime"))
    runtime_path.calls()
    assert oci("start", "f3").returncode == 0
    oci.reap(int((tmp_path / "pid").read_text()))
    assert oci("delete", "f3").returncode == 0
    assert runtime_path.calls() == [["--root", oci.root, "start", "f3"], ["--root", oci.root, "delete", "f3"]]
    assert ran.exists() and oci.ids() == []


def test_a_remapped_root_that_may_not_remove_its_fifo_is_started_by_the_runtime(oci, bundle, reachable,
                                                                                  runtime_path, tmp_path):
    b = bundle(["sh", "-c", "id -u > /tmp/started"],
               linux__namespaces=[{"type": t} for t in ("pid", "mount", "ipc", "uts", "network", "user")],
               linux__uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
               linux__gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}])
    r = oci("create", "--bundle", reachable(b), "--pid-file", str(tmp_path / "pid"), "f4")
    assert r.returncode == 0, r.stderr
    runtime_path.calls()
    assert oci("start", "f4").returncode == 0
    assert runtime_path.calls() == [["--root", oci.root, "start", "f4"]]
    assert os.WEXITSTATUS(oci.reap(int((tmp_path / "pid").read_text()))) == 0
    assert oci("delete", "f4").returncode == 0


def test_start_of_a_container_whose_pid_1_is_gone_is_the_runtimes_error(oci, bundle, runtime_path, tmp_path):
    assert oci("create", "--bundle", bundle(["true"]), "--pid-file", str(tmp_path / "pid"), "f5").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    os.kill(pid, signal.SIGKILL)
    oci.reap(pid)
    runtime_path.calls()
    r = oci("start", "f5", timeout=10)
    assert r.returncode == 1 and r.stderr == "minirt-runc: cannot start a container that is stopped\n"
    assert runtime_path.calls() == [["--root", oci.root, "start", "f5"]]
    assert oci("delete", "f5").returncode == 0


def test_a_pid_1_that_dies_while_start_waits_is_noticed(oci, bundle, runtime_path, tmp_path):
    """Its pid reused by another process is no PID 1 either: the start time decides."""
    assert oci("create", "--bundle", bundle(["true"]), "--pid-file", str(tmp_path / "pid"), "f6").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    directory = os.path.join(oci.root, "containers", "f6")
    os.kill(pid, signal.SIGSTOP)  # it never opens the fifo now
    with subprocess.Popen([runtime_path, "--root", oci.root, "start", "f6"], stderr=subprocess.PIPE, text=True) as p:
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(0.5)  # (a stopped PID 1 is alive: start waits, as runc's)
        state.update(directory, pid_start=state.start_time(pid) + 1)  # as if pid were someone else's now
        assert p.wait(10) == 1 and p.stderr.read() == "minirt-runc: cannot start a container that is stopped\n"
    os.kill(pid, signal.SIGKILL)
    oci.reap(pid)
    assert oci("delete", "f6").returncode == 0


def test_it_finds_its_runtime_beside_its_target_through_a_link(oci, runtime_path, tmp_path):
    link = tmp_path / "bin" / "runc"
    link.parent.mkdir()
    link.symlink_to(runtime_path)
    r = subprocess.run([link, "--root", oci.root, "state", "nope"], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (1, "minirt-runc: container does not exist: nope\n")
    alone = tmp_path / "alone" / "minirt-runc"
    alone.parent.mkdir()
    shutil.copy(runtime_path, alone)
    r = subprocess.run([alone, "state", "nope"], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (1, f"minirt-runc: the runtime, minirt-oci, is not beside {alone}\n")


def test_without_bashs_loadable_builtins_the_systems_rmdir_and_rm_delete(oci, bundle, runtime_path, tmp_path):
    door = tmp_path / "door" / "minirt-runc"
    door.parent.mkdir()
    text = open(runtime_path).read()
    assert "\nLOADABLES=/usr/lib/bash " in text and os.path.exists("/usr/lib/bash/rmdir")  # (make install's)
    door.write_text(text.replace("\nLOADABLES=/usr/lib/bash ", f"\nLOADABLES={tmp_path}/none "))
    door.chmod(0o755)
    (door.parent / "minirt-oci").symlink_to(os.path.join(os.path.dirname(runtime_path), "minirt-oci"))
    assert oci("create", "--bundle", bundle(["true"]), "--pid-file", str(tmp_path / "pid"), "f10").returncode == 0
    assert oci("start", "f10").returncode == 0
    oci.reap(int((tmp_path / "pid").read_text()))
    cgroups = state.read_json(os.path.join(oci.root, "containers", "f10", "state.json"))["cgroup_dirs"]
    runtime_path.calls()
    r = subprocess.run([door, "--root", oci.root, "delete", "f10"], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")
    assert runtime_path.calls() == [] and oci.ids() == [] and not any(os.path.exists(d) for d in cgroups)
