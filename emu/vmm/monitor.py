"""The virtual machine monitor: an unmodified guest kernel, deprivileged.

Lecture idea: the hypervisor, "a software layer that emulates the underlying
hardware", in its classic form -- trap-and-emulate (Popek and Goldberg, 1974).
The guest's kernel runs directly on the real CPU, but in *user* mode.  Its
ordinary instructions run as fast as any program's; each one that touches
what only a supervisor may touch traps, and the monitor carries it out on the
guest's virtual state (``vcpu.py``) and resumes the guest after it.  The
guest cannot tell, except by the time it takes: the same toyos disk gives the
same console output, instruction for instruction, as on bare emu
(tests/emu/test_vmm.py).

How the pieces fit:

- The real CPU runs with no trap vector (tvec 0), so every trap it takes
  comes to its board -- and the monitor stands in as that board
  (``unhandled_trap``).  That is what an exit is here: the hardware hands
  control to the monitor instead of the guest's handler.
- Its physical memory is the guest's RAM (host-physical 0 up) and, above it,
  the monitor's shadow page tables; paging is always on, through the shadow
  of the guest's current mode (``shadow.py``).  What acts for the guest
  outside the MMU -- firmware, DMA, the monitor's own walks -- sees only the
  guest's RAM (``ram.py``).
- The devices are the board's own (``machine.py``): virtual devices, which
  the guest reaches only through exits, since real user mode cannot touch
  the device region.
- Interrupts: the real CPU's interrupt input carries nothing but this
  guest's virtual device lines, so its IE bit is kept equal to the guest's
  virtual IE (``enter_guest``).  The real CPU then takes a line at exactly
  the instruction boundary the guest would, and the monitor injects it:
  the guest's handler is entered as the hardware would enter it.  (A
  monitor with devices of its own would keep IE on and wait, with an
  "interrupt window", for the guest to enable its own.)
- Time: devices count the real CPU's cycles.  The monitor charges the guest
  what each emulated instruction costs on the hardware, and nothing for the
  faults it handles behind the guest's back (``shadow fill``), so guest time
  -- the timer, and with it pre-emption -- runs exactly as on bare emu.  The
  monitor's own cost is counted in exits and host seconds instead, as a
  hypervisor offsets the guest's time-stamp counter.
"""

from ..isa import (MMIO_BASE, PAGE_SIZE, PTBR_ENABLE, SREG_PTBR, SREG_STATUS, STATUS_IE, STATUS_U,
                   IRQ_BASE, TRAP_BAD_ADDRESS, TRAP_FETCH_FAULT, TRAP_LOAD_FAULT, TRAP_PRIVILEGED,
                   TRAP_STORE_FAULT, decode)
from ..machine import DEFAULT_MEMORY, Machine
from ..mmu import READ, WRITE, EXECUTE
from .exits import BY_MNEMONIC, Exits
from .ram import GuestRAM
from .shadow import RESERVED, ShadowPageTables
from .vcpu import VirtualCPU

_ACCESS = {TRAP_LOAD_FAULT: READ, TRAP_STORE_FAULT: WRITE, TRAP_FETCH_FAULT: EXECUTE}
MAX_MEMORY = MMIO_BASE - RESERVED


class Monitor:
    """A guest machine of `memory_size` bytes, run under the monitor.  The
    guest's machine is ``monitor.machine``: boot, load and run it as any
    other (``Machine``); the monitor sees to the rest."""

    def __init__(self, memory_size=DEFAULT_MEMORY, console=None, engine="translate", disk=None):
        if not PAGE_SIZE <= memory_size <= MAX_MEMORY or memory_size % PAGE_SIZE:
            raise ValueError(f"memory size must be a multiple of {PAGE_SIZE} between {PAGE_SIZE} "
                             f"and {MAX_MEMORY:#x} under the monitor")
        # The real machine: the guest's RAM plus room for the shadow tables.
        machine = Machine(memory_size + RESERVED, console=console, engine=engine, disk=disk)
        self.machine, self.cpu = machine, machine.cpu
        host = machine.memory
        # The firmware, the loader and DMA see the guest's RAM only.
        machine.memory = self.ram = GuestRAM(host, memory_size)
        self.shadow = ShadowPageTables(self.ram, host, memory_size, self.cpu.mmu)
        self.vcpu = VirtualCPU(self.cpu, self.shadow, machine)
        self.exits = Exits()
        self.cpu.board = self            # every trap of the real CPU comes here
        self.enter_guest()

    # -- what the real CPU asks of its board ------------------------------------------

    @property
    def stopped(self):
        return self.machine.stopped

    def service(self):
        self.machine.service()

    def idle(self):
        self.machine.idle()

    def unhandled_trap(self, cause, epc, badaddr):
        """The real CPU trapped, and it has no handler: the monitor is its
        handler.  An exit: find out why, do what the guest's hardware would
        have done, and go back into the guest."""
        cpu, vcpu, exits = self.cpu, self.vcpu, self.exits
        if cause >= IRQ_BASE:
            exits.count("interrupt")
            cpu.pc = vcpu.deliver(cause, badaddr, epc)
        elif cause in _ACCESS:
            if self.shadow.fill(badaddr, _ACCESS[cause], vcpu.user):
                exits.count("shadow fill")
                # Retried: the guest counts the instruction once, when it runs.
                cpu.pc, cpu.steps, cpu.cycles = epc, cpu.steps - 1, cpu.cycles - 1
            else:
                exits.count("guest fault")
                # With the guest's paging off, memory past its RAM is a bad address.
                guest_cause = cause if self.shadow.enabled else TRAP_BAD_ADDRESS
                cpu.pc = vcpu.deliver(guest_cause, badaddr, epc)
        elif not vcpu.user and (cause == TRAP_PRIVILEGED
                                or (cause == TRAP_BAD_ADDRESS and epc < MMIO_BASE <= badaddr)):
            self.emulate(cause, epc, badaddr)
        else:
            exits.count("guest fault" if cause == TRAP_BAD_ADDRESS else "guest trap")
            cpu.pc = vcpu.deliver(cause, badaddr, epc)
        self.enter_guest()

    # -- exits ------------------------------------------------------------------------

    def emulate(self, cause, epc, badaddr):
        """A privileged instruction or a device access in guest supervisor
        mode: carry it out on the virtual CPU (which may itself trap, into
        the guest: a device nobody answers is a bad address there too)."""
        cpu, vcpu = self.cpu, self.vcpu
        if cause == TRAP_PRIVILEGED:
            self.exits.count(BY_MNEMONIC[decode(badaddr).insn.mnemonic])
        else:
            self.exits.count("device")
        cpu.pc, cycles = vcpu.emulate(epc)
        cpu.cycles += cycles - 1         # the real CPU charged 1 for the trap
        if vcpu.halted:
            vcpu.halted, cpu.halted = False, True

    def enter_guest(self):
        """Set the real CPU to run the guest as its virtual state says: user
        mode, the guest's interrupt-enable bit, paging through the shadow of
        the guest's mode (a new real ptbr flushes the real TLB)."""
        cpu, vcpu = self.cpu, self.vcpu
        cpu.sregs[SREG_STATUS] = STATUS_U | (vcpu.sregs[SREG_STATUS] & STATUS_IE)
        ptbr = self.shadow.root(vcpu.user) | PTBR_ENABLE
        if cpu.sregs[SREG_PTBR] != ptbr:
            cpu.sregs[SREG_PTBR] = ptbr
            cpu.mmu.set_ptbr(ptbr)

    # -- statistics -------------------------------------------------------------------

    def report(self, seconds=None):
        """Exits by cause; device exits by device (the board counts each
        access); the shadows' work; the guest's own steps and traps."""
        devices = ", ".join(f"{name} {count}" for name, count in sorted(self.machine.exits.items()))
        return (self.exits.table(seconds) +
                f"\ndevice exits: {devices or 'none'}"
                f"\nshadow page tables: {self.shadow.fills} entries filled, "
                f"{self.shadow.flushes} flushes"
                f"\nguest: {self.cpu.steps} steps, {sum(self.vcpu.traps.values())} traps taken")
