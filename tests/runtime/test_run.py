"""`minirt run` end to end: isolation as seen from inside the container.

Each test runs a real container from the busybox image (built by the project's
own image writer) and checks, from inside and from the host, one promise of the
lecture: what a container sees, what it can change, and that nothing of it is
left on the host afterwards.
"""

import os
import signal
import socket
import subprocess
import sys

import pytest

import minirt
import minirt.api
import minirt.runtime.state
from minirt.api import containers as api_containers
from minirt.errors import CommandNotExecutable, CommandNotFound, ImageError
from minirt.image.busybox import CONFIG, busybox_rootfs
from minirt.image.write import write_image
from minirt.kernel import cgroups
from minirt.runtime.container import Container

pytestmark = pytest.mark.privileged


@pytest.fixture
def run(busybox_image, state_root):
    def run(*cmd, **kw):
        return minirt.run(busybox_image, list(cmd) or None, root=state_root, **kw)
    return run


def sh(run, script, **kw):
    r = run("sh", "-c", script, **kw)
    assert r.exit_code == 0, r.stderr
    return r.stdout.decode()


def cli(state_root, *args, input=None, prefix=(), **kw):
    return subprocess.run([*prefix, sys.executable, "-m", "minirt", "--root", state_root, *args],
                          input=input, capture_output=True, timeout=60, **kw)


def test_hello(run):
    r = run("echo", "hello")
    assert (r.exit_code, r.stdout, r.stderr) == (0, b"hello\n", b"")


def test_command_is_pid_1_and_sees_only_its_own_processes(run):
    out = sh(run, "echo $$; ps -o pid,comm; true")
    lines = out.splitlines()
    assert lines[0] == "1"
    procs = [l.split() for l in lines[2:]]
    assert procs == [["1", "sh"], [procs[1][0], "ps"]]  # the shell and ps itself, nothing else


def test_hostname_is_set_inside_and_unchanged_outside(run):
    before = socket.gethostname()
    assert sh(run, "hostname", hostname="inside-box") == "inside-box\n"
    assert socket.gethostname() == before
    assert "inside-box" in sh(run, "cat /etc/hostname /etc/hosts", hostname="inside-box")


def test_default_hostname_is_the_short_id(run):
    r = run("hostname")
    assert r.stdout.decode().strip() == r.id[:12]


def test_writes_leave_image_layers_and_host_untouched(run, state_root, busybox_image):
    run("true")  # the layers are unpacked (also when this test runs alone)
    layers = os.path.join(state_root, "layers", "sha256")  # not leases/: bookkeeping of each run
    before = _tree(layers)
    assert before
    sh(run, "echo changed > /etc/passwd; rm /bin/ls; touch /new-file; mkdir -p /usr/x")
    assert _tree(layers) == before
    assert "root" in sh(run, "cat /etc/passwd") and "ls" in sh(run, "ls /bin/ls")
    assert not os.path.exists("/new-file")


def _tree(top):
    out = {}
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def test_mounts_inside_are_not_seen_outside(busybox_image, state_root):
    # Mounting needs --privileged (docker's default seccomp profile forbids mount(2)).
    spec = minirt.api.prepare(busybox_image, ["sh", "-c", "mount -t tmpfs marker-fs /tmp && echo ok && sleep 5"],
                              root=state_root, remove=True, privileged=True)
    c = Container(spec, state_root)
    c.create()
    r, w = os.pipe()
    try:
        c.start(stdio=(0, w, 2))
        os.close(w)
        assert os.read(r, 3) == b"ok\n"
        with open("/proc/self/mountinfo") as f:
            host = f.read()
        assert "marker-fs" not in host and spec.id not in host
        c.signal(signal.SIGKILL)
        assert c.wait() == 128 + signal.SIGKILL
    finally:
        os.close(r)
        c.delete()


def test_host_mounts_made_later_do_not_propagate_in(busybox_image, state_root, tmp_path):
    spec = minirt.api.prepare(busybox_image, ["sh", "-c", "read x; grep -c minirt-late /proc/mounts"],
                              root=state_root, remove=True, interactive=True)
    c = Container(spec, state_root)
    c.create()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    target = tmp_path / "late"
    target.mkdir()
    try:
        c.start(stdio=(in_r, out_w, 2))
        os.close(out_w)
        subprocess.run(["mount", "-t", "tmpfs", "minirt-late", str(target)], check=True)
        os.write(in_w, b"go\n")
        assert os.read(out_r, 100) == b"0\n"
        assert c.wait() == 1  # grep -c found nothing
    finally:
        subprocess.run(["umount", str(target)])
        for fd in (in_r, in_w, out_r):
            os.close(fd)
        c.delete()


def test_network_is_loopback_only_and_up(run):
    out = sh(run, "ip link; cat /proc/net/dev", network="none")
    assert "lo:" in out and "UP" in out
    devices = [l.split(":")[0].strip() for l in out.splitlines() if ":" in l and "|" not in l and "link/" not in l
               and l[0] == " "]
    assert devices == ["lo"]
    assert sh(run, "ping -c1 -W1 127.0.0.1 >/dev/null && echo reachable") == "reachable\n"


def test_ipc_objects_are_not_shared(run):
    key = subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True, check=True).stdout
    shmid = key.split()[-1]
    try:
        assert shmid in subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout
        inside = sh(run, "cat /proc/sysvipc/shm").splitlines()
        assert inside[1:] == []  # only the header: the host's segment is invisible
        with open("/proc/sysvipc/shm") as f:
            assert shmid in [line.split()[1] for line in f.readlines()[1:]]
    finally:
        subprocess.run(["ipcrm", "-m", shmid], check=True)


def test_container_sees_its_own_cgroup_as_root(run):
    lines = sh(run, "cat /proc/self/cgroup").split()
    assert lines and all(line.endswith(":/") for line in lines)


def test_proc_dev_sys(run):
    out = sh(run, "ls /dev; ls /dev/pts; echo x > /dev/null; head -c4 /dev/zero | wc -c;"
                  " touch /sys/x 2>&1 || true; test -r /proc/self/status && echo proc")
    for name in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"):
        assert name in out.split()
    assert "ptmx" in out
    assert "Read-only file system" in out
    assert "proc" in out.split()
    assert "sda" not in out and "vda" not in out


def test_exit_status_is_the_containers(run):
    assert run("sh", "-c", "exit 3").exit_code == 3


def test_killed_by_signal_gives_128_plus_n(busybox_image, state_root):
    spec = minirt.api.prepare(busybox_image, ["sleep", "30"], root=state_root, remove=True)
    c = Container(spec, state_root)
    c.create()
    try:
        c.start(stdio=(0, 1, 2))
        c.signal(signal.SIGKILL)
        assert c.wait() == 137
    finally:
        c.delete()
    assert not c.cgroup.exists()


def test_command_not_found_and_not_executable(run):
    with pytest.raises(CommandNotFound, match='"nope": executable file not found'):
        run("nope")
    with pytest.raises(CommandNotExecutable, match="permission denied"):
        run("/etc/passwd")


def test_stdin_is_passed_through(run):
    assert run("cat", input=b"piped\n").stdout == b"piped\n"
    assert run("cat").stdout == b""  # no -i: stdin is /dev/null


def test_env_workdir_user(run):
    out = sh(run, "echo $FOO $HOME; pwd; id -u; id -g", env=["FOO=bar"], workdir="/made/here", user="1234:55")
    assert out.split() == ["bar", "/", "/made/here", "1234", "55"]
    assert sh(run, "id -un; echo $HOME", user="nobody").split()[0] == "nobody"


def test_volumes_rw_and_ro(run, tmp_path):
    (tmp_path / "in.txt").write_text("from host")
    out = sh(run, "cat /data/in.txt; echo from-container > /data/out.txt; echo x > /ro/y 2>&1 || echo refused",
             volumes=[f"{tmp_path}:/data", f"{tmp_path}:/ro:ro"])
    assert "from host" in out and "refused" in out
    assert (tmp_path / "out.txt").read_text() == "from-container\n"
    assert not (tmp_path / "y").exists()


def test_init_reaps_and_forwards(run):
    assert sh(run, "echo $$", init=True) != "1\n"
    # A zombie orphan is reaped by the init: after its parent exits it is gone.
    out = sh(run, "(sleep 0.1 &) ; sleep 0.4; ps -o stat,comm | grep -c Z || true", init=True)
    assert out.strip() == "0"


def test_an_image_file_written_again_is_read_again(busybox_image, state_root, tmp_path):
    """The API remembers what an archive held (its layers and config), by the
    file's identity: one written again at the same path is read again --
    its new config used, and a corrupt one refused, not served from memory."""
    image = tmp_path / "image.tar"
    image.write_bytes(open(busybox_image, "rb").read())
    assert minirt.run(str(image), ["sh", "-c", "echo $GREETING"], root=state_root).stdout == b"\n"
    (tmp_path / "rootfs").mkdir()
    busybox_rootfs(tmp_path / "rootfs")
    write_image(tmp_path / "other.tar", [tmp_path / "rootfs"], config={**CONFIG, "Env": CONFIG["Env"] + ["GREETING=hi"]})
    os.replace(tmp_path / "other.tar", image)
    assert minirt.run(str(image), ["sh", "-c", "echo $GREETING"], root=state_root).stdout == b"hi\n"
    image.write_bytes(b"\0" * 2048)
    with pytest.raises(ImageError):
        minirt.run(str(image), ["true"], root=state_root)


def test_a_container_removed_in_a_deferring_block_is_gone_before_its_files_are(busybox_image, state_root):
    """``removals_deferred`` (the test session's runner answers first): the
    container is gone at once -- not loaded, not listed, its cgroup removed --
    and only its renamed-away directory waits for the end of the block."""
    containers_dir = os.path.join(state_root, "containers")
    with api_containers.removals_deferred():
        result = minirt.run(busybox_image, ["true"], root=state_root)
        with pytest.raises(minirt.runtime.state.NoSuchContainer):
            api_containers.load(state_root, result.id)
        assert api_containers.listing(state_root, all=True) == []
        assert not cgroups.for_container(result.id, os.environ["MINIRT_CGROUP_PARENT"]).exists()
        assert os.listdir(containers_dir) == [f".removing-{result.id}"]
    assert os.listdir(containers_dir) == []


def test_signals_the_caller_ignores_are_default_in_the_container(busybox_image, state_root):
    """execve keeps ignored and blocked signals: the command starts with none
    blocked, and none of those ignored that Python ignores (SIGPIPE, SIGXFSZ)
    or the caller did (SIGHUP, as under nohup).  (glibc's own two, 32 and 33,
    no one but glibc may set: one the caller's caller ignored stays so.)"""
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        r = minirt.run(busybox_image, ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"], root=state_root)
    finally:
        signal.signal(signal.SIGHUP, old)
    blocked, ignored = (int(word, 16) for word in r.stdout.split()[1::2])
    assert blocked == 0
    assert [s for s in signal.valid_signals() if ignored & (1 << (s - 1))] == []


NO_TRAMPOLINE = ["setarch", "i686"]  # (uname says i686: not the trampoline's machine)


@pytest.fixture(scope="module")
def i686_busybox(tmp_path_factory):
    """busybox said to be for linux/386, the platform minirt looks for under
    ``setarch i686`` (the x86-64 binary runs all the same)."""
    d = tmp_path_factory.mktemp("i686")
    (d / "rootfs").mkdir()
    busybox_rootfs(d / "rootfs")
    return str(write_image(d / "busybox.tar", [d / "rootfs"], config=CONFIG, platform=("linux", "386")))


def test_without_the_trampoline_init_runs_the_command_and_reaps(i686_busybox, state_root):
    """Where there is no trampoline (off x86-64, or where the kernel forbids
    executable memfds) init executes the command itself, and --init's
    reaper is a hidden copy of minirt."""
    script = "cat /proc/1/exe >/dev/null || echo hidden; (sleep 0.1 &); sleep 0.4; ps -o stat | grep -c Z; exit 4"
    r = cli(state_root, "run", "--rm", "--init", i686_busybox, "sh", "-c", script, prefix=NO_TRAMPOLINE)
    assert (r.returncode, r.stdout) == (4, b"hidden\n0\n"), r.stderr
    r = cli(state_root, "run", "--rm", "--init", "--pids-limit", "1", i686_busybox, "true", prefix=NO_TRAMPOLINE)
    assert (r.returncode, r.stderr) == (125, b"minirt: --init: starting the command: fork: "
                                             b"Resource temporarily unavailable\n")


def test_nothing_is_left_after_a_run(run, state_root):
    r = run("true")
    assert not os.path.exists(os.path.join(state_root, "containers", r.id))
    assert not cgroups.for_container(r.id, os.environ["MINIRT_CGROUP_PARENT"]).exists()


def test_without_rm_the_container_directory_is_kept(run, state_root):
    import shutil
    r = run("sh", "-c", "echo kept > /kept", remove=False)
    d = os.path.join(state_root, "containers", r.id)
    try:
        assert open(os.path.join(d, "upper", "kept")).read() == "kept\n"
        assert minirt.runtime.state.read_json(os.path.join(d, "state.json"))["exit_code"] == 0
    finally:
        shutil.rmtree(d)


# -- the command line -----------------------------------------------------------

def test_cli_run_pipes_and_exit_code(busybox_image, state_root):
    r = cli(state_root, "run", "--rm", "-i", busybox_image, "sh", "-c", "tr a-z A-Z; exit 7", input=b"abc\n")
    assert (r.returncode, r.stdout, r.stderr) == (7, b"ABC\n", b"")


def test_cli_errors_are_one_line(busybox_image, state_root, tmp_path):
    cases = [
        (["run", "--rm", busybox_image, "no-such-cmd"], 127, "executable file not found"),
        (["run", "--rm", busybox_image, "/etc"], 126, ""),
        # the $PATH search (execvp's): a file that cannot run is reported, not "not found"
        (["run", "--rm", "-e", "PATH=/nowhere:/etc", busybox_image, "hostname"], 126, "permission denied"),
        (["run", "--rm", str(tmp_path / "missing.tar")], 125, "missing.tar"),
        (["run", "--bogus-flag", busybox_image], 125, "unknown flag: --bogus-flag"),
        (["run", "--rm", "-v", "nope", busybox_image, "true"], 125, "invalid volume"),
    ]
    for args, code, text in cases:
        r = cli(state_root, *args)
        err = r.stderr.decode()
        assert r.returncode == code, (args, err)
        assert err.startswith("minirt: ") and err.count("\n") == 1 and text in err, (args, err)


def test_cli_command_is_looked_up_in_the_containers_path(busybox_image, state_root):
    """Past a missing directory, a file in the way, and a match that cannot run."""
    path = "/nowhere:/etc/hostname:/etc:/bin"
    r = cli(state_root, "run", "--rm", "-e", "PATH=" + path, busybox_image, "hostname", "-s")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_cli_tty(busybox_image, state_root, terminal):
    """-it: a real terminal — the window size arrives and Ctrl-C interrupts."""
    t = terminal("--root", state_root, "run", "--rm", "-it", busybox_image, "sh", size=(33, 99))
    t.read_until(b"# ")
    t.write(b"stty size; tty\n")
    t.read_until(b"33 99")
    assert t.interrupt_then_exit(5) == 5
    assert b"/dev/console" in t.out or b"/dev/pts" in t.out


def test_cli_tty_with_init_gives_the_terminal_to_the_command(busybox_image, state_root, terminal):
    """With --init the command (pid 2) leads the terminal's foreground process
    group, not the reaper: a Ctrl-C reaches it once, not also forwarded."""
    fields = "read -r pid comm state ppid group session tty fg rest </proc/$$/stat; echo stat $pid $group $fg."
    t = terminal("--root", state_root, "run", "--rm", "-it", "--init", busybox_image, "sh", "-c", fields)
    t.read_until(b"stat 2 2 2.")


def test_bad_image_changes_nothing(state_root, tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar archive" * 100)
    before = _tree(state_root)
    with pytest.raises(ImageError):
        minirt.run(str(bad), ["true"], root=state_root)
    assert _tree(state_root) == before


# -- images that try to trick the runtime -----------------------------------------

@pytest.fixture(scope="module")
def tricky_image(tmp_path_factory):
    """busybox plus symlinks that point out of the rootfs if followed on the host."""
    from minirt.image.busybox import busybox_rootfs
    from minirt.image.write import write_image
    base = tmp_path_factory.mktemp("tricky")
    (base / "rootfs").mkdir()
    rootfs = busybox_rootfs(base / "rootfs")
    top = base / "top"
    top.mkdir()
    os.symlink("/etc", top / "data")               # absolute: must mean the container's /etc
    os.symlink("../../../../../../tmp", top / "up")  # relative, climbing past "/"
    (top / "etc").mkdir()
    os.symlink("/proc/self/root/etc/shadow-minirt-test", top / "etc" / "hosts")
    return str(write_image(base / "tricky.tar", [rootfs, top], config={"Cmd": ["sh"]}))


def test_volume_destinations_resolve_inside_the_rootfs(tricky_image, state_root, tmp_path):
    (tmp_path / "marker").write_text("volume\n")
    host_etc = set(os.listdir("/etc"))
    r = minirt.run(tricky_image, ["sh", "-c", "cat /etc/marker; cat /tmp/marker"], root=state_root,
                   volumes=[f"{tmp_path}/marker:/data/marker", f"{tmp_path}/marker:/up/marker"])
    assert (r.exit_code, r.stdout) == (0, b"volume\nvolume\n"), r.stderr
    assert set(os.listdir("/etc")) == host_etc
    assert not os.path.exists("/tmp/marker")


def test_generated_etc_files_do_not_follow_image_symlinks(tricky_image, state_root):
    r = minirt.run(tricky_image, ["cat", "/etc/hosts"], root=state_root, hostname="safe")
    assert r.exit_code == 0 and b"safe" in r.stdout
    assert not os.path.exists("/etc/shadow-minirt-test")
