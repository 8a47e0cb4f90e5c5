"""Benchmark for emu's live migration (emu/migrate.py): downtime, rounds and
total time of a pre-copy migration of toyos running a busy program, to a
destination in another process over a unix socket (loopback, as `emu vm
migrate` does between two emu hosts on one machine).

Not a test: it prints numbers (run it with `make bench`).  The target from
issue 16: downtime under 10 ms.  Beside it, the references: QEMU's default
downtime limit (migrate_set_parameter downtime-limit, 300 ms) and what Clark
et al. measured for Xen ("Live Migration of Virtual Machines", NSDI 2005:
60 ms for a SPECweb server, 165-210 ms for Quake 3 servers).

Also: what the dirty log costs the translated guest while a migration
reads it (after each round, the first store to each line of a page sent
takes the slow path again), as its speed with the log collected after
every slice against its speed with no migration going on.  With no
migration, the log costs nothing: every store sets it anyway (see
bench_emu.py for the translator's speed).
"""

import os
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from emu import migrate, mkfs                 # noqa: E402
from emu.devices.console import Console       # noqa: E402
from emu.machine import Machine               # noqa: E402
from emu.memory import MIGRATION              # noqa: E402

SLICE = 20_000                                # guest instructions between two chunks of pages
RUNS = 7
# What toyos runs while it moves: `loop` spins in user mode, pre-empted by
# the timer; `counter` sleeps and prints (timer interrupts, system calls,
# context switches: the kernel's stacks and process table keep changing).
PROGRAMS = {"loop (spins, pre-empted)": b"loop a &\nloop b &\n",
            "counter (sleeps and prints)": b"counter 1000000 &\nloop &\n"}


def toyos(image, typed):
    machine = Machine(console=Console(input_bytes=typed, hold_open=True, output=open(os.devnull, "wb")),
                      disk=image)
    machine.boot()
    machine.run(2_000_000)                    # booted, the programs started and running
    return machine


def destination(sock):
    """In a child process: receive the machine, run it a little (it must
    go on), and exit 0, or 1 if the migration failed."""
    try:
        machine = migrate.receive(sock, console=Console(hold_open=True, output=open(os.devnull, "wb")))
    except migrate.MigrationError as e:
        print(f"  destination: {e}", file=sys.stderr)
        os._exit(1)
    before = machine.cpu.steps
    machine.run(100_000)
    os._exit(0 if machine.cpu.steps > before and not machine.stopped else 1)


def migrate_once(image, typed):
    machine = toyos(image, typed)
    here, there = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        here.close()
        destination(there)
    there.close()
    try:
        report = migrate.send(machine, here, run=lambda: machine.run(SLICE))
    finally:
        here.close()
        _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit("the destination did not run the migrated machine")
    return report


def log_cost(image, typed, slices=30):
    """The guest's speed (MIPS) without a migration, and with one reading
    the dirty log after every slice, as pre-copy rounds do: the two take
    turns, slice by slice."""
    plain, logged = toyos(image, typed), toyos(image, typed)
    times = [0.0, 0.0]
    steps = [0, 0]
    for _ in range(slices):
        for k, machine in enumerate((plain, logged)):
            memory = machine.memory
            t, before = time.perf_counter(), machine.cpu.steps
            if machine is logged:
                memory.mark_copied(memory.dirty_pages(MIGRATION), MIGRATION)
            machine.run(SLICE)
            times[k] += time.perf_counter() - t
            steps[k] += machine.cpu.steps - before
    return [n / t / 1e6 for n, t in zip(steps, times)]


def main():
    load = os.getloadavg()
    print(f"live migration of toyos (1 MiB), {RUNS} runs each, to another process over a unix socket "
          f"(load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "toyos.img")
        mkfs.build_toyos(image)
        for name, typed in PROGRAMS.items():
            reports = [migrate_once(image, typed) for _ in range(RUNS)]
            downtimes = sorted(report.downtime * 1e3 for report in reports)
            print(f"\n  toyos running {name}")
            print(f"    downtime     median {statistics.median(downtimes):6.2f} ms, "
                  f"best {downtimes[0]:.2f}, worst {downtimes[-1]:.2f}   (target < 10 ms)")
            print(f"    total time   median {statistics.median(r.total * 1e3 for r in reports):6.1f} ms")
            print(f"    rounds       {', '.join('/'.join(map(str, r.rounds)) for r in reports)} "
                  "(pages per round, the last one with the guest stopped)")
            plain, logged = log_cost(image, typed)
            print(f"    guest speed  {plain:.2f} MIPS, {logged:.2f} with its dirty pages "
                  f"collected every {SLICE} instructions ({logged / plain:.2f}x)")
    print("\n  for reference: QEMU's default downtime limit 300 ms; Xen (Clark et al. 2005) "
          "60 ms (SPECweb), 165-210 ms (Quake 3)")


if __name__ == "__main__":
    main()
