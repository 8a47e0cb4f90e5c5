"""Restart policies: whether, and when, an exited container runs again.

Lecture idea: a container is a process, and processes die; a service should
come back.  docker's daemon keeps a restart manager per container.  minirt
has no daemon, so the monitor that saw PID 1 exit decides (``after_exit``),
waits out the back-off and starts the same container again
(``Container.restart``: same id, name, writable layer, volumes and address);
the new PID 1 gets a new monitor and the old one exits.

docker's rules (its restartmanager), in docker's shape
``{"Name": ..., "MaximumRetryCount": N}``:

- ``no``: never.  ``always`` and ``unless-stopped``: whatever the exit code.
  ``on-failure[:N]``: after a non-zero exit, at most N times (0: no limit).
- A container stopped by hand (``minirt stop`` or ``kill``: docker's
  HasBeenManuallyStopped) is not restarted, whatever its policy, until it is
  started by hand, which also sets RestartCount back to 0.
- Back-off: 100 ms before the first restart, doubled each time up to a
  minute, and back to 100 ms once the container had run for 10 s.
- While it waits, the container is "restarting" (``lifecycle.py``).

Nothing restarts by itself after the host reboots: no daemon comes up to do
it.  ``minirt start --all-restartable`` (a line for a boot script) starts
what docker's daemon would start when it comes up (``wanted_at_boot``).
"""

import os
import time

from minirt.errors import MinirtError
from minirt.runtime import lifecycle, state

FIRST_DELAY, MAX_DELAY = 0.1, 60.0   # seconds
RESET_AFTER = 10.0                   # a run this long starts the back-off again from FIRST_DELAY
POLL = 0.05                          # how often a waiting monitor looks whether it was stopped


def should_restart(policy, exit_code, restart_count, stopped_by_hand):
    """docker's decision when PID 1 has exited."""
    name = (policy or {}).get("Name", "no")
    if stopped_by_hand or name == "no":
        return False
    if name == "on-failure":
        most = policy.get("MaximumRetryCount", 0)
        return exit_code != 0 and (most == 0 or restart_count < most)
    return True  # always, unless-stopped


def next_delay(previous, ran_for):
    """The back-off before the next restart, in seconds."""
    if not previous or ran_for >= RESET_AFTER:
        return FIRST_DELAY
    return min(previous * 2, MAX_DELAY)


def after_exit(directory, policy, exit_code, finished_at, **fields):
    """Record PID 1's exit: "exited", or "restarting" if the policy says so.
    Returns the back-off in seconds before the restart, or None."""
    delay = []

    def decide(old):
        again = should_restart(policy, exit_code, old.get("restart_count", 0), old.get("stopped_by_hand"))
        new = lifecycle.RESTARTING if again else lifecycle.EXITED
        lifecycle.check(old.get("status"), new, old.get("id", ""))
        if not again:
            return {"status": new}
        delay.append(next_delay(old.get("restart_delay"), finished_at - (old.get("started_at") or finished_at)))
        return {"status": new, "restart_delay": delay[0]}

    state.update(directory, change=decide, exit_code=exit_code, finished_at=finished_at, **fields)
    return delay[0] if delay else None


def restart_after(directory, delay):
    """The waiting monitor's last work: the back-off, then the same container
    started again -- unless it was stopped (or started, or removed) meanwhile."""
    deadline = time.monotonic() + delay
    error = None
    while True:
        try:
            info = state.read_json(os.path.join(directory, "state.json"))
        except FileNotFoundError:
            return  # removed meanwhile
        if info.get("status") != lifecycle.RESTARTING or info.get("stopped_by_hand"):
            break
        left = deadline - time.monotonic()
        if left <= 0:
            from minirt.runtime.container import Container

            try:  # (it checks again, holding the container, that nobody stopped it)
                if Container.load(os.path.dirname(os.path.dirname(directory)), info["id"]).restart(by_policy=True):
                    return
            except MinirtError as e:
                error = f"restarting: {e}"
            break
        time.sleep(min(POLL, left))
    _give_up(directory, error)


def _give_up(directory, error):
    """A restart that will not happen: "restarting" becomes "exited"."""
    def give_up(old):
        if old.get("status") != lifecycle.RESTARTING:
            return {}
        return {"status": lifecycle.EXITED, **({"error": error} if error else {})}

    try:
        state.update(directory, change=give_up)
    except FileNotFoundError:
        pass  # removed meanwhile


def wanted_at_boot(policy, info):
    """Whether docker's daemon, coming up, would start this stopped container
    again: ``always`` ones, ``unless-stopped`` ones nobody stopped by hand,
    ``on-failure`` ones whose last exit failed with retries left."""
    if info.get("status") != lifecycle.EXITED:
        return False  # running (or waiting to restart), or never started
    name = (policy or {}).get("Name", "no")
    if name == "always":
        return True
    if name == "unless-stopped":
        return not info.get("stopped_by_hand")
    return should_restart(policy, info.get("exit_code"), info.get("restart_count", 0), False)  # on-failure, no
