"""The monitor: the small process that looks after a detached container.

Lecture idea: a container's process must have a parent that waits for it.  When
``minirt run -d`` returns, minirt itself is gone, so the helper process that
forked the container's PID 1 stays behind as its parent, replaced (execve) by
this small program, as conmon is for podman.  It

1. with a healthcheck, forks a prober that runs the probes (``health.py``);
2. waits for PID 1 and turns its wait status into docker's exit code (if
   minirt recorded it as running: otherwise it never ran, and stays "created");
3. asks the cgroup whether the OOM killer struck;
4. removes the cgroup (killing anything left in it);
5. records all that in state.json, under the container's lock;
6. deletes the container if it was started with ``--rm``, or, if its restart
   policy says so, waits out the back-off and starts it again
   (``restarts.py``), leaving it to a new monitor.

It imports as little as possible: one of these runs per container, and what
it imports stays in its memory for the container's whole life.  So it is
started as a script (``python -S -P monitor.py``: no site, no runpy), waits
with nothing but ``os`` loaded, and imports the rest of minirt only once PID 1
has exited.  ``bench/bench_lifecycle.py`` measures the result (PSS per monitor).
"""

import os
import sys
import time

import _signal  # the C half of `signal`; the Python half pulls in enum (~0.8 MB per monitor)


def main(directory, pid1, probing=False):
    for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGPIPE):
        _signal.signal(s, _signal.SIG_IGN)
    prober = _prober(directory, pid1) if probing else None
    _, status = os.waitpid(pid1, 0)
    if prober is not None:
        os.kill(prober, _signal.SIGKILL)
        os.waitpid(prober, 0)
    if os.environ.get("MINIRT_CRASH_AT") == "monitor":  # fault injection for the crash tests
        os.kill(os.getpid(), _signal.SIGKILL)
    from minirt.errors import exit_status
    from minirt.runtime import lifecycle, restarts, state

    code = exit_status(status)
    try:
        info = state.read_json(os.path.join(directory, "state.json"))
    except FileNotFoundError:
        return code  # removed meanwhile (`rm -f`)
    if not lifecycle.is_running(info) or info.get("pid") != pid1:
        # minirt died before it recorded PID 1 (which then gave up): the
        # container never ran; it stays "created" for `rm` or `system prune`.
        return code
    config = state.read_json(os.path.join(directory, "config.json"))
    oom = False
    if info.get("cgroup"):
        from minirt.kernel import cgroups

        cg = cgroups.at(info["cgroup"])
        oom = cg.oom_killed()
        try:
            cg.remove()
        except OSError:
            pass  # `minirt rm` / `system prune` will try again
    try:
        delay = restarts.after_exit(directory, config.get("restart_policy"), code, time.time(), oom_killed=oom)
    except FileNotFoundError:
        return code  # removed meanwhile (`rm -f`): nothing left to record
    if delay is not None:
        restarts.restart_after(directory, delay)
    elif config.get("remove"):
        from minirt.runtime.container import Container
        from minirt.spec import ContainerSpec

        root = os.path.dirname(os.path.dirname(directory))
        Container(ContainerSpec.from_json(config), root).remove_files()
    return code


def _prober(directory, pid1):
    """Fork the prober; it imports what probing needs in its own memory."""
    monitor = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            from minirt.runtime import health

            code = health.watch(directory, pid1, monitor)
        finally:
            os._exit(code)
    return pid


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), probing=sys.argv[3:] == ["probe"]))
