"""Benchmark: what page sharing (KSM, emu/vm/sharing.py) costs the guests.

Not a test: it prints numbers (run it with `make bench`).  Ten busy
machines take turns as in the host process (emu/vm/host.py: 10,000 guest
instructions each per round), with the scanner between the rounds and
without it, in alternation, best of 5, in CPU time.  Each guest fills 1 MiB with the
same bytes (shareable) and then runs on, reading all of it and writing a
counter of its own (which the scanner must leave alone).  The target
(issue 16): the scanner takes under 5% of the guests' instructions per
second; it is given at most sharing.SCAN_SHARE of the time.  Also printed:
the RAM of the ten as the host's kernel counts it (smaps), shared and not.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from emu import hostmem                        # noqa: E402
from emu.asm import assemble                   # noqa: E402
from emu.devices.console import Console        # noqa: E402
from emu.machine import Machine                # noqa: E402
from emu.vm.host import QUANTUM                # noqa: E402
from emu.vm.sharing import SCAN_SHARE, Sharing  # noqa: E402

MACHINES = 10
SECONDS = 2.0               # of CPU time, per run

BUSY = """
_start:
    li   t0, 0x10000
    li   t1, 0x110000
    li   t2, 0x5a5a5a5a
fill:
    stw  t2, [t0]
    addi t0, t0, 4
    bne  t0, t1, fill
    la   t4, counter
again:
    li   t0, 0x10000
    call sum
    stw  s0, [t4]
    b    again
sum:
    ldw  t3, [t0]
    add  s0, s0, t3
    addi t0, t0, 64
    bltu t0, t1, sum
    ret
.align 4096
counter:
    .word 0
"""


def machines():
    image = assemble(BUSY, "busy.s")
    made = []
    for _ in range(MACHINES):
        machine = Machine(4 << 20, console=Console(), engine="translate")
        machine.load(image)
        machine.run(400_000)             # filled: now the loop
        made.append(machine)
    return made


def rounds(made, sharing, seconds):
    """Run the machines round after round for `seconds` of this process's
    CPU time (a busy host's other jobs do not count); guest MIPS, and the
    share of the time the scanner took."""
    clock = time.process_time
    steps = sum(m.cpu.steps for m in made)
    scanning = 0.0
    start = last = clock()
    while clock() - start < seconds:
        for machine in made:
            machine.run(QUANTUM)
        if sharing is not None:
            now = clock()
            sharing.scan([m.memory for m in made], now - last, True)
            scanning += clock() - now
        last = clock()
    elapsed = clock() - start
    return (sum(m.cpu.steps for m in made) - steps) / elapsed / 1e6, scanning / elapsed


def ram(made):
    use = hostmem.usage({i: (hostmem.address(m.memory.ram), hostmem.address(m.memory.ram) + m.memory.size)
                         for i, m in enumerate(made)})
    return sum(u["anonymous"] for u in use.values())


def main():
    load = os.getloadavg()
    print(f"page sharing: {MACHINES} busy machines in turns, {QUANTUM} instructions each per round, "
          f"best of 5 runs of {SECONDS:.0f} s of CPU (load average {load[0]:.1f} on {os.cpu_count()} CPUs)")
    made = machines()
    sharing = Sharing()
    before = ram(made)
    best = {"without the scanner": (0, 0), "with the scanner": (0, 0)}
    for _ in range(5):
        for name in best:
            got = rounds(made, sharing if name == "with the scanner" else None, SECONDS)
            best[name] = max(best[name], got)
    plain = best["without the scanner"][0]
    for name, (mips, scanning) in best.items():
        print(f"  {name:<22} {mips:6.2f} MIPS  {(plain - mips) / plain:6.1%} slower, "
              f"scanner {scanning:5.1%} of the time (allowed {SCAN_SHARE:.0%})")
    stats = sharing.stats()
    after = ram(made) + stats["stable_memory"]
    print(f"  RAM of the ten in the host (smaps): {before >> 10} KiB unshared, {after >> 10} KiB shared; "
          f"{stats['pages_sharing']} pages map {stats['pages_shared']} stable ones")
    sharing.scan([], 0, False)


if __name__ == "__main__":
    main()
