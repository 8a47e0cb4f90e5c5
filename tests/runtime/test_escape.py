"""Nothing of the host is reachable from inside a container, at any moment.

The processes minirt puts into a container are, until their execve, copies of
the host's Python: ``minirt exec``'s joining process and ``run``'s PID 1
(which with ``--init`` stays, as the trampoline: see below).  A process in
the container that watches /proc must not catch such a copy holding the caller's environment
(``/proc/PID/environ``), the caller's descriptors (``/proc/PID/fd/N``, a
directory among them is a way out to the host's files) or the host's Python
binary (``/proc/PID/exe``, the CVE-2019-5736 primitive).  As runc does, they
are not dumpable, hold nothing of the caller's and wipe its environment.
And the kernel must never execute the host's Python in the container for a
command that is ``/proc/self/exe``: they execute the command through the
trampoline (``kernel/trampoline.py``).

The container's /etc/passwd turned into a FIFO gives a sync point that any
container can make: ``minirt exec`` reads it (to resolve the user) after
joining the namespaces and blocks there, so the test can look at it.  A watcher
compiled from C (below) races many execs from inside, as an attacker would.

Also here: no_new_privs keeps file capabilities from a non-root user's
command, which must reach execve with an empty permitted set.
"""

import json
import os
import stat
import struct
import subprocess
import sys
import tempfile
import time

import pytest

from minirt.image.busybox import CONFIG, busybox_rootfs
from minirt.image.write import write_image

pytestmark = pytest.mark.privileged

PYTHON = os.path.realpath(sys.executable)
SECRET = "MINIRT_TEST_TOKEN=s3cr3t-" + os.urandom(6).hex()
LOOP = "while :; do sleep 0.05; done"


def cli(root, *args, prefix=(), **kw):
    return subprocess.run([*prefix, sys.executable, "-m", "minirt", "--root", root, *args],
                          capture_output=True, timeout=60, **kw)


def wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return result


@pytest.fixture
def detached(state_root):
    """``detached(*run_args)``: a ``run -d`` container (its id), removed at the end."""
    started = []

    def run_d(*args, root=state_root, prefix=()):
        r = cli(root, "run", "-d", *args, prefix=prefix)
        assert r.returncode == 0, r.stderr.decode()
        started.append((root, prefix, r.stdout.decode().strip()))
        return started[-1][2]
    yield run_d
    for root, prefix, cid in started:
        cli(root, "rm", "-f", cid, prefix=prefix)


@pytest.fixture
def host_dir():
    """A host directory holding a file ``marker``, and a descriptor of it."""
    d = tempfile.mkdtemp(prefix="minirt-host-")
    with open(os.path.join(d, "marker"), "w") as f:
        f.write("host\n")
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    yield d, fd
    os.close(fd)
    os.unlink(os.path.join(d, "marker"))
    os.rmdir(d)


def pid1_of(root, cid, prefix=()):
    [info] = json.loads(cli(root, "inspect", cid, prefix=prefix).stdout)
    return info["State"]["Pid"]


def readable(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def links(pid):
    """Where each of /proc/PID/fd points."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


# -- minirt exec, stopped where it joined: a FIFO as /etc/passwd ---------------------------

FIFO_PASSWD = "rm /etc/passwd && mkfifo /etc/passwd && " + LOOP
PASSWD = "/etc/passwd"  # as /proc/PID/fd shows it: seen from the process's own root


class BlockedExec:
    """``minirt exec CID true`` started with a secret in its environment and a
    host directory's descriptor, caught inside the container at the FIFO."""

    def __init__(self, root, cid, dirfd, prefix=()):
        self.pid1 = wait_for(lambda: pid1_of(root, cid, prefix))
        wait_for(lambda: _is_fifo(f"/proc/{self.pid1}/root/etc/passwd"))
        env = dict(os.environ, MINIRT_TEST_TOKEN=SECRET.split("=", 1)[1])
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "minirt", "--root", root, "exec", cid, "true"],
                                     env=env, pass_fds=(dirfd,), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.joined = wait_for(self._joined)

    def _joined(self):
        """The exec process in the container's pid namespace, once it has the FIFO
        open (and waits for a writer)."""
        ns = os.readlink(f"/proc/{self.pid1}/ns/pid")
        for pid in self.helpers():
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") == ns and PASSWD in links(pid).values():
                    return pid
            except (OSError, AttributeError):
                pass
        return None

    def helpers(self):
        """Our exec's processes that are still Python: the host side and the joined one."""
        return [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                if pid != self.proc.pid and _exe(pid) == PYTHON and _ancestor(self.proc.pid, pid)]

    def release(self):
        """Give it the passwd file it waits for; the exec then runs and ends."""
        with open(f"/proc/{self.pid1}/root/etc/passwd", "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n")
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


def _is_fifo(path):
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:  # (between rm and mkfifo)
        return False


def _exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _ancestor(ancestor, pid):
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rpartition(b")")[2].split()[1])
        except OSError:
            return False
        if pid == ancestor:
            return True
    return False


@pytest.fixture
def blocked_exec():
    """``blocked_exec(root, cid, dirfd, prefix=())``: a BlockedExec, killed at the end if still there."""
    made = []

    def start(*args, **kw):
        made.append(BlockedExec(*args, **kw))
        return made[-1]
    yield start
    for b in made:
        if b.proc.poll() is None:
            b.proc.kill()
        b.proc.communicate()


def test_exec_holds_no_descriptor_and_no_environment_of_the_caller(state_root, detached, busybox_image, host_dir,
                                                                   blocked_exec):
    d, dirfd = host_dir
    cid = detached(busybox_image, "sh", "-c", FIFO_PASSWD)
    blocked = blocked_exec(state_root, cid, dirfd)
    helpers = blocked.helpers()
    assert blocked.joined in helpers and len(helpers) == 2
    for pid in helpers:  # the joined process and the one that joined on its behalf
        fds = links(pid)
        assert d not in fds.values(), (pid, fds)
        assert SECRET.encode() not in readable(f"/proc/{pid}/environ"), pid
        assert b"--root" not in readable(f"/proc/{pid}/cmdline"), pid  # the host's command line
    # What the container's command is to get: stdin, stdout, stderr; and the error
    # pipe (besides the passwd file it is reading).
    fds = links(blocked.joined)
    assert len(fds) == 5 and list(fds.values()).count(PASSWD) == 1, fds
    assert blocked.release() == (0, b"")


def test_rootless_exec_is_not_dumpable_once_it_joined(home, detached, host_dir, blocked_exec):
    """A non-dumpable process's /proc files belong to root: seen from the host,
    that tells us whether the joined process is dumpable (which a same-uid
    process in the container could then read)."""
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    root = os.path.join(home, "root")
    cid = detached(os.path.join(home, "busybox.tar"), "sh", "-c", FIFO_PASSWD, root=root, prefix=prefix)
    blocked = blocked_exec(root, cid, host_dir[1], prefix=prefix)
    for pid in blocked.helpers():
        assert os.stat(f"/proc/{pid}/environ").st_uid == 0, pid
    assert blocked.release() == (0, b"")


# -- ... and raced from inside, as an attacker would ------------------------------------

WATCHER = r"""
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Probe every process but ourselves, over and over: report (once per pid and
   kind) an environment holding SECRET, a descriptor through which MARKER can
   be opened, and an executable that is not this container's busybox. */
static char told[3][1 << 16];

static void tell(int kind, int pid, const char *what) {
    if (!told[kind][pid & 0xffff]++) printf("LEAK %s %d\n", what, pid);
}

int main(int argc, char **argv) {
    const char *secret = argv[1], *marker = argv[2];
    struct stat own, st;
    char path[64], buf[65536];
    int self = getpid();
    stat("/bin/busybox", &own);
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("watching\n");
    for (;;) {
        DIR *proc = opendir("/proc");
        struct dirent *e;
        while ((e = readdir(proc))) {
            int pid = atoi(e->d_name), fd, n;
            if (pid <= 0 || pid == self) continue;
            snprintf(path, sizeof path, "/proc/%d/environ", pid);
            if ((fd = open(path, O_RDONLY)) >= 0) {
                n = read(fd, buf, sizeof buf - 1);
                close(fd);
                if (n > 0 && memmem(buf, n, secret, strlen(secret))) tell(0, pid, "environ");
            }
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            if ((fd = open(path, O_RDONLY)) >= 0) {
                if (fstat(fd, &st) == 0 && (st.st_dev != own.st_dev || st.st_ino != own.st_ino)) tell(1, pid, "exe");
                close(fd);
            }
            snprintf(path, sizeof path, "/proc/%d/fd", pid);
            DIR *fds = opendir(path);
            struct dirent *f;
            while (fds && (f = readdir(fds))) {
                char fdpath[96];
                snprintf(fdpath, sizeof fdpath, "/proc/%d/fd/%s", pid, f->d_name);
                int dir = open(fdpath, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
                if (dir < 0) continue;
                int m = openat(dir, marker, O_RDONLY);
                if (m >= 0) { tell(2, pid, "fd"); close(m); }
                close(dir);
            }
            if (fds) closedir(fds);
        }
        closedir(proc);
    }
}
"""


@pytest.fixture(scope="module")
def watcher(tmp_path_factory):
    """A directory holding ``watch``, the watcher above as a static binary."""
    d = tmp_path_factory.mktemp("watcher")
    (d / "watch.c").write_text(WATCHER)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "watch"), str(d / "watch.c")], check=True)
    return str(d)


def test_a_watcher_inside_catches_nothing_of_many_execs(state_root, detached, busybox_image, host_dir, watcher):
    d, dirfd = host_dir
    cid = detached("-v", f"{watcher}:/probe:ro", busybox_image, "/probe/watch", SECRET, "marker")
    wait_for(lambda: cli(state_root, "logs", cid).stdout.startswith(b"watching"))
    env = dict(os.environ, MINIRT_TEST_TOKEN=SECRET.split("=", 1)[1])
    for _ in range(40):  # (before the fix it caught most of them)
        r = subprocess.run([sys.executable, "-m", "minirt", "--root", state_root, "exec", cid, "true"],
                           env=env, pass_fds=(dirfd,), capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
    assert b"LEAK" not in cli(state_root, "logs", cid).stdout


# -- run's PID 1, and --init's, which stays -----------------------------------------------

def test_init_reaper_shows_nothing_of_the_host(state_root, busybox_image):
    """``--init``'s PID 1 stays for the container's life, not dumpable: no
    environment, executable or descriptor of it is open to the container."""
    env = dict(os.environ, MINIRT_TEST_TOKEN=SECRET.split("=", 1)[1])
    script = ("cat /proc/1/environ || echo no-environ; cat /proc/1/exe >/dev/null || echo no-exe; "
              "readlink /proc/1/fd/2 || echo no-fds; cat /proc/1/cmdline; echo")
    for user in ("0", "1000"):
        r = cli(state_root, "run", "--rm", "--init", "-u", user, busybox_image, "sh", "-c", script, env=env)
        assert r.returncode == 0, r.stderr
        assert SECRET.encode() not in r.stdout
        assert b"no-environ" in r.stdout and b"no-exe" in r.stdout and b"no-fds" in r.stdout, r.stdout
        assert b"--root" not in r.stdout and state_root.encode() not in r.stdout


def test_init_reaper_is_the_trampoline_even_to_a_privileged_container(state_root, busybox_image):
    """A container with CAP_SYS_PTRACE may look into PID 1: it finds the
    trampoline's few hundred bytes, and no file of the host mapped."""
    script = "readlink /proc/1/exe; wc -c </proc/1/exe; grep -c / /proc/1/maps"
    r = cli(state_root, "run", "--rm", "--init", "--privileged", busybox_image, "sh", "-c", script)
    exe, size, files = r.stdout.decode().split("\n")[:3]
    assert (r.returncode, exe, files) == (0, "/memfd:minirt-trampoline (deleted)", "1"), (r.stdout, r.stderr)
    assert int(size) < 4096


# -- a command that is /proc/self/exe: the kernel runs the executable of the process execing ----

PROBE = 'import os; st = os.stat("/proc/self/exe"); print("python ran", st.st_dev, st.st_ino)'


@pytest.fixture(scope="module")
def self_exe_image(tmp_path_factory):
    """busybox with /self, a symlink to /proc/self/exe, and /script, a
    ``#!/proc/self/exe`` script that is PROBE."""
    d = tmp_path_factory.mktemp("selfexe")
    base, top = d / "base", d / "top"
    base.mkdir()
    busybox_rootfs(base)
    top.mkdir()
    os.symlink("/proc/self/exe", top / "self")
    (top / "script").write_text(f"#!/proc/self/exe\n{PROBE}\n")
    os.chmod(top / "script", 0o755)
    return str(write_image(d / "selfexe.tar", [base, top], config=CONFIG, tag="selfexe:latest"))


def host_python_inside():
    """The flags that let the host's Python run in a busybox container, were
    it executed there: the host's / at /host, its loader and libraries where
    the loader looks, its standard library through PYTHONHOME."""
    import sysconfig

    return ["-v", "/:/host:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro",
            "-e", "PYTHONHOME=/host" + sys.base_prefix,
            "-e", "LD_LIBRARY_PATH=/host" + sysconfig.get_config_var("LIBDIR")]


def host_python_id():
    st = os.stat(PYTHON)
    return f"{st.st_dev} {st.st_ino}".encode()


SELF_EXE_COMMANDS = [["/proc/self/exe", "-c", PROBE], ["/self", "-c", PROBE], ["/script"]]


def test_the_host_python_would_run_inside_were_it_executed(state_root, self_exe_image):
    """(What the tests below rely on: PROBE, run by the host's Python in
    such a container, says so.)"""
    r = cli(state_root, "run", "--rm", *host_python_inside(), self_exe_image, "/host" + PYTHON, "-c", PROBE)
    assert r.returncode == 0 and r.stdout == b"python ran " + host_python_id() + b"\n", r.stderr


@pytest.mark.parametrize("init", [[], ["--init"]])
@pytest.mark.parametrize("command", SELF_EXE_COMMANDS, ids=["proc-self-exe", "symlink", "script"])
def test_a_command_that_is_proc_self_exe_does_not_run_the_host_python(state_root, self_exe_image, command, init):
    """PID 1 (or --init's child) executes its command through the trampoline:
    /proc/self/exe is the trampoline then, which, run as a command, does nothing."""
    r = cli(state_root, "run", "--rm", *init, *host_python_inside(), self_exe_image, *command)
    assert (r.returncode, r.stdout, r.stderr) == (127, b"", b""), (r.stdout, r.stderr)


def test_exec_of_proc_self_exe_does_not_run_the_host_python(state_root, detached, self_exe_image):
    cid = detached(*host_python_inside(), self_exe_image, "sh", "-c", LOOP)
    for command in SELF_EXE_COMMANDS:
        r = cli(state_root, "exec", cid, *command)
        assert (r.returncode, r.stdout, r.stderr) == (127, b"", b""), (command, r.stdout, r.stderr)


def test_exec_of_the_init_reaper_does_not_run_the_host_python(state_root, detached, self_exe_image):
    """With --init, PID 1 stays: its /proc/1/exe (the trampoline) is not for
    a process of the container to follow."""
    cid = detached("--init", *host_python_inside(), self_exe_image, "sh", "-c", LOOP)
    r = cli(state_root, "exec", cid, "/proc/1/exe", "-c", PROBE)
    assert r.returncode == 126 and b"python ran" not in r.stdout, (r.stdout, r.stderr)
    assert b'exec: "/proc/1/exe": permission denied' in r.stderr


def test_the_init_reaper_is_filtered_too(state_root, busybox_image):
    """The trampoline installs the seccomp filter for the command; as
    --init's PID 1, before it forks the command."""
    r = cli(state_root, "run", "--rm", "--init", busybox_image,
            "grep", "Seccomp:", "/proc/1/status", "/proc/self/status")
    assert r.returncode == 0 and r.stdout.decode().split() == ["/proc/1/status:Seccomp:", "2",
                                                                "/proc/self/status:Seccomp:", "2"], r.stdout


# -- file capabilities ----------------------------------------------------------------------

CAP_SETUID = 1 << 7


def _vfs_cap_data(permitted):
    """security.capability, version 2, effective bit set: "=ep" for ``permitted``."""
    return struct.pack("<IIIII", 0x02000000 | 0x000001, permitted & 0xFFFFFFFF, 0, permitted >> 32, 0)


@pytest.fixture(scope="module")
def capbin_image(tmp_path_factory):
    """busybox with a second layer holding /cap/cat: busybox with cap_setuid+ep."""
    d = tmp_path_factory.mktemp("capimage")
    base, top = d / "base", d / "top"
    base.mkdir()
    busybox_rootfs(base)
    (top / "cap").mkdir(parents=True)
    with open(base / "bin/busybox", "rb") as src, open(top / "cap/cat", "wb") as dst:
        dst.write(src.read())
    os.chmod(top / "cap/cat", 0o755)
    os.setxattr(top / "cap/cat", "security.capability", _vfs_cap_data(CAP_SETUID))
    return str(write_image(d / "capbin.tar", [base, top], config=CONFIG, tag="capbin:latest"))


def _caps(out):
    st = dict(line.split(":\t", 1) for line in out.decode().splitlines() if ":\t" in line)
    return int(st["CapPrm"], 16), int(st["CapEff"], 16)


@pytest.mark.parametrize("command", [["/cap/cat", "/proc/self/status"], ["sh", "-c", "/cap/cat /proc/self/status"]])
def test_no_new_privs_keeps_file_capabilities_from_a_non_root_user(state_root, capbin_image, detached, command):
    r = cli(state_root, "run", "--rm", "-u", "1000", capbin_image, *command)
    assert r.returncode == 0, r.stderr
    assert _caps(r.stdout) == (0, 0)
    cid = detached(capbin_image, "sh", "-c", LOOP)
    r = cli(state_root, "exec", "-u", "1000", cid, *command)
    assert r.returncode == 0, r.stderr
    assert _caps(r.stdout) == (0, 0)


def test_without_no_new_privs_file_capabilities_work_as_in_docker(state_root, capbin_image):
    """docker's default (no-new-privileges off): a file capability within the
    bounding set is granted, whether the binary is the command or not."""
    for command in (["/cap/cat", "/proc/self/status"], ["sh", "-c", "/cap/cat /proc/self/status"]):
        r = cli(state_root, "run", "--rm", "-u", "1000", "--security-opt", "no-new-privileges:false",
                capbin_image, *command)
        assert r.returncode == 0, r.stderr
        assert _caps(r.stdout) == (CAP_SETUID, CAP_SETUID)

