"""The host process: every running VM of one home, in one process.

Lecture idea: a hypervisor is "software to allow a piece of hardware to run
multiple operating system images at the same time", sharing the CPU among
them.  Here the piece of hardware is one host process.  The first
``emu vm start`` of a home starts it (daemonised: it outlives the command);
it runs every VM of the home, answers commands on a unix control socket,
and exits when no VM is left running.  One process for all VMs, rather than
one each, because what comes next needs the VMs side by side: a scheduler
that shares guest instructions among them by ``--cpu-share``, statistics
that compare them, identical pages shared across VMs (``sharing.py``,
scanning between the rounds), and live migration (``emu/migrate.py`` works
on Machine objects, which live here).

The scheduler is weighted round-robin in instruction quanta: each round,
each runnable VM runs QUANTUM x its share guest instructions (translated or
interpreted, as the machine is set), so shares hold exactly in guest
instructions whatever the host's speed.  A VM waiting for console input
is not runnable (``Machine.blocking`` off: it pauses and names its
descriptors); the host waits for all of them, its socket and its consoles
in one ``select``.

Requests are JSON lines; a reply is one JSON line, ``{"ok": ...}`` or
``{"error": "one line"}``.  ``console`` turns the connection into the
guest's serial line, both ways, until the client hangs up.  ``migrate``
runs the scheduler between the chunks of memory it sends (commands wait
until it is over); a VM arriving at a ``listen`` address is received by a
thread, so the guests here run on, and joins the rounds once it is whole.
"""

import fcntl
import json
import os
import select
import signal
import socket
import sys
import threading
import time

from .. import hostmem, isa, snapshot
from ..devices.disk import DiskError
from ..image import Image
from ..isa import PAGE_SIZE
from ..machine import Machine
from ..migrate import MigrationError, send
from ..qcow2 import ImageError
from ..snapshot import SnapshotError
from ..vmm import MONITORS, GuestMachine
from . import disks, manage, migration
from .consolelog import ConsoleLog
from .sharing import SCAN_PAUSE, Sharing
from .store import LIVE, Home, VMError

QUANTUM = 10_000            # guest instructions per share per round
MAX_BACKLOG = 1 << 20       # console output held for a slow viewer before it is dropped


class Guest:
    """One running VM: its machine and what connects it to the host."""

    def __init__(self, vm, machine, input_w, log):
        self.name, self.share = vm["name"], vm["cpu_share"]
        self.machine = machine
        self.input_w = input_w            # the console's input pipe, our end
        self.log = log
        self.typed = bytearray()          # console input not yet in the pipe
        self.viewers = []                 # attached `emu vm console` connections
        self.paused = False
        self.started = time.monotonic()
        self.cpu_time = 0.0               # host CPU seconds spent running it
        self.rate = (self.started, machine.cpu.steps, None)      # for instructions/s
        machine.blocking = False

    # The console device writes its output here.
    def write(self, data):
        self.log.write(data)
        for viewer in self.viewers:
            viewer.out += data
            if len(viewer.out) > MAX_BACKLOG:
                del viewer.out[:-MAX_BACKLOG]     # a viewer too slow to keep up misses the oldest

    def flush(self):
        self.log.flush()

    def hand_over_input(self):
        """Console input typed but not yet read by the guest -- in the pipe,
        then what waits to go in it -- into the machine's console, whose state
        holds it: it goes with a saved state or a migrated machine, read once."""
        console = self.machine.console
        while True:
            try:
                data = os.read(console.input_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            console.host += data
        console.host += self.typed
        self.typed.clear()
        console.poll()                    # into the device's buffer, if empty, as it would take them

    def runnable(self):
        return not self.paused and not self.machine.waiting

    def idle(self):
        """Halted until input comes, and none is on its way (`waiting` is
        only cleared when the host next looks at the console's pipe)."""
        waiting = self.machine.waiting
        return bool(waiting) and not self.typed and not select.select(waiting, [], [], 0)[0]

    def close(self):
        self.log.close()
        os.close(self.input_w)
        os.close(self.machine.console.input_fd)
        if self.machine.disk.image is not None:
            self.machine.disk.image.close()
        for viewer in self.viewers:
            viewer.sock.close()


class Viewer:
    """A console connection: what the guest writes goes out, keys come in."""

    def __init__(self, sock, guest):
        self.sock, self.guest, self.out = sock, guest, bytearray()
        self.typed_all = False            # its keys ended: detach once the guest has answered them
        sock.setblocking(False)

    def gone(self):
        """Closed both ways, not just done typing (a half-closed socket is no POLLHUP)."""
        poll = select.poll()
        poll.register(self.sock, 0)
        return bool(poll.poll(0))


class Host:
    def __init__(self, home):
        self.home = home
        self.guests = {}
        self.id = f"{os.getpid()}-{os.urandom(6).hex()}"
        self.lock = None                  # host.lock, held for life
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listening = {}               # migration listener: memory offered (None: as the VM's)
        self.arriving = 0                 # VMs being received, each by a thread of its own
        self.arrived = []                 # (vm, machine, directory) or None, for the main thread
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.stopping = False             # SIGTERM: save every VM and exit
        self.sharing = Sharing()          # identical pages of the guests, shared (KSM)

    # -- life --------------------------------------------------------------------

    def open(self):
        """Take host.lock (for life), then the socket."""
        self.lock = os.open(self.home.file("host.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        os.ftruncate(self.lock, 0)
        os.pwrite(self.lock, self.id.encode(), 0)
        self.listener.bind(self.home.socket_name())
        self.listener.listen(16)

    def serve(self):
        while True:
            if self.stopping:
                self._shut_down()
                return
            idle = not (self.guests or self.listening or self.arriving)
            if idle and self._try_exit():
                return
            self._step(0.05 if idle else None)    # idle: a client is on its way, holding spawn.lock

    def _step(self, timeout, requests=True):
        """Wait for what is ready (up to `timeout`; not at all if a guest can
        run) and serve it -- with `requests`, commands and arriving VMs too --
        then give each runnable guest its quantum, and the page-sharing
        scanner its part of the time (while it has work, it wakes the host)."""
        runnable = [g for g in self.guests.values() if g.runnable()]
        start = time.monotonic()
        wait = 0 if runnable else timeout
        if not self.sharing.settled:
            wait = SCAN_PAUSE if wait is None else min(wait, SCAN_PAUSE)
        self._wait(wait, requests)
        for guest in runnable:
            # (A request may have stopped or replaced it meanwhile.)
            if self.guests.get(guest.name) is guest and guest.runnable():
                self._run(guest)
        self.sharing.scan([g.machine.memory for g in self.guests.values()],
                          time.monotonic() - start, bool(runnable))

    def _try_exit(self):
        """Exit when idle, but never under a client that is starting a VM:
        they hold spawn.lock from connecting to the reply."""
        fd = os.open(self.home.file("spawn.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if select.select([self.listener], [], [], 0)[0]:
            os.close(fd)                  # one got in before us: serve it
            return False
        self.listener.close()
        os.close(fd)
        return True

    def stop(self, *_signal):
        """SIGTERM's handler: the host machine is going down."""
        self.stopping = True
        os.write(self.wake_w, b".")       # out of select

    def _shut_down(self):
        """Save every VM's state, as VirtualBox's autostop does at host
        shutdown, so `emu vm start` continues each exactly; then exit."""
        for guest in list(self.guests.values()):
            try:
                self._save(guest, "saved at host shutdown (SIGTERM)")
            except VMError as e:
                self._finish(guest, "aborted", str(e))
        for listener in list(self.listening):
            self._unlisten(listener)
        self.listener.close()

    def _run(self, guest):
        """One quantum of guest instructions, QUANTUM x its share."""
        machine = guest.machine
        machine.waiting = None
        start = time.process_time()
        try:
            machine.run(QUANTUM * guest.share)
        except Exception as e:            # one VM's failure is its own, never its neighbours'
            self._finish(guest, "aborted", f"{type(e).__name__}: {e}")
            return
        guest.cpu_time += time.process_time() - start
        if machine.stopped:
            self._finish(guest, "poweroff", machine.stop_reason, machine.exit_status)

    def _finish(self, guest, state, reason, status=None):
        del self.guests[guest.name]
        guest.close()
        self.home.update(guest.name, state=state, host=None, reason=reason, exit_status=status)

    # -- waiting for everything at once ----------------------------------------------

    def _wait(self, timeout, requests=True):
        readers = {}
        if requests:
            readers = {self.listener: self._accept, self.wake_r: self._arrive,
                       **{s: lambda s=s: self._incoming(s) for s in self.listening}}
        writers = {}
        for guest in self.guests.values():
            for viewer in [v for v in guest.viewers
                           if v.typed_all and (v.gone() or not v.out and guest.idle())]:
                self._detach(viewer)
            for fd in guest.machine.waiting or ():
                readers[fd] = lambda g=guest: setattr(g.machine, "waiting", None)
            if guest.typed:
                writers[guest.input_w] = lambda g=guest: self._type(g)
            for viewer in guest.viewers:
                if not guest.typed and not viewer.typed_all:    # back-pressure: a full console stops reading keys
                    readers[viewer.sock] = lambda v=viewer: self._keys(v)
                if viewer.out:
                    writers[viewer.sock] = lambda v=viewer: self._show(v)
        try:
            r, w, _ = select.select(readers, writers, [], timeout)
        except InterruptedError:
            return
        for fd in w:
            writers[fd]()
        for fd in r:
            readers[fd]()

    def _type(self, guest):
        try:
            n = os.write(guest.input_w, guest.typed)
        except BlockingIOError:
            return
        del guest.typed[:n]

    def _keys(self, viewer):
        try:
            data = viewer.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._detach(viewer)
            return
        if not data:                      # (input from a pipe, say: show the answer to it all)
            viewer.typed_all = True
            return
        viewer.guest.typed += data
        self._type(viewer.guest)

    def _show(self, viewer):
        try:
            n = viewer.sock.send(viewer.out)
        except BlockingIOError:
            return
        except OSError:
            self._detach(viewer)
            return
        del viewer.out[:n]

    def _detach(self, viewer):
        if viewer in viewer.guest.viewers:
            viewer.guest.viewers.remove(viewer)
        viewer.sock.close()

    # -- requests ------------------------------------------------------------------

    def _accept(self):
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        # An abstract socket has no file permissions: only our own user may talk to us.
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
            sock.close()
            return
        sock.settimeout(10)
        try:
            request = json.loads(_read_line(sock))
            op = getattr(self, "op_" + request.pop("op"))
            reply = {"ok": op(sock, **request)}
        except VMError as e:
            reply = {"error": str(e)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            reply = {"error": f"bad request: {type(e).__name__}: {e}"}
        try:
            sock.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        if not (reply.get("ok") and request.get("attach")):
            sock.close()
        elif request["name"] in self.guests:
            guest = self.guests[request["name"]]
            guest.viewers.append(Viewer(sock, guest))

    def _guest(self, name):
        if name not in self.guests:
            state = self.home.read(name)["state"]
            raise VMError(f"vm {name}: not running (it is {state})")
        return self.guests[name]

    def op_start(self, sock, name, attach=False):
        with self.home.locked():
            vm = self.home.read(name)
            if vm["state"] in LIVE:
                raise VMError(f"vm {name}: already {vm['state']}")
            guest = self._boot(vm)
            vm.update(state="running", host=self.id, reason=None, exit_status=None)
            self.home.write(vm)
        self.guests[name] = guest
        saved = os.path.join(self.home.vm_dir(name), "saved.snap")
        if os.path.exists(saved):
            os.unlink(saved)              # started: the saved state is spent, as in VirtualBox
        return vm["state"]

    def _boot(self, vm):
        """A Guest for definition `vm`: its saved state restored, or booted."""
        return self.adopt(vm, self._machine(vm))

    def _machine(self, vm, bare=False):
        """The machine of definition `vm`: its saved state restored, or booted;
        under the monitor if the definition says so (``bare``: never, for a
        saved state that only travels)."""
        name = vm["name"]
        disk = self.home.path_of(name, vm["disk"])
        saved = os.path.join(self.home.vm_dir(name), "saved.snap")
        monitor = None if bare else MONITORS.get(vm.get("virtualization", "none"))
        machine = None
        try:
            if vm["state"] == "saved":
                # On the VM's disk: frozen since, under overlays, or merged; the same bytes.
                machine = (monitor.restore(saved, disk=disk).machine if monitor
                           else snapshot.restore(saved, disk=disk))
            else:
                machine = (monitor(vm["memory"], disk=disk).machine if monitor
                           else Machine(vm["memory"], disk=disk))
                if vm["program"] is None:
                    machine.boot()
                else:
                    machine.load(Image.read(self.home.path_of(name, vm["program"])))
            return machine
        except (SnapshotError, DiskError, ImageError, OSError, ValueError) as e:
            if machine is not None and machine.disk.image is not None:
                machine.disk.image.close()    # the host lives on: no descriptor left behind
            raise VMError(f"vm {name}: cannot start: {e}") from None

    def adopt(self, vm, machine):
        """Run `machine` -- booted, restored, or arrived from another host
        (emu vm migrate) -- as VM `vm`: its console becomes a pipe
        the host feeds and a log, and it joins the rounds of the scheduler."""
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            log = ConsoleLog(os.path.join(self.home.vm_dir(vm["name"]), "console.log"))
        except OSError:
            os.close(r)
            os.close(w)
            raise
        guest = Guest(vm, machine, w, log)
        machine.console.connect(r, guest, terminal=True)
        return guest

    def op_console(self, sock, name, attach=True):
        self._guest(name)
        return "attached"

    def op_pause(self, sock, name):
        return self._set_paused(name, True)

    def op_resume(self, sock, name):
        return self._set_paused(name, False)

    def _set_paused(self, name, paused):
        guest = self._guest(name)
        guest.paused = paused
        state = "paused" if paused else "running"
        self.home.update(name, state=state)
        return state

    def op_reset(self, sock, name):
        guest = self._guest(name)
        with self.home.locked():
            fresh = self._boot({**self.home.read(name), "state": "poweroff"})
        fresh.viewers, guest.viewers = guest.viewers, []
        fresh.paused = guest.paused
        guest.close()
        self.guests[name] = fresh
        return "reset"

    def op_poweroff(self, sock, name):
        self._finish(self._guest(name), "poweroff", "powered off by emu vm poweroff")
        return "poweroff"

    def op_savestate(self, sock, name):
        self._save(self._guest(name), "saved by emu vm savestate")
        return "saved"

    def _save(self, guest, reason):
        guest.hand_over_input()
        try:
            snapshot.save(guest.machine, os.path.join(self.home.vm_dir(guest.name), "saved.snap"))
        except SnapshotError as e:
            raise VMError(f"vm {guest.name}: state not saved: {e}") from None
        self._finish(guest, "saved", reason)

    def op_snapshot(self, sock, name, snap, path):
        """A snapshot of a running VM: its state to `path`, and its disk frozen
        under it at the same instruction (the VM goes on on a new overlay)."""
        guest = self._guest(name)
        with self.home.locked():
            vm = self.home.read(name)
            if snap in vm["snapshots"]:
                raise VMError(f"vm {name}: snapshot {snap} already exists")
            try:
                snapshot.save(guest.machine, path)
            except SnapshotError as e:
                raise VMError(f"vm {name}: snapshot {snap} not taken: {e}") from None
            frozen = guest.machine.disk.path
            if frozen is not None:
                current = disks.freeze(self.home.vm_dir(name), frozen)
                guest.machine.disk.open(current)
                vm["disk"] = self.home.ref_to(name, current)
            vm["snapshots"][snap] = {"state": os.path.basename(path), "taken": time.time(),
                                     "disk": None if frozen is None else self.home.ref_to(name, frozen)}
            self.home.write(vm)
        return snap

    def op_snapshot_delete(self, sock, name, snap):
        """Delete a live VM's snapshot: its layer is merged while the guest
        waits (it runs in this thread), then its disk opened afresh."""
        guest = self._guest(name)
        disk, failed = guest.machine.disk, []

        def reopen():
            try:
                disk.open(disk.path, disk.readonly)
            except DiskError as e:
                failed.append(e)
        try:
            manage.delete(self.home, name, snap, reopen)
        finally:
            if failed:                    # its files changed under it: it must not write on
                self._finish(guest, "aborted", f"disk not opened again after a merge: {failed[0]}")
        return snap

    # -- migration (emu/migrate.py moves the machine, migration.py the definition) ---------

    def op_migrate(self, sock, name, to, downtime=0.010, max_rounds=30):
        """Send VM `name` to the host listening at `to`: a running or paused
        one live (pre-copy, while this host's scheduler runs every VM, the
        migrating one too), a saved one cold.  Afterwards it is powered off
        here, as VirtualBox leaves a teleported VM's source."""
        migration.parse(to)
        vm = self.home.read(name)
        if vm["state"] == "saved":
            return self._migrate_saved(vm, to)
        guest = self._guest(name)
        if isinstance(guest.machine, GuestMachine):
            raise VMError(f"vm {name}: not migrated: live migration under the monitor is not "
                          f"supported; save its state first (emu vm savestate {name}) and migrate that")
        with migration.connect(to) as conn:
            try:
                migration.offer(conn, self.home, vm, guest.paused)
                report = send(guest.machine, conn, run=lambda: self._step(0, requests=False),
                              downtime=downtime, max_rounds=max_rounds, on_stop=guest.hand_over_input)
            except MigrationError as e:
                raise VMError(f"vm {name}: not migrated: {e}") from None
        if self.guests.get(name) is guest:
            self._finish(guest, "poweroff", f"migrated to {to}")
        return str(report)

    def _migrate_saved(self, vm, to):
        """Cold migration: the saved state goes, as the same stream (one round;
        the machine never runs here), and arrives saved."""
        name = vm["name"]
        machine = self._machine(vm, bare=True)      # a saved state is a bare machine's
        try:
            with migration.connect(to) as conn:
                migration.offer(conn, self.home, vm)
                report = send(machine, conn, run=lambda: None)
        except MigrationError as e:
            raise VMError(f"vm {name}: not migrated: {e}") from None
        finally:
            if machine.disk.image is not None:
                machine.disk.image.close()
        with self.home.locked():
            os.unlink(os.path.join(self.home.vm_dir(name), "saved.snap"))
            self.home.write({**self.home.read(name), "state": "poweroff", "reason": f"migrated to {to}"})
        return str(report)

    def op_listen(self, sock, address=None, memory=None):
        """Take VMs arriving at `address`, each in a machine of `memory`
        bytes (default: as much as it had), until one has arrived; without
        an address, stop listening."""
        if address is None:
            for listener in list(self.listening):
                self._unlisten(listener)
            return "stopped"
        listener = migration.listen(address)
        self.listening[listener] = memory
        return migration.name_of(listener)

    def _unlisten(self, listener):
        del self.listening[listener]
        migration.close(listener)

    def _incoming(self, listener):
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        self.arriving += 1
        # A thread receives it: the guests here run on meanwhile.
        threading.Thread(target=self._receive, args=(conn, listener, self.listening[listener]),
                         daemon=True).start()

    def _receive(self, conn, listener, memory):
        arrival = None
        try:
            with conn:
                arrival = migration.accept(conn, self.home, self.id, memory)
        except (VMError, MigrationError, OSError) as e:
            print(f"emu: an incoming migration failed: {e}", file=sys.stderr, flush=True)
        self.arrived.append((listener, arrival))
        os.write(self.wake_w, b".")

    def _arrive(self):
        """Arrived VMs (received by threads) join the home and the scheduler."""
        os.read(self.wake_r, 4096)
        while self.arrived:
            listener, arrival = self.arrived.pop(0)
            self.arriving -= 1
            if arrival is None:
                continue                  # failed: the listener waits for another try
            if listener in self.listening:
                self._unlisten(listener)
            vm, machine, directory = arrival
            try:
                with self.home.locked():
                    os.rename(directory, self.home.vm_dir(vm["name"]))
            except OSError as e:          # created here meanwhile: kept aside, never run twice
                print(f"emu: vm {vm['name']} arrived but stays in {directory}: {e}", file=sys.stderr, flush=True)
                if machine.disk.image is not None:
                    machine.disk.image.close()
                continue
            if vm["state"] in LIVE:
                guest = self.adopt(vm, machine)
                guest.paused = vm["state"] == "paused"
                self.guests[vm["name"]] = guest

    def op_stats(self, sock):
        """Per VM what it got and used, and the host's side, overcommit
        included: one host process is one CPU, however many VMs it runs."""
        guests = {name: self._stats(guest) for name, guest in self.guests.items()}
        # What each VM's RAM costs, as the host's kernel counts it: resident
        # (rss: every page it maps), proportional (pss: a shared page split
        # among the VMs that map it) and private (anonymous).  The VMs' private
        # pages and the stable pages, once, are what they cost all told.
        ranges = {}
        for name, guest in self.guests.items():
            start = hostmem.address(guest.machine.memory.ram)
            ranges[name] = (start, start + guest.machine.memory.size)
        usage = hostmem.usage(ranges)
        for name, stats in guests.items():
            stats.update(usage[name])
        memory = _meminfo()
        return {"host": {"pid": os.getpid(), "cpus": 1, "host_cpus": os.cpu_count(),
                         "runnable": sum(g.runnable() for g in self.guests.values()),
                         "memory_defined": sum(g["memory"] for g in guests.values()),
                         "memory_touched": sum(g["touched"] for g in guests.values()),
                         "rss": sum(g["rss"] for g in guests.values()),
                         "pss": sum(g["pss"] for g in guests.values()),
                         "anonymous": sum(g["anonymous"] for g in guests.values()),
                         "sharing": self.sharing.stats(),
                         "host_memory_available": memory.get("MemAvailable", 0)},
                "vms": guests}

    def _stats(self, guest):
        machine, now = guest.machine, time.monotonic()
        at, steps, rate = guest.rate
        if now - at >= 0.5 or rate is None:   # over the last half second at least, or since start
            rate = (machine.cpu.steps - steps) / (now - at) if now > at else 0.0
            if now - at >= 0.5:
                guest.rate = (now, machine.cpu.steps, rate)
        return {"instructions": machine.cpu.steps, "instructions_per_s": rate,
                "cpu_time": guest.cpu_time, "wall_time": now - guest.started,
                "share": guest.share, "state": "paused" if guest.paused else "running",
                "memory": machine.memory.size, "touched": len(machine.memory.used_pages()) * PAGE_SIZE,
                "shared_pages": self.sharing.shared_pages(machine.memory),
                "saved": self.sharing.saved(machine.memory),
                "disk_reads": machine.disk.reads, "disk_writes": machine.disk.writes,
                **_exits(machine)}


def _exits(machine):
    """The guest's traps and its exits: device accesses on bare emu (what a
    hypervisor would see), the monitor's exits by cause under it."""
    if isinstance(machine, GuestMachine):
        monitor = machine.monitor
        return {"virtualization": monitor.virtualization,
                "traps": {isa.cause_name(cause): n for cause, n in sorted(monitor.traps.items())},
                "exits": {cause: n for cause, n in monitor.exits.counts.items() if n}}
    return {"virtualization": "none",
            "traps": {isa.cause_name(cause): n for cause, n in sorted(machine.cpu.traps.items())},
            "exits": dict(machine.exits)}


def _meminfo():
    """/proc/meminfo in bytes."""
    found = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            found[key] = int(value.split()[0]) * 1024
    return found


def _read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def main(argv):
    """`python -m emu.vm.host HOME READY_FD`: fork once more (the daemon is
    nobody's child), become the host, tell READY_FD when listening."""
    home, ready = Home(argv[0]), int(argv[1])
    if os.fork():
        os._exit(0)
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    host = Host(home)
    signal.signal(signal.SIGTERM, host.stop)
    host.open()
    os.write(ready, b"ready")
    os.close(ready)
    host.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
