"""`emu vm ...`: many machines, managed as VBoxManage manages them.

Lecture idea: VirtualBox's "defining, launching, stopping, checkpointing"
of virtual machines, as commands.  This module only turns argv into calls:
definitions are ``manage.py``'s, running machines the host's (``host.py``,
reached through ``control.py``).
"""

import argparse
import os
import select
import socket
import sys
import time

from ..vmm import VIRTUALIZATION
from . import control, manage, migration
from .store import LIVE, Home, VMError, default_home

DETACH_HELP = "emu: attached to {name}'s console; Ctrl-A d detaches (the VM goes on), Ctrl-A Ctrl-A sends Ctrl-A\r\n"


class OneLineParser(argparse.ArgumentParser):
    """Bad flags, as all bad input, get one line (argparse would add its usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}\n")


def add_arguments(parser, parse_size):
    """The `vm` command's subcommands, on `parser`."""
    parser.add_argument("--home", help="where VMs are kept (default $EMU_HOME or ~/.local/share/emu)")
    sub = parser.add_subparsers(dest="vm_command", required=True, parser_class=OneLineParser)

    def command(name, func, help, vm=True):
        p = sub.add_parser(name, help=help)
        if vm:
            p.add_argument("name")
        p.set_defaults(vm_func=func)
        return p

    p = command("create", cmd_create, "define a new VM")
    p.add_argument("--memory", type=parse_size, default=1 << 20, help="RAM, e.g. 1M (default)")
    p.add_argument("--disk", metavar="IMAGE", help="a disk image (raw or qcow2), used in place")
    p.add_argument("--image", metavar="PROGRAM", help="a program (.s or .img) to load, or 'toyos' "
                   "(a copy-on-write overlay on the home's toyos disk); without it the VM boots --disk")
    p.add_argument("--cpu-share", type=int, default=1, metavar="N", help="weight in the scheduler (default 1)")
    p.add_argument("--virtualization", choices=VIRTUALIZATION, default="none",
                   help="trap: the guest's kernel runs deprivileged under the trap-and-emulate "
                        "monitor (emu/vmm/); hw: in guest mode, with hardware assistance; "
                        "its exits counted by cause in `emu vm stats`")
    p = command("modify", cmd_modify, "change a powered-off VM's definition")
    p.add_argument("--memory", type=parse_size)
    p.add_argument("--disk", metavar="IMAGE")
    p.add_argument("--cpu-share", type=int, metavar="N")
    p.add_argument("--virtualization", choices=VIRTUALIZATION,
                   help="none, trap or hw (a saved state continues any way)")
    p = command("list", cmd_list, "the VMs and their states", vm=False)
    p.add_argument("--running", action="store_true", help="only running and paused ones")
    p = command("show", cmd_show, "one VM's definition and state")
    p.add_argument("--machine-readable", action="store_true", help="key=value lines")
    p = command("rm", cmd_rm, "remove a VM that is not running")
    p.add_argument("--delete-disks", action="store_true", help="also delete a disk given with --disk")
    p = command("start", cmd_start, "start (or continue a saved) VM; at a terminal, attach its console")
    p.add_argument("--headless", action="store_true", help="do not attach the console")
    command("console", cmd_console, "attach the VM's console (Ctrl-A d detaches)")
    for name, help in (("pause", "stop giving the VM instructions"), ("resume", "go on after pause"),
                       ("reset", "boot the VM again, as the reset button"),
                       ("poweroff", "pull the plug (nothing is saved)"),
                       ("savestate", "save the VM's state and stop it; start continues it exactly")):
        command(name, cmd_host, help)
    command("discardstate", cmd_discard, "forget a saved state")
    p = command("snapshot", cmd_snapshot, "take, restore, list or delete snapshots")
    p.add_argument("action", choices=("take", "restore", "list", "delete"))
    p.add_argument("snap", nargs="?")
    p = command("clone", cmd_clone, "a new VM from a powered-off one")
    p.add_argument("new")
    p.add_argument("--linked", action="store_true", help="share the disk: a copy-on-write overlay")
    p = command("listen", cmd_listen, "take a VM migrated to ADDRESS (until one arrives)", vm=False)
    p.add_argument("address", nargs="?", help="a unix socket path, or 127.0.0.1:PORT (0: any free port)")
    p.add_argument("--memory", type=parse_size, help="memory to give it (default: as much as it has; "
                   "more is allowed, less refused)")
    p.add_argument("--stop", action="store_true", help="stop listening")
    p = command("migrate", cmd_migrate, "move a running VM (live) or a saved one (cold) to a listening host")
    p.add_argument("--to", metavar="ADDRESS", required=True, help="where `emu vm listen` listens")
    p.add_argument("--downtime", type=float, default=10, metavar="MS",
                   help="stop the guest once the rest can be sent in this long (default 10)")
    p.add_argument("--max-rounds", type=int, default=30, metavar="N",
                   help="give up after N rounds that do not get there (default 30)")
    command("stats", cmd_stats, "per running VM: instructions, CPU, memory (shared pages too), disk, traps", vm=False)


def main(args):
    home = Home(args.home or default_home())
    return args.vm_func(home, args)


def cmd_create(home, args):
    program = args.image
    if program is not None and program != manage.TOYOS:
        from ..cli import load_program       # assembled once, kept in the VM's directory
        program = load_program(program)
    manage.create(home, args.name, args.memory, args.disk, program, args.cpu_share, args.virtualization)
    return 0


def cmd_modify(home, args):
    if args.memory is None and args.cpu_share is None and args.disk is None and args.virtualization is None:
        raise VMError(f"vm {args.name}: nothing to modify (--memory, --cpu-share, --disk, --virtualization)")
    manage.modify(home, args.name, args.memory, args.cpu_share, args.disk, args.virtualization)
    return 0


def cmd_list(home, args):
    for name in home.names():
        vm = home.read(name)
        if not args.running or vm["state"] in LIVE:
            print(f"{name:<20} {vm['state']:<9} {vm['memory'] >> 10:>7}K  share {vm['cpu_share']}")
    return 0


def cmd_show(home, args):
    vm = home.read(args.name)
    disk = home.path_of(args.name, vm["disk"])
    fields = [("name", vm["name"]), ("state", vm["state"]), ("memory", vm["memory"]),
              ("cpu_share", vm["cpu_share"]), ("virtualization", vm.get("virtualization", "none")),
              ("disk", disk or ""),
              ("program", "loaded" if vm["program"] else "none (boots its disk)"),
              ("reason", vm.get("reason") or ""), ("snapshots", ",".join(vm["snapshots"]))]
    if vm.get("exit_status") is not None:
        fields.append(("exit_status", vm["exit_status"]))
    for key, value in fields:
        print(f'{key}="{value}"' if args.machine_readable else f"{key + ':':<12} {value}")
    return 0


def cmd_rm(home, args):
    manage.remove(home, args.name, args.delete_disks)
    return 0


def cmd_start(home, args):
    attach = not args.headless and sys.stdin.isatty()
    answer = control.request(home, "start", spawn=True, keep=attach, name=args.name, attach=attach)
    if attach:
        return _attach(args.name, answer[1])
    return 0


def cmd_console(home, args):
    _, sock = control.request(home, "console", keep=True, name=args.name, attach=True)
    return _attach(args.name, sock)


def _attach(name, sock):
    """Relay the terminal and the guest's console until Ctrl-A d, or the
    VM stops (the host hangs up).  Input from a pipe is typed, and the host
    hangs up once the guest has read it all and waits for more."""
    from ..devices.console import Console, ESCAPE
    terminal = sys.stdin.isatty()
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    if terminal:
        os.write(sys.stderr.fileno(), DETACH_HELP.format(name=name).encode())
    escaped, inputs = False, [sock, stdin]
    with sock, Console(input_fd=stdin, terminal=terminal).raw_terminal():
        while True:
            ready = select.select(inputs, [], [])[0]
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    if stdin in inputs:
                        os.write(sys.stderr.fileno(), f"\r\nemu: vm {name} stopped\r\n".encode())
                    return 0
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 4096)
                if not data:
                    if terminal:
                        return 0
                    sock.shutdown(socket.SHUT_WR)
                    inputs.remove(stdin)
                    continue
                keys = bytearray()
                for byte in data if terminal else ():
                    if escaped:
                        escaped = False
                        if byte == ord("d"):
                            os.write(sys.stderr.fileno(), f"\r\nemu: detached from {name}\r\n".encode())
                            return 0
                        if byte == ESCAPE:
                            keys.append(byte)
                    elif byte == ESCAPE:
                        escaped = True
                    else:
                        keys.append(byte)
                sock.sendall(keys if terminal else data)


def cmd_host(home, args):
    control.request(home, args.vm_command, name=args.name)
    return 0


def cmd_listen(home, args):
    if args.stop:
        control.request(home, "listen")
        return 0
    if args.address is None:
        raise VMError("listen: give an ADDRESS (a unix socket path or 127.0.0.1:PORT), or --stop")
    address = migration.canonical(args.address)    # bad input is refused before a host starts
    if args.memory is not None:
        manage.check_memory(args.memory)
    where = control.request(home, "listen", spawn=True, address=address, memory=args.memory)
    print(f"listening at {where}")
    return 0


def cmd_migrate(home, args):
    to = migration.canonical(args.to)
    if args.downtime < 0 or args.max_rounds < 1:
        raise VMError(f"vm {args.name}: --downtime must be >= 0 and --max-rounds >= 1")
    state = home.read(args.name)["state"]
    if state not in LIVE + ("saved",):
        raise VMError(f"vm {args.name}: is {state}; only a running, paused or saved VM migrates")
    report = control.request(home, "migrate", spawn=True, name=args.name, to=to,
                             downtime=args.downtime / 1e3, max_rounds=args.max_rounds)
    print(f"vm {args.name}: {report}")
    return 0


def cmd_discard(home, args):
    manage.discard(home, args.name)
    return 0


def cmd_snapshot(home, args):
    name, snap = args.name, args.snap
    if args.action == "list":
        for snap, taken in home.read(name)["snapshots"].items():
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(taken["taken"]))
            print(f"{snap:<20} {when}  {'with state' if taken['state'] else 'powered off'}")
        return 0
    if snap is None:
        raise VMError(f"vm {name}: snapshot {args.action} needs a snapshot name")
    live = home.read(name)["state"] in LIVE
    if args.action == "take" and live:
        control.request(home, "snapshot", name=name, snap=snap, path=manage.snapshot_path(home, name, snap))
    elif args.action == "delete" and live:
        control.request(home, "snapshot_delete", name=name, snap=snap)
    else:
        {"take": manage.take, "restore": manage.restore, "delete": manage.delete}[args.action](home, name, snap)
    return 0


def cmd_clone(home, args):
    manage.clone(home, args.name, args.new, args.linked)
    return 0


def cmd_stats(home, args):
    try:
        stats = control.request(home, "stats")
    except VMError:
        print("no VM is running")
        return 0
    host, vms = stats["host"], stats["vms"]
    # Overcommit, honestly: what the VMs were promised against what there is.
    print(f"host process {host['pid']}: {host['cpus']} CPU (of the machine's {host['host_cpus']}) "
          f"for {host['runnable']} runnable VM{'s' * (host['runnable'] != 1)}"
          + (f", overcommitted {host['runnable']}:1" if host["runnable"] > 1 else ""))
    print(f"guest memory: {_k(host['memory_defined'])} defined, {_k(host['memory_touched'])} touched; "
          f"host memory available {_k(host['host_memory_available'])}"
          + (" -- OVERCOMMITTED" if host["memory_defined"] > host["host_memory_available"] else ""))
    sharing = host["sharing"]
    print(f"shared pages (KSM): {sharing['pages_sharing']} guest pages map {sharing['pages_shared']} "
          f"stable ones: {_k(sharing['saved'])} saved"
          + ("" if sharing["settled"] else ", still scanning")
          + (f" -- {sharing['error']}" if sharing["error"] else "")
          + (f" -- at its limit of {sharing['limit']} (vm.max_map_count)" if sharing["full"] else ""))
    # As the host's kernel counts it (smaps): resident counts a shared page
    # in every VM that maps it, proportional splits it among them.
    print(f"the VMs' RAM in the host: {_k(host['rss'])} resident, {_k(host['pss'])} proportional; "
          f"{_k(host['anonymous'])} private + {_k(sharing['stable_memory'])} stable pages")
    print(f"{'NAME':<16} {'STATE':<8} {'INSTRUCTIONS':>13} {'MIPS':>7} {'CPU':>6} {'SHARE':>5} "
          f"{'TOUCHED':>9} {'SHARED':>6} {'SAVED':>7} {'RSS':>7} {'PSS':>7} {'DISK R/W':>13}  TRAPS / EXITS")
    for name, s in vms.items():
        cpu = s["cpu_time"] / s["wall_time"] if s["wall_time"] else 0
        traps = ", ".join(f"{n} {cause}" for cause, n in s["traps"].items())
        exits = ", ".join(f"{n} {device}" for device, n in s["exits"].items())
        print(f"{name:<16} {s['state']:<8} {s['instructions']:>13} {s['instructions_per_s'] / 1e6:>7.3f} "
              f"{cpu:>6.1%} {s['share']:>5} {_k(s['touched']):>9} {s['shared_pages']:>6} {_k(s['saved']):>7} "
              f"{_k(s['rss']):>7} {_k(s['pss']):>7} "
              f"{str(s['disk_reads']) + '/' + str(s['disk_writes']):>13}  {traps or '-'} / {exits or '-'}")
    return 0


def _k(size):
    return f"{size >> 10}K"
