"""toyos, the guest operating system: boot, the shell and its programs,
pre-emption, isolation, and a snapshot taken in the middle of a session."""

import os

import pytest

from emu import mkfs, snapshot
from emu.devices.console import Console
from emu.machine import Machine


def boot(image, typed=b"", engine="translate", hold_open=False):
    machine = Machine(console=Console(input_bytes=typed, hold_open=hold_open), engine=engine,
                      disk=str(image))
    machine.boot()
    return machine


def session(image, typed, engine="translate", steps=20_000_000):
    """Type `typed` at the shell; the input then ends, the shell exits and
    the machine powers off.  Returns the console output."""
    machine = boot(image, typed, engine)
    machine.run(steps)
    assert machine.stopped and machine.exit_status == 0, machine.stop_reason
    return bytes(machine.console.output).decode()


def test_boots_to_the_prompt_in_few_instructions(toyos):
    machine = boot(toyos, hold_open=True)
    machine.run(1_000_000)            # stops by itself: the shell waits for a key, nothing else to do
    assert bytes(machine.console.output) == b"toyos booting\n$ "
    assert machine.stop_reason == "halted with nothing left to wake it"
    assert machine.cpu.steps < 200_000  # (the time it takes is bench/bench_emu.py's business)
    assert machine.cpu.mmu.enabled


@pytest.mark.parametrize("command, expected", [
    ("ls", ["kernel ", "sh ", "hello ", "motd "]),
    ("cat motd", ["Welcome to toyos, running on emu.\n"]),
    ("ps", ["PID\tSTATE\tNAME\n", "1\tready\tsh\n", "\trunning\tps\n"]),
    ("echo hello,   world", ["$ hello,   world\n$ "]),
    ("hello", ["Hello from user space! I am process 2\n"]),
    ("counter 3", ["counter: 1\ncounter: 2\ncounter: 3\n$ "]),
    ("   hello   ", ["I am process 2\n"]),
    ("nothing", ["sh: no such program: nothing\n"]),
    ("cat nothing", ["cat: no such file: nothing\n"]),
])
def test_shell_commands(toyos, command, expected):
    out = session(toyos, command.encode() + b"\n")
    assert out.startswith("toyos booting\n$ ") and out.endswith("$ \n")
    for text in expected:
        assert text in out


def test_ls_lists_every_file_with_its_size(toyos):
    out = session(toyos, b"ls\n")
    listed = dict(line.split() for line in out.split("$ ")[1].splitlines())
    entries = {name: size for name, _start, size in mkfs.build_toyos(str(toyos) + ".2")}
    assert {name: int(size) for name, size in listed.items()} == entries


def test_exit_and_end_of_input_power_off(toyos):
    machine = boot(toyos, b"exit\nhello\n")
    machine.run(5_000_000)
    assert machine.stopped and machine.exit_status == 0
    assert bytes(machine.console.output) == b"toyos booting\n$ "


def test_background_job_runs_while_the_shell_answers(toyos):
    machine = boot(toyos, b"counter 3 &\necho one\necho two\n", hold_open=True)
    machine.run(20_000_000)
    out = bytes(machine.console.output).decode()
    assert "[2]\n" in out and "$ one\n" in out and "$ two\n" in out
    assert out.index("two") < out.index("counter: 3")      # the shell did not wait for it
    assert [line[line.index("counter"):] for line in out.splitlines() if "counter:" in line] == \
        ["counter: 1", "counter: 2", "counter: 3"]


def test_preemption_two_loops_both_progress_and_the_shell_still_answers(toyos):
    machine = boot(toyos, b"loop a &\nloop b &\n", hold_open=True)
    machine.run(3_000_000)
    out = bytes(machine.console.output).decode()
    spins = "".join(c for c in out.split("[3]\n$ ", 1)[1] if c in "ab")
    assert spins.count("a") >= 3 and spins.count("b") >= 3
    assert "ab" in spins and "ba" in spins            # taking turns, not one after the other
    machine.console.feed(b"echo still here\nps\n")
    machine.run(2_000_000)
    out = bytes(machine.console.output).decode()
    assert "still here\n" in out
    assert "\tloop\n" in out.split("PID\tSTATE\tNAME")[1]


def test_isolation_misbehaving_programs_are_killed_and_the_rest_carry_on(toyos):
    machine = boot(toyos, b"loop x &\nbad\nbad peek\nbad jump\nhello\nps\n", hold_open=True)
    machine.run(6_000_000)
    out = bytes(machine.console.output).decode()
    assert "bad (pid 3): killed: page fault on store at 0x00001000\n" in out
    assert "bad (pid 4): killed: page fault on load at 0x00040000\n" in out
    assert "bad (pid 5): killed: page fault on instruction fetch at 0x00001000\n" in out
    assert "nothing stopped me" not in out
    assert "Hello from user space! I am process 6\n" in out
    table = out.split("PID\tSTATE\tNAME\n")[1]
    assert "\tloop\n" in table and "bad" not in table            # the loop lives on, bad is gone
    assert not machine.stopped or machine.stop_reason.startswith("halted")


def test_both_engines_run_the_same_session_identically(toyos, state):
    typed = b"ls\ncat README\nbad\ncounter 2\nps\n"
    machines = []
    for engine in ("interpret", "translate"):
        machine = boot(toyos, typed, engine)
        machine.run(20_000_000)
        machines.append(machine)
    assert machines[0].stopped and machines[1].stopped
    assert state(machines[0]) == state(machines[1])


def test_snapshot_mid_session_restored_in_a_new_process_continues_identically(toyos, tmp_path, cli):
    typed = b"echo one\nls\ncat motd\nbad\nps\necho two\n"
    straight = session(toyos, typed)
    machine = boot(toyos, typed)
    while "kernel " not in bytes(machine.console.output).decode():   # `ls` has run ...
        machine.run(5_000)
    assert "Welcome" not in bytes(machine.console.output).decode()  # ... `cat motd` has not
    path = tmp_path / "session.snap"
    snapshot.save(machine, path)
    before = bytes(machine.console.output).decode()
    r = cli("restore", str(path))
    assert r.returncode == 0 and r.stderr == b""
    assert before + r.stdout.decode() == straight
    assert "Welcome to toyos" in r.stdout.decode() and r.stdout.decode().endswith("two\n$ \n")


def test_cli_boots_a_disk_image_and_is_interactive(toyos, cli):
    r = cli("run", str(toyos), input=b"hello\necho bye\n")
    assert r.returncode == 0 and r.stderr == b""
    assert r.stdout == (b"toyos booting\n$ Hello from user space! I am process 2\n"
                        b"$ bye\n$ \n")


def test_mkfs_cli_and_one_line_errors(tmp_path, cli):
    out = tmp_path / "t.img"
    r = cli("mkfs", str(out))
    assert r.returncode == 0 and b"kernel" in r.stdout and out.stat().st_size % 512 == 0
    big = tmp_path / "big.s"
    big.write_text(".org 0\n.space 600\n")
    r = cli("mkfs", str(tmp_path / "u.img"), "--boot", str(big))
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1
    assert "at most 510 fit" in r.stderr.decode()
    r = cli("mkfs", str(tmp_path / "u.img"), str(tmp_path / "missing.txt"))
    assert r.returncode == 1 and "missing.txt" in r.stderr.decode()
    assert not (tmp_path / "u.img").exists()


def test_a_disk_without_a_kernel_says_so(tmp_path, cli):
    image = tmp_path / "blank.img"
    image.write_bytes(bytes(510) + b"\x55\xaa")
    r = cli("run", str(image))
    assert r.returncode == 129 and "illegal instruction" in r.stderr.decode()
    boot_only = tmp_path / "noos.img"
    mkfs.build(str(boot_only), os.path.join(mkfs.OS_DIR, "boot.s"), os.path.join(mkfs.OS_DIR, "kernel.s"), [])
    data = bytearray(boot_only.read_bytes())
    data[512:516] = b"XXXX"                      # break the superblock's magic
    boot_only.write_bytes(bytes(data))
    r = cli("run", str(boot_only))
    assert r.returncode == 1 and r.stdout == b"boot: no kernel on this disk\n"


@pytest.mark.parametrize("typed, runs", [
    (b"x" * 300 + b"\nhello\n", 1),            # a line longer than the kernel's input buffer
    (b"hello\n" * 43, 43),                      # more lines than fit in it
    (b"x" * 5000 + b"\n" + b"hello\n" * 3, 3),  # more than the console device holds
])
def test_console_input_is_never_lost_or_replayed(toyos, typed, runs):
    out = session(toyos, typed, steps=100_000_000)
    assert out.count("Hello from user space") == runs
    long_line = [line for line in out.splitlines() if "no such program: x" in line]
    assert len(long_line) == (typed[0] == ord("x"))


def test_piped_input_reaches_toyos_whole(toyos, cli):
    r = cli("run", str(toyos), input=b"hello\n" * 43 + b"x" * 5000 + b"\nhello\n")
    assert r.returncode == 0 and r.stderr == b""
    assert r.stdout.count(b"Hello from user space") == 44


def test_too_little_memory_says_how_much_toyos_needs(toyos, cli):
    assert mkfs.layout()["RAM_TOP"] == 1 << 20       # what the message says
    for size in ("16K", "256K", "1020K"):
        r = cli("run", "--mem", size, str(toyos))
        assert r.returncode == 1 and r.stdout == b"boot: toyos needs 1 MiB of memory (--mem 1M)\n"
