"""Healthchecks: asking a running container, now and then, whether it works.

Lecture idea: a container is a process, and a process that runs is not yet a
service that answers.  docker's HEALTHCHECK asks from inside: a command run
in the container (an exec: PID 1's namespaces, cgroup, user and privileges,
``exec.py``) whose exit status says healthy (0) or not.  docker's daemon runs
the probes; minirt has none, so a detached container's monitor forks a
*prober* that sleeps, probes, records the result in state.json and sleeps
again, until PID 1 exits and the monitor ends it.  docker's rules (its
daemon/health.go), with the image's HEALTHCHECK and run's --health-* flags
merged in ``spec.py``:

- the first probe an Interval after the start, each next one an Interval
  after the last one ended (StartInterval instead, during the start period
  while the container is still "starting");
- a probe that runs longer than Timeout is killed and fails (exit code -1);
- exit status 0 makes the container healthy and its failing streak 0; any
  other adds one to the streak, and Retries failures in a row make it
  unhealthy -- except a failure within StartPeriod of the start, before it
  was ever healthy, which does not count;
- the log keeps the last 5 probes, each one's output cut at 4096 bytes.

``inspect`` shows the record as docker's State.Health, ``ps`` its status.
"""

import os
import time

from minirt.spec import HEALTH_DEFAULTS, format_duration, health_enabled

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
LOG_ENTRIES = 5
OUTPUT_LIMIT = 4096


def setting(check, field):
    """A field of the HealthConfig ``check``, or docker's default where it is unset (0)."""
    return check.get(field) or HEALTH_DEFAULTS[field]


def report(check, recorded):
    """docker's State.Health of a container with the HealthConfig ``check``
    from its ``recorded`` health (None before the first probe's end);
    None for a container without probes, as docker leaves it out."""
    if not health_enabled(check):
        return None
    return recorded or {"Status": STARTING, "FailingStreak": 0, "Log": []}


def probe_command(check, shell):
    """The probe's argv: a CMD as it is, a CMD-SHELL through the image's SHELL."""
    test = check["Test"]
    return list(test[1:]) if test[0] == "CMD" else [*(shell or ("/bin/sh", "-c")), test[1]]


def watch(directory, pid1, monitor):
    """The prober's whole life (a child of the ``monitor``, which ends it when
    PID 1 ``pid1`` exits): probe, record, sleep.  Returns its exit status."""
    import _signal

    from minirt.kernel import libc
    from minirt.runtime.container import Container

    libc.prctl(libc.PR_SET_PDEATHSIG, _signal.SIGKILL)  # nobody may be left probing a container
    if os.getppid() != monitor:  # (its monitor died before that was said)
        return 0
    container = Container.load(os.path.dirname(os.path.dirname(directory)), os.path.basename(directory))
    check = container.spec.healthcheck
    args = probe_command(check, container.spec.shell)
    started = _running_since(container, pid1)
    status = STARTING
    while started is not None:
        in_start_period = time.time() - started < setting(check, "StartPeriod") / 1e9
        pause = setting(check, "StartInterval" if in_start_period and status == STARTING else "Interval")
        time.sleep(pause / 1e9)
        result = probe(container, args, setting(check, "Timeout"))
        recorded = record(directory, pid1, check, started, result)
        if recorded is None:
            break  # PID 1 has exited meanwhile: nothing to say about it
        status = recorded["Status"]
    return 0


def _running_since(container, pid1):
    """When PID 1 started, once its minirt has recorded it running (we may
    be quicker); None if it exited first."""
    from minirt.runtime import lifecycle, state

    while True:
        info = container.state()
        if lifecycle.is_running(info) and info.get("pid") == pid1:
            return info["started_at"]
        if not state.alive(pid1, None):
            return None
        time.sleep(0.01)


def probe(container, args, timeout):
    """Run ``args`` in ``container`` for at most ``timeout`` ns; return
    (start, end (ns since the epoch), exit code, output: stdout and stderr
    together).  A probe that could not run or ran too long has exit code -1."""
    from minirt.errors import MinirtError, exit_status
    from minirt.runtime import exec as execution

    start = time.time_ns()
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid, failure = execution.start(container, args, stdio=(null, w, w))
        finally:
            os.close(null)
            os.close(w)
        report = execution.wait_for_exec(failure)
        if report:
            os.waitpid(pid, 0)
            execution.raise_report(report, args[0])
        output, exited = _output(r, pid, start + timeout)
    except MinirtError as e:
        return start, time.time_ns(), -1, str(e)
    finally:
        os.close(r)
    if not exited:
        _kill_probe(pid)
        os.waitpid(pid, 0)
        return start, time.time_ns(), -1, f"Health check exceeded timeout ({format_duration(timeout)})"
    code = exit_status(os.waitpid(pid, 0)[1])
    return start, time.time_ns(), code, output.decode(errors="replace")


def _output(fd, pid, deadline):
    """What the probe writes on ``fd`` (its first OUTPUT_LIMIT bytes) until
    ``pid`` exits or the ``deadline`` (ns) passes; and whether it exited.
    (Until it exits, not until end-of-file: a process it left behind may
    keep the pipe open.)"""
    import select

    pidfd = os.pidfd_open(pid)
    kept = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    try:
        while True:
            left = (deadline - time.time_ns()) / 1e6
            if left <= 0:
                return bytes(kept), False
            ready = dict(poller.poll(left))
            if fd in ready:
                data = os.read(fd, 65536)
                kept += data[:OUTPUT_LIMIT - len(kept)]
                if not data:
                    poller.unregister(fd)
            if pidfd in ready:
                os.set_blocking(fd, False)
                try:
                    while data := os.read(fd, 65536):
                        kept += data[:OUTPUT_LIMIT - len(kept)]
                except BlockingIOError:
                    pass
                return bytes(kept), True
    finally:
        os.close(pidfd)


def _kill_probe(pid):
    """SIGKILL a probe that ran too long: the command (the joining process's
    child, in the container's pid namespace) and the joining process."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            targets = [int(child) for child in f.read().split()]
    except OSError:
        targets = []
    for target in targets + [pid]:
        try:
            os.kill(target, 9)
        except ProcessLookupError:
            pass


def record(directory, pid1, check, started, result):
    """Add a probe's ``result`` to the container's health by docker's rules;
    return the new health, or None if PID 1 ``pid1`` is no longer running."""
    from minirt.runtime import lifecycle, state

    start, end, code, output = result
    entry = {"Start": rfc3339(start), "End": rfc3339(end), "ExitCode": code, "Output": output}

    def judge(old):
        if not lifecycle.is_running(old) or old.get("pid") != pid1:
            raise _Gone
        health = dict(old.get("health") or {"Status": STARTING, "FailingStreak": 0, "Log": []})
        if code == 0:
            health.update(Status=HEALTHY, FailingStreak=0)
        elif not (health["Status"] == STARTING and start / 1e9 - started < setting(check, "StartPeriod") / 1e9):
            health["FailingStreak"] += 1
            if health["FailingStreak"] >= setting(check, "Retries"):
                health["Status"] = UNHEALTHY
        health["Log"] = (health["Log"] + [entry])[-LOG_ENTRIES:]
        return {"health": health}

    try:
        return state.update(directory, change=judge)["health"]
    except (_Gone, FileNotFoundError):
        return None


class _Gone(Exception):
    """The container is no longer the one probed."""


def rfc3339(ns):
    """Go's RFC3339Nano, in UTC: the times of docker's JSON."""
    seconds, nanos = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}".rstrip("0").rstrip(".") + "Z"
