"""The debugger: stop a machine, look inside, go on.

Lecture idea: a virtual machine is software, so everything about it can be
inspected and controlled from outside -- stop it, read its registers, watch its
memory, save it -- which real hardware only allows with a hardware debugger.

It drives the plain interpreter one instruction at a time, so breakpoints and
watchpoints are exact, and it only *observes*: a breakpoint, a watchpoint or
tracing never changes what the guest does.

Commands (type `help` for the list, `help CMD` for one):
  step [N]  continue  break WHERE  watch WHERE [LEN]  delete [N]  info
  regs  mem WHERE [LEN]  disas [WHERE] [N]  pt WHERE  trace on|off
  snapshot FILE  diffsnapshot FILE  quit
WHERE is an address expression: 0x40, a label, `loop + 8`, `pc`, a register.
With paging on, addresses are virtual, as the CPU sees them now: `mem` and
`disas` go through the page tables (without disturbing the TLB), and `pt`
shows the walk for one address.  A watchpoint is virtual too, and "now" is
the moment of each write: it fires when a write reaches the RAM its address
maps to at that moment, by whatever path (another mapping, DMA).
"""

import cmd

from . import isa, snapshot
from .asm import AsmError, Expr, Loc, Undefined


class Debugger(cmd.Cmd):
    prompt = "(emu) "

    def __init__(self, machine, stdin=None, stdout=None):
        super().__init__(stdin=stdin, stdout=stdout)
        if stdin is not None:
            self.use_rawinput = False
        self.machine = machine
        self.cpu = machine.cpu
        self.breakpoints = []                # addresses
        self.watchpoints = []                # (start, length)
        self.watch_hit = None
        machine.memory.watch = self._on_write
        self.intro = f"emu debugger; pc at {self._where(self.cpu.pc)}.  Type help for commands."

    # -- helpers -----------------------------------------------------------------------

    def say(self, text):
        self.stdout.write(text + "\n")

    def _where(self, addr):
        near = [(value, name) for name, value in self.machine.symbols.items() if value <= addr]
        if not near:
            return f"{addr:#010x}"
        value, name = max(near)
        return f"{addr:#010x} <{name}{'+' + str(addr - value) if addr != value else ''}>"

    def _address(self, text):
        def lookup(name, col):
            low = name.lower()
            if low == "pc":
                return self.cpu.pc
            if low in isa.REGISTERS:
                return self.cpu.regs[isa.REGISTERS[low]]
            if name in self.machine.symbols:
                return self.machine.symbols[name]
            raise Undefined(name, col)
        try:
            return Expr(text, Loc("<debugger>", 1, 1)).value(lookup, self.cpu.pc) & isa.WORD
        except AsmError as e:
            raise ValueError(e.message) from None
        except Undefined as u:
            raise ValueError(f"unknown symbol {u.name!r}") from None

    def _physical(self, addr):
        """Where `addr` lands in RAM as the CPU would see it now, or None."""
        mmu = self.cpu.mmu
        if mmu.enabled and addr < isa.MMIO_BASE:
            pte = mmu.probe(addr)
            if pte is None:
                return None
            addr = (pte & ~0xFFF & isa.WORD) | (addr & 0xFFF)
        return addr if addr < self.machine.memory.size else None

    def _pieces(self, addr, length):
        """The RAM under `length` bytes at `addr` as the CPU would see it now:
        (physical, virtual, bytes) for each page that is in RAM and mapped."""
        end = addr + length
        while addr < end:
            size = min(end, (addr | 0xFFF) + 1) - addr
            phys = self._physical(addr)
            if phys is not None:
                yield phys, addr, size
            addr += size

    def _nowhere(self):
        return "not in RAM or not mapped" if self.cpu.mmu.enabled else "not in RAM"

    def _on_write(self, addr, width):
        # `addr` is physical: find the watched virtual byte it lands on, if any.
        for start, length in self.watchpoints:
            for phys, virt, size in self._pieces(start, length):
                if addr < phys + size and phys < addr + width:
                    self.watch_hit = virt + max(0, addr - phys)
                    return

    def _number(self, command, text):
        try:
            return int(text, 0)
        except ValueError:
            raise ValueError(f"{command}: {text!r} is not a number") from None

    def _count(self, command, name, text):
        n = self._number(command, text)
        if n < 1:
            raise ValueError(f"{command}: {name} must be at least 1, not {n}")
        return n

    def _where_and_count(self, command, name, arg, default):
        """Split `WHERE [N]`: a last word that is a number is the count."""
        parts = arg.rsplit(None, 1)
        if len(parts) == 2 and _is_number(parts[1]):
            return parts[0], self._count(command, name, parts[1])
        return arg, default

    def _step(self):
        """One step; returns a reason to stop, or None."""
        if not self.machine.stopped:
            self.cpu.step()
        if self.machine.stopped:
            return f"machine stopped: {self.machine.stop_reason}"
        if self.watch_hit is not None:
            addr, self.watch_hit = self.watch_hit, None
            return f"watchpoint: write to {self._where(addr)}"
        if self.cpu.pc in self.breakpoints:
            return f"breakpoint at {self._where(self.cpu.pc)}"
        return None

    def _show_pc(self):
        pc = self.cpu.pc
        self.say(f"=> {self._disas_line(pc)}")

    def _disas_line(self, addr):
        phys = self._physical(addr)
        if addr & 3 or phys is None:
            return f"{self._where(addr)}: (no memory)"
        word = self.machine.memory.load_word(phys)
        name = self.machine.symbols and {v: n for n, v in self.machine.symbols.items()}.get
        return f"{self._where(addr)}: {word:08x}  {isa.disassemble_word(word, addr, name)}"

    def onecmd(self, line):
        try:
            return super().onecmd(line)
        except ValueError as e:
            self.say(f"error: {e}")
        except OSError as e:
            self.say(f"error: {e.filename}: {e.strerror}")
        except KeyboardInterrupt:
            self.say("interrupted")
        return False

    def emptyline(self):
        return False

    # -- commands ------------------------------------------------------------------------

    def do_step(self, arg):
        """step [N]: execute N instructions (default 1)."""
        for _ in range(self._count("step", "N", arg.strip()) if arg.strip() else 1):
            reason = self._step()
            if reason:
                self.say(reason)
                break
        self._show_pc()
    do_s = do_step

    def do_continue(self, arg):
        """continue: run until a breakpoint, a watchpoint or the machine stops."""
        while True:
            reason = self._step()
            if reason:
                self.say(reason)
                break
        self._show_pc()
    do_c = do_continue

    def do_break(self, arg):
        """break WHERE: stop before executing the instruction at WHERE."""
        addr = self._address(arg)
        self.breakpoints.append(addr)
        self.say(f"breakpoint {len(self.breakpoints)} at {self._where(addr)}")
    do_b = do_break

    def do_watch(self, arg):
        """watch WHERE [LEN]: stop after any write to LEN bytes (default 4, at most
        a page) at WHERE, a virtual address when paging is on."""
        where, length = self._where_and_count("watch", "LEN", arg, 4)
        if length > isa.PAGE_SIZE:
            raise ValueError(f"watch: LEN must be at most {isa.PAGE_SIZE}, not {length}")
        addr = self._address(where)
        self.watchpoints.append((addr, length))
        present = sum(size for _, _, size in self._pieces(addr, length))
        note = "" if present == length else f" ({self._nowhere()} now)"
        self.say(f"watchpoint {len(self.watchpoints)}: {length} bytes at {self._where(addr)}{note}")

    def do_delete(self, arg):
        """delete [N]: delete breakpoint N, or all breakpoints and watchpoints."""
        if not arg.strip():
            self.breakpoints.clear()
            self.watchpoints.clear()
            self.say("deleted all breakpoints and watchpoints")
            return
        n = self._number("delete", arg.strip())
        if not 1 <= n <= len(self.breakpoints):
            raise ValueError(f"no breakpoint {n}")
        self.breakpoints.pop(n - 1)

    def do_info(self, arg):
        """info: list breakpoints and watchpoints, and where the machine is."""
        for i, addr in enumerate(self.breakpoints, 1):
            self.say(f"breakpoint {i}: {self._where(addr)}")
        for i, (addr, length) in enumerate(self.watchpoints, 1):
            self.say(f"watchpoint {i}: {length} bytes at {self._where(addr)}")
        self.say(f"step {self.cpu.steps}, cycle {self.cpu.cycles}, "
                 f"{'stopped' if self.machine.stopped else 'halted' if self.cpu.halted else 'running'}")

    def do_regs(self, arg):
        """regs: the general and system registers."""
        regs = self.cpu.regs
        for row in range(0, 16, 4):
            self.say("  ".join(f"{isa.REGISTER_NAMES[i]:>4}={regs[i]:08x}" for i in range(row, row + 4)))
        status = self.cpu.sregs[isa.SREG_STATUS]
        mode = "user" if status & isa.STATUS_U else "supervisor"
        self.say(f"  pc={self.cpu.pc:08x}  mode={mode}  IE={status & isa.STATUS_IE}  "
                 + "  ".join(f"{name}={self.cpu.sregs[num]:08x}"
                             for num, name in isa.SREG_NAMES.items() if name != "status"))
    do_r = do_regs

    def do_mem(self, arg):
        """mem WHERE [LEN]: hex dump of LEN bytes (default 64) of RAM."""
        where, length = self._where_and_count("mem", "LEN", arg, 64)
        addr = self._address(where)
        for row in range(addr, addr + length, 16):
            places = [self._physical(a) for a in range(row, min(row + 16, addr + length))]
            if None in places:
                self.say(f"{row:08x}  ({self._nowhere()})")
                break
            data = bytes(self.machine.memory.ram[a] for a in places)
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in data)
            self.say(f"{row:08x}  {data.hex(' '):<47}  {text}")
    do_x = do_mem

    def do_disas(self, arg):
        """disas [WHERE] [N]: N instructions (default 5) around WHERE (default pc)."""
        where, count = self._where_and_count("disas", "N", arg, 5)
        center = self._address(where) if where.strip() else self.cpu.pc
        start = max(0, (center & ~3) - 4 * (count // 2))
        # The listing ends where the 32-bit address space does.
        for addr in range(start, min(start + 4 * count, isa.WORD + 1), 4):
            self.say(("=> " if addr == self.cpu.pc else "   ") + self._disas_line(addr))

    def do_pt(self, arg):
        """pt WHERE: how the page tables translate WHERE (paging must be on)."""
        addr = self._address(arg)
        mmu, memory = self.cpu.mmu, self.machine.memory
        if not mmu.enabled:
            self.say("paging is off: addresses are physical")
            return

        def entry(label, table, index):
            # Tables are whole pages, so a table is in RAM or entirely not.
            if table >= memory.size:
                self.say(f"{label} {table:#010x} is outside RAM")
                return 0
            value = memory.load_word(table + 4 * index)
            flags = " ".join(n for n, (bit, _) in isa.PTE_BITS.items() if value & bit) or "-"
            self.say(f"{label} {table:#010x}[{index}] = {value:#010x}  {flags}")
            return value

        pde = entry("directory", mmu.directory, addr >> 22)
        if pde & isa.PTE_P:
            entry("table    ", pde & ~0xFFF, (addr >> 12) & 0x3FF)
        cached = mmu.tlb.get(addr >> 12)
        phys = self._physical(addr)
        self.say(f"{addr:#010x} -> " + (f"{phys:#010x}" if phys is not None else "fault")
                 + (f"  (the TLB holds {cached:#010x})" if cached is not None else ""))

    def do_trace(self, arg):
        """trace on|off: print every instruction as it executes."""
        if arg.strip() == "on":
            self.cpu.trace = lambda pc, word: self.say("   " + self._disas_line(pc))
        elif arg.strip() == "off":
            self.cpu.trace = None
        else:
            raise ValueError("trace on or trace off")

    def do_snapshot(self, arg):
        """snapshot FILE: save the whole machine; `emu restore FILE` continues it."""
        if not arg.strip():
            raise ValueError("snapshot needs a file name")
        snapshot.save(self.machine, arg.strip())
        self.say(f"saved {arg.strip()} at step {self.cpu.steps}")

    def do_diffsnapshot(self, arg):
        """diffsnapshot FILE: save only what changed since the last snapshot."""
        if not arg.strip():
            raise ValueError("diffsnapshot needs a file name")
        snapshot.save_diff(self.machine, arg.strip())
        self.say(f"saved {arg.strip()} (incremental) at step {self.cpu.steps}")

    def do_quit(self, arg):
        """quit: leave the debugger."""
        return True
    do_q = do_quit
    do_EOF = do_quit


def _is_number(text):
    try:
        int(text, 0)
    except ValueError:
        return False
    return True
