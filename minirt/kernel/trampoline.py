"""The trampoline: a tiny program that makes the container's last execve.

Lecture idea: the host's runtime must not be inside the container, not even
for an instant.  Every process minirt puts into a container (PID 1 while it
builds it, ``minirt exec``'s joining process) is a copy of the host's Python
until it executes the command.  If that command is
``/proc/self/exe`` (or a symlink to it, or a script starting with
``#!/proc/self/exe``), the kernel resolves the link to the executable of the
process making the call and runs the host's Python binary inside the
container, where ``/proc/PID/exe`` opens it.  That is CVE-2019-5736: runc's
container overwrote the host's runc binary that way (as root, through the
still-open file), and every container started after ran the attacker's code
as root on the host.  Today the kernel's "text file busy" stops the write,
but only while a minirt process runs that same binary, and reading it stays
possible.

runc's answer is to run from a sealed copy of itself in memory.  For a
Python interpreter that copy would be a second start-up; minirt's copy is
this program instead: an x86-64 ELF file of a few hundred bytes, written
here byte by byte, that the process executes first (``execveat`` on a
memfd).  From then on the process's executable is the memfd, and it is
that which ``/proc/self/exe`` names when the trampoline makes the real
execve.  Run as a command (its argv[0] is then no number, or it has fewer
than three arguments), it does nothing and exits 127.
The memfd is sealed (no write, shrink or grow, ever), close-on-exec, and
mode 0111, which together with empty effective capabilities at the execve
(``execute``) makes the kernel start the trampoline not dumpable: no process
of the container can open its ``/proc/PID/exe``, ``fd/`` or ``mem``.

What it does, given ``argv = [error pipe, path1, ..., pathN, "", command's
argv...]`` and the command's environment (a caller who crafts such an argv
can make it run only what that caller could run anyway):

    the error pipe's number    parsed from argv[0]; made close-on-exec, so
                               that it closes when the command starts
    not dumpable               again, for hosts with fs.suid_dumpable=1
    seccomp filter             installed here if it came with the image: then
                               only execve (and write, exit on failure) runs
                               under it, and with --init the reaper
    reaper (--init)            fork: the parent stays as PID 1, forwards
                               signals to the child, reaps orphans and exits
                               as the child did (tini's job); the child, in a
                               process group of its own (the terminal's
                               foreground one), goes on
    execve path1, path2, ...   the $PATH search as glibc's execvp: on past any
                               failure; if none runs, the first error other
                               than ENOENT or ENOTDIR, else the last
    report                     two bytes on the pipe, what failed ("e" execve,
                               "s" seccomp, "f" fork) and the errno; exit 125

Only x86-64 (where minirt's seccomp table is): elsewhere ``create`` gives
None and the caller executes the command directly, as it does where the
kernel forbids executable memfds (vm.memfd_noexec=2).

Read first: CVE-2019-5736 (runc's advisory), execve(2), memfd_create(2)
(file sealing), elf(5), and the System V AMD64 ABI for the initial stack
(argc, argv, NULL, envp) and the system call convention (number in rax,
arguments in rdi, rsi, rdx; rcx and r11 clobbered; -errno in rax).
"""

import errno
import fcntl
import os
import struct

from minirt.kernel import capabilities

MACHINE = "x86_64"
EXECVE_FAILED = b"e"  # first byte of a report: what failed; the second: errno
FILTER_FAILED = b"s"
FORK_FAILED = b"f"
NOT_CALLED_BY_MINIRT = 127  # its exit status, run as a container's command

_MFD_EXEC = 0x10  # Linux 6.3: executable on purpose (vm.memfd_noexec); older kernels say EINVAL
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE

# -- the program ----------------------------------------------------------------
#
# Rows of (label, machine code, assembly as ``objdump -M intel`` prints it,
# why).  A jump's code is (opcode, label): the displacement, as wide as the
# opcode asks (one byte after 7x and eb, four after 0f 8x), is filled in by
# ``_link``; so is the filter's address.
# Registers that live across system calls: rbp the empty string's slot in
# argv, r12 envp, r15 the error pipe, rbx the next path, r13 and r14 the
# first and last error.

_START = (
    ("",       "48 8b 04 24",       "mov rax,QWORD PTR [rsp]",        "argc"),
    ("",       "48 83 f8 03",       "cmp rax,0x3",                    "the pipe, a path, the empty string"),
    ("",       ("0f 82", "stray"),  "jb stray",                       "  at least, or not minirt's call"),
    ("",       "4c 8d 64 c4 10",    "lea r12,[rsp+rax*8+0x10]",       "envp: after argv and its NULL"),
    ("",       "48 8d 6c 24 10",    "lea rbp,[rsp+0x10]",             "argv[1]: a path, never the end"),
    ("find",   "48 83 c5 08",       "add rbp,0x8",                    "next argv slot"),
    ("",       "48 8b 75 00",       "mov rsi,QWORD PTR [rbp+0x0]",    ""),
    ("",       "48 85 f6",          "test rsi,rsi",                   ""),
    ("",       ("0f 84", "stray"),  "je stray",                       "no empty string: not minirt's call"),
    ("",       "80 3e 00",          "cmp BYTE PTR [rsi],0x0",         ""),
    ("",       ("75", "find"),      "jne find",                       ""),
    ("",       "48 8b 74 24 08",    "mov rsi,QWORD PTR [rsp+0x8]",    "argv[0]: the error pipe, in decimal"),
    ("",       "45 31 ff",          "xor r15d,r15d",                  ""),
    ("digit",  "0f b6 06",          "movzx eax,BYTE PTR [rsi]",       ""),
    ("",       "48 ff c6",          "inc rsi",                        ""),
    ("",       "85 c0",             "test eax,eax",                   ""),
    ("",       ("74", "parsed"),    "je parsed",                      "the NUL at the end"),
    ("",       "83 e8 30",          "sub eax,0x30",                   "'0'"),
    ("",       "83 f8 09",          "cmp eax,0x9",                    ""),
    ("",       ("0f 87", "stray"),  "ja stray",                       "not a digit: not minirt's call"),
    ("",       "45 6b ff 0a",       "imul r15d,r15d,0xa",             ""),
    ("",       "41 01 c7",          "add r15d,eax",                   ""),
    ("",       ("eb", "digit"),     "jmp digit",                      ""),
    ("parsed", "44 89 ff",          "mov edi,r15d",                   "fcntl(pipe, F_SETFD, FD_CLOEXEC):"),
    ("",       "be 02 00 00 00",    "mov esi,0x2",                    "  it closes when the command starts"),
    ("",       "ba 01 00 00 00",    "mov edx,0x1",                    ""),
    ("",       "b8 48 00 00 00",    "mov eax,0x48",                   ""),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "bf 04 00 00 00",    "mov edi,0x4",                    "prctl(PR_SET_DUMPABLE, 0)"),
    ("",       "31 f6",             "xor esi,esi",                    ""),
    ("",       "b8 9d 00 00 00",    "mov eax,0x9d",                   ""),
    ("",       "0f 05",             "syscall",                        ""),
)

_FILTER = (
    ("",       "bf 01 00 00 00",    "mov edi,0x1",                    "seccomp(SECCOMP_SET_MODE_FILTER,"),
    ("",       "31 f6",             "xor esi,esi",                    "  0,"),
    ("",       ("ba", "fprog"),     "mov edx,fprog",                  "  &fprog)"),
    ("",       "b8 3d 01 00 00",    "mov eax,0x13d",                  ""),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "f7 d8",             "neg eax",                        "errno, or 0"),
    ("",       "bb 73 00 00 00",    "mov ebx,0x73",                   "'s'"),
    ("",       ("0f 85", "report"), "jne report",                     ""),
)

# With --init the trampoline stays as the container's PID 1, as tini does:
# every signal blocked and taken with sigtimedwait (PID 1 of a PID namespace
# would otherwise not even see those sent from inside), forwarded to the
# command, but SIGCHLD, on which it reaps every child that has ended; once
# the command has, it exits with the command's status.  The command is a
# fork that unblocks the signals and goes on to the search.  r13 holds the
# command's pid; on the stack, the signal set and (the parent's) wait status.
_REAPER = (
    ("",       "6a ff",             "push 0xffffffffffffffff",        "a signal set: every signal"),
    ("",       "bf 02 00 00 00",    "mov edi,0x2",                    "rt_sigprocmask(SIG_SETMASK,"),
    ("",       "48 89 e6",          "mov rsi,rsp",                    "  every signal,"),
    ("",       "31 d2",             "xor edx,edx",                    "  no old set,"),
    ("",       "41 ba 08 00 00 00", "mov r10d,0x8",                   "  8 bytes)"),
    ("",       "b8 0e 00 00 00",    "mov eax,0xe",                    ""),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "b8 39 00 00 00",    "mov eax,0x39",                   "fork()"),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "85 c0",             "test eax,eax",                   ""),
    ("",       ("0f 84", "child"),  "je child",                       ""),
    ("",       ("7f", "parent"),    "jg parent",                      ""),
    ("",       "f7 d8",             "neg eax",                        "no fork: errno"),
    ("",       "bb 66 00 00 00",    "mov ebx,0x66",                   "'f'"),
    ("",       ("e9", "report"),    "jmp report",                     ""),
    ("parent", "41 89 c5",          "mov r13d,eax",                   "the command's pid"),
    ("",       "6a 00",             "push 0x0",                       "room for a wait status"),
    ("",       "44 89 ff",          "mov edi,r15d",                   "close(pipe): from now on only the"),
    ("",       "b8 03 00 00 00",    "mov eax,0x3",                    "  command can report"),
    ("",       "0f 05",             "syscall",                        ""),
    ("wait",   "48 8d 7c 24 08",    "lea rdi,[rsp+0x8]",              "rt_sigtimedwait(every signal,"),
    ("",       "31 f6",             "xor esi,esi",                    "  no siginfo,"),
    ("",       "31 d2",             "xor edx,edx",                    "  no time-out,"),
    ("",       "41 ba 08 00 00 00", "mov r10d,0x8",                   "  8 bytes)"),
    ("",       "b8 80 00 00 00",    "mov eax,0x80",                   ""),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "83 f8 11",          "cmp eax,0x11",                   "SIGCHLD"),
    ("",       ("74", "reap"),      "je reap",                        ""),
    ("",       "85 c0",             "test eax,eax",                   ""),
    ("",       ("7f", "forward"),   "jg forward",                     ""),
    ("",       "83 f8 fc",          "cmp eax,0xfffffffc",             "-EINTR: we were stopped and continued"),
    ("",       ("74", "wait"),      "je wait",                        ""),
    ("",       "bf 7d 00 00 00",    "mov edi,0x7d",                   "else a filter refuses sigtimedwait: not"),
    ("",       ("e9", "exit"),      "jmp exit",                       "  a spin for ever but 125 (and the end)"),
    ("forward", "44 89 ef",         "mov edi,r13d",                   "kill(the command,"),
    ("",       "89 c6",             "mov esi,eax",                    "  the signal)"),
    ("",       "b8 3e 00 00 00",    "mov eax,0x3e",                   ""),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       ("eb", "wait"),      "jmp wait",                       ""),
    ("reap",   "bf ff ff ff ff",    "mov edi,0xffffffff",             "wait4(-1: any child,"),
    ("",       "48 89 e6",          "mov rsi,rsp",                    "  &status,"),
    ("",       "ba 01 00 00 00",    "mov edx,0x1",                    "  WNOHANG,"),
    ("",       "45 31 d2",          "xor r10d,r10d",                  "  no rusage)"),
    ("",       "b8 3d 00 00 00",    "mov eax,0x3d",                   ""),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "85 c0",             "test eax,eax",                   ""),
    ("",       ("7e", "wait"),      "jle wait",                       "none has ended (more)"),
    ("",       "44 39 e8",          "cmp eax,r13d",                   ""),
    ("",       ("75", "reap"),      "jne reap",                       "an orphan, gone: look for more"),
    ("",       "8b 3c 24",          "mov edi,DWORD PTR [rsp]",        "the command's: its status is ours"),
    ("",       "89 f8",             "mov eax,edi",                    ""),
    ("",       "83 e0 7f",          "and eax,0x7f",                   "killed by a signal?"),
    ("",       ("74", "exited"),    "je exited",                      ""),
    ("",       "8d b8 80 00 00 00", "lea edi,[rax+0x80]",             "  then 128 + its number, as a shell says"),
    ("",       ("e9", "exit"),      "jmp exit",                       ""),
    ("exited", "c1 ef 08",          "shr edi,0x8",                    "else its exit code"),
    ("",       ("e9", "exit"),      "jmp exit",                       ""),
    ("child",  "31 ff",             "xor edi,edi",                    "the command: setpgid(0, 0), a process"),
    ("",       "31 f6",             "xor esi,esi",                    "  group of its own, so that a terminal's"),
    ("",       "b8 6d 00 00 00",    "mov eax,0x6d",                   "  Ctrl-C reaches it once, not also"),
    ("",       "0f 05",             "syscall",                        "  through the reaper"),
    ("",       "b8 27 00 00 00",    "mov eax,0x27",                   "getpid(): that group's number"),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "89 04 24",          "mov DWORD PTR [rsp],eax",        ""),
    ("",       "31 ff",             "xor edi,edi",                    "ioctl(0, TIOCSPGRP, &group): the"),
    ("",       "be 10 54 00 00",    "mov esi,0x5410",                 "  terminal's foreground group, if stdin"),
    ("",       "48 89 e2",          "mov rdx,rsp",                    "  is one (else ENOTTY: fine; SIGTTOU"),
    ("",       "b8 10 00 00 00",    "mov eax,0x10",                   "  is still blocked)"),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "48 c7 04 24 00 00 00 00", "mov QWORD PTR [rsp],0x0", "no signal blocked"),
    ("",       "bf 02 00 00 00",    "mov edi,0x2",                    "rt_sigprocmask(SIG_SETMASK,"),
    ("",       "48 89 e6",          "mov rsi,rsp",                    "  no signal,"),
    ("",       "31 d2",             "xor edx,edx",                    "  no old set,"),
    ("",       "41 ba 08 00 00 00", "mov r10d,0x8",                   "  8 bytes)"),
    ("",       "b8 0e 00 00 00",    "mov eax,0xe",                    ""),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "58",                "pop rax",                        "the stack as the search expects it"),
)

_SEARCH = (
    ("",       "48 8d 5c 24 10",    "lea rbx,[rsp+0x10]",             "the paths: argv[1] up to the empty string"),
    ("",       "45 31 ed",          "xor r13d,r13d",                  ""),
    ("try",    "48 39 eb",          "cmp rbx,rbp",                    ""),
    ("",       ("73", "failed"),    "jae failed",                     "every path tried"),
    ("",       "48 8b 3b",          "mov rdi,QWORD PTR [rbx]",        "execve(path,"),
    ("",       "48 83 c3 08",       "add rbx,0x8",                    ""),
    ("",       "48 8d 75 08",       "lea rsi,[rbp+0x8]",              "  the command's argv,"),
    ("",       "4c 89 e2",          "mov rdx,r12",                    "  envp)"),
    ("",       "b8 3b 00 00 00",    "mov eax,0x3b",                   ""),
    ("",       "0f 05",             "syscall",                        "returns only if it failed"),
    ("",       "f7 d8",             "neg eax",                        "errno"),
    ("",       "41 89 c6",          "mov r14d,eax",                   "the last error"),
    ("",       "83 f8 02",          "cmp eax,0x2",                    "ENOENT"),
    ("",       ("74", "try"),       "je try",                         ""),
    ("",       "83 f8 14",          "cmp eax,0x14",                   "ENOTDIR"),
    ("",       ("74", "try"),       "je try",                         ""),
    ("",       "45 85 ed",          "test r13d,r13d",                 "the first other error"),
    ("",       "44 0f 44 e8",       "cmove r13d,eax",                 ""),
    ("",       ("eb", "try"),       "jmp try",                        ""),
    ("failed", "45 85 ed",          "test r13d,r13d",                 ""),
    ("",       "45 0f 44 ee",       "cmove r13d,r14d",                "the first other error, else the last"),
    ("",       "44 89 e8",          "mov eax,r13d",                   ""),
    ("",       "bb 65 00 00 00",    "mov ebx,0x65",                   "'e'"),
    ("report", "c1 e0 08",          "shl eax,0x8",                    "the report: what failed, errno"),
    ("",       "09 d8",             "or eax,ebx",                     ""),
    ("",       "50",                "push rax",                       ""),
    ("",       "44 89 ff",          "mov edi,r15d",                   "write(pipe,"),
    ("",       "48 89 e6",          "mov rsi,rsp",                    "  the report,"),
    ("",       "ba 02 00 00 00",    "mov edx,0x2",                    "  2)"),
    ("",       "b8 01 00 00 00",    "mov eax,0x1",                    ""),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "bf 7d 00 00 00",    "mov edi,0x7d",                   "125: minirt's exit status for a failed start"),
    ("",       ("eb", "exit"),      "jmp exit",                       ""),
    ("stray",  "bf 7f 00 00 00",    "mov edi,0x7f",                   "NOT_CALLED_BY_MINIRT"),
    ("exit",   "b8 e7 00 00 00",    "mov eax,0xe7",                   "exit_group"),
    ("",       "0f 05",             "syscall",                        ""),
    ("",       "f4",                "hlt",                            "a filter refused exit: a fault ends us"),
)


def program(filtered, reaper=False):
    """The rows of the trampoline, with the seccomp step or without, and with
    the reaper (which the filter covers too) or without."""
    return _START + (_FILTER if filtered else ()) + (_REAPER if reaper else ()) + _SEARCH


# -- the ELF file around it ----------------------------------------------------------
#
# One segment, the whole file, mapped read+execute at a fixed address
# (ET_EXEC: nothing to relocate, no interpreter, no libraries):
#
#     0    ELF header           what and where: x86-64, executable, entry point
#     64   program header       PT_LOAD: file offset 0 at BASE, whole file
#     120  code                 entry point
#          struct sock_fprog    (with a filter) its length and address,
#          struct sock_filter[] aligned to 8

BASE = 0x400000
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_PHDR = struct.Struct("<IIQQQQQQ")          # Elf64_Phdr
_FPROG = struct.Struct("<H6xQ")             # struct sock_fprog: len, padding, filter pointer
_CODE_OFFSET = _EHDR.size + _PHDR.size
_IDENT = b"\x7fELF" + bytes([2, 1, 1])      # 64-bit, little-endian, ELF version 1 (rest: 0)
_ET_EXEC, _EM_X86_64, _PT_LOAD, _PF_R, _PF_X = 2, 62, 1, 4, 1


def _width(opcode):
    """Bytes of the operand ``_link`` fills in after ``opcode``: four after
    0f 8x (a near conditional jump), e9 (a near jump) and ba (mov edx,
    imm32), else one."""
    return 4 if opcode.startswith("0f") or opcode in ("e9", "ba") else 1


def _size(code):
    return len(bytes.fromhex(code)) if isinstance(code, str) else len(bytes.fromhex(code[0])) + _width(code[0])


def _link(rows, fprog=0):
    """The machine code of ``rows``, with ``fprog`` the address of the
    filter's struct sock_fprog; and each label's offset in it."""
    labels, here = {}, 0
    for label, code, _, _ in rows:
        if label:
            labels[label] = here
        here += _size(code)
    out = bytearray()
    for _, code, _, _ in rows:
        if isinstance(code, str):
            out += bytes.fromhex(code)
            continue
        opcode, target = code
        value = fprog if target == "fprog" else labels[target] - (len(out) + _size(code))  # jumps: from the next
        out += bytes.fromhex(opcode) + value.to_bytes(_width(opcode), "little", signed=True)
    return bytes(out), labels


def image(seccomp_program=None, reaper=False):
    """The trampoline as an ELF file; with ``seccomp_program`` (a compiled
    filter, see ``seccomp.py``) it installs that filter before the execve
    (with ``reaper``, before the fork)."""
    rows = program(seccomp_program is not None, reaper)
    end = _CODE_OFFSET + sum(_size(code) for _, code, _, _ in rows)
    fprog_at = (end + 7) // 8 * 8
    data = b""
    if seccomp_program is not None:
        data = (bytes(fprog_at - end) + _FPROG.pack(len(seccomp_program) // 8, BASE + fprog_at + _FPROG.size)
                + seccomp_program)
    return elf(_link(rows, BASE + fprog_at)[0] + data)


def elf(body):
    """An x86-64 executable of one segment whose entry point is the first
    byte of ``body`` (code, then any data it addresses from ``BASE``)."""
    size = _CODE_OFFSET + len(body)
    header = _EHDR.pack(_IDENT, _ET_EXEC, _EM_X86_64, 1, BASE + _CODE_OFFSET, _EHDR.size, 0, 0,
                        _EHDR.size, _PHDR.size, 1, 0, 0, 0)
    segment = _PHDR.pack(_PT_LOAD, _PF_R | _PF_X, 0, BASE, BASE, size, size, 0x1000)
    return header + segment + body


# -- using it ----------------------------------------------------------------------------

def create(seccomp_program=None, reaper=False):
    """The trampoline (``image``) in a sealed, close-on-exec memfd, mode 0111;
    None where there is none (not x86-64, or the kernel forbids executable
    memfds) and the caller must execute the command itself."""
    if os.uname().machine != MACHINE:
        return None
    try:
        fd = _memfd(os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING | _MFD_EXEC)
    except PermissionError:  # vm.memfd_noexec=2: no executable memfds at all
        return None
    try:
        with open(fd, "wb", closefd=False) as f:
            f.write(image(seccomp_program, reaper))
        os.fchmod(fd, 0o111)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


_made = {}  # (filter, reaper) -> its memfd, kept for the life of the process


def shared(seccomp_program=None, reaper=False):
    """``create``'s memfd, made once per process for each filter and reaper
    and kept open: sealed, it is the same file for every container (each
    execveat opens it anew).  A program that starts many containers builds
    the ELF once, and its parent, before the clone, not each PID 1 after it."""
    key = (seccomp_program, reaper)
    if key not in _made:
        _made[key] = create(seccomp_program, reaper)
    return _made[key]


def _memfd(flags):
    try:
        return os.memfd_create("minirt-trampoline", flags)
    except OSError as e:
        if e.errno != errno.EINVAL or not flags & _MFD_EXEC:
            raise
        return os.memfd_create("minirt-trampoline", flags & ~_MFD_EXEC)  # before Linux 6.3


def execute(fd, error_fd, paths, args, env):
    """Become the trampoline in memfd ``fd`` (``create``), which executes the
    first of ``paths`` that runs with ``args`` and ``env``, or reports why
    none did on the pipe ``error_fd``.  Returns only by raising OSError, if
    the trampoline itself could not be executed.

    The effective capabilities go first (root gets them back from the
    execve): without CAP_DAC_OVERRIDE the process cannot read the
    trampoline, and the kernel then makes it not dumpable from its first
    instruction.
    """
    capabilities.clear_effective()
    os.set_inheritable(error_fd, True)  # (the trampoline makes it close-on-exec again)
    os.execve(fd, [str(error_fd), *paths, "", *args], env)
