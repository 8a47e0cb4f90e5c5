"""A syscall probe: a program that makes one system call and exits with its errno.

Lecture idea: seccomp and capabilities decide, call by call, what a process
may ask the kernel; the honest test of a sandbox is to ask.  A shell command
is no such test (``mount`` fails for many reasons; an image may have no
``unshare``), so the probe is a few bytes of x86-64 machine code in the same
ELF wrapper as the trampoline (``trampoline.elf``), needing nothing from the
image: it loads the call's number and up to six integer arguments, makes the
call, and exits with the negated result -- the errno (1 for EPERM), or 0 when
the call succeeded (a positive result r exits 256 - r, modulo 256).

The code, for ``unshare(0x10000000)``::

    b8 10 01 00 00            mov eax,272          the call's number
    48 bf 00 00 00 10 ...     movabs rdi,0x10000000  arguments: rdi rsi rdx r10 r8 r9
    0f 05                     syscall
    89 c7                     mov edi,eax          -errno (or the result)
    f7 df                     neg edi              errno
    b8 e7 00 00 00            mov eax,231          exit_group
    0f 05                     syscall
"""

from minirt.errors import SpecError
from minirt.kernel import trampoline
from minirt.kernel.syscalls_x86_64 import SYSCALLS

_ARGUMENT_REGISTERS = ("48bf", "48be", "48ba", "49ba", "49b8", "49b9")  # movabs rdi, rsi, rdx, r10, r8, r9


def syscall_probe(call, args=()):
    """The probe for ``call`` (a name, x86-64's table, or a number) with the
    integer ``args`` (at most six), as the bytes of an executable file."""
    nr = call if isinstance(call, int) else SYSCALLS.get(call)
    if nr is None or not 0 <= nr < 1 << 31:
        raise SpecError(f"invalid syscall {call!r}: not an x86-64 system call")
    if len(args) > len(_ARGUMENT_REGISTERS):
        raise SpecError(f"invalid syscall arguments {args!r}: at most six")
    code = "b8" + nr.to_bytes(4, "little").hex()
    for register, value in zip(_ARGUMENT_REGISTERS, args):
        code += register + (value & (1 << 64) - 1).to_bytes(8, "little").hex()
    code += "0f05" "89c7" "f7df" "b8e7000000" "0f05"
    return trampoline.elf(bytes.fromhex(code))
