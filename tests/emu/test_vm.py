"""`emu vm`: VMs defined in a home, run by one host process: lifecycle,
states after a crash, saved states and snapshots that continue exactly,
linked clones, concurrent commands, bad input.  Every test stops its host."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.emu.conftest import REPO

QEMU_IMG = shutil.which("qemu-img")

# Prints 0, 1, 2, ... one a line, for ever: its console output says exactly
# how far it got, so a continuation can be checked byte for byte.
COUNTER = """
.include "{lib}"
_start:
    li   s0, 0
next:
    mov  a0, s0
    call print_uint
    li   a0, '\\n'
    call putc
    addi s0, s0, 1
    li   s1, 300
spin:
    addi s1, s1, -1
    bnez s1, spin
    b    next
"""

# Prints sector 0 of its disk (up to a NUL), writes WROTE there, powers off.
DISKWRITE = """
.include "{lib}"
.equ DISK, 0xF0000400
_start:
    li   a0, 1
    call transfer
    la   a0, buffer
    call puts
    li   a0, '\\n'
    call putc
    la   t0, buffer
    la   t1, wrote
copy:
    ldbu t2, [t1]
    stb  t2, [t0]
    addi t0, t0, 1
    addi t1, t1, 1
    bnez t2, copy
    li   a0, 2
    call transfer
    exit 0

transfer:                      ; a0 = 1 read, 2 write: sector 0 <-> buffer
    li   t0, DISK
    stw  zero, [t0]
    la   t1, buffer
    stw  t1, [t0 + 4]
    li   t1, 1
    stw  t1, [t0 + 8]
    stw  a0, [t0 + 12]
wait:
    ldw  t1, [t0 + 16]
    andi t1, t1, 2
    beqz t1, wait
    li   t1, 2
    stw  t1, [t0 + 16]
    ret

wrote:
    .asciz "WROTE"
.align 512
buffer:
    .space 512
"""


def program(tmp_path, name, source):
    path = tmp_path / f"{name}.s"
    path.write_text(source.format(lib=os.path.join(REPO, "emu", "guest", "lib.s")))
    return str(path)


class Home:
    """A VM home in tmp_path and the `emu vm` command on it."""

    def __init__(self, path):
        self.path = str(path)

    def run(self, *args, check=True):
        r = subprocess.run([sys.executable, "-m", "emu", "vm", "--home", self.path, *map(str, args)],
                           capture_output=True, text=True, timeout=120, cwd=REPO)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def states(self):
        lines = self.run("list").stdout.splitlines()
        return {line.split()[0]: line.split()[1] for line in lines}

    def stats(self):
        from emu.vm import control, store
        return control.request(store.Home(self.path), "stats")["vms"]

    def log(self, name):
        with open(os.path.join(self.path, "vms", name, "console.log"), "rb") as f:
            return f.read()

    def wait_log(self, name, lines):
        """Wait until VM `name` has written `lines` lines (a hang, not a speed, is what fails)."""
        deadline = time.monotonic() + 60
        while self.log(name).count(b"\n") < lines:
            assert time.monotonic() < deadline, f"{name} wrote {self.log(name)[-200:]!r}"
            time.sleep(0.02)
        return self.log(name)

    def wait_prompt(self, name, count=1):
        """Wait until toyos in VM `name` has shown `count` prompts."""
        deadline = time.monotonic() + 60
        while self.log(name).count(b"$ ") < count:
            assert time.monotonic() < deadline, self.log(name)
            time.sleep(0.05)

    def host_pid(self):
        from emu.vm import store
        host = store.Home(self.path).host_id()
        return host and int(host.split("-")[0])

    def refuses(self, capsys, args, message):
        """`emu vm ARGS` fails with one line holding `message` and changes
        nothing (run in this process: the command's start-up would be most
        of a table's time)."""
        from emu.cli import main

        before = self.files()
        try:
            code = main(["vm", "--home", self.path, *map(str, args)])
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code != 0, args
        assert message in err and err.count("\n") == 1, (args, err)
        assert self.files() == before, args

    def files(self):
        """Everything in the home, for "nothing changed" (console logs aside)."""
        found = {}
        for root, _dirs, files in os.walk(self.path):
            for f in files:
                path = os.path.join(root, f)
                if not f.endswith((".lock", ".log")):
                    with open(path, "rb") as fh:
                        found[path] = fh.read()
        return found

    def stop(self):
        """Power off what runs and wait for the host to go (it exits when idle)."""
        pid = self.host_pid()
        for name, state in self.states().items():
            if state in ("running", "paused"):
                self.run("poweroff", name, check=False)
        deadline = time.monotonic() + 30
        while pid and os.path.exists(f"/proc/{pid}") and _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"the host process {pid} did not exit when idle")
            time.sleep(0.02)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path / "home")
    yield h
    h.stop()


def counters(log):
    """The numbers a COUNTER printed, checked to be 0, 1, 2, ... (a last partial line dropped)."""
    lines = log.split(b"\n")[:-1]
    assert lines == [str(i).encode() for i in range(len(lines))], log[-200:]
    return len(lines)


# -- lifecycle ----------------------------------------------------------------------------

def test_ten_vms_from_one_image_boot_run_and_are_listed(home):
    names = [f"vm{i}" for i in range(10)]
    for name in names:
        home.run("create", name, "--image", "toyos")
    for name in names:
        home.run("start", name)
    for name in names:
        home.wait_prompt(name)
    assert home.states() == {name: "running" for name in names}
    stats = home.stats()["vm0"]
    assert stats["disk_reads"] > 0 and stats["disk_writes"] == 0 and stats["touched"] > 0
    assert stats["traps"]["system call"] > 0 and stats["exits"]["disk"] > 0
    assert sorted(home.run("list", "--running").stdout.split()[::5]) == names
    # One shared base, ten overlays on it.
    base = os.path.join(home.path, "images", "toyos.img")
    assert all(os.path.exists(os.path.join(home.path, "vms", n, "disk-0.qcow2")) for n in names)
    assert os.path.exists(base)
    # All ten in one host process, the home's.
    hosts = [pid for pid in os.listdir("/proc") if pid.isdigit() and {"emu.vm.host", home.path} <= set(_cmdline(pid))]
    assert hosts == [str(home.host_pid())]
    home.run("poweroff", "vm3")
    assert home.states()["vm3"] == "poweroff"
    assert "vm3" not in home.run("list", "--running").stdout


def test_show_machine_readable(home, tmp_path):
    home.run("create", "a", "--image", program(tmp_path, "c", COUNTER), "--memory", "64K", "--cpu-share", "3")
    out = home.run("show", "a", "--machine-readable").stdout
    fields = dict(line.split("=", 1) for line in out.splitlines())
    assert fields["name"] == '"a"' and fields["state"] == '"poweroff"'
    assert fields["memory"] == '"65536"' and fields["cpu_share"] == '"3"'


def test_pause_stops_guest_progress(home, tmp_path):
    counter = program(tmp_path, "c", COUNTER)
    home.run("create", "a", "--image", counter)
    home.run("create", "b", "--image", counter)
    home.run("start", "a")
    home.run("start", "b")
    home.wait_log("a", 10)
    home.run("pause", "a")
    assert home.states()["a"] == "paused"
    before = home.stats()
    # Progress measured in guest instructions: b runs on while a does not.
    deadline = time.monotonic() + 60
    while (now := home.stats())["b"]["instructions"] < before["b"]["instructions"] + 2_000_000:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert now["a"]["instructions"] == before["a"]["instructions"]
    home.run("resume", "a")
    lines = home.log("a").count(b"\n")
    home.wait_log("a", lines + 10)
    assert home.states()["a"] == "running"


def test_savestate_then_start_continues_exactly(home, tmp_path):
    home.run("create", "a", "--image", program(tmp_path, "c", COUNTER))
    home.run("start", "a")
    for round in range(3):
        home.wait_log("a", 50 * (round + 1))
        home.run("savestate", "a")
        assert home.states()["a"] == "saved"
        home.run("start", "a")
    home.run("poweroff", "a")
    # No number lost, none repeated, across three save/start cycles.
    assert counters(home.log("a")) >= 150


def test_snapshot_restore_continues_identical_output(home, tmp_path):
    home.run("create", "a", "--image", program(tmp_path, "c", COUNTER))
    home.run("start", "a")
    home.wait_log("a", 20)
    low = len(home.log("a"))
    home.run("snapshot", "a", "take", "s1")
    high = len(home.log("a"))
    home.wait_log("a", home.log("a").count(b"\n") + 200)
    home.run("poweroff", "a")
    original = home.log("a")
    home.run("snapshot", "a", "restore", "s1")
    assert home.states()["a"] == "saved"
    assert "s1" in home.run("snapshot", "a", "list").stdout
    home.run("start", "a")
    home.wait_log("a", original.count(b"\n") + 100)
    home.run("poweroff", "a")
    again = home.log("a")[len(original):]
    # The snapshot was taken between `low` and `high` bytes of output: the
    # restored machine goes on from there, exactly as the original did.
    assert any(original[at:at + 500] == again[:500] for at in range(low, high + 1))
    home.run("snapshot", "a", "delete", "s1")
    assert home.run("snapshot", "a", "list").stdout == ""


def test_kill_9_of_the_host_makes_its_vms_aborted_and_start_works_again(home, tmp_path):
    from emu.vm import control, store
    home.run("create", "a", "--image", program(tmp_path, "c", COUNTER))
    home.run("create", "b", "--image", program(tmp_path, "c", COUNTER))
    home.run("start", "a")
    home.run("start", "b")
    home.run("pause", "b")
    pid = home.host_pid()
    os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.01)
    assert home.states() == {"a": "aborted", "b": "aborted"}
    assert control._connect(store.Home(home.path)) is None       # the socket went with it
    assert store.Home(home.path).socket_name()[1:] not in open("/proc/net/unix").read()
    home.run("start", "a")
    assert home.states() == {"a": "running", "b": "aborted"}
    assert home.host_pid() != pid
    home.wait_log("a", home.log("a").count(b"\n") + 10)


@pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img (Debian's qemu-utils) is not installed")
def test_linked_clones_do_not_see_each_others_writes(home, tmp_path):
    base = tmp_path / "base.img"
    base.write_bytes(b"BASE".ljust(64 * 1024, b"\0"))
    home.run("create", "p", "--image", program(tmp_path, "w", DISKWRITE), "--disk", base)
    home.run("clone", "p", "c1", "--linked")
    home.run("clone", "p", "c2", "--linked")
    for name, seen in (("c1", b"BASE\n"), ("c1", b"WROTE\n"), ("c2", b"BASE\n"), ("p", b"BASE\n")):
        assert run_to_poweroff(home, name) == seen, name
    assert base.read_bytes().startswith(b"BASE")                  # frozen: nobody wrote it
    for name in ("p", "c1", "c2"):
        disk = home.run("show", name, "--machine-readable").stdout.split('disk="')[1].split('"')[0]
        check = subprocess.run([QEMU_IMG, "check", disk], capture_output=True, text=True)
        assert "No errors were found" in check.stdout, check.stdout + check.stderr
        info = subprocess.run([QEMU_IMG, "info", "--backing-chain", disk], capture_output=True, text=True)
        assert str(base) in info.stdout or "base.img" in info.stdout
    # p's frozen layers are the bases of its clones' disks: p cannot go first.
    before = home.files()
    r = home.run("rm", "p", check=False)
    assert r.returncode != 0 and "is the base of vm c2's disk" in r.stderr and home.files() == before
    home.run("rm", "c2")
    r = home.run("rm", "p", "--delete-disks", check=False)       # base.img: c1's base
    assert r.returncode != 0 and "is the base of vm c1's disk" in r.stderr
    home.run("rm", "c1")
    home.run("rm", "p", "--delete-disks")
    assert home.states() == {} and not base.exists()


def run_to_poweroff(home, name):
    """Start `name` and wait until its guest powers off; what it printed."""
    log = os.path.join(home.path, "vms", name, "console.log")
    before = os.path.getsize(log) if os.path.exists(log) else 0
    home.run("start", name)
    deadline = time.monotonic() + 60
    while home.states()[name] != "poweroff":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return home.log(name)[before:]


def test_snapshot_of_a_powered_off_vm_keeps_its_disk(home, tmp_path):
    base = tmp_path / "base.img"
    base.write_bytes(b"BASE".ljust(64 * 1024, b"\0"))
    home.run("create", "p", "--image", program(tmp_path, "w", DISKWRITE), "--disk", base)
    home.run("snapshot", "p", "take", "clean")
    assert run_to_poweroff(home, "p") == b"BASE\n"
    assert run_to_poweroff(home, "p") == b"WROTE\n"
    assert "exit_status: 0" in home.run("show", "p").stdout
    home.run("snapshot", "p", "restore", "clean")
    assert home.states()["p"] == "poweroff"
    assert run_to_poweroff(home, "p") == b"BASE\n"
    assert base.read_bytes().startswith(b"BASE")


# Prints the first byte of its disk, adds one to it there, powers off: each
# run shows what the disk held, so a layer's content is seen by running it.
BUMP = """
.include "{lib}"
.equ DISK, 0xF0000400
_start:
    li   a0, 1
    call transfer
    la   t0, buffer
    ldbu a0, [t0]
    call putc
    li   a0, '\\n'
    call putc
    la   t0, buffer
    ldbu t1, [t0]
    addi t1, t1, 1
    stb  t1, [t0]
    li   a0, 2
    call transfer
    exit 0
""" + DISKWRITE[DISKWRITE.index("transfer:"):]


def layers(home, name):
    """The VM's disk: its layers' file names, top first, and what it reads."""
    from emu import qcow2
    disk = home.run("show", name, "--machine-readable").stdout.split('disk="')[1].split('"')[0]
    image = qcow2.open_image(disk, readonly=True)
    try:
        return [os.path.basename(i.path) for i in qcow2.chain(image)], image.read(0, image.size)
    finally:
        image.close()


def disk_files(home, name):
    return sorted(f for f in os.listdir(os.path.join(home.path, "vms", name)) if f.endswith(".qcow2"))


@pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img (Debian's qemu-utils) is not installed")
def test_snapshot_delete_merges_its_layer_and_the_disk_reads_the_same(home, tmp_path, capsys):
    base = tmp_path / "base.img"
    base.write_bytes(b"A".ljust(64 * 1024, b"\0"))
    home.run("create", "p", "--image", program(tmp_path, "b", BUMP), "--disk", base)
    for snap, seen in (("s1", b"A\n"), ("s2", b"B\n"), ("s3", b"C\n")):
        home.run("snapshot", "p", "take", snap)
        assert run_to_poweroff(home, "p") == seen
    chain, before = layers(home, "p")
    assert chain == ["disk-2.qcow2", "disk-1.qcow2", "disk-0.qcow2", "base.img"] and before[0] == ord("D")
    home.run("snapshot", "p", "delete", "s2")            # disk-0 (s2's) merged into disk-1 (s3's)
    assert layers(home, "p") == (["disk-2.qcow2", "disk-1.qcow2", "base.img"], before)
    assert disk_files(home, "p") == ["disk-1.qcow2", "disk-2.qcow2"]
    for f in disk_files(home, "p"):
        check = subprocess.run([QEMU_IMG, "check", os.path.join(home.path, "vms", "p", f)],
                               capture_output=True, text=True)
        assert "No errors were found" in check.stdout, check.stdout + check.stderr
    info = subprocess.run([QEMU_IMG, "info", "--backing-chain", os.path.join(home.path, "vms", "p", "disk-2.qcow2")],
                          capture_output=True, text=True).stdout
    assert [os.path.normpath(line.split()[-1]) for line in info.splitlines() if line.startswith("image:")] == \
        [os.path.join(home.path, "vms", "p", "disk-2.qcow2"), os.path.join(home.path, "vms", "p", "disk-1.qcow2"), str(base)]
    home.run("snapshot", "p", "restore", "s3")           # the others restore exactly
    assert run_to_poweroff(home, "p") == b"C\n"
    # Two branches on s3's layer: the state taken as s4, and the present.
    home.run("snapshot", "p", "take", "s4")
    home.run("snapshot", "p", "restore", "s3")
    home.refuses(capsys, ("snapshot", "p", "delete", "s3"), "2 disks are built on its layer (snapshot s4, the current state)")
    home.run("snapshot", "p", "delete", "s4")            # nothing is built on its layer: gone
    assert len(disk_files(home, "p")) == 2
    chain, before = layers(home, "p")
    home.run("snapshot", "p", "delete", "s3")            # merged into the present disk
    assert layers(home, "p") == ([chain[0], "base.img"], before) and disk_files(home, "p") == [chain[0]]
    assert run_to_poweroff(home, "p") == b"C\n"
    home.run("snapshot", "p", "restore", "s1")
    assert run_to_poweroff(home, "p") == b"A\n"
    home.run("snapshot", "p", "delete", "s1")            # its layer is base.img, not emu's: kept
    assert home.run("snapshot", "p", "list").stdout == ""
    assert len(disk_files(home, "p")) == 1 and base.read_bytes()[0] == ord("A")


def test_snapshot_delete_under_a_linked_clone_merges_into_the_layer_they_share(home, tmp_path):
    base = tmp_path / "base.img"
    base.write_bytes(b"A".ljust(64 * 1024, b"\0"))
    home.run("create", "p", "--image", program(tmp_path, "b", BUMP), "--disk", base)
    for snap, seen in (("s1", b"A\n"), ("s2", b"B\n")):
        home.run("snapshot", "p", "take", snap)
        assert run_to_poweroff(home, "p") == seen
    home.run("clone", "p", "c", "--linked")              # both on p's disk-1 (C), frozen
    home.run("snapshot", "p", "delete", "s2")            # disk-0 merged into disk-1, which both read
    assert disk_files(home, "p") == ["disk-1.qcow2", "disk-2.qcow2"]
    assert layers(home, "c")[0] == ["disk-0.qcow2", "disk-1.qcow2", "base.img"]
    assert run_to_poweroff(home, "c") == b"C\n" and run_to_poweroff(home, "p") == b"C\n"
    home.run("snapshot", "p", "restore", "s1")
    assert run_to_poweroff(home, "p") == b"A\n"


@pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img (Debian's qemu-utils) is not installed")
def test_snapshot_delete_of_a_running_vm_merges_under_it(home, terminal):
    home.run("create", "t", "--image", "toyos")
    home.run("start", "t")
    home.wait_prompt("t")
    home.run("snapshot", "t", "take", "one")
    home.run("snapshot", "t", "take", "two")
    chain, before = layers(home, "t")
    assert chain == ["disk-2.qcow2", "disk-1.qcow2", "disk-0.qcow2", "toyos.img"]
    home.run("snapshot", "t", "delete", "one")           # into two's layer, which the VM reads
    home.run("snapshot", "t", "delete", "two")           # into the disk the VM writes
    assert layers(home, "t") == (["disk-2.qcow2", "toyos.img"], before)
    assert disk_files(home, "t") == ["disk-2.qcow2"]
    say_hello(terminal, home, "t")                       # it runs on, from the merged disk
    assert home.states()["t"] == "running"
    home.run("poweroff", "t")
    check = subprocess.run([QEMU_IMG, "check", os.path.join(home.path, "vms", "t", "disk-2.qcow2")],
                           capture_output=True, text=True)
    assert "No errors were found" in check.stdout, check.stdout + check.stderr


def test_reset_boots_again(home, tmp_path):
    home.run("create", "a", "--image", program(tmp_path, "c", COUNTER))
    home.run("start", "a")
    home.wait_log("a", 20)
    home.run("reset", "a")
    home.wait_log("a", home.log("a").count(b"\n") + 20)
    # Counting from the start again (the first count got to 20 at least).
    assert home.log("a").find(b"\n1\n2\n3\n4\n5\n", 30) > 0
    assert home.states()["a"] == "running"


def test_concurrent_creates_and_modifies_never_corrupt(home, tmp_path):
    counter = program(tmp_path, "c", COUNTER)
    home.run("create", "shared", "--image", counter)
    procs = []
    for i in range(6):
        procs.append(subprocess.Popen([sys.executable, "-m", "emu", "vm", "--home", home.path,
                                       "create", f"n{i}", "--image", counter], cwd=REPO))
        procs.append(subprocess.Popen([sys.executable, "-m", "emu", "vm", "--home", home.path,
                                       "modify", "shared", "--cpu-share", str(i + 1)], cwd=REPO))
    procs += [subprocess.Popen([sys.executable, "-m", "emu", "vm", "--home", home.path,
                                "create", "dup", "--image", counter], cwd=REPO,
                               stderr=subprocess.PIPE, text=True) for _ in range(4)]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes[:12] == [0] * 12
    assert sorted(codes[12:]) == [0, 125, 125, 125]
    assert set(home.states()) == {"shared", "dup", *(f"n{i}" for i in range(6))}
    for name in home.states():
        with open(os.path.join(home.path, "vms", name, "vm.json")) as f:
            vm = json.load(f)
        assert vm["name"] == name
        assert 1 <= vm["cpu_share"] <= 6
    assert [f for f in os.listdir(os.path.join(home.path, "vms")) if f.startswith(".")] == []


# -- bad input: one line, non-zero, nothing changed ----------------------------------------------

def test_bad_input_is_one_line_and_changes_nothing(home, tmp_path, capsys):
    counter = program(tmp_path, "c", COUNTER)
    home.run("create", "a", "--image", counter)
    home.run("create", "r", "--image", counter)
    home.run("start", "r")
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(4096))
    home.run("create", "z", "--disk", blank)
    home.run("create", "s", "--image", counter)
    home.run("start", "s")
    home.run("savestate", "s")
    cases = [
        (("modify", "s", "--memory", "2M"), "emu vm discardstate s"),
        (("start", "z"), "not bootable"),
        (("show", "nope"), "no such VM"),
        (("start", "nope"), "no such VM"),
        (("rm", "nope"), "no such VM"),
        (("modify", "r", "--cpu-share", "2"), "is running"),
        (("rm", "r"), "is running"),
        (("create", "a", "--image", counter), "already exists"),
        (("create", "b", "--image", counter, "--memory", "3000"), "--memory 3000"),
        (("create", "b", "--image", counter, "--memory", "lots"), "not a size"),
        (("create", "b", "--disk", tmp_path / "missing.img"), "missing.img"),
        (("create", "b/c", "--image", counter), "name"),
        (("create", "b"), "nothing to run"),
        (("modify", "a", "--cpu-share", "0"), "--cpu-share 0"),
        (("pause", "a"), "not running"),
        (("snapshot", "a", "restore", "nosuch"), "no snapshot"),
        (("snapshot", "a", "delete", "nosuch"), "no snapshot"),
        (("snapshot", "r", "delete", "nosuch"), "no snapshot"),
        (("clone", "r", "r2"), "is running"),
        (("clone", "a", "r"), "already exists"),
    ]
    for args, message in cases:
        home.refuses(capsys, args, message)
    assert home.states() == {"a": "poweroff", "r": "running", "z": "poweroff", "s": "saved"}


def say_hello(terminal, home, name, command="console"):
    """Attach to toyos's console, run `hello`, detach with Ctrl-A d."""
    t = terminal("vm", "--home", home.path, command, name)
    t.read_until(b"Ctrl-A d detaches")
    t.wait_raw()
    t.write(b"hello\r")
    t.read_until(b"Hello")
    t.write(b"\x01d")
    t.read_until(b"detached")
    assert t.wait() == 0


def test_console_attaches_and_detaches_without_stopping_the_vm(home, terminal):
    home.run("create", "t", "--image", "toyos")
    for command in ("start", "console", "console"):      # at a terminal, start attaches too
        say_hello(terminal, home, "t", command)
        assert home.states()["t"] == "running"


def test_console_with_piped_input_shows_the_answer_then_detaches(home):
    home.run("create", "t", "--image", "toyos")
    home.run("start", "t")
    for pid in (2, 3):
        r = subprocess.run([sys.executable, "-m", "emu", "vm", "--home", home.path, "console", "t"],
                           input=b"hello\n", capture_output=True, timeout=120, cwd=REPO)
        # The keys typed, the guest's answer shown, detached once it waits for more.
        assert r.returncode == 0 and r.stderr == b"", r.stderr
        assert f"Hello from user space! I am process {pid}\n".encode() in r.stdout, r.stdout
        assert r.stdout.endswith(b"$ ")
        assert home.states()["t"] == "running"


def test_a_console_that_goes_away_is_let_go_even_while_its_guest_never_waits(home, tmp_path):
    home.run("create", "s", "--image", program(tmp_path, "s", "_start: b _start"))
    home.run("start", "s")
    fds = lambda: len(os.listdir(f"/proc/{home.host_pid()}/fd"))
    before = fds()
    console = subprocess.Popen([sys.executable, "-m", "emu", "vm", "--home", home.path, "console", "s"],
                               stdin=subprocess.PIPE, cwd=REPO)
    deadline = time.monotonic() + 60
    while fds() == before:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    console.kill()                        # gone, not done typing: its socket closes both ways
    console.wait()
    console.stdin.close()
    while fds() != before:
        assert time.monotonic() < deadline, "the host kept a dead console's socket"
        time.sleep(0.02)


# -- sharing the host -------------------------------------------------------------------------------

def test_cpu_shares_hold_in_guest_instructions(home, tmp_path):
    counter = program(tmp_path, "c", COUNTER)
    home.run("create", "one", "--image", counter, "--cpu-share", "1")
    home.run("create", "three", "--image", counter, "--cpu-share", "3")
    home.run("create", "idle", "--image", "toyos", "--cpu-share", "5")
    for name in ("one", "three", "idle"):
        home.run("start", name)
    home.wait_log("one", 10)
    home.wait_log("three", 10)
    home.wait_prompt("idle")
    before = home.stats()
    deadline = time.monotonic() + 60
    while (after := home.stats())["one"]["instructions"] < before["one"]["instructions"] + 1_000_000:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    one = after["one"]["instructions"] - before["one"]["instructions"]
    three = after["three"]["instructions"] - before["three"]["instructions"]
    assert 2.9 < three / one < 3.1, (one, three)
    print(f"shares 1:3 gave {one}:{three} guest instructions ({three / one:.4f})")
    # A VM waiting at its prompt is given nothing: its share goes to the others.
    assert after["idle"]["instructions"] - before["idle"]["instructions"] < one / 100
    r = home.run("stats")
    assert "overcommitted 2:1" in r.stdout and "three" in r.stdout


def settled(home):
    """The host's stats once its page-sharing scanner has settled."""
    from emu.vm import control, store
    deadline = time.monotonic() + 60
    while not (stats := control.request(store.Home(home.path), "stats"))["host"]["sharing"]["settled"]:
        assert time.monotonic() < deadline, stats["host"]["sharing"]
        time.sleep(0.05)
    return stats


def type_at(home, name, keys):
    r = subprocess.run([sys.executable, "-m", "emu", "vm", "--home", home.path, "console", name],
                       input=keys, capture_output=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_ten_toyos_vms_share_their_identical_pages_and_go_on_apart(home):
    names = [f"s{i}" for i in range(10)]
    for name in names:
        home.run("create", name, "--image", "toyos")
        home.run("start", name)
    for name in names:
        home.wait_prompt(name)
    stats = settled(home)
    host, sharing = stats["host"], stats["host"]["sharing"]
    one = stats["vms"]["s0"]["touched"]           # what one costs unshared (test_sharing.py: the kernel's Rss)
    # The ten, as the host's kernel counts them: their private pages, and the stable ones once.
    ten = host["anonymous"] + sharing["stable_memory"]
    print(f"ten toyos VMs: {host['memory_touched'] >> 10}K used by their guests, {ten >> 10}K in the host "
          f"({ten / one:.2f} x one VM's {one >> 10}K); {sharing['pages_sharing']} pages map "
          f"{sharing['pages_shared']} stable ones, {sharing['saved'] >> 10}K saved")
    assert ten < 3 * one and sharing["saved"] > 5 * one
    assert all(s["shared_pages"] > 0 for s in stats["vms"].values())
    # Half of them go on: each writes its own pages (copies, by the kernel),
    # and the other half, still sharing them, see nothing of it.
    quiet = {name: home.log(name) for name in names[5:]}
    answers = {type_at(home, name, b"hello\n") for name in names[:5]}
    assert len(answers) == 1 and b"I am process 2" in answers.pop()
    assert {name: home.log(name) for name in names[5:]} == quiet
    assert type_at(home, "s9", b"ps\n").count(b"\n") >= 3
    after = settled(home)["host"]
    assert after["anonymous"] + after["sharing"]["stable_memory"] < 3 * one
    # A VM with shared pages saved and continued, then snapshotted and
    # restored: each time the same session goes on.
    home.run("savestate", "s0")
    home.run("start", "s0")
    home.run("snapshot", "s0", "take", "up")
    home.run("poweroff", "s0")
    home.run("snapshot", "s0", "restore", "up")
    home.run("start", "s0")
    assert b"I am process 3" in type_at(home, "s0", b"hello\n")
    assert home.log("s0").count(b"booting") == 1
    r = home.run("stats")
    assert "guest pages map" in r.stdout and "saved" in r.stdout, r.stdout


def test_live_snapshot_of_toyos_restores_with_its_disk(home, terminal):
    home.run("create", "t", "--image", "toyos")
    home.run("start", "t")
    home.wait_prompt("t")
    home.run("snapshot", "t", "take", "up")
    home.run("poweroff", "t")
    home.run("snapshot", "t", "restore", "up")
    at = len(home.log("t"))
    home.run("start", "t")
    say_hello(terminal, home, "t")
    assert b"booting" not in home.log("t")[at:]            # continued, not booted again


def test_a_viewer_too_slow_misses_the_oldest_output_not_the_host_its_memory():
    import io
    from types import SimpleNamespace
    from emu.machine import Machine
    from emu.vm import host
    log = io.BytesIO()
    guest = host.Guest({"name": "x", "cpu_share": 1}, Machine(4096), -1, log)
    viewer = SimpleNamespace(out=bytearray())
    guest.viewers.append(viewer)
    for i in range(3):
        guest.write(bytes([i]) * (host.MAX_BACKLOG // 2 + 1))
    assert len(viewer.out) == host.MAX_BACKLOG and viewer.out[-1] == 2 and viewer.out[0] == 1
    assert len(log.getvalue()) == 3 * (host.MAX_BACKLOG // 2 + 1)          # the log keeps it all


def test_stats_give_a_vm_younger_than_the_rate_window_its_rate_since_start(tmp_path):
    from emu.asm import assemble
    from emu.machine import Machine
    from emu.vm import host, store
    machine = Machine(4096)
    machine.load(assemble("_start: b _start"))
    h = host.Host(store.Home(str(tmp_path)))
    h.guests["x"] = host.Guest({"name": "x", "cpu_share": 1}, machine, -1, None)
    machine.run(50_000)
    with h.listener:
        stats = h.op_stats(None)["vms"]["x"]
    # Not measured yet is not "ran nothing": 50,000 instructions, just now.
    assert stats["instructions"] == 50_000 and stats["instructions_per_s"] > 0


# -- the host shut down, and the console log bounded ------------------------------------------

def test_sigterm_to_the_host_saves_every_vm_and_start_continues_each_exactly(home, tmp_path):
    counter = program(tmp_path, "c", COUNTER)
    home.run("create", "a", "--image", counter)
    home.run("create", "b", "--image", counter)
    home.run("start", "a")
    home.run("start", "b")
    home.wait_log("a", 30)
    home.run("pause", "a")
    home.run("pause", "b")                # nothing to run: the host waits in select
    pid = home.host_pid()
    os.kill(pid, signal.SIGTERM)          # the host machine shuts down, as VirtualBox's autostop
    deadline = time.monotonic() + 60
    while _alive(pid):
        assert time.monotonic() < deadline, "the host did not exit on SIGTERM"
        time.sleep(0.01)
    assert home.states() == {"a": "saved", "b": "saved"}
    assert "host shutdown" in home.run("show", "a").stdout
    for name in ("a", "b"):
        at = home.log(name).count(b"\n")
        home.run("start", name)
        home.wait_log(name, at + 30)
    home.stop()
    # Not a number lost or repeated across the shutdown.
    assert counters(home.log("a")) >= 60 and counters(home.log("b")) >= 30


def type_ahead(home, name, keys):
    """Pause toyos VM `name` at its prompt and type `keys` at its console:
    they wait in the host, unread by the guest.  Returns the console's socket."""
    from emu.vm import control, store
    home.wait_prompt(name)
    home.run("pause", name)
    _, sock = control.request(store.Home(home.path), "console", keep=True, name=name, attach=True)
    sock.sendall(keys)
    home.stats()                          # two round trips: the host has taken the keys
    home.stats()
    return sock


def test_console_input_typed_before_savestate_is_read_after_start_exactly_once(home):
    home.run("create", "t", "--image", "toyos")
    home.run("start", "t")
    with type_ahead(home, "t", b"hello\n"):
        home.run("savestate", "t")
    assert b"Hello" not in home.log("t")
    home.run("start", "t")
    home.wait_prompt("t", 2)
    assert home.log("t").count(b"Hello from user space") == 1


def test_the_console_log_is_bounded_and_keeps_the_latest_output(tmp_path, monkeypatch):
    from emu.asm import assemble
    from emu.vm import consolelog, host, manage, store
    monkeypatch.setattr(consolelog, "MAX_SIZE", 64 << 10)
    h = host.Host(store.Home(str(tmp_path)))
    # Prints its counter, for ever: a guest that prints a lot.
    manage.create(h.home, "loud", 1 << 20, program=assemble(COUNTER.replace("300", "1").format(
        lib=os.path.join(REPO, "emu", "guest", "lib.s")), "loud.s"))
    with h.listener:
        h.op_start(None, "loud")
        directory = h.home.vm_dir("loud")
        while h.guests["loud"].machine.cpu.steps < 5_000_000:
            h._step(0, requests=False)
        h.op_poweroff(None, "loud")
    logs = sorted(f for f in os.listdir(directory) if f.startswith("console.log"))
    assert logs == ["console.log", "console.log.1"]
    old, new = (open(os.path.join(directory, f), "rb").read() for f in ("console.log.1", "console.log"))
    assert len(old) >= consolelog.MAX_SIZE and len(old) + len(new) <= 2 * consolelog.MAX_SIZE + 64
    # The two files are the latest output, whole and in order: numbers counting up to the last one.
    lines = (old + new).split(b"\n")[1:-1]
    first = int(lines[0])
    assert lines == [str(first + i).encode() for i in range(len(lines))]
    assert sum(len(str(i)) + 1 for i in range(first)) > 4 * consolelog.MAX_SIZE    # it printed a lot


# -- the VM's virtualization: bare, or under the trap-and-emulate monitor ----------------------

def test_a_vm_under_the_monitor_runs_saves_snapshots_and_changes_its_mind(home, tmp_path):
    counter = program(tmp_path, "c", COUNTER)
    home.run("create", "t", "--image", "toyos", "--virtualization", "trap")
    home.run("create", "c", "--image", counter, "--virtualization", "trap")
    assert "virtualization: trap" in home.run("show", "t").stdout
    home.run("start", "t")
    home.run("start", "c")
    home.wait_prompt("t")
    stats = home.stats()["t"]
    # The monitor's exits by cause, and the guest's own traps.
    assert stats["virtualization"] == "trap"
    assert stats["exits"]["sysreg write"] > 0 and stats["exits"]["device"] > 0
    assert stats["traps"]["system call"] > 0
    # With hardware assistance: the same guest, and what still exits.
    home.run("create", "h", "--image", "toyos", "--virtualization", "hw")
    assert "virtualization: hw" in home.run("show", "h").stdout
    home.run("start", "h")
    home.wait_prompt("h")
    stats = home.stats()["h"]
    assert stats["virtualization"] == "hw" and stats["traps"]["system call"] > 0
    assert stats["exits"]["2nd-level fill"] > 0 and stats["exits"]["device"] > 0
    assert "sysreg write" not in stats["exits"] and "eret" not in stats["exits"]
    home.run("savestate", "h")
    home.run("start", "h")
    home.wait_log("c", 30)
    home.run("snapshot", "c", "take", "s1")
    home.run("savestate", "c")
    # A saved state is a bare machine's: it continues either way.
    home.run("modify", "c", "--virtualization", "none")
    assert "virtualization: none" in home.run("show", "c").stdout
    home.run("start", "c")
    home.wait_log("c", home.log("c").count(b"\n") + 30)
    assert home.stats()["c"]["virtualization"] == "none"
    home.run("poweroff", "c")
    home.run("modify", "c", "--virtualization", "trap")
    home.run("snapshot", "c", "restore", "s1")
    at = len(home.log("c"))
    home.run("start", "c")
    home.wait_log("c", home.log("c").count(b"\n") + 30)
    home.run("poweroff", "c")
    # Under the monitor again, from the snapshot: counting on, one by one.
    numbers = [int(n) for n in home.log("c")[at:].split(b"\n")[1:-1]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and len(numbers) > 20
    # Live migration under the monitor: refused with one line, the VM runs on.
    r = home.run("migrate", "t", "--to", str(tmp_path / "nobody.sock"), check=False)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "under the monitor" in r.stderr
    assert home.states()["t"] == "running"


def test_bad_virtualization_input_is_one_line_and_changes_nothing(home, tmp_path, capsys):
    counter = program(tmp_path, "c", COUNTER)
    home.run("create", "a", "--image", counter)
    home.run("create", "big", "--image", counter, "--memory", hex(0xF0000000))
    for args, message in [
        (("create", "b", "--image", counter, "--virtualization", "popf"), "invalid choice"),
        (("create", "b", "--image", counter, "--virtualization", "trap", "--memory", hex(0xF0000000)),
         "under the monitor"),
        (("modify", "big", "--virtualization", "trap"), "under the monitor"),
        (("modify", "a", "--virtualization", "trap", "--memory", hex(0xF0000000)), "under the monitor"),
    ]:
        home.refuses(capsys, args, message)
