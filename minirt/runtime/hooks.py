"""OCI hooks: programs an engine asks the runtime to run at points of a
container's life, each given the container's state on its stdin.

Lecture idea: the runtime makes the container, but the engine around it has
work of its own at fixed moments -- docker plugs in the network once the
container's namespaces exist (its ``prestart`` hook, libnetwork-setkey),
others register the container somewhere once it runs, or clean up after it.
The OCI runtime spec names the moments; minirt runs those that run in the
runtime's own namespaces:

    prestart, createRuntime   in ``create``: PID 1 and its namespaces exist,
                              before it builds its root filesystem
    poststart                 in ``start``, once the command was let go
    poststop                  in ``delete``

A hook that fails (or outlives its timeout) fails the step, except poststart
and poststop, which come too late to undo anything: their failure is reported.
"""

from minirt import lightjson
from minirt.errors import RuntimeFailure
from minirt.spec import OCI_VERSION


def run(hooks, stage, state):
    """Run the ``stage`` hooks in order with ``state`` (the OCI state, a dict) on stdin."""
    if not hooks.get(stage):
        return
    import subprocess  # (5-10 ms of imports that every runtime call without hooks is spared)

    payload = lightjson.dumps(state).encode()
    for hook in hooks.get(stage, ()):
        try:
            r = subprocess.run(hook["args"], executable=hook["path"], env=dict(e.split("=", 1) for e in hook["env"]),
                               input=payload, capture_output=True, timeout=hook["timeout"],
                               cwd=state.get("bundle") or "/")
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"{stage} hook {hook['path']}: timed out after {hook['timeout']} s") from None
        except OSError as e:
            raise RuntimeFailure(f"{stage} hook {hook['path']}: {e.strerror}") from None
        if r.returncode != 0:
            why = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {r.returncode}"]
            raise RuntimeFailure(f"{stage} hook {hook['path']}: {why[0]}")


def state(spec, pid, status):
    """The OCI state a hook reads: the container as the runtime sees it now."""
    return {"ociVersion": OCI_VERSION, "id": spec.id, "pid": pid, "status": status,
            "bundle": spec.oci["bundle"], "annotations": spec.oci["annotations"]}
