"""The example programs in emu/guest/ run and print what they should."""

import os

import pytest

from emu.asm import assemble_file
from emu.devices.console import Console
from emu.machine import Machine


def run_guest(guest_dir, name, input_bytes=b"", engine="translate"):
    machine = Machine(console=Console(input_bytes=input_bytes), engine=engine)
    machine.load(assemble_file(os.path.join(guest_dir, name)))
    machine.run(5_000_000)
    assert machine.stopped, f"{name} did not finish"
    return machine, bytes(machine.console.output).decode()


def test_hello(guest_dir):
    machine, out = run_guest(guest_dir, "hello.s")
    assert out == "Hello, world!\n" and machine.exit_status == 0


def test_fibonacci(guest_dir):
    _, out = run_guest(guest_dir, "fibonacci.s")
    numbers = [int(n) for n in out.split()]
    assert numbers[:8] == [0, 1, 1, 2, 3, 5, 8, 13] and len(numbers) == 30
    assert all(c == a + b for a, b, c in zip(numbers, numbers[1:], numbers[2:]))


def test_sieve(guest_dir):
    _, out = run_guest(guest_dir, "sieve.s")
    small, count = out.splitlines()
    assert [int(n) for n in small.split()] == [p for p in range(2, 100) if all(p % d for d in range(2, p))]
    assert count == "primes below 10000: 1229"


def test_echo_copies_input_until_eof(guest_dir):
    machine, out = run_guest(guest_dir, "echo.s", input_bytes=b"one line\nand another\n")
    assert out == "one line\nand another\n" and machine.exit_status == 0


def test_timer_kernel_preempts_a_spinning_user_program(guest_dir):
    machine, out = run_guest(guest_dir, "timer.s")
    assert out == "user program running\n" + "".join(f"tick {i}\n" for i in range(1, 6))
    assert machine.exit_status == 0
    assert machine.cpu.cycles >= 5 * 5000


@pytest.mark.parametrize("name", ["hello.s", "timer.s"])
def test_cli_run_console_on_the_terminal(cli, guest_dir, name):
    r = cli("run", os.path.join(guest_dir, name))
    assert r.returncode == 0 and r.stderr == b""
    assert r.stdout.startswith(b"Hello" if name == "hello.s" else b"user program")


def test_cli_run_echo_reads_stdin(cli, guest_dir):
    r = cli("run", os.path.join(guest_dir, "echo.s"), input=b"piped\ninput")
    assert r.returncode == 0 and r.stdout == b"piped\ninput"


def test_cli_run_image_and_exit_status(cli, tmp_path):
    src = tmp_path / "exit.s"
    src.write_text(".equ POWER, 0xF0000200\n_start: li t0, POWER\n li t1, 42\n stw t1, [t0]\n")
    assert cli("asm", str(src), "-o", str(tmp_path / "exit.img")).returncode == 0
    assert cli("run", str(tmp_path / "exit.img")).returncode == 42
    assert cli("run", str(src), "--mem", "64K").returncode == 42
