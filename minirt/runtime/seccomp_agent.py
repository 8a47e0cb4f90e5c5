"""The seccomp agent: the process that answers a container's notified system calls.

Lecture idea: "seccomp" -- besides allowing or refusing a call, a filter can
hand it to a supervisor in user space (SCMP_ACT_NOTIFY): the calling thread
waits while the agent, holding the filter's notification descriptor, reads
the call, looks at the caller's memory, maybe does the work itself (a mkdir
a container may not do, say), and answers with a result, an errno, or "go
on".  Here is the runtime's part, as the OCI runtime spec says it: a bundle's
``linux.seccomp.listenerPath`` names the unix socket the agent listens on,
and once the filter is installed the runtime connects, sends the container
process state -- JSON, the descriptor attached (SCM_RIGHTS) -- and closes:
one state per connection.

    the process     installs the filter, is given the    security.install_filter
                    descriptor, hands it to its parent   channel.FdChannel
    the runtime     sends it to the agent, lets go       ``send``, here

Nobody but the agent keeps a copy: when it exits, the kernel fails the
notified calls with ENOSYS instead of leaving them waiting for ever.

Read first: seccomp_unotify(2); the runtime spec's config-linux.md
(listenerPath) and runtime.md ("container process state").
"""

import os
import _signal as signal  # (the C half: see container.py)

from minirt import lightjson
from minirt.errors import RuntimeFailure, SpecError
from minirt.spec import OCI_VERSION

_ACTIONS_AVAIL = "/proc/sys/kernel/seccomp/actions_avail"


def check_kernel(actions_avail=_ACTIONS_AVAIL):
    """Refuse, before anything is made, a kernel without user notification (5.0 added it;
    SECCOMP_FILTER_FLAG_NEW_LISTENER too)."""
    try:
        with open(actions_avail) as f:
            available = f.read().split()
    except OSError:
        available = []
    if "user_notif" not in available:
        raise SpecError("linux.seccomp: SCMP_ACT_NOTIFY: this kernel has no seccomp user notification")


def send(agent, state, pid, fd):
    """Hand the notification descriptor ``fd`` of process ``pid`` (host pid)
    to the agent ``agent`` ({path, metadata}), with the container's OCI
    ``state`` (``hooks.state``).  RuntimeFailure if the agent cannot be reached."""
    import socket  # (only containers with an agent pay for it)

    message = lightjson.dumps({"ociVersion": OCI_VERSION, "fds": ["seccompFd"], "pid": pid,
                               "metadata": agent["metadata"], "state": state}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(agent["path"])
        except OSError as e:
            raise RuntimeFailure("failed to connect with seccomp agent specified in the seccomp profile: "
                                 f"{agent['path']}: {e.strerror}") from None
        try:
            socket.send_fds(s, [message], [fd])
        except OSError as e:
            raise RuntimeFailure(f"cannot send the seccomp descriptor to {agent['path']}: {e.strerror}") from None


def receive_and_send(channel, agent, state):
    """The runtime's side: wait for the process to hand over its filter's
    descriptor on ``channel`` (an FdChannel), send it to ``agent``, let go of
    it, and let the process go on.  Returns the process's pid; None if it
    failed before (its failure report says why).  If the agent cannot have
    it, the process, still waiting, is killed and RuntimeFailure raised."""
    got = channel.receive_fd()
    if got is None:
        return None
    fd, pid = got
    try:
        send(agent, state, pid, fd)
    except RuntimeFailure:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    finally:
        os.close(fd)
    try:
        channel.sent()
    except BrokenPipeError:
        pass  # it died meanwhile: its failure report says why
    return pid
