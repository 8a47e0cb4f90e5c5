"""The trampoline: its bytes, its ELF file, and what it does when executed.

Its code is checked against its own comments with objdump, and run in a
child as init.py runs it: the $PATH search, the report on the error pipe,
the pipe closed for the command, its seccomp filter, and no way in for
another process while it runs.
"""

import errno
import fcntl
import json
import os
import re
import resource
import signal
import subprocess
import time

import pytest

from minirt.kernel import capabilities, libc, security, trampoline

BUSYBOX = "/bin/busybox"
HELLO = ["echo", "hello", ""]  # (an empty argument reaches the command too)


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _run(paths, args, env=None, prepare=None, program=None, reaper=False):
    """``args`` executed through the trampoline in a child, as init.py does:
    (exit status, report on the error pipe, stdout)."""
    pid, out_r, err_r = _start(paths, args, env, prepare, program, reaper)
    out = _read_all(out_r)
    report = _read_all(err_r)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), report, out


def _start(paths, args, env=None, prepare=None, program=None, reaper=False):
    """The start of ``_run``: (the child's pid, its stdout, its error pipe)."""
    fd = trampoline.create(program, reaper)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()  # close-on-exec, as minirt's error pipes are
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(out_w, 1)
            for other in set(range(3, 256)) - {fd, err_w}:  # (as init.py keeps nothing else)
                try:
                    os.close(other)
                except OSError:
                    pass
            if prepare:
                prepare()
            trampoline.execute(fd, err_w, paths, args, env or {})
        finally:
            os._exit(99)
    for end in (fd, out_w, err_w):
        os.close(end)
    return pid, out_r, err_r


# -- the bytes -----------------------------------------------------------------------

@pytest.mark.parametrize("reaper", [False, True])
@pytest.mark.parametrize("filtered", [False, True])
def test_the_code_is_what_its_comments_say(tmp_path, filtered, reaper):
    rows = trampoline.program(filtered, reaper)
    fprog = 0x400200
    code, labels = trampoline._link(rows, fprog)
    (tmp_path / "code").write_bytes(code)
    listing = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel",
                              str(tmp_path / "code")], capture_output=True, text=True, check=True).stdout
    lines = [line.split("\t") for line in listing.splitlines() if re.match(r"\s+[0-9a-f]+:\t", line)]
    said = [re.sub(r"\s+", " ", line[2]).strip() for line in lines if len(line) == 3]
    names = {**{name: hex(at) for name, at in labels.items()}, "fprog": hex(fprog)}

    def meant(asm):  # with the labels' addresses
        mnemonic, _, operands = asm.partition(" ")
        return f"{mnemonic} {re.sub(r'[a-z]+', lambda m: names.get(m[0], m[0]), operands)}".strip()
    assert said == [meant(asm) for _, _, asm, _ in rows]


def test_the_image_is_an_x86_64_executable(tmp_path):
    for program in (None, b"\x06\x00\x00\x00\x00\x00\xff\x7f"):  # (the filter "allow")
        image = trampoline.image(program)
        (tmp_path / "image").write_bytes(image)
        out = subprocess.run(["readelf", "-h", "-l", "-W", str(tmp_path / "image")], capture_output=True,
                             text=True, check=True)
        assert out.stderr == ""
        header = dict(re.findall(r"^\s+([^:]+):\s+(.*)$", out.stdout, re.M))
        assert header["Type"].startswith("EXEC") and header["Machine"] == "Advanced Micro Devices X86-64"
        assert int(header["Entry point address"], 16) == trampoline.BASE + 120
        [load] = re.findall(r"^\s+LOAD\s+(.*)$", out.stdout, re.M)
        offset, vaddr, _, filesz, memsz, flags = load.split()[:6]
        assert (int(offset, 16), int(vaddr, 16), int(filesz, 16), int(memsz, 16), flags) == \
            (0, trampoline.BASE, len(image), len(image), "R")
        assert load.split()[6] == "E"


def test_the_memfd_is_sealed_and_execute_only():
    fd = trampoline.create()
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == "/memfd:minirt-trampoline (deleted)"
        assert not os.get_inheritable(fd)
        assert os.fstat(fd).st_mode & 0o7777 == 0o111
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) == (fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK |
                                                      fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        for change in (lambda: os.pwrite(fd, b"\xcc", 200), lambda: os.ftruncate(fd, 0),
                       lambda: os.ftruncate(fd, 1 << 20), lambda: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0)):
            with pytest.raises(PermissionError):
                change()
    finally:
        os.close(fd)


@pytest.mark.privileged
def test_none_where_the_kernel_forbids_executable_memfds():
    """vm.memfd_noexec=2 (Linux 6.3, per pid namespace): then init executes
    the command itself.  (Before 6.3 nothing forbids them, and MFD_EXEC,
    unknown, is left out.)"""
    if not os.path.exists("/proc/sys/vm/memfd_noexec"):
        os.close(trampoline.create())
        return
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc.unshare(libc.CLONE_NEWPID)
            child = os.fork()  # in the new pid namespace, whose sysctl it sets
            if child == 0:
                try:
                    with open("/proc/sys/vm/memfd_noexec", "w") as f:
                        f.write("2")
                    os.write(w, b"none" if trampoline.create() is None else b"created")
                finally:
                    os._exit(0)
            os.waitpid(child, 0)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert _read_all(r) == b"none"


def test_none_on_other_machines(monkeypatch):
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6", "v", "aarch64")))
    assert trampoline.create() is None


# -- what it does --------------------------------------------------------------------

def test_it_executes_the_first_path_that_runs_with_args_and_env():
    assert _run(["/nope", "/etc/passwd", BUSYBOX], HELLO) == (0, b"", b"hello \n")
    assert _run([BUSYBOX], ["env"], {"A": "b", "C": ""}) == (0, b"", b"A=b\nC=\n")


@pytest.mark.parametrize("paths, err", [
    (["/nope"], errno.ENOENT),
    (["/nope", "/etc/passwd/x"], errno.ENOTDIR),               # none there: the last error
    (["/etc/passwd/x", "/nope"], errno.ENOENT),
    (["/nope", "/etc/passwd", "/etc", "/nope"], errno.EACCES),  # else the first other one
    (["/etc", "/etc/passwd"], errno.EACCES),
    (["/nope", "/etc/passwd/x", "NOEXEC"], errno.ENOEXEC),
])
def test_it_reports_why_nothing_ran_as_execvp_would(tmp_path, paths, err):
    noexec = tmp_path / "noexec"
    noexec.write_bytes(b"\x7fELF garbage")
    noexec.chmod(0o755)
    paths = [str(noexec) if p == "NOEXEC" else p for p in paths]
    assert _run(paths, HELLO) == (125, trampoline.EXECVE_FAILED + bytes([err]), b"")


def test_the_error_pipe_closes_when_the_command_starts():
    status, report, out = _run([BUSYBOX], ["ls", "/proc/self/fd"])
    assert (status, report) == (0, b"")
    assert sorted(map(int, out.split())) == [0, 1, 2, 3]  # (3: ls's /proc/self/fd)


@pytest.mark.parametrize("command", ["/proc/self/exe", "script"])
def test_run_as_a_command_it_does_nothing(tmp_path, command):
    """``/proc/self/exe`` named as the command is the trampoline itself, and
    so is the interpreter of a ``#!/proc/self/exe`` script: it finds no
    command of its own and exits 127, whatever the arguments."""
    script = tmp_path / "script"
    script.write_text("#!/proc/self/exe\necho ran\n")
    script.chmod(0o755)
    path = str(script) if command == "script" else command
    for args in ([path], [path, "-c", "print('ran')"], [path, BUSYBOX, "", "echo", "ran"]):
        assert _run([path], args) == (trampoline.NOT_CALLED_BY_MINIRT, b"", b""), args


def _profile(tmp_path, deny):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": [deny], "action": "SCMP_ACT_ERRNO"}]}))
    return security.seccomp_program(str(path))


def test_it_installs_its_filter_just_before_the_command(tmp_path):
    program = _profile(tmp_path, "mkdir")
    status, report, out = _run([BUSYBOX], ["sh", "-c", f"grep Seccomp: /proc/self/status; mkdir {tmp_path}/d"],
                               prepare=security.set_no_new_privs, program=program)
    assert (status, report, out) == (1, b"", b"Seccomp:\t2\n")
    assert not (tmp_path / "d").exists()


@pytest.mark.privileged
def test_a_filter_it_cannot_install_is_reported(tmp_path):
    """Without no_new_privs only CAP_SYS_ADMIN may install a filter."""
    def nobody():
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)

    assert _run([BUSYBOX], HELLO, prepare=nobody, program=_profile(tmp_path, "mkdir")) == \
        (125, trampoline.FILTER_FAILED + bytes([errno.EACCES]), b"")


@pytest.mark.privileged
@pytest.mark.parametrize("uid", [0, 1000])
def test_no_process_of_the_container_can_look_into_it(tmp_path, uid):
    """The kernel starts the trampoline not dumpable: its /proc/PID/exe,
    environ, mem and maps are closed to a process with the container's
    credentials, even before its own prctl (here refused by a filter).  The
    trampoline is caught writing its report into a full pipe."""
    program = _profile(tmp_path, "prctl")
    fd = trampoline.create()
    r, w = os.pipe()
    os.set_blocking(w, False)
    for chunk in (b"x" * 4096, b"x"):
        try:
            while True:
                os.write(w, chunk)
        except BlockingIOError:
            pass
    os.set_blocking(w, True)
    pid = os.fork()
    if pid == 0:
        try:
            security.apply(caps=capabilities.DEFAULT, no_new_privs=True, seccomp_program=program,
                           uid=uid, gid=uid, groups=[])
            trampoline.execute(fd, w, ["/nope"], HELLO, {"SECRET": "1"})
        finally:
            os._exit(99)
    os.close(w)
    try:
        while os.readlink(f"/proc/{pid}/exe") != "/memfd:minirt-trampoline (deleted)" or \
                open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] != "S":
            pass  # (it sleeps only in that write)
        caps = ",".join("+" + name[4:].lower() for name in capabilities.DEFAULT)
        for what in ("exe", "environ", "mem", "maps"):
            seen = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                                f"--bounding-set=-all,{caps}", "--inh-caps=-all", "cat", f"/proc/{pid}/{what}"],
                               capture_output=True)
            assert seen.returncode != 0 and b"Permission denied" in seen.stderr, (what, seen.stderr)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(fd)


# -- with --init: the reaper ---------------------------------------------------------------

def test_the_reaper_exits_as_its_command_did():
    sh = [BUSYBOX]
    assert _run(sh, ["sh", "-c", "echo $$ $PPID; exit 3"], reaper=True)[:2] == (3, b"")
    assert _run(sh, ["sh", "-c", "kill -9 $$"], reaper=True) == (128 + 9, b"", b"")
    assert _run(["/nope"], HELLO, reaper=True) == (125, trampoline.EXECVE_FAILED + bytes([errno.ENOENT]), b"")


def test_the_reaper_runs_its_command_as_a_child_with_no_signal_blocked_in_its_own_group():
    script = "echo $PPID; grep SigBlk /proc/self/status; read -r pid comm state ppid group rest </proc/$$/stat; echo $pid $group"
    pid, out_r, err_r = _start([BUSYBOX], ["sh", "-c", script], reaper=True)
    ppid, _, blocked, child, group = _read_all(out_r).decode().split()
    assert (int(ppid), blocked, group, _read_all(err_r)) == (pid, "0" * 16, child, b"")
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_the_reaper_forwards_signals_to_its_command():
    script = 'trap "echo got TERM; exit 7" TERM; trap "echo got USR1" USR1; echo ready; while :; do sleep 0.01; done'
    pid, out_r, err_r = _start([BUSYBOX], ["sh", "-c", script], reaper=True)
    with os.fdopen(out_r, "rb") as out:
        assert out.readline() == b"ready\n"
        os.kill(pid, signal.SIGUSR1)
        assert out.readline() == b"got USR1\n"
        os.kill(pid, signal.SIGTERM)
        assert out.read() == b"got TERM\n"
    assert (os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), _read_all(err_r)) == (7, b"")


def test_the_reaper_reaps_orphans():
    """As a subreaper here (in a container it is PID 1): the command's
    orphan, once ended, is no zombie child of the reaper's."""
    def subreaper():
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    script = "(sleep 0.05 &); sleep 0.5; cat /proc/$PPID/task/$PPID/children; echo; echo $$"
    status, report, out = _run([BUSYBOX], ["sh", "-c", script], prepare=subreaper, reaper=True)
    children, me = out.split(b"\n")[:2]
    assert (status, report, children.split()) == (0, b"", [me])


@pytest.mark.privileged
def test_a_fork_the_reaper_cannot_make_is_reported():
    """As nobody, with room for no more process of nobody's."""
    def one_process():
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
    assert _run([BUSYBOX], HELLO, prepare=one_process, reaper=True) == \
        (125, trampoline.FORK_FAILED + bytes([errno.EAGAIN]), b"")


def test_a_reaper_whose_filter_refuses_sigtimedwait_gives_up(tmp_path):
    """(Not a spin at 100% CPU for ever.)"""
    program = _profile(tmp_path, "rt_sigtimedwait")
    pid, out_r, err_r = _start([BUSYBOX], ["sh", "-c", "exec sleep 1 >/dev/null"],
                               prepare=security.set_no_new_privs, program=program, reaper=True)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if not done[0]:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done[0] and os.waitstatus_to_exitcode(done[1]) == 125
    assert (_read_all(out_r), _read_all(err_r)) == (b"", b"")
