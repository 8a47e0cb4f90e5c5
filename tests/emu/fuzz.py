"""Generators for the fuzz tests in test_robustness.py, in one place.

Each generator takes a `random.Random` (in the tests, hypothesis's, so a
failure shrinks to a small case and a run is repeatable) and returns one
case: a program, an image, a snapshot, assembly source, debugger commands or
a toyos session.  A random program is assembly source, so a failing one is
its own reproducer: `emu run case.s --mem 64K --steps N`.

`FUZZ` sets how hard the tests try: `make test` runs a fixed, small set of
examples (derandomized, a few seconds); `make fuzz` sets EMU_FUZZ=N to run N
times as many, with fresh randomness each run.
"""

import contextlib
import json
import os
import signal
import struct
import zlib

from hypothesis import HealthCheck, settings

from emu import isa, snapshot

SCALE = int(os.environ.get("EMU_FUZZ", "0"))


def fuzz(examples):
    """Hypothesis settings for a fuzz test of `examples` cases in `make test`."""
    return settings(max_examples=examples * max(SCALE, 1), deadline=None, derandomize=not SCALE,
                    database=None, print_blob=bool(SCALE),
                    suppress_health_check=list(HealthCheck))


class Hang(AssertionError):
    pass


@contextlib.contextmanager
def no_hang(what, seconds=60):
    """Fail instead of hanging: every run here is bounded by a step count,
    and one that has not returned long after is stuck, not slow."""
    def alarm(signum, frame):
        raise Hang(f"{what}: still running after {seconds} s (a hang past its step bound)")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def one_line(error):
    """A bad-input error must be one line that says something."""
    text = str(error)
    assert text and "\n" not in text, repr(text)
    return text


# -- random programs -------------------------------------------------------------------

MEMORY = 64 << 10                 # 16 pages: code, data, page tables at the very end
BODY, DATA, DIRECTORY, TABLE = 0x1000, 0x3000, 0xE000, 0xF000
HANDLER = 0x200
CONSOLE, TIMER, POWER, PIC, DISK = (isa.MMIO_BASE + slot * 0x100 for slot in range(5))

# What registers point at: the edges of RAM, code (self-modifying), data, the
# page tables, every device register, past the devices, the top of memory.
POINTERS = ([0, 4, BODY, BODY + 0x40, DATA, DATA + 0x7FC, DIRECTORY, TABLE, MEMORY - 4,
             MEMORY, MEMORY + 4, isa.MMIO_BASE - 4, CONSOLE + 0x500, isa.WORD - 3, 0x40000000]
            + [device + offset for device in (CONSOLE, TIMER, POWER, PIC, DISK)
               for offset in range(0, 0x1C, 4)])
NUMBERS = [0, 1, 2, 31, 32, 0x7FFF, 0x8000, 0xFFFF, 0x80000000, isa.WORD]


def word(rng):
    return rng.choice(POINTERS + NUMBERS) if rng.random() < 0.7 else rng.getrandbits(32)


def operand(rng, kind, spread):
    """A random operand of `kind`; branch targets stay within `spread`
    instructions, so control mostly stays in the random code."""
    if kind == "reg":
        return rng.randrange(16)
    if kind == "sreg":
        return rng.choice(list(isa.SREG_NAMES))
    if kind in ("simm", "uimm"):
        value = rng.choice([0, 1, 4, -1, -4, 0x7FFF, -0x8000, rng.randrange(-0x8000, 0x8000)])
        return value & 0xFFFF if kind == "uimm" else value
    if kind == "shamt":
        return rng.randrange(32)
    if kind == "mem":
        return rng.randrange(16), rng.choice([0, 4, -4, 1, 3, rng.randrange(-64, 64)])
    return rng.randrange(-spread, spread) * 4                       # target


def instruction(rng, spread=16):
    """One valid instruction word, any instruction of the ISA."""
    insn = rng.choice(isa.INSTRUCTIONS)
    return isa.encode(insn.mnemonic, **{name: operand(rng, kind, spread)
                                        for name, kind, _ in isa.FORMATS[insn.format]})


def words(rng, count):
    """Instruction words: valid ones, valid ones with a stray bit, and noise."""
    out = []
    for _ in range(count):
        roll = rng.random()
        w = instruction(rng)
        if roll < 0.15:
            w ^= 1 << rng.randrange(32)
        elif roll < 0.3:
            w = rng.getrandbits(32)
        out.append(w)
    return out


def page_tables(rng):
    """A directory and one table at the end of RAM: identity mappings of
    the program's pages with random permissions, a few entries of noise."""
    table = []
    for page in range(MEMORY // isa.PAGE_SIZE):
        flags = isa.PTE_P | isa.PTE_R | isa.PTE_W | isa.PTE_X | isa.PTE_U
        if rng.random() < 0.3:
            flags = rng.getrandbits(5)
        frame = page if rng.random() < 0.9 else rng.choice([page ^ 1, 0x10, 0xFFFFF])
        table.append(frame << 12 | flags)
    directory = {0: TABLE | isa.PTE_P}
    for _ in range(rng.randrange(3)):
        directory[rng.randrange(1024)] = rng.choice([TABLE | isa.PTE_P, DIRECTORY | isa.PTE_P,
                                                     rng.getrandbits(32)])
    return directory, table


def program(rng, length=None, paging=None):
    """A random program as assembly source: a preamble that sets up a trap
    handler, the timer, the interrupt controller, the console, a disk
    transfer, paging (or as `paging` says) and user mode, each at random,
    then random instructions looping over data, devices, their own code and
    the page tables."""
    length = length or rng.randrange(4, 64)
    handler = rng.choice(["skip", "random", "none"])
    lines = ["_start:"]

    def store(address, value):
        lines.extend([f"    li t0, {address:#x}", f"    li t1, {value:#x}", "    stw t1, [t0]"])

    if handler != "none":
        lines += ["    la t0, handler", "    mtsr tvec, t0"]
    if rng.random() < 0.6:
        store(TIMER + 4, rng.choice([1, 3, 50, 500, rng.randrange(1, 5000)]))
        store(TIMER + 8, 1)
    if rng.random() < 0.4:
        store(PIC + 4, rng.choice([0, 1, 2, 4, rng.getrandbits(3)]))
    if rng.random() < 0.4:
        store(CONSOLE + 8, 1)
    if rng.random() < 0.3:
        for offset, value in ((0, rng.randrange(4)), (4, rng.choice([DATA, BODY, TABLE, MEMORY - 512])),
                              (8, rng.randrange(4)), (0x14, rng.randrange(2)), (0xC, rng.choice([1, 2]))):
            store(DISK + offset, value)
    paging = rng.random() < 0.5 if paging is None else paging
    if paging:
        ptbr = DIRECTORY | 1 if rng.random() < 0.75 else rng.choice([TABLE | 1, MEMORY | 1, 0x1001])
        lines += [f"    li t0, {ptbr:#x}", "    mtsr ptbr, t0"]
    user = rng.random() < 0.4
    status = (isa.STATUS_PU if user else 0) | (isa.STATUS_PIE if rng.random() < 0.6 else 0)
    lines += ["    la t0, body", "    mtsr epc, t0", f"    li t0, {status}", "    mtsr status, t0"]
    lines += [f"    li r{r}, {word(rng):#x}" for r in range(1, 16)]
    lines += ["    eret"]                         # into the body, in its mode, IE as chosen
    if handler != "none":
        lines += [f"    .org {HANDLER:#x}", "handler:"]
        if handler == "skip":
            # Skip a faulting instruction; quiet every device that interrupts.
            lines += ["    mfsr fp, cause", "    li s2, 16", "    bltu fp, s2, sync",
                      f"    li s2, {TIMER:#x}", "    li fp, 1", "    stw fp, [s2 + 12]",
                      f"    li s2, {CONSOLE:#x}", "    ldw fp, [s2]", "    stw zero, [s2 + 8]",
                      f"    li s2, {DISK:#x}", "    li fp, 2", "    stw fp, [s2 + 16]", "    eret",
                      "sync:", "    mfsr fp, epc", "    addi fp, fp, 4", "    mtsr epc, fp", "    eret"]
        else:
            lines += [f"    {isa.disassemble_word(w, HANDLER + 4 * i)}"
                      for i, w in enumerate(words(rng, rng.randrange(1, 12)))]
            lines += ["    eret"]
    lines += [f"    .org {BODY:#x}", "body:"]
    lines += [f"    {isa.disassemble_word(w, BODY + 4 * i)}" for i, w in enumerate(words(rng, length))]
    lines += [rng.choice(["    jmp body", "    halt", "    .word 0"])]
    lines += [f"    .org {DATA:#x}"] + [f"    .word {word(rng):#x}" for _ in range(8)]
    if paging:
        directory, table = page_tables(rng)
        for index, entry in sorted(directory.items()):
            lines += [f"    .org {DIRECTORY + 4 * index:#x}", f"    .word {entry:#x}"]
        lines += [f"    .org {TABLE:#x}"] + [f"    .word {entry:#x}" for entry in table]
    return "\n".join(lines) + "\n"


def console_input(rng):
    return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 0, 3, 40])))


def disk_bytes(rng):
    """0 to 4 sectors of a disk image, or None for no disk."""
    sectors = rng.randrange(5)
    return bytes(rng.getrandbits(8) for _ in range(512 * sectors)) if sectors else None


# -- images and snapshots ----------------------------------------------------------------

def image_blob(rng):
    """Image bytes: a well-formed image of random segments and symbols (at
    the edges of RAM and beyond), sometimes with fields rewritten, cut or
    padded -- always with the checksum recomputed, so the parser is reached."""
    from emu.image import Image
    segments = []
    for _ in range(rng.randrange(4)):
        addr = rng.choice([0, 4, 0x1000, MEMORY - 4, MEMORY, MEMORY - 1, isa.WORD, rng.getrandbits(32)])
        segments.append((addr, bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 4, 64])))))
    symbols = {rng.choice(["_start", "a", ".l", "é", "x" * 300]): word(rng) for _ in range(rng.randrange(3))}
    blob = bytearray(Image(segments, word(rng), symbols).to_bytes()[:-4])
    for _ in range(rng.choice([0, 0, 1, 3])):
        at = rng.randrange(len(blob) + 1)
        action = rng.randrange(3)
        if action == 0:
            blob[at:at + 4] = struct.pack("<I", rng.choice([0, 1, 0xFFFF, isa.WORD, rng.getrandbits(32)]))
        elif action == 1:
            del blob[at:]
        else:
            blob[at:at] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 9)))
    return bytes(blob) + struct.pack("<I", zlib.crc32(blob))


JSON_VALUES = [None, True, False, 0, -1, 1, 4096, 2 ** 31, 2 ** 32, 2 ** 64, 10 ** 30, 1.5, float("nan"),
               "", "x", "00", [], [0], [[1, 2]], {}, {"a": 1}]


def mutate_json(rng, value):
    """`value` with one random leaf or container replaced; mostly by one of
    the same type, which gets past a type check to the range checks."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(sorted(value))
        if rng.random() < 0.1:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: mutate_json(rng, value[key])}
    if isinstance(value, list) and value and rng.random() < 0.8:
        at = rng.randrange(len(value))
        if rng.random() < 0.1:
            return value[:at] + value[at:] * rng.choice([0, 2])
        return value[:at] + [mutate_json(rng, value[at])] + value[at + 1:]
    if rng.random() < 0.7:
        if isinstance(value, bool):
            return not value
        if isinstance(value, int):
            return rng.choice([value + 1, value - 1, -value - 1, value << 32, value * 4096,
                               isa.WORD, isa.WORD + 1, 2 ** 63])
        if isinstance(value, str):
            return rng.choice(["", value + "0", value[:-1], "zz", "/", "..", "\0", value * 1000])
    return rng.choice(JSON_VALUES + [rng.getrandbits(rng.choice([8, 32, 40]))])


def read_snapshot(path):
    """A snapshot file's parts: header fields (a list), metadata, memory."""
    data = open(path, "rb").read()
    head = list(snapshot.HEADER.unpack(data[:snapshot.HEADER.size]))
    return head, json.loads(data[head[3]:head[3] + head[4]]), data[head[5]:]


def write_snapshot(path, head, meta, memory, realign=True):
    """Put a snapshot file together again with a correct header checksum,
    whatever it holds; `realign` moves memory to the page after metadata."""
    blob = json.dumps(meta).encode()
    if realign:
        head[5] = -(-(snapshot.HEADER.size + len(blob)) // isa.PAGE_SIZE) * isa.PAGE_SIZE
    head[4] = len(blob)
    raw = snapshot.HEADER.pack(*head[:7], 0)
    out = raw[:48] + struct.pack("<I", zlib.crc32(blob, zlib.crc32(raw[:48]))) + bytes(12) + blob
    out += bytes(max(0, min(head[5], 1 << 20) - len(out))) + memory
    with open(path, "wb") as f:
        f.write(out)


def craft_snapshot(rng, path):
    """Rewrite the snapshot at `path` as an attacker would: change metadata
    values, header fields or the file's length, then recompute the header's
    checksum, so the damage gets past it."""
    head, meta, memory = read_snapshot(path)
    for _ in range(rng.choice([1, 1, 2, 4])):
        roll = rng.random()
        if roll < 0.6:
            meta = mutate_json(rng, meta)
        elif roll < 0.8:
            field = rng.choice([1, 2, 5, 6])      # version, kind, memory offset, memory length
            value = rng.choice([0, 1, 2, 4096, 8192, 2 ** 31, 2 ** 63, rng.getrandbits(32)])
            head[field] = value & isa.WORD if field < 3 else value
        elif memory:
            cut = rng.randrange(len(memory) + 1)
            memory = memory[:cut] if rng.random() < 0.5 else memory + bytes(rng.randrange(1, 5000))
    write_snapshot(path, head, meta, memory, realign=rng.random() < 0.8)


# -- assembly source -----------------------------------------------------------------------

ASM_NUMBERS = ["0", "1", "-1", "010", "0x", "0x1_0", "0b102", "1__", "'a'", "'\\n'", "'''", "0xFFFFFFFF",
               "0x100000000", "-0x8000", "65536", "1 << 31", "1 << 100", "1/0", "5 % 0", "~0", "hi(x)",
               "lo(-1)", "hi()", "((1)", ".", ". - 4", "x", "undefined", "0x80000000", "1 >> -1",
               "1 << -1", "2 ** 3", "1 << 28", "0x7FFFFFFF", "99999999999999999999999"]
ASM_STRINGS = ['"hi\\n"', '"unterminated', '"\\q"', '"\\x4"', '""', '"é"', "'x'", '"a" "b"', '"\\"']


def asm_line(rng, depth=0):
    """One line of assembly, from valid to nonsense."""
    num = rng.choice(ASM_NUMBERS)
    roll = rng.random()
    if roll < 0.3:
        mnemonic = rng.choice(list(isa.BY_MNEMONIC) + list(isa.PSEUDO))
        ops = [rng.choice(["a0", "r15", "zero", "sp", "r16", "status", "epc", num, f"[a0 + {num}]",
                           f"[sp - {num}]", "[a0", "x", "loop"]) for _ in range(rng.randrange(4))]
        return f"    {mnemonic} {', '.join(ops)}"
    if roll < 0.65:
        directive = rng.choice([".word", ".byte", ".space", ".align", ".org", ".equ", ".ascii",
                                ".asciz", ".include", ".bogus", ".endm"])
        arg = rng.choice([num, f"x, {num}", f"{num}, {num}", rng.choice(ASM_STRINGS), ""])
        return f"    {directive} {arg}"
    if roll < 0.75:
        return rng.choice(["x:", "loop:", "x: x:", "1x:", "a0:", "_start:", ".l:", "é:"])
    if roll < 0.85 and depth == 0:
        return "\n".join([".macro m a, b"] + [asm_line(rng, 1).replace("a0", "\\a")
                                               for _ in range(rng.randrange(3))]
                         + [rng.choice([".endm", ""]), rng.choice(["m 1, 2", "m", "m \\@, x", "m m"])])
    return "".join(rng.choice("abx01[]+-,;:\"'\\.\t #()é\x00") for _ in range(rng.randrange(12)))


def asm_source(rng):
    return "\n".join(asm_line(rng) for _ in range(rng.randrange(1, 12))) + "\n"


# -- debugger commands -------------------------------------------------------------------

def debugger_commands(rng, may_continue, snapshot_dir):
    """A debugger session: commands with valid, odd and nonsense arguments.
    `continue` only where the program is known to stop."""
    where = ["", "0", "pc", "sp", "lr", "0x40", "-4", "_start", "loop + 8", "nosuch", "0xFFFFFFFF",
             "1/0", "(", "0x8000_0000", "abc", "1 << 40", "a0 + 4"]
    # Counts stay small: `step 10**20` on a program that never stops is as
    # endless as `continue`, and asked for.
    counts = ["", "1", "5", "0", "-5", "abc", "0x10", "200", "1_0", "2 3"]
    commands = []
    for _ in range(rng.randrange(1, 16)):
        name = rng.choice(["step", "s", "break", "watch", "delete", "info", "regs", "mem", "disas",
                           "pt", "trace", "snapshot", "diffsnapshot", "help", "nosuch", ""]
                          + (["continue"] if may_continue else []))
        if name in ("step", "s"):
            arg = rng.choice(counts)
        elif name in ("mem", "disas", "watch"):
            arg = f"{rng.choice(where)} {rng.choice(counts)}"
        elif name in ("break", "pt"):
            arg = rng.choice(where)
        elif name == "delete":
            arg = rng.choice(counts)
        elif name == "trace":
            arg = rng.choice(["on", "off", "", "maybe"])
        elif name in ("snapshot", "diffsnapshot"):
            arg = rng.choice(["", os.path.join(snapshot_dir, "d.snap"), snapshot_dir,
                              os.path.join(snapshot_dir, "no", "such")])
        elif name == "help":
            arg = rng.choice(["", "step", "nosuch"])
        else:
            arg = rng.choice(["", "x"])
        commands.append(f"{name} {arg}".strip())
    return commands


# -- toyos shell sessions ------------------------------------------------------------------

def shell_session(rng):
    """Lines typed at toyos's shell: its programs with odd arguments, jobs in
    the background, more than the process table holds, long and odd lines."""
    lines = []
    for _ in range(rng.randrange(1, 10)):
        lines.append(rng.choice([
            "ls", "ps", "hello", "cat motd", "cat README", "cat nothing", "cat", "echo a b  c",
            "counter 2", "counter 0", "counter -1", "counter 99999999999", "loop x &", "hello &",
            "bad", "bad kernel", "bad peek", "bad jump", "nosuch", "", "   ", "&", "& &", "exit &",
            "cat .", "cat kernel", "x" * rng.choice([30, 120, 250]), "\t", "echo \x01\x7f\xff",
        ]))
    return "\n".join(lines).encode("utf-8", "replace") + rng.choice([b"\n", b"", b"\nexit\n"])
