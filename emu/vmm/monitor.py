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
- Binary translation, for a CPU that breaks Popek and Goldberg's condition
  (``variant.py``: status read and written from user mode without a trap,
  as x86's pushf and popf).  Deprivileged on it, the guest kernel reads the
  real mode instead of its own and its writes of status vanish; with
  ``translate_sensitive`` the real CPU runs the monitor's translation of the
  guest's code instead (``TranslatedCPU``), in which those instructions
  are calls to the monitor (``translated`` exits).
- Snapshots: the guest's state is a bare machine's -- its registers, pc and
  time, the *virtual* system registers and TLB, its RAM (``ram.py``), its
  devices -- so that is what the guest's board saves (``GuestMachine``).
  The real CPU's mode and ptbr and the shadows are the monitor's business
  and are rebuilt from it on restore, as the shadows are after a flush.  A
  snapshot taken under the monitor continues on bare emu, and one taken on
  bare emu continues under the monitor (``Monitor.restore``).
"""

from ..isa import (MMIO_BASE, PAGE_SIZE, PTBR_ENABLE, SREG_PTBR, SREG_STATUS, STATUS_IE, STATUS_U,
                   IRQ_BASE, TRAP_BAD_ADDRESS, TRAP_FETCH_FAULT, TRAP_LOAD_FAULT, TRAP_PRIVILEGED,
                   TRAP_STORE_FAULT, decode, unprivileged_in_variant_p)
from .. import snapshot
from ..cpu import CPU, Trap
from ..machine import DEFAULT_MEMORY, Machine
from ..variant import VariantPCPU
from ..memory import runs
from ..mmu import READ, WRITE, EXECUTE
from .exits import BY_MNEMONIC, Exits
from .ram import GuestRAM
from .shadow import RESERVED, ShadowPageTables
from .vcpu import VariantVirtualCPU, VirtualCPU

_ACCESS = {TRAP_LOAD_FAULT: READ, TRAP_STORE_FAULT: WRITE, TRAP_FETCH_FAULT: EXECUTE}
MAX_MEMORY = MMIO_BASE - RESERVED


def check_size(memory_size):
    """A guest's memory must leave room above it for the monitor's tables."""
    if not PAGE_SIZE <= memory_size <= MAX_MEMORY or memory_size % PAGE_SIZE:
        raise ValueError(f"memory size must be a multiple of {PAGE_SIZE} between {PAGE_SIZE} "
                         f"and {MAX_MEMORY:#x} under the monitor")


class TranslatedCPU(VariantPCPU):
    """Variant P's CPU running the monitor's binary translation of the
    guest's code.  The translation of a word is its decoded form, which the
    CPU (and the block translator, which stops at every system instruction
    and lets the CPU run it) executes in its place; the monitor's differs
    from the plain one in the sensitive status accesses alone, each turned
    into a call to the monitor -- here a trap to it, with the word, as a
    privileged instruction's.  VMware rewrote such instructions likewise,
    into calls, in the translated copy of the guest kernel's code."""

    def system_op(self, word, d):
        if not unprivileged_in_variant_p(d):
            return super().system_op(word, d)

        def call_monitor(pc):
            raise Trap(TRAP_PRIVILEGED, word)
        return call_monitor


class GuestMachine(Machine):
    """The guest's board: a ``Machine`` whose saved state is the guest's --
    a bare machine's, with the virtual CPU's system registers and TLB in
    place of the real CPU's (``Monitor.save_cpu``)."""

    def __init__(self, monitor, memory_size, cpu_class=None, **options):
        if cpu_class is not None:
            self.cpu_class = cpu_class
        super().__init__(memory_size, **options)
        self.monitor = monitor

    def save_state(self):
        return dict(super().save_state(), cpu=self.monitor.save_cpu())

    def restore_state(self, state):
        super().restore_state(state)
        self.monitor.restore_cpu(state["cpu"])


class Monitor:
    """A guest machine of `memory_size` bytes, run under the monitor.  The
    guest's machine is ``monitor.machine``: boot, load and run it as any
    other (``Machine``); the monitor sees to the rest."""

    virtualization = "trap"

    def __init__(self, memory_size=DEFAULT_MEMORY, console=None, engine="translate", disk=None,
                 variant_p=False, translate_sensitive=False):
        check_size(memory_size)
        # `variant_p`: the CPU is variant P's (variant.py), whose sensitive
        # status accesses do not trap; `translate_sensitive`: the monitor
        # runs the guest's code translated, those accesses made calls to it.
        self.translate_sensitive = translate_sensitive
        cpu_class = (TranslatedCPU if translate_sensitive else VariantPCPU) if variant_p else CPU
        # The real machine: the guest's RAM plus room for the shadow tables.
        machine = GuestMachine(self, memory_size + RESERVED, console=console, engine=engine, disk=disk,
                               cpu_class=cpu_class)
        self.machine, self.cpu = machine, machine.cpu
        host = machine.memory
        # The firmware, the loader and DMA see the guest's RAM only.
        machine.memory = self.ram = GuestRAM(host, memory_size)
        self.shadow = ShadowPageTables(self.ram, host, memory_size, self.cpu.mmu)
        self.vcpu = (VariantVirtualCPU if variant_p else VirtualCPU)(self.cpu, self.shadow, machine)
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
        elif cause == TRAP_PRIVILEGED and self.translated(badaddr):
            # In either guest mode: the variant's hardware does something there too.
            self.emulate("translated", epc)
        elif not vcpu.user and cause == TRAP_PRIVILEGED:
            self.emulate(BY_MNEMONIC[decode(badaddr).insn.mnemonic], epc)
        elif not vcpu.user and cause == TRAP_BAD_ADDRESS and epc < MMIO_BASE <= badaddr:
            self.emulate("device", epc)
        else:
            exits.count("guest fault" if cause == TRAP_BAD_ADDRESS else "guest trap")
            cpu.pc = vcpu.deliver(cause, badaddr, epc)
        self.enter_guest()

    # -- exits ------------------------------------------------------------------------

    def translated(self, word):
        """Whether `word` is an instruction the monitor's binary translation
        turned into a call to itself."""
        return self.translate_sensitive and unprivileged_in_variant_p(decode(word))

    def emulate(self, exit, epc):
        """A privileged instruction or a device access in guest supervisor
        mode, or a translated sensitive instruction: an exit of cause
        `exit`.  Carry it out on the virtual CPU (which may itself trap, into
        the guest: a device nobody answers is a bad address there too)."""
        cpu, vcpu = self.cpu, self.vcpu
        self.exits.count(exit)
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

    # -- snapshots --------------------------------------------------------------------

    def save_cpu(self):
        """The guest's CPU as a bare machine's would save it."""
        return dict(self.cpu.save(), sregs=list(self.vcpu.sregs), tlb=self.vcpu.mmu.save())

    def restore_cpu(self, state):
        """After ``Machine.restore_state`` has given the real CPU a bare
        machine's state (`state`): the system registers and TLB become the
        virtual CPU's, the shadows start empty, and the real CPU goes back
        into the guest."""
        cpu, vcpu = self.cpu, self.vcpu
        vcpu.sregs[:] = state["sregs"]     # in place: decoded instructions hold the list
        vcpu.mmu.restore(vcpu.sregs[SREG_PTBR], state["tlb"])
        cpu.sregs[:] = [0] * len(cpu.sregs)
        cpu.mmu.set_ptbr(0)
        self.enter_guest()

    @classmethod
    def restore(cls, path, console=None, engine="translate", verify=True, disk=None):
        """A monitor running the guest saved in snapshot `path` (taken on bare
        emu or under a monitor: the file is the same kind)."""
        return restore_into(cls, path, console, engine, verify, disk)

    @property
    def traps(self):
        """The traps the guest took, by cause (statistics)."""
        return self.vcpu.traps

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


def restore_into(monitor_class, path, console=None, engine="translate", verify=True, disk=None):
    """A `monitor_class` running the guest saved in snapshot `path`.  The
    snapshot is restored as a bare machine (every check of
    ``snapshot.restore``), and its RAM and state moved under a new monitor."""
    bare = snapshot.restore(path, console=console, engine="interpret", verify=verify, disk=disk)
    memory = bare.memory
    memory.check_some(None)            # every page is read here: check each now
    try:
        monitor = monitor_class(memory.size, console=bare.console, engine=engine, disk=bare.disk)
    except ValueError as e:
        raise snapshot.SnapshotError(f"{path}: {e}") from None
    for start, end in runs(memory.used_pages()):
        monitor.ram.write_bytes(start * PAGE_SIZE, memory.ram[start * PAGE_SIZE:end * PAGE_SIZE])
    monitor.machine.restore_state(bare.save_state())
    monitor.ram.mark_snapshot(memory.used_flags())
    monitor.machine.last_snapshot = bare.last_snapshot
    return monitor
