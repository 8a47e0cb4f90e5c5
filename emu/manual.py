"""docs/isa.md: the reference manual, generated from the code.

``python -m emu.manual > docs/isa.md``.  The instruction set comes from
``isa.py``; the Devices section from the board's memory map (``machine.py``)
and from the ``summary`` and ``registers`` each device class carries.  It
lives apart from ``isa.py`` because the ISA is the root every other module
reads, and must not itself import the devices.
"""

from . import isa
from .devices import WINDOW
from .machine import Machine


def devices_markdown():
    board = Machine(isa.PAGE_SIZE)
    out = ["## Devices", "",
           f"Each device has a {WINDOW}-byte window of 32-bit registers in the device region, "
           "reachable from supervisor mode only (from user mode: bad-address trap). A register "
           "that does not exist reads 0 and ignores writes; an address in the region that no "
           "device answers is a bad-address trap. A byte load reads the whole register (side "
           "effects included) and returns the addressed byte; a byte store writes the byte, "
           "zero-extended, into the register it starts, and a byte store into the middle of a "
           "register is ignored.", "",
           "Time is the guest's cycle count, never the host clock, so every run is exactly "
           "repeatable. A CPU halted with interrupts enabled skips ahead to the next device "
           "event; if only console input could wake it, emu blocks on stdin; if nothing can "
           "(IE clear, or no device that could raise a line the controller lets through), the "
           "machine stops as if powered off with status 0. Each such wait counts as one step, "
           "so a step limit bounds halted time too.", "",
           "| base | device | interrupt line |", "| --- | --- | --- |"]
    for slot, device in sorted(board.slots.items()):
        line = "" if device.irq is None else str(device.irq)
        out.append(f"| 0x{isa.MMIO_BASE + slot * WINDOW:08x} | {device.name} | {line} |")
    for slot, device in sorted(board.slots.items()):
        out += ["", f"### {device.name} (0x{isa.MMIO_BASE + slot * WINDOW:08x})", "",
                device.summary, "", "| offset | register | meaning |", "| --- | --- | --- |"]
        for offset, name, meaning in device.registers:
            out.append(f"| 0x{offset:02x} | {name} | {meaning} |")
    out += ["", "### Booting from a disk", "",
            "`emu run DISK.img` (a file whose first sector ends in the bytes 55 aa) attaches the "
            "image as the disk and runs the firmware instead of a loader: it copies sector 0 to "
            "address 0 and starts there in supervisor mode, paging off, `sp` at the top of RAM. "
            "The rest -- finding and loading a kernel -- is up to that sector's code."]
    return "\n".join(out) + "\n"


def manual():
    return isa.markdown() + "\n" + devices_markdown()


if __name__ == "__main__":
    print(manual(), end="")
