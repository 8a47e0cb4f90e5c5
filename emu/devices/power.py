"""The power controller: how a guest turns its machine off.

Lecture idea: the hypervisor, not the guest, owns the real machine.  A guest
that wants to stop asks a (virtual) device, and the emulator turns that into
the exit status of `emu run`, the way a VM's power-off ends its process.

"""

from . import Device

EXIT = 0x00


class Power(Device):
    name = "power"
    summary = "How a guest turns its machine off; `emu run` exits with the status."
    registers = ((EXIT, "EXIT", "write: power off; the low 8 bits are the exit status"),)

    def write(self, offset, value):
        if offset == EXIT:
            self.board.power_off(value & 0xFF)
