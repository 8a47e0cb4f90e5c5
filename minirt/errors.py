"""The errors minirt raises.

Every failure a user can cause (a bad flag, a corrupt image, a missing command)
is one of these, carrying a one-line message that names the thing and what is
wrong.  The CLI prints ``minirt: <message>`` and exits with ``exit_code``; it
never shows a traceback for a MinirtError.
"""

import errno
import os


def exit_status(wait_status):
    """docker's exit status for a ``waitpid`` status: the process's own exit
    code, or 128+N when signal N killed it (as a shell reports it)."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


class MinirtError(Exception):
    """Base class. ``exit_code`` follows docker: 125 means minirt itself failed."""

    exit_code = 125


class ImageError(MinirtError):
    """An image that cannot be read, is corrupt, or is unsafe to unpack."""


class SpecError(MinirtError):
    """A container description that cannot be honoured (bad flag, bad value)."""


class BuildError(MinirtError):
    """A Dockerfile that cannot be read or built (the message names its line)."""


class RuntimeFailure(MinirtError):
    """The kernel refused something while creating or running a container."""


class CommandNotExecutable(MinirtError):
    """The container's command exists but cannot be executed (docker: 126)."""

    exit_code = 126


class CommandNotFound(MinirtError):
    """The container's command does not exist (docker: 127)."""

    exit_code = 127


class Interrupted(MinirtError):
    """A signal stopped minirt before the container ran: as docker's client,
    the exit status is 128+N; what was made so far is removed on the way out."""

    def __init__(self, signum):
        super().__init__(f"stopped by signal {signum} before the container started")
        self.exit_code = 128 + signum


def exec_error(command, err):
    """docker's error for ``command``, which execve refused with errno ``err``."""
    if err == errno.ENOENT:
        where = "$PATH" if "/" not in command else "the container"
        return CommandNotFound(f'exec: "{command}": executable file not found in {where}')
    if err in (errno.EACCES, errno.EPERM):
        return CommandNotExecutable(f'exec: "{command}": permission denied')
    if err in (errno.ENOEXEC, errno.EISDIR, errno.ENOTDIR):
        return CommandNotExecutable(f'exec: "{command}": {os.strerror(err)}')
    return RuntimeFailure(f'exec: "{command}": {os.strerror(err)}')
