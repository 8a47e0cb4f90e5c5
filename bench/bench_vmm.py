"""Benchmark for emu's trap-and-emulate monitor (emu/vmm/): what running
toyos deprivileged costs, and where the cost goes.

Not a test: it prints numbers (run it with `make bench`).  Two workloads, each
with the block translator and with the interpreter: toyos booting and running a short shell session until it powers
off (kernel-heavy: system calls, console output, context switches), and a
busy user program (`loop x &`: user-mode arithmetic, with timer interrupts
and a character now and then).  Each on bare emu, under trap-and-emulate
(trap), with binary translation on variant P's CPU (bt: the sensitive
status accesses rewritten into monitor calls) and with hardware assistance
(hw: guest mode, two-stage paging).
For each: guest MIPS (millions of guest instructions per host second -- the
guest runs the same instructions every way), and under a monitor the exits
per second by cause, as kvm_stat shows them -- printed, and drawn as an SVG plot: in bench/results/vmm-exits.svg,
or where --plot says (`--plot docs/vmm-exits.svg` renews the one the docs show;
`make bench` leaves the tree clean).  Best of 3 rounds taken in turns; the
host is shared and noisy, so the ratios count more than the numbers.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from emu import mkfs                          # noqa: E402
from emu.devices.console import Console       # noqa: E402
from emu.machine import Machine               # noqa: E402
from emu.vmm import AssistedMonitor, Monitor  # noqa: E402
from emu.vmm.exits import CAUSES              # noqa: E402

from _timing import write_results             # noqa: E402

SESSION = b"ls\ncat motd\nhello\ncounter 3\nps\n"
# How the guest runs, besides bare: the monitor, made by these.
MONITORS = {"trap": Monitor,
            "bt": lambda **kw: Monitor(variant_p=True, translate_sensitive=True, **kw),
            "hw": AssistedMonitor}
BUSY_STEPS = 3_000_000


def boot(image, typed, engine, virtualization, hold_open=False):
    console = Console(input_bytes=typed, hold_open=hold_open)
    if virtualization != "none":
        monitor = MONITORS[virtualization](console=console, engine=engine, disk=image)
        machine = monitor.machine
    else:
        monitor, machine = None, Machine(console=console, engine=engine, disk=image)
    machine.boot()
    return machine, monitor


def session(image, engine, virtualization):
    """Boot, run the session, power off: (seconds, machine, monitor)."""
    start = time.perf_counter()
    machine, monitor = boot(image, SESSION, engine, virtualization)
    machine.run()
    return time.perf_counter() - start, machine, monitor


def busy(image, engine, virtualization):
    """A spinning user program, timed after the boot: (seconds, machine, monitor)."""
    machine, monitor = boot(image, b"loop x &\n", engine, virtualization, hold_open=True)
    machine.run(300_000)
    steps, exits = machine.cpu.steps, dict(monitor.exits.counts) if monitor else {}
    start = time.perf_counter()
    machine.run(BUSY_STEPS)
    elapsed = time.perf_counter() - start
    machine.cpu.steps -= steps                 # count only the timed part
    if monitor:
        for cause, count in exits.items():
            monitor.exits.counts[cause] -= count
    return elapsed, machine, monitor


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot", default=PLOT, metavar="FILE",
                        help="where to draw exits by cause (default bench/results/vmm-exits.svg)")
    options = parser.parse_args()
    print(f"toyos bare, under trap-and-emulate, with binary translation and with hardware assistance; "
          f"best of 3 rounds taken in turns "
          f"(load {os.getloadavg()[0]:.2f})")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "toyos.img")
        mkfs.build_toyos(image)
        contenders = [(workload, fn, engine, virtualization)
                      for workload, fn in (("boot + session", session), ("busy user loop", busy))
                      for engine in ("translate", "interpret")
                      for virtualization in ("none", *MONITORS)]
        best = {}
        for _ in range(3):
            for workload, fn, engine, virtualization in contenders:
                key = (workload, engine, virtualization)
                run = fn(image, engine, virtualization)
                if key not in best or run[0] < best[key][0]:
                    best[key] = run
    print(f"\n  {'workload':<16}{'engine':<11}{'run on':<8}{'guest MIPS':>11}{'x bare':>8}"
          f"{'exits':>9}{'exits/s':>10}")
    for (workload, engine, virtualization), (seconds, machine, monitor) in best.items():
        mips = machine.cpu.steps / seconds / 1e6
        bare = best[workload, engine, "none"]
        ratio = (machine.cpu.steps / seconds) / (bare[1].cpu.steps / bare[0])
        exits = monitor.exits.total if monitor else 0
        where = "bare" if virtualization == "none" else virtualization
        print(f"  {workload:<16}{engine:<11}{where:<8}{mips:>11.2f}{ratio:>8.2f}"
              f"{exits:>9}{exits / seconds:>10.0f}")
        results[f"{workload}, {engine}, {where}"] = {
            "seconds": seconds, "guest_instructions": machine.cpu.steps, "mips": mips,
            "exits": dict(monitor.exits.counts) if monitor else {}}
    monitored = [(workload, virtualization) for workload in ("boot + session", "busy user loop")
                 for virtualization in MONITORS]
    for workload, virtualization in monitored:
        seconds, machine, monitor = best[workload, "translate", virtualization]
        print(f"\n  exits by cause, {workload}, {virtualization} (translator, "
              f"{machine.cpu.steps} guest instructions in {seconds * 1e3:.0f} ms):")
        print("  " + monitor.exits.table(seconds).replace("\n", "\n  "))
    print(f"\n  (causes: {', '.join(CAUSES)})")
    print(f"results: {write_results('vmm', results)}")
    rates = {f"{workload}, {virtualization}":
             {cause: count / best[workload, "translate", virtualization][0] for cause, count
              in best[workload, "translate", virtualization][2].exits.counts.items()}
             for workload, virtualization in monitored}
    os.makedirs(os.path.dirname(os.path.abspath(options.plot)), exist_ok=True)
    with open(options.plot, "w") as f:
        f.write(plot(rates))
    print(f"plot: {os.path.relpath(options.plot)}")


PLOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "vmm-exits.svg")


def plot(rates):
    """Exits per second by cause, one bar per workload and monitor, as an
    SVG image (what kvm_stat shows as numbers, drawn)."""
    colours = ("#4878a8", "#e08030", "#58a058", "#a05080", "#88a8c8", "#f0b070")
    top = max(max(by_cause.values()) for by_cause in rates.values()) or 1
    bar = 14
    row, left, width = bar * len(rates) + 8, 110, 420
    legend = 40 + row * len(CAUSES) + 10
    height = legend + 18 * len(rates) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           '<text x="10" y="20" font-size="14">exits per second by cause: trap-and-emulate, binary '
           'translation, hardware assistance (translator)</text>']
    for i, cause in enumerate(CAUSES):
        y = 40 + i * row
        out.append(f'<text x="{left - 6}" y="{y + 16}" text-anchor="end">{cause}</text>')
        for j, (series, by_cause) in enumerate(rates.items()):
            rate = by_cause[cause]
            w = width * rate / top
            out.append(f'<rect x="{left}" y="{y + j * bar}" width="{w:.1f}" height="{bar - 2}" '
                       f'fill="{colours[j]}"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + j * bar + 10}">{rate:,.0f}</text>')
    for j, series in enumerate(rates):
        y = legend + j * 18
        out.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="{colours[j]}"/>')
        out.append(f'<text x="{left + 16}" y="{y + 10}">{series}</text>')
    return "\n".join(out + ["</svg>"]) + "\n"


if __name__ == "__main__":
    main()
