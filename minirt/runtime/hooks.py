"""OCI hooks: programs an engine asks the runtime to run at points of a
container's life, each given the container's state on its stdin.

Lecture idea: the runtime makes the container, but the engine around it has
work of its own at fixed moments -- docker plugs in the network once the
container's namespaces exist (its ``prestart`` hook, libnetwork-setkey),
others register the container somewhere once it runs, or clean up after it.
The OCI runtime spec names the moments; the runtime runs most hooks in its
own namespaces, two in the container's (PID 1 runs those, as runc's init does):

    prestart, createRuntime   in ``create``: PID 1 and its namespaces exist,
                              before it builds its root filesystem
    createContainer           PID 1, once the root filesystem is mounted, before
                              pivot_root: the container's mount namespace, the
                              host's paths (its working directory: the rootfs)
    startContainer            PID 1, after ``start``, as the container's user with
                              its privileges and seccomp filter, just before the
                              command's execve (its working directory: process.cwd)
    poststart                 in ``start``, once the command was let go
    poststop                  in ``delete``

A hook that fails (or outlives its timeout) fails the step, except poststart
and poststop, which come too late to undo anything: their failure is reported.
"""

from minirt import lightjson
from minirt.errors import RuntimeFailure
from minirt.spec import OCI_VERSION


STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
IN_CONTAINER = ("createContainer", "startContainer")   # run by PID 1


def prepare(hooks):
    """In PID 1 before pivot_root: load what running hooks takes from the host's
    Python library, which is out of reach afterwards (startContainer's)."""
    if any(hooks.get(stage) for stage in IN_CONTAINER):
        import subprocess  # noqa: F401


def run(hooks, stage, state, cwd=None):
    """Run the ``stage`` hooks in order with ``state`` (the OCI state, a dict) on
    stdin, in the directory ``cwd`` (default: the bundle)."""
    if not hooks.get(stage):
        return
    import subprocess  # (5-10 ms of imports that every runtime call without hooks is spared)

    payload = lightjson.dumps(state).encode()
    for hook in hooks.get(stage, ()):
        try:
            r = subprocess.run(hook["args"], executable=hook["path"], env=dict(e.split("=", 1) for e in hook["env"]),
                               input=payload, capture_output=True, timeout=hook["timeout"],
                               cwd=cwd or state.get("bundle") or "/")
        except subprocess.TimeoutExpired:
            raise _failed(stage, hook, f"timed out after {hook['timeout']} s") from None
        except OSError as e:
            raise _failed(stage, hook, e.strerror) from None
        if r.returncode < 0:  # (a seccomp filter's SCMP_ACT_KILL, say)
            raise _failed(stage, hook, f"killed by signal {-r.returncode} ({_signal_name(-r.returncode)})")
        if r.returncode != 0:
            why = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {r.returncode}"]
            raise _failed(stage, hook, why[0])


def _failed(stage, hook, why):
    return RuntimeFailure(f"{stage} hook {hook['path']}: error running hook: {why}")


def _signal_name(signum):
    import signal

    name = signal.strsignal(signum) or f"signal {signum}"
    return name[:1].lower() + name[1:]   # "bad system call", as runc says it


def state(spec, pid, status):
    """The OCI state a hook reads: the container as the runtime sees it now."""
    return {"ociVersion": OCI_VERSION, "id": spec.id, "pid": pid, "status": status,
            "bundle": spec.oci["bundle"], "annotations": spec.oci["annotations"]}
