"""Live migration: a running machine moved to another host over a byte stream.

Lecture idea: virtual machines can be "migrated to a more or less powerful
machine" -- without stopping them for longer than a blink.  The method is
pre-copy, as Clark et al. did it for Xen ("Live Migration of Virtual
Machines", NSDI 2005) and QEMU does it today:

1. send every page the guest uses, while it keeps running;
2. send again the pages it wrote meanwhile (``memory.py`` logs every write,
   per page), round after round, each round shorter than the last -- until
   what is left could be sent within the downtime target;
3. stop the guest, send the last pages with the CPU and device state (the
   snapshot's format, ``snapshot.encode`` / ``snapshot.check_state``), and
   let the destination resume it.

A guest that writes faster than its pages can be sent never gets there:
after ``max_rounds`` the source gives up and the machine simply runs on
where it is.  The source keeps the machine until the destination has all of
it, checked, and says so; any failure before that (the connection drops, the
destination dies or refuses) leaves the source machine as it was, running.
The destination never runs a machine it has not received whole: every
record carries a crc32, and only a complete, checked stream becomes a
machine.  Disks are not copied: source and destination share the image file
(as Xen and QEMU assume shared storage), and the destination checks it is
the one the machine had.

The API (``emu vm migrate`` and ``emu vm listen`` are built on it)::

    report = migrate.send(machine, sock, run=lambda: machine.run(20_000))
    machine = migrate.receive(sock, memory_size=None, console=None, engine="translate")

`send` returns a `Report` (rounds, pages per round, total time, downtime)
or raises `MigrationError` (one line) with the machine intact and runnable;
after it returns, the machine is stopped: it lives at the destination now.
`receive` returns the machine, not yet run, or raises `MigrationError`.
The destination's memory may be larger than the source's ("a more powerful
machine"), never smaller.  A stream is a connected socket (TCP or unix);
`send` sets its time-out.

The stream: records of a 24-byte header (kind, a number, the body's length
and crc32, the header's own crc32) and a body.  Source to destination: HELLO (JSON: memory size),
PAGES (a first page number; consecutive pages), STATE (the machine's state
as JSON), DONE (the number of records before it), or ABORT (why).
Destination to source: OK after HELLO, READY once everything is received
and checked, or REFUSED (why); then the source's GO hands the machine over.
"""

import json
import struct
import time
import zlib

from . import snapshot
from .isa import PAGE_SIZE
from .machine import Machine
from .memory import MIGRATION, runs

VERSION = 1
HEADER = struct.Struct("<4sIQII")   # kind, number, body length, body crc32, crc32 of the rest
HELLO, OK, PAGES, STATE, DONE, ABORT, READY, REFUSED, GO = (
    b"HELO", b"OKAY", b"PAGE", b"STAT", b"DONE", b"ABRT", b"REDY", b"NOPE", b"GO!!")
CHUNK = 64                          # pages per record; the guest runs a slice after each
MAX_BODY = 64 << 20                 # the largest record a destination accepts
SLICE = 20_000                      # instructions the guest runs between chunks, by default


class MigrationError(Exception):
    """A migration that did not happen; the message is one line."""


class Report:
    """What a migration did: `rounds` is the pages sent in each round (the
    first all the guest uses, the last the stop-and-copy's); `total` and
    `downtime` are seconds (downtime: from stopping the guest at the source
    to handing it over, the destination's restore included)."""

    def __init__(self, rounds, total, downtime, sent):
        self.rounds, self.total, self.downtime, self.sent = rounds, total, downtime, sent

    def __str__(self):
        return (f"migrated in {len(self.rounds)} rounds (pages {'/'.join(map(str, self.rounds))}), "
                f"{self.sent >> 10} KiB, total {self.total * 1e3:.1f} ms, "
                f"downtime {self.downtime * 1e3:.2f} ms")


# -- the source --------------------------------------------------------------------

def send(machine, sock, run=None, downtime=0.010, max_rounds=30, timeout=30, on_stop=None):
    """Migrate `machine` over the connected socket `sock`, running it with
    `run()` (one slice of guest time; default SLICE instructions) while its
    memory is copied, until what is left fits in `downtime` seconds.
    `on_stop()`, if given, is called once the guest has run for the last
    time here, before its state is taken (a VM host hands over the console
    input typed ahead).
    Returns a Report; raises MigrationError, the machine intact, if the
    destination refuses, fails or goes away, or after `max_rounds` rounds
    that do not get there."""
    run = run or (lambda: machine.run(SLICE))
    memory = machine.memory
    link = _Link(sock, timeout)
    start = time.perf_counter()
    try:
        link.send(HELLO, 0, snapshot.encode({"version": VERSION, "memory_size": memory.size}))
        _expect(link, OK, "refused")
        # Round 0 sends every page that may be non-zero (the destination's
        # memory starts as zeros); from then on the log says what changed.
        memory.mark_copied(memory.dirty_pages(MIGRATION), MIGRATION)
        pages, rounds, busy = memory.used_pages(), [], 0.0
        stopped = time.perf_counter()
        while not machine.stopped:
            rounds.append(len(pages))
            busy += _send_pages(link, memory, pages, run)
            stopped = time.perf_counter()          # the guest ran last just now
            pages = memory.dirty_pages(MIGRATION)
            # Sending costs busy / sent per byte: stop when the rest would
            # take no longer than the downtime allows.
            if len(pages) * PAGE_SIZE * busy <= downtime * max(link.sent, 1):
                break
            if len(rounds) >= max_rounds:
                link.send(ABORT, 0, b"the source gave up: the guest writes faster than its pages are sent")
                raise MigrationError(f"did not converge in {max_rounds} rounds ({len(pages)} pages "
                                     f"written in the last, more than {downtime * 1e3:g} ms allows "
                                     "to send); the machine runs on here")
        # Stop and copy: the guest does not run from here on.
        if on_stop is not None:
            on_stop()
        rounds.append(len(pages))
        _send_pages(link, memory, pages, None)
        link.send(STATE, 0, snapshot.encode(machine.save_state()))
        link.send(DONE, link.records, b"")
        _expect(link, READY, "failed")
        # The destination has all of it: once GO is sent, it is the machine.
        # (Should GO be lost on the way, neither copy runs: never two.)
        link.send(GO, 0, b"")
        machine.stopped, machine.exit_status = True, 0
        machine.stop_reason = "migrated to another host"
        end = time.perf_counter()
        return Report(rounds, end - start, end - stopped, link.sent)
    except OSError as e:
        raise MigrationError(f"connection lost: {e.strerror or e}; the machine runs on here") from None


def _expect(link, wanted, failed):
    kind, _, body = link.receive()
    if kind == REFUSED:
        raise MigrationError(f"the destination {failed}: {body.decode(errors='replace')}")
    if kind != wanted:
        raise MigrationError(f"the destination answered {kind!r}, not {wanted!r}")


def _send_pages(link, memory, pages, run):
    """Send `pages` in records of up to CHUNK consecutive pages, running
    the guest a slice after each (if `run`).  Returns the seconds spent
    sending.  Each chunk's log bits are cleared right before it is read, so
    a page the guest writes after that goes in a later round."""
    busy = 0.0
    for first, end in runs(pages):
        for chunk in range(first, end, CHUNK):
            last = min(chunk + CHUNK, end)
            t = time.perf_counter()
            memory.mark_copied(range(chunk, last), MIGRATION)
            link.send(PAGES, chunk, memory.read_bytes(chunk * PAGE_SIZE, (last - chunk) * PAGE_SIZE))
            busy += time.perf_counter() - t
            if run is not None:
                run()
    return busy


# -- the destination ----------------------------------------------------------------

def receive(sock, memory_size=None, console=None, engine="translate", timeout=None):
    """Receive a machine over the connected socket `sock` into a machine
    with `memory_size` bytes (default: as much as the source's; less is
    refused).  Returns it, restored and not yet run, once the source has
    handed it over; raises MigrationError otherwise."""
    link = _Link(sock, timeout)
    try:
        kind, _, body = link.receive()
        hello = json.loads(body) if kind == HELLO else None
        if not (isinstance(hello, dict) and hello.get("version") == VERSION
                and type(hello.get("memory_size")) is int and hello["memory_size"] > 0):
            raise MigrationError("the source did not start a migration this emu understands")
        needed = hello["memory_size"]
        size = needed if memory_size is None else memory_size
        if size < needed:
            why = f"the machine has {_size(needed)} of memory, this host offers {_size(size)}"
            link.send(REFUSED, 0, why.encode())
            raise MigrationError(why)
        machine = Machine(size, console=console, engine=engine)
        link.send(OK, 0, b"")
        state = None
        while True:
            records = link.records
            kind, number, body = link.receive()
            if kind == PAGES:
                if len(body) % PAGE_SIZE or number * PAGE_SIZE + len(body) > needed:
                    raise MigrationError(f"pages {number:#x}+ lie outside the machine's memory")
                machine.memory.write_bytes(number * PAGE_SIZE, body)
            elif kind == STATE:
                state = json.loads(body)
                snapshot.check_state("the migrated state", state)
            elif kind == DONE:
                if number != records or state is None:
                    raise MigrationError("the stream ended without all of the machine")
                break
            elif kind == ABORT:
                raise MigrationError(body.decode(errors="replace"))
            else:
                raise MigrationError(f"unexpected record {kind!r}")
        try:
            machine.restore_state(state)
        except ValueError as e:                 # a disk that is not the machine's, a bad TLB
            link.send(REFUSED, 0, str(e).encode())
            raise MigrationError(str(e)) from None
        link.send(READY, 0, b"")
        kind, _, _ = link.receive()
        if kind != GO:
            raise MigrationError("the source did not hand the machine over")
        return machine
    except OSError as e:
        raise MigrationError(f"connection lost: {e.strerror or e}") from None
    except (ValueError, snapshot.SnapshotError) as e:
        raise MigrationError(f"malformed stream: {e}") from None


def _size(n):
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n >> 10} KiB"


class _Link:
    """Records over a socket, each checked by its crc32 as it arrives."""

    def __init__(self, sock, timeout):
        self.sock = sock
        sock.settimeout(timeout)
        self.records = 0          # sent and received so far: both ends count the same ones
        self.sent = 0             # bytes

    def send(self, kind, number, body):
        head = HEADER.pack(kind, number, len(body), zlib.crc32(body), 0)[:-4]
        self.sock.sendall(head + struct.pack("<I", zlib.crc32(head)) + body)
        self.records += 1
        self.sent += HEADER.size + len(body)

    def receive(self):
        head = self._exactly(HEADER.size)
        kind, number, length, crc, head_crc = HEADER.unpack(head)
        # Checked before the length is believed: a corrupt one would wait
        # for bytes that never come.
        if zlib.crc32(head[:-4]) != head_crc:
            raise MigrationError("a record header fails its checksum: the stream is corrupt")
        if length > MAX_BODY:
            raise MigrationError(f"record {kind!r} of {length} bytes: larger than any emu sends")
        body = self._exactly(length)
        if zlib.crc32(body) != crc:
            raise MigrationError(f"record {kind!r} fails its checksum: the stream is corrupt")
        self.records += 1
        return kind, number, body

    def _exactly(self, length):
        data = bytearray(length)
        view, got = memoryview(data), 0
        while got < length:
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise MigrationError("connection closed by the other side")
            got += n
        return bytes(data)
