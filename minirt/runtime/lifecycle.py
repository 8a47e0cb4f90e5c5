"""The life of a container: its states and the moves allowed between them.

Lecture idea: a container is an object with a life cycle, the same one in
every runtime (the OCI runtime spec's "created", "running", "stopped"; docker's
"exited" is the last one under another name):

    (nothing) ──create──▶ created ──start──▶ running ──exit──▶ exited
                             │                 ▲  │ ▲             │
                             └──── exit ───────┼──┼─┼─────────────┤
                                               │  ▼ │             │
                                             paused │          start (minirt start:
                                                    │            again, same layer)
                          running ──exit──▶ restarting ──(back-off over)──▶ running
                                                 └──(stopped meanwhile)──▶ exited

"restarting" is docker's name for a container whose restart policy
(``restarts.py``) will run it again once its back-off is over: it has no
processes, only a monitor waiting.

Every front end (minirt's CLI, its Python API, the OCI command line) and the
monitor move a container through this one table, under the state file's
lock (``state.update``), so no two writers disagree and no module checks status
strings of its own.  youki's container/state.rs has the same shape.

What is written is only half of the truth: a recorded "running" container
whose processes are gone is exited (``state.load`` says so); the OCI command
line also asks the kernel whether a "created" one's PID 1 still waits.
"""

from minirt.errors import MinirtError

CREATED, RUNNING, PAUSED, EXITED, RESTARTING = "created", "running", "paused", "exited", "restarting"

# from -> the states it may move to
ALLOWED = {
    None: (CREATED,),
    CREATED: (RUNNING, EXITED),
    RUNNING: (PAUSED, EXITED, RESTARTING),
    PAUSED: (RUNNING, EXITED),
    EXITED: (RUNNING,),   # minirt start: the same container again
    RESTARTING: (RUNNING, EXITED),
}

# The OCI runtime spec's names (runc's `state`): only "exited" differs.
OCI_NAMES = {CREATED: "created", RUNNING: "running", PAUSED: "paused", EXITED: "stopped"}


class InvalidTransition(MinirtError):
    pass


def check(old, new, cid=""):
    """Raise InvalidTransition unless a container in state ``old`` may become ``new``."""
    if new not in ALLOWED.get(old, ()):
        who = f"container {cid[:12]}" if cid else "container"
        raise InvalidTransition(f"{who} is {old or 'not created'}: it cannot become {new}")


def move(directory, new, **fields):
    """Record that the container in ``directory`` is now ``new`` (with ``fields``),
    if its recorded state allows it; return the new state."""
    from minirt.runtime import state  # (state.load reads this module's names)

    return state.update(directory, check=lambda old: check(old.get("status"), new, old.get("id", "")),
                        status=new, **fields)


def is_running(info):
    """Its processes run (paused ones too: they exist, frozen)."""
    return info.get("status") in (RUNNING, PAUSED)


def is_up(info):
    """docker's State.Running: its processes run, or will again once its
    restart back-off is over (so ``rm`` needs -f, and prune leaves it)."""
    return is_running(info) or info.get("status") == RESTARTING
