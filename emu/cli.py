"""The `emu` command line: asm, disasm, run, restore, debug, mkfs, disk.

Lecture idea: "users interact with the virtualization layer as if it were the
underlying machine" -- `emu run` is that layer for one machine: the guest's
console is your terminal and the guest's power-off is the command's exit
status.  This module only turns argv into calls on the rest of the package.
"""

import argparse
import os
import sys
import time

from . import mkfs, qcow2, snapshot
from .asm import AsmError, Assembler
from .devices.console import Console
from .devices.disk import SECTOR_SIZE, Disk, DiskError
from .image import MAGIC as IMAGE_MAGIC, Image, ImageError
from .machine import BOOT_SIGNATURE, DEFAULT_MEMORY, Machine
from .snapshot import SnapshotError
from .vmm import MONITORS, VIRTUALIZATION


class UserError(Exception):
    """Reported as one line, `emu: <message>`, with exit status 125."""


def parse_size(text):
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in "kmg" else ""
    try:
        return int(t[:len(t) - len(unit)], 0) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1M or 65536)") from None


def parse_steps(text):
    try:
        steps = int(text, 0)
    except ValueError:
        steps = -1
    if steps < 0:
        raise argparse.ArgumentTypeError(f"not a number of steps: {text!r}")
    return steps


def is_disk_image(path):
    """A disk to boot: a qcow2 image (what is wrong with it, booting says), or
    a raw one of whole sectors whose first ends in the boot signature."""
    try:
        with open(path, "rb") as f:
            first = f.read(SECTOR_SIZE)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    return first.startswith(qcow2.MAGIC) or (size > 0 and size % SECTOR_SIZE == 0
                                             and first[-2:] == BOOT_SIGNATURE)


def make_machine(args, program, console, virtualization="none"):
    """A machine for `emu run` and `emu debug`: boot `program` if it is a
    disk image, otherwise load it (with --disk attached, if given).  Returns
    the machine and, with virtualization "trap" or "hw", the monitor it runs under
    (otherwise None)."""
    booting = args.disk is None and is_disk_image(program)
    image = None if booting else load_program(program)
    path = program if booting else args.disk
    if args.disk_readonly and path is None:
        raise UserError("--disk-readonly needs a disk (--disk, or a disk image to boot)")
    monitor = None
    try:
        disk = Disk(path, readonly=args.disk_readonly)
        if virtualization != "none":
            monitor = MONITORS[virtualization](args.mem, console=console, engine=args.engine, disk=disk)
            machine = monitor.machine
        else:
            machine = Machine(args.mem, console=console, engine=args.engine, disk=disk)
        if booting:
            machine.boot()
        else:
            machine.load(image)
    except DiskError as e:
        raise UserError(str(e)) from None
    except ValueError as e:
        raise UserError(f"{program}: {e}") from None
    return machine, monitor


def load_program(path):
    """An Image from a .s source file or an assembled image file."""
    head = file_head(path, len(snapshot.MAGIC))
    if head == snapshot.MAGIC:
        # As QEMU keeps booting and -loadvm apart: a saved machine has its
        # memory size and disk already, which `run`'s options would contradict.
        raise UserError(f"{path}: a snapshot, not a program: continue it with `emu restore {path}`")
    if is_disk_image(path):
        raise UserError(f"{path}: a disk image, not a program: boot it with `emu run {path}`")
    if head.startswith(IMAGE_MAGIC):
        try:
            return Image.read(path)
        except ImageError as e:
            raise UserError(f"{path}: {e}") from None
    return Assembler().assemble_file(path)


def file_head(path, length):
    """The first `length` bytes of a file, to tell what kind of file it is."""
    try:
        with open(path, "rb") as f:
            return f.read(length)
    except OSError as e:
        raise UserError(f"{path}: {e.strerror}") from None


def host_console():
    try:
        fd = sys.stdin.fileno()
        os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        fd = None
    return Console(input_fd=fd, output=sys.stdout.buffer, terminal=fd is not None and os.isatty(fd))


ESCAPE_HELP = """
Ctrl-A h       this help
Ctrl-A s       save a snapshot now, to emu-STEP.snap here (emu restore continues it)
Ctrl-A x       quit, exit status 0
Ctrl-A Ctrl-A  send one Ctrl-A to the guest
"""


class EscapeKeys:
    """What Ctrl-A and a key do at a terminal, as in QEMU.  The console
    reads the keys in the middle of an instruction, so `s` and `x` only
    pause the machine; `serve` does them between two instructions."""

    def __init__(self, machine):
        self.machine = machine
        self.asked = []

    def __call__(self, key):
        if key in "sx":
            self.asked.append(key)
            self.machine.pause()
        else:
            sys.stderr.write(ESCAPE_HELP)

    def serve(self):
        """Do the keys asked for; False if one of them was quit."""
        while self.asked:
            if self.asked.pop(0) == "x":
                return False
            path = f"emu-{self.machine.cpu.steps}.snap"
            try:
                snapshot.save(self.machine, path)
                sys.stderr.write(f"\nemu: snapshot saved to {path}\n")
            except (OSError, SnapshotError) as e:
                sys.stderr.write(f"\nemu: snapshot not saved: {e}\n")
        return True


def tracer(machine):
    from .isa import disassemble_word

    def trace(pc, word):
        name = machine.symbols and _symbol_at(machine, pc)
        text = disassemble_word(word, pc, lambda a: _symbol_at(machine, a))
        sys.stderr.write(f"{pc:08x}  {word:08x}  {text}{'  <' + name + '>' if name else ''}\n")
    return trace


def _symbol_at(machine, addr):
    for name, value in machine.symbols.items():
        if value == addr:
            return name
    return None


# -- commands ---------------------------------------------------------------------------

def cmd_asm(args):
    assembler = Assembler()
    image = assembler.assemble_file(args.source)
    output = args.output or os.path.splitext(args.source)[0] + ".img"
    files = [(output, image.to_bytes())]
    if args.listing and args.listing != "-":
        files.append((args.listing, assembler.listing().encode()))
    _write_all(files)
    if args.listing == "-":
        sys.stdout.write(assembler.listing())
    return 0


def _write_all(files):
    """Write every (path, data) or, if one cannot be written, none: each goes
    to a temporary file beside its path first, renamed into place at the end."""
    for path, _ in files:
        if os.path.isdir(path):  # rename(2) would refuse it, after the others were renamed
            raise UserError(f"{path}: Is a directory")
    written = []
    try:
        for path, data in files:
            tmp = f"{path}.tmp-{os.getpid()}"
            try:
                with open(tmp, "wb") as f:
                    written.append(tmp)
                    f.write(data)
            except OSError as e:
                raise UserError(f"{path}: {e.strerror}") from None
        for (path, _), tmp in zip(files, written):
            os.replace(tmp, path)
        written = []
    finally:
        for tmp in written:
            os.unlink(tmp)


def cmd_disasm(args):
    from .disasm import disassemble
    sys.stdout.write(disassemble(load_program(args.image)))
    return 0


def cmd_run(args):
    machine, monitor = make_machine(args, args.program, host_console(), args.virtualization)
    return _drive_monitored(machine, monitor, args, args.program)


def cmd_restore(args):
    console = host_console()
    if args.virtualization != "none":
        monitor = MONITORS[args.virtualization].restore(args.snapshot, console=console,
                                                        engine=args.engine, verify=not args.no_verify)
        return _drive_monitored(monitor.machine, monitor, args, args.snapshot)
    machine = snapshot.restore(args.snapshot, console=console, engine=args.engine,
                               verify=not args.no_verify)
    return _drive(machine, args, args.snapshot)


def _drive_monitored(machine, monitor, args, name):
    """`_drive`, and under a monitor its exits by cause at the end."""
    if monitor is None:
        return _drive(machine, args, name)
    started = time.monotonic()
    try:
        return _drive(machine, args, name)
    finally:
        # Exits by cause, as kvm_stat shows them, whatever ended the run.
        sys.stdout.flush()
        print(monitor.report(time.monotonic() - started), file=sys.stderr)


def _drive(machine, args, name):
    """Run as the options say: to each --snapshot-at point in turn, saving
    there, then on until the guest stops or --steps are done."""
    if args.trace:
        machine.cpu.trace = tracer(machine)
    keys = EscapeKeys(machine)
    if machine.console.terminal:
        machine.console.escape = keys

    def run_to(step):
        """Run to `step` (None: on and on); False if the user quit."""
        while not machine.run(None if step is None else step - machine.cpu.steps):
            if not keys.serve():
                return False
            if step is not None and machine.cpu.steps >= step:
                break
        return True

    with machine.console.raw_terminal():
        stop_at = None if args.steps is None else machine.cpu.steps + args.steps
        quit = False
        for at, path in sorted(args.snapshot_at or []):
            if at < machine.cpu.steps:
                raise UserError(f"--snapshot-at {at}: the machine is already at step {machine.cpu.steps}")
            if stop_at is not None and at > stop_at:
                raise UserError(f"--snapshot-at {at}: beyond --steps {args.steps}")
            quit = not run_to(at)
            if quit:
                break
            if machine.stopped:
                sys.stdout.flush()
                raise UserError(f"--snapshot-at {at}: the machine stopped at step {machine.cpu.steps} "
                                f"({machine.stop_reason}); no snapshot taken")
            incremental = args.diff and machine.last_snapshot is not None
            (snapshot.save_diff if incremental else snapshot.save)(machine, path)
        if not quit and not machine.stopped:
            quit = not run_to(stop_at)
    sys.stdout.flush()
    if quit:
        print(f"\nemu: {name}: quit (Ctrl-A x)", file=sys.stderr)
        return 0
    if not machine.stopped:
        return 0                                  # stopped by --steps: the run went as asked
    if machine.exit_status >= 128 or machine.stop_reason.startswith("halted"):
        print(f"emu: {name}: {machine.stop_reason}", file=sys.stderr)
    return machine.exit_status


def cmd_debug(args):
    from .debugger import Debugger
    is_snapshot = file_head(args.program, len(snapshot.MAGIC)) == snapshot.MAGIC
    # stdin is the debugger's: the guest's console gets output only.
    console = Console(output=sys.stdout.buffer)
    if is_snapshot:
        machine = snapshot.restore(args.program, console=console, engine="interpret")
    else:
        args.engine = "interpret"
        machine, _ = make_machine(args, args.program, console)
    Debugger(machine).cmdloop()
    return machine.exit_status or 0


def cmd_disk_create(args):
    qcow2.create(args.file, args.size, args.backing)
    return 0


def cmd_disk_info(args):
    image = qcow2.open_image(args.file, readonly=True)
    try:
        print("\n\n".join(_describe(layer) for layer in qcow2.chain(image)))
    finally:
        image.close()
    return 0


def _describe(image):
    lines = [f"image: {image.path}",
             f"format: {image.format}" + (f" (version {image.version})" if image.format == "qcow2" else ""),
             f"virtual size: {image.size} bytes ({_human(image.size)})",
             f"disk size: {os.fstat(image.fd).st_blocks * 512} bytes"]
    if image.format == "qcow2":
        clusters = -(-image.size // image.cluster_size)
        lines += [f"cluster size: {image.cluster_size}",
                  f"allocated clusters: {len(image.allocated())} of {clusters}"]
        if image.backing is not None:
            lines.append(f"backing file: {image.backing_name} ({image.backing.format})")
    return "\n".join(lines)


def _human(size):
    units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
    while size >= 1024 and len(units) > 1:
        size /= 1024
        units.pop(0)
    return f"{size:.4g} {units[0]}"


def cmd_disk_commit(args):
    count = qcow2.commit(args.overlay)
    print(f"{args.overlay}: {count} cluster{'s' * (count != 1)} written to its backing file; overlay emptied")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="emu", description="A toy-ISA virtual machine.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("asm", help="assemble a program into an image")
    p.add_argument("source")
    p.add_argument("-o", "--output", help="image file (default: SOURCE with .img)")
    p.add_argument("-l", "--listing", nargs="?", const="-", help="write a listing (to stdout, or FILE)")
    p.set_defaults(func=cmd_asm)

    p = sub.add_parser("disasm", help="disassemble an image (or a source file)")
    p.add_argument("image")
    p.set_defaults(func=cmd_disasm)

    def run_options(p):
        p.add_argument("--trace", action="store_true",
                       help="print every instruction to stderr (uses the interpreter)")
        p.add_argument("--steps", type=parse_steps, metavar="N",
                       help="stop after N steps (instructions, and waits while halted)")
        p.add_argument("--snapshot-at", nargs=2, action="append", metavar=("N", "FILE"),
                       help="save a snapshot when the machine reaches step N (repeatable)")
        p.add_argument("--diff", action="store_true",
                       help="make every snapshot after the first an incremental one")
        p.add_argument("--engine", choices=("translate", "interpret"), default="translate",
                       help="block translator (default) or the plain interpreter")

    def virtualization_option(p):
        p.add_argument("--virtualization", choices=VIRTUALIZATION, default="none",
                       help="trap: run the guest's kernel deprivileged under the trap-and-emulate "
                            "monitor (emu/vmm/); hw: in guest mode, with hardware assistance "
                            "(ISA extension H); either prints its exits by cause at the end")

    def machine_options(p):
        p.add_argument("--mem", type=parse_size, default=DEFAULT_MEMORY, metavar="SIZE",
                       help="memory size, e.g. 64M (default 1M)")
        p.add_argument("--disk", metavar="IMAGE", help="attach a disk image to a program")
        p.add_argument("--disk-readonly", action="store_true",
                       help="the guest's disk writes fail (ERROR) and the image never changes")

    p = sub.add_parser("run", help="run a program (.s or .img), or boot a disk image")
    p.add_argument("program", help="a program, or a bootable disk image (which is then the disk)")
    machine_options(p)
    run_options(p)
    virtualization_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("restore", help="continue a machine from a snapshot")
    p.add_argument("snapshot")
    virtualization_option(p)
    p.add_argument("--no-verify", action="store_true",
                   help="skip the memory checksum (header and metadata are always checked)")
    run_options(p)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("debug", help="run a program, a disk image or a .snap under the debugger")
    p.add_argument("program")
    machine_options(p)
    p.set_defaults(func=cmd_debug)

    p = sub.add_parser("mkfs", help="build a bootable toyos disk image (see emu/mkfs.py)",
                       description=mkfs.DESCRIPTION)
    mkfs.add_arguments(p)
    p.set_defaults(func=mkfs.run)

    p = sub.add_parser("disk", help="qcow2 copy-on-write disk images: create, info, commit")
    disk = p.add_subparsers(dest="disk_command", required=True)
    p = disk.add_parser("create", help="a new qcow2 image, empty or an overlay on a backing image")
    p.add_argument("file")
    p.add_argument("--size", type=parse_size, help="virtual size, e.g. 16M (default: the backing's)")
    p.add_argument("--backing", metavar="BASE", help="read-only backing image (raw or qcow2), "
                   "named relative to FILE")
    p.set_defaults(func=cmd_disk_create)
    p = disk.add_parser("info", help="format, sizes, clusters in use and the backing chain")
    p.add_argument("file")
    p.set_defaults(func=cmd_disk_info)
    p = disk.add_parser("commit", help="write an overlay's clusters into its backing image and empty it")
    p.add_argument("overlay")
    p.set_defaults(func=cmd_disk_commit)

    from .vm import cli as vm_cli
    from .vm.store import VMError
    p = sub.add_parser("vm", help="many VMs, kept in a home and run by one host process (see docs/emu.md)")
    vm_cli.add_arguments(p, parse_size)
    p.set_defaults(func=vm_cli.main)

    args = parser.parse_args(argv)
    if getattr(args, "snapshot_at", None):
        try:
            args.snapshot_at = [(int(n, 0), path) for n, path in args.snapshot_at]
        except ValueError:
            parser.error("--snapshot-at needs a step number and a file")
    try:
        return args.func(args)
    except AsmError as e:
        print(f"emu: {e}", file=sys.stderr)
    except (UserError, SnapshotError, qcow2.ImageError, VMError) as e:
        print(f"emu: {e}", file=sys.stderr)
    except BrokenPipeError:
        # The reader of our output has gone, as with `| head`: end like any
        # filter killed by SIGPIPE, and keep Python from flushing into it again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"emu: {where}{e.strerror}", file=sys.stderr)
    except KeyboardInterrupt:
        print("emu: interrupted", file=sys.stderr)
        return 130
    return 125


if __name__ == "__main__":
    sys.exit(main())
