"""`emu vm listen` / `emu vm migrate`: a VM moved between two homes, live
or saved, continues exactly; a migration that fails at any point leaves it
running at the source, never two copies; bad input is one line.  Every
test stops both hosts."""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.emu.conftest import REPO
from tests.emu.test_migrate import SCRIBBLER
from tests.emu.test_vm import COUNTER, Home, counters, program, say_hello, settled, type_ahead, type_at

REPORT = re.compile(r"vm \w+: migrated in \d+ rounds \(pages \d+(/\d+)*\), \d+ KiB, "
                    r"total [\d.]+ ms, downtime [\d.]+ ms\n")


@pytest.fixture
def homes(tmp_path):
    source, destination = Home(tmp_path / "source"), Home(tmp_path / "destination")
    yield source, destination
    for home in (source, destination):
        if home.host_pid():
            home.run("listen", "--stop", check=False)
        home.stop()


def one_line_error(r, message):
    assert r.returncode != 0 and r.stdout == ""
    assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_running_vm_moves_and_its_output_goes_on_without_gap_or_repeat(homes, tmp_path):
    source, destination = homes
    address = str(tmp_path / "in.sock")
    assert destination.run("listen", address).stdout == f"listening at {address}\n"
    source.run("create", "c", "--image", program(tmp_path, "c", COUNTER))
    source.run("start", "c")
    source.wait_log("c", 100)
    assert REPORT.fullmatch(source.run("migrate", "c", "--to", address).stdout)
    assert source.states() == {"c": "poweroff"}
    assert destination.states() == {"c": "running"}
    assert "migrated to" in source.run("show", "c").stdout
    before = source.log("c")
    destination.wait_log("c", 100)
    destination.run("poweroff", "c")
    assert source.log("c") == before                       # nothing ran at the source since
    assert counters(before + destination.log("c")) >= 200
    assert not os.path.exists(address)                     # one VM taken: the listener is gone


def test_a_toyos_session_continues_on_the_destinations_console(homes, tmp_path, terminal):
    source, destination = homes
    address = str(tmp_path / "in.sock")
    destination.run("listen", address)
    source.run("create", "t", "--image", "toyos")
    source.run("start", "t")
    source.wait_prompt("t")
    source.run("migrate", "t", "--to", address)
    # Same disk (shared storage), same session: the shell answers there.
    say_hello(terminal, destination, "t")
    assert b"booting" not in destination.log("t")


def test_shared_pages_leave_with_a_vm_that_migrates_and_are_shared_where_it_arrives(homes, tmp_path):
    source, destination = homes
    address = str(tmp_path / "in.sock")
    destination.run("listen", address)
    for home, names in ((source, ("a", "b")), (destination, ("c",))):
        for name in names:
            home.run("create", name, "--image", "toyos")
            home.run("start", name)
            home.wait_prompt(name)
    before = settled(source)["host"]["sharing"]
    source.run("migrate", "a", "--to", address)
    after = settled(source)
    # b keeps its pages, each a stable page of its own now: nothing saved but its zeros.
    assert after["host"]["sharing"]["pages_sharing"] == after["vms"]["b"]["shared_pages"] == 25
    assert after["host"]["sharing"]["saved"] < before["saved"] / 2
    there = settled(destination)
    assert there["vms"]["a"]["shared_pages"] == there["vms"]["c"]["shared_pages"] == 25
    assert there["host"]["sharing"]["saved"] == before["saved"]
    assert b"I am process 2" in type_at(destination, "a", b"hello\n")


def test_a_saved_vm_moves_cold_to_a_bigger_machine_and_starts_there(homes, tmp_path):
    source, destination = homes
    source.run("create", "c", "--image", program(tmp_path, "c", COUNTER))
    source.run("start", "c")
    source.wait_log("c", 50)
    source.run("savestate", "c")
    port = destination.run("listen", "127.0.0.1:0", "--memory", "2M").stdout.strip().rsplit(":", 1)[1]
    assert REPORT.fullmatch(source.run("migrate", "c", "--to", f"127.0.0.1:{port}").stdout)
    assert source.states() == {"c": "poweroff"}
    assert not os.path.exists(os.path.join(source.path, "vms", "c", "saved.snap"))
    assert destination.run("list").stdout.split()[:3] == ["c", "saved", "2048K"]
    before = source.log("c")
    destination.run("start", "c")
    destination.wait_log("c", 50)
    destination.run("poweroff", "c")
    assert counters(before + destination.log("c")) >= 100


def test_less_memory_is_refused_and_the_vm_runs_on(homes, tmp_path):
    source, destination = homes
    address = str(tmp_path / "in.sock")
    destination.run("listen", address, "--memory", "512K")
    source.run("create", "c", "--image", program(tmp_path, "c", COUNTER))
    source.run("start", "c")
    r = source.run("migrate", "c", "--to", address, check=False)
    one_line_error(r, "the machine has 1 MiB of memory, this host offers 512 KiB")
    assert source.states() == {"c": "running"}
    assert destination.states() == {}
    assert os.path.exists(address)                         # still waiting for one


def test_a_guest_too_busy_is_given_up_on_and_runs_on_at_the_source(homes, tmp_path):
    source, destination = homes
    address = str(tmp_path / "in.sock")
    destination.run("listen", address)
    source.run("create", "w", "--image", program(tmp_path, "w", SCRIBBLER))
    source.run("start", "w")
    r = source.run("migrate", "w", "--to", address, "--downtime", "0", "--max-rounds", "3", check=False)
    one_line_error(r, "did not converge in 3 rounds")
    assert source.states() == {"w": "running"}
    assert destination.states() == {}
    # Neither side is worse for it: with the default downtime it goes.
    assert REPORT.fullmatch(source.run("migrate", "w", "--to", address).stdout)
    assert (source.states(), destination.states()) == ({"w": "poweroff"}, {"w": "running"})


def test_the_destination_killed_midway_leaves_the_vm_running_at_the_source(homes, tmp_path):
    source, destination = homes
    address = str(tmp_path / "in.sock")
    destination.run("listen", address)
    source.run("create", "w", "--image", program(tmp_path, "w", SCRIBBLER))
    source.run("create", "o", "--image", program(tmp_path, "c", COUNTER))
    source.run("start", "w")
    source.run("start", "o")
    # Downtime 0: round after round, until the destination is killed among them.
    migrating = subprocess.Popen(
        [sys.executable, "-m", "emu", "vm", "--home", source.path, "migrate", "w", "--to", address,
         "--downtime", "0", "--max-rounds", "1000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 60
    while not glob.glob(os.path.join(destination.path, "vms", ".new-w-*")):   # receiving
        assert time.monotonic() < deadline and migrating.poll() is None
        time.sleep(0.01)
    # The source's scheduler runs its other VMs during the rounds.
    source.wait_log("o", source.log("o").count(b"\n") + 20)
    assert migrating.poll() is None
    os.kill(destination.host_pid(), signal.SIGKILL)
    out, err = migrating.communicate(timeout=60)
    assert migrating.returncode != 0 and out == ""
    assert "vm w: not migrated" in err and err.count("\n") == 1, err
    assert source.states() == {"w": "running", "o": "running"}
    assert destination.states() == {}                      # exactly one running copy
    steps = source.stats()["w"]["instructions"]
    deadline = time.monotonic() + 60
    while source.stats()["w"]["instructions"] == steps:    # and it really runs
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_the_source_killed_midway_leaves_no_vm_at_the_destination(homes, tmp_path):
    source, destination = homes
    address = str(tmp_path / "in.sock")
    destination.run("listen", address)
    source.run("create", "w", "--image", program(tmp_path, "w", SCRIBBLER))
    source.run("start", "w")
    migrating = subprocess.Popen(
        [sys.executable, "-m", "emu", "vm", "--home", source.path, "migrate", "w", "--to", address,
         "--downtime", "0", "--max-rounds", "1000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    receiving = os.path.join(destination.path, "vms", ".new-w-*")
    deadline = time.monotonic() + 60
    while not glob.glob(receiving):
        assert time.monotonic() < deadline and migrating.poll() is None
        time.sleep(0.01)
    os.kill(source.host_pid(), signal.SIGKILL)
    _, err = migrating.communicate(timeout=60)
    assert migrating.returncode != 0 and err.count("\n") == 1, err
    # The destination dropped what it had of it: no copy runs (the source's
    # is aborted, as any VM whose host died), and it waits for another.
    deadline = time.monotonic() + 60
    while glob.glob(receiving):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert source.states() == {"w": "aborted"}
    assert destination.states() == {}
    assert os.path.exists(address)


def test_bad_input_is_one_line_and_changes_nothing(homes, tmp_path, capsys):
    source, destination = homes
    address = str(tmp_path / "in.sock")
    destination.run("listen", address)
    counter = program(tmp_path, "c", COUNTER)
    source.run("create", "off", "--image", counter)
    source.run("create", "r", "--image", counter)
    source.run("start", "r")
    cases = [
        (destination, ("listen", "10.0.0.1:80"), "only loopback"),
        (destination, ("listen", "example.com:80"), "only loopback"),
        (destination, ("listen", "nowhere"), "a unix socket path (with a /) or 127.0.0.1:PORT"),
        (destination, ("listen", "127.0.0.1:99999"), "127.0.0.1:PORT"),
        (destination, ("listen",), "give an ADDRESS"),
        (destination, ("listen", address), "cannot listen"),
        (destination, ("listen", tmp_path / ("x" * 120)), "longer than 107 bytes"),
        (destination, ("listen", tmp_path / "in2.sock", "--memory", "3000"), "--memory 3000"),
        (source, ("migrate", "nope", "--to", address), "no such VM"),
        (source, ("migrate", "off", "--to", address), "vm off: is poweroff"),
        (source, ("migrate", "r", "--to", "192.168.1.1:4000"), "only loopback"),
        (source, ("migrate", "r", "--to", tmp_path / "nobody.sock"), "cannot connect"),
        (source, ("migrate", "r", "--to", address, "--max-rounds", "0"), "--max-rounds"),
        (source, ("migrate", "r"), "--to"),
    ]
    for home, args, message in cases:
        home.refuses(capsys, args, message)
    assert source.states() == {"off": "poweroff", "r": "running"}
    assert destination.states() == {}


def test_console_input_typed_ahead_arrives_at_the_destination_exactly_once(homes, tmp_path):
    source, destination = homes
    address = str(tmp_path / "in.sock")
    destination.run("listen", address)
    source.run("create", "t", "--image", "toyos")
    source.run("start", "t")
    with type_ahead(source, "t", b"hello\n"):
        assert REPORT.fullmatch(source.run("migrate", "t", "--to", address).stdout)
    assert destination.states() == {"t": "paused"}
    destination.run("resume", "t")
    destination.wait_prompt("t")
    assert destination.log("t").count(b"Hello from user space") == 1
    assert b"Hello" not in source.log("t")
