"""Healthchecks and restart policies: what a detached container's monitor does
besides waiting, through the command line as a docker user types it.

Healthchecks: a probe that turns healthy after a delay, one that fails until
the container is unhealthy, one that runs too long and is killed, the start
period and its interval, the image's HEALTHCHECK and --no-healthcheck, and
inspect's State.Health in docker's shape.  Restart policies: on-failure:N
restarts exactly N times (the same container: id, writable layer, address),
always restarts after exit 0 with docker's back-off, stop and kill are
respected, rm -f of a restarting container, and after a "reboot" (monitors
and containers killed) ``start --all-restartable`` brings back what docker's
daemon would.  Nothing is left behind: no monitor, prober or cgroup.
"""

import json
import os
import re
import shutil
import signal
import tempfile
import time

import pytest

from minirt.errors import SpecError
from minirt.runtime import restarts, state
from tests.runtime.test_lifecycle import Lifecycle, wait_for

pytestmark = pytest.mark.privileged

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


class Minirt(Lifecycle):
    """test_lifecycle's ``minirt`` in a state root of its own (every container
    it started removed at the end, leaving nothing), with views of health and
    restarts."""

    def run_d(self, *args, image=None):
        """``run -d [FLAGS...] IMAGE CMD...``: ``args`` up to "--" are flags, the rest the
        command; --network none unless the flags say otherwise."""
        cut = args.index("--") if "--" in args else 0
        flags = args[:cut] if "--network" in args[:cut] else ("--network", "none", *args[:cut])
        cid = self.ok("run", "-d", *flags, image or self.image, *args[cut + 1:]).strip()
        self.ids.append(cid)
        return cid

    def health(self, ref):
        return self.inspect(ref)["State"].get("Health")

    def state(self, cid):
        return state.load(self.root, cid)

    def status(self, cid):
        [row] = [line for line in self.ok("ps", "-a").splitlines() if line.startswith(cid[:12])]
        return row


@pytest.fixture(scope="module")
def module_root():
    path = tempfile.mkdtemp(prefix="minirt-health-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mr(module_root, busybox_image, host):
    m = Minirt(module_root, busybox_image, host)
    yield m
    m.remove_all()


# -- healthchecks --------------------------------------------------------------------------

def test_a_probe_turns_healthy_once_the_service_is_ready(mr):
    cid = mr.run_d("--health-cmd", "test -e /tmp/ready || { echo not yet; exit 1; }", "--health-interval", "100ms",
                   "--health-retries", "1000", "--", "sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 60")
    assert mr.status(cid).endswith("(health: starting)")
    first = wait_for(lambda: mr.health(cid)["Log"])[0]
    assert first["ExitCode"] == 1 and first["Output"] == "not yet\n"
    assert mr.health(cid)["Status"] == "starting"   # failures, but fewer than the retries
    health = wait_for(lambda: (h := mr.health(cid))["Status"] == "healthy" and h)
    assert set(health) == {"Status", "FailingStreak", "Log"} and health["FailingStreak"] == 0
    assert 1 <= len(health["Log"]) <= 5 and health["Log"][-1]["ExitCode"] == 0
    for entry in health["Log"]:
        assert set(entry) == {"Start", "End", "ExitCode", "Output"}
        assert RFC3339.fullmatch(entry["Start"]) and RFC3339.fullmatch(entry["End"]) and entry["Start"] <= entry["End"]
    wait_for(lambda: len(mr.health(cid)["Log"]) == 5)   # the last five probes, no more
    assert mr.status(cid).endswith("(healthy)")


def test_failures_in_a_row_make_it_unhealthy_after_retries(mr):
    cid = mr.run_d("--health-cmd", "echo sick; exit 1", "--health-interval", "100ms", "--health-retries", "3",
                   "--", "sleep", "60")
    seen, deadline = [], time.monotonic() + 60
    while (not seen or seen[-1][0] != "unhealthy") and time.monotonic() < deadline:
        health = mr.health(cid)
        seen.append((health["Status"], health["FailingStreak"]))
    assert all((status == "unhealthy") == (streak >= 3) for status, streak in seen), seen
    assert mr.health(cid)["Log"][-1]["Output"] == "sick\n"
    assert mr.status(cid).endswith("(unhealthy)")


def test_a_probe_that_runs_too_long_is_killed_and_fails(mr, host):
    cid = mr.run_d("--health-cmd", "sleep 7777", "--health-timeout", "300ms", "--health-interval", "100ms",
                   "--health-retries", "2", "--", "sleep", "60")
    health = wait_for(lambda: (h := mr.health(cid))["Status"] == "unhealthy" and h)
    assert [e["ExitCode"] for e in health["Log"]] == [-1, -1]
    assert {e["Output"] for e in health["Log"]} == {"Health check exceeded timeout (300ms)"}
    wait_for(lambda: len(mr.health(cid)["Log"]) == 4)
    probes = [pid for pid in host.processes_in_cgroup_of(cid) if b"7777" in open(f"/proc/{pid}/cmdline", "rb").read()]
    assert len(probes) <= 1   # the ones that timed out are gone; at most the one running now


def test_failures_in_the_start_period_do_not_count(mr):
    cid = mr.run_d("--health-cmd", "exit 1", "--health-interval", "100ms", "--health-retries", "1",
                   "--health-start-period", "2s", "--", "sleep", "60")
    started = mr.state(cid)["started_at"]
    health = wait_for(lambda: (h := mr.health(cid))["Log"] and h)
    if time.time() < started + 1.9:   # (read within the start period: a slow host may be past it)
        assert (health["Status"], health["FailingStreak"]) == ("starting", 0) and health["Log"][0]["ExitCode"] == 1
    assert wait_for(lambda: (h := mr.health(cid))["Status"] == "unhealthy" and h)["FailingStreak"] >= 1


def test_the_start_interval_applies_in_the_start_period_only(mr):
    cid = mr.run_d("--health-cmd", "exit 1", "--health-interval", "1h", "--health-start-interval", "100ms",
                   "--health-start-period", "1s", "--", "sleep", "60")
    wait_for(lambda: len(mr.health(cid)["Log"]) >= 2)   # probes every 100ms while starting
    wait_for(lambda: time.time() > mr.state(cid)["started_at"] + 1.5)
    before = mr.health(cid)
    # none counted but perhaps the last one, scheduled in the period and run just after it
    assert before["Status"] == "starting" and before["FailingStreak"] <= 1 < len(before["Log"])
    time.sleep(0.5)
    assert mr.health(cid)["Log"] == before["Log"]   # the next probe is an hour away


def test_the_image_s_healthcheck_and_no_healthcheck(mr, tmp_path):
    mr.ok("load", "-i", mr.image, "-t", "busybox")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nHEALTHCHECK --interval=100ms --retries=1 "
                                         "CMD test -e /ready\n")
    mr.ok("build", "-q", "-t", "checked", str(tmp_path))
    [image] = json.loads(mr.ok("image", "inspect", "checked"))
    assert image["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "test -e /ready"], "Interval": 10**8,
                                              "Retries": 1}
    cid = mr.run_d("--", "sh", "-c", "touch /ready; exec sleep 60", image="checked")
    assert wait_for(lambda: mr.health(cid)["Status"] == "healthy")
    unchecked = mr.run_d("--no-healthcheck", "--", "sleep", "60", image="checked")
    assert "Health" not in mr.inspect(unchecked)["State"]
    assert not mr.status(unchecked).endswith(")")
    faster = mr.run_d("--health-interval", "50ms", "--", "sleep", "60", image="checked")  # the image's Test
    assert mr.inspect(faster)["Config"]["healthcheck"]["Test"] == ["CMD-SHELL", "test -e /ready"]
    assert wait_for(lambda: mr.health(faster)["Status"] == "unhealthy")


def test_the_api_takes_docker_s_healthconfig(busybox_image, state_root, host):
    from minirt.api import containers

    check = {"Test": ["CMD", "sh", "-c", "echo $0 >&2", "from-exec"], "Interval": 10**8}
    with containers.start(busybox_image, ["sleep", "60"], root=state_root, network="none", healthcheck=check) as c:
        health = wait_for(lambda: (h := containers.inspect(c)["State"]["Health"])["Status"] == "healthy" and h)
        assert health["Log"][-1]["Output"] == "from-exec\n"   # stderr too, as docker's Output
    host.assert_nothing_left(c)
    with containers.start(busybox_image, ["sleep", "60"], root=state_root, network="none",
                          healthcheck={"Test": ["CMD", "/no/such/probe"], "Interval": 10**8}) as c:
        entry = wait_for(lambda: containers.inspect(c)["State"]["Health"]["Log"])[-1]
        assert entry["ExitCode"] == -1 and "/no/such/probe" in entry["Output"]
    host.assert_nothing_left(c)
    with pytest.raises(SpecError, match="Retries in Healthcheck cannot be negative"):
        containers.start(busybox_image, ["true"], root=state_root, healthcheck={"Test": ["CMD", "x"], "Retries": -1})


def test_a_restarted_container_is_starting_again(mr):
    cid = mr.run_d("--health-cmd", "true", "--health-interval", "100ms", "--", "sleep", "60")
    wait_for(lambda: mr.health(cid)["Status"] == "healthy")
    mr.ok("stop", "-t", "0", cid)
    assert mr.health(cid)["Status"] == "healthy"   # the last word, as docker keeps it
    mr.ok("start", cid)
    health = wait_for(lambda: (h := mr.health(cid))["Status"] == "healthy" and h)
    restarted = mr.state(cid)["started_at"]
    assert all(entry["Start"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(restarted)))
               for entry in health["Log"])   # a new record, from the new start


# -- restart policies ----------------------------------------------------------------------

def test_back_off_and_its_reset_follow_docker():
    delays = [restarts.next_delay(None, 0)]
    while delays[-1] < restarts.MAX_DELAY:
        delays.append(restarts.next_delay(delays[-1], 1.0))
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8] and delays[-1] == 60.0 and restarts.next_delay(60.0, 1.0) == 60.0
    assert restarts.next_delay(6.4, 10.0) == 0.1   # a run of 10 s starts over


@pytest.mark.parametrize("policy, code, count, by_hand, again", [
    ({"Name": "no"}, 1, 0, False, False),
    ({"Name": "always"}, 0, 99, False, True),
    ({"Name": "always"}, 0, 0, True, False),
    ({"Name": "unless-stopped"}, 0, 0, False, True),
    ({"Name": "unless-stopped"}, 1, 0, True, False),
    ({"Name": "on-failure", "MaximumRetryCount": 0}, 0, 0, False, False),
    ({"Name": "on-failure", "MaximumRetryCount": 0}, 1, 1000, False, True),
    ({"Name": "on-failure", "MaximumRetryCount": 3}, 137, 2, False, True),
    ({"Name": "on-failure", "MaximumRetryCount": 3}, 137, 3, False, False),
    ({"Name": "on-failure", "MaximumRetryCount": 3}, 1, 0, True, False),
])
def test_docker_s_decision_to_restart(policy, code, count, by_hand, again):
    assert restarts.should_restart(policy, code, count, by_hand) is again


def test_on_failure_3_restarts_the_same_container_exactly_three_times(mr):
    cid = mr.run_d("--restart", "on-failure:3", "--name", "crasher", "--network", "bridge",
                   "--", "sh", "-c", "echo x >> /runs; echo $(wc -l < /runs) $(hostname) $(ip -4 -o addr show eth0 |"
                   " awk '{print $4}'); exit 3")
    assert mr.ok("wait", "crasher") == "3\n"
    lines = mr.ok("logs", cid).splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4"]   # one writable layer, four runs
    assert len({tuple(line.split()[1:]) for line in lines}) == 1         # one hostname, one address
    info = mr.inspect("crasher")
    assert (info["Id"], info["State"]["Status"], info["State"]["ExitCode"], info["RestartCount"]) == (
        cid, "exited", 3, 3)
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert "Exited (3)" in mr.status(cid)


def test_on_failure_does_not_restart_a_success(mr):
    cid = mr.run_d("--restart", "on-failure", "--", "true")
    assert mr.ok("wait", cid) == "0\n"
    assert mr.inspect(cid)["RestartCount"] == 0


def test_always_restarts_after_exit_0_with_back_off_until_stopped(mr):
    cid = mr.run_d("--restart", "always", "--", "sh", "-c", "sleep 0.1")
    seen, deadline = set(), time.monotonic() + 60
    while len({n for n, _ in seen}) < 4 and time.monotonic() < deadline:
        info = mr.state(cid)
        if info.get("restart_count"):
            seen.add((info["restart_count"], info.get("restart_delay")))
        time.sleep(0.01)
    # the back-off doubles from 100 ms; a count is seen with its own delay or the next one
    assert all(delay in (0.1 * 2 ** (n - 1), 0.1 * 2 ** n) for n, delay in seen), seen
    status = mr.status(cid)
    assert " Up " in f" {status}" or "Restarting (0)" in status
    mr.ok("stop", cid)
    info = mr.inspect(cid)
    assert info["State"]["Status"] == "exited"
    wait_for(lambda: not state.alive(info["State"]["MonitorPid"], None))   # no monitor left to restart it
    assert mr.inspect(cid)["State"]["Status"] == "exited"
    assert mr.inspect(cid)["RestartCount"] == info["RestartCount"]


def test_kill_is_respected_too(mr):
    cid = mr.run_d("--restart", "always", "--", "sleep", "60")
    monitor = mr.inspect(cid)["State"]["MonitorPid"]
    mr.ok("kill", cid)
    wait_for(lambda: not state.alive(monitor, None))
    info = mr.inspect(cid)
    assert (info["State"]["Status"], info["State"]["ExitCode"], info["RestartCount"]) == ("exited", 137, 0)


def test_a_start_by_hand_resets_the_count_and_the_policy_applies_again(mr):
    cid = mr.run_d("--restart", "on-failure:2", "--", "sh", "-c", "echo run; exit 1")
    mr.ok("wait", cid)
    assert mr.inspect(cid)["RestartCount"] == 2 and len(mr.ok("logs", cid).splitlines()) == 3
    mr.ok("start", cid)
    mr.ok("wait", cid)
    assert mr.inspect(cid)["RestartCount"] == 2 and len(mr.ok("logs", cid).splitlines()) == 6  # counted from 0 again


def test_rm_f_of_a_restarting_container(mr):
    cid = mr.run_d("--restart", "always", "--", "sh", "-c", "exit 1")
    wait_for(lambda: mr.state(cid).get("restart_delay", 0) >= 3.2)   # a back-off long enough to catch
    wait_for(lambda: mr.state(cid)["status"] == "restarting")
    assert mr.status(cid).startswith(cid[:12]) and "Restarting (1)" in mr.status(cid)
    assert cid[:12] in mr.ok("ps", "-q").split()   # as docker's ps: listed without -a
    info = mr.inspect(cid)
    assert (info["State"]["Restarting"], info["State"]["Running"], info["State"]["Pid"]) == (True, True, 0)
    r = mr("rm", cid)
    assert r.returncode == 1 and b"is restarting: stop it first or use rm -f" in r.stderr
    assert cid[:12] not in mr.ok("system", "prune", "-f")   # not a stopped container
    mr.ok("rm", "-f", cid)
    mr.gone(cid)


def test_after_a_reboot_start_all_restartable_brings_back_what_docker_would(mr):
    def run(name, policy):
        return mr.run_d("--name", name, "--restart", policy, "--", "sleep", "60")

    def crash(cid):  # what a power cut does: monitor and container gone, nothing recorded
        info = mr.inspect(cid)["State"]
        for pid in (info["MonitorPid"], info["Pid"]):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: mr.inspect(cid)["State"]["Status"] == "exited")

    always, stopped_always = run("always", "always"), run("stopped-always", "always")
    unless, stopped_unless = run("unless", "unless-stopped"), run("stopped-unless", "unless-stopped")
    failing, never = run("failing", "on-failure:2"), run("never", "no")
    mr.ok("stop", "-t", "0", stopped_always, stopped_unless)
    for cid in (always, unless, failing, never):
        crash(cid)
    started = mr.ok("start", "--all-restartable").split()
    assert sorted(started) == sorted([always, stopped_always, unless, failing])
    for cid in started:
        info = mr.inspect(cid)
        assert (info["State"]["Status"], info["RestartCount"]) == ("running", 0)
    assert mr.inspect(stopped_unless)["State"]["Status"] == mr.inspect(never)["State"]["Status"] == "exited"
    assert mr.ok("start", "--all-restartable") == ""   # all there already
    mr.ok("rm", "-f", *started)


def test_the_api_takes_docker_s_restart_policy(busybox_image, state_root, host):
    from minirt.api import containers

    with containers.start(busybox_image, ["sh", "-c", "exit 2"], root=state_root, network="none",
                          restart_policy={"Name": "on-failure", "MaximumRetryCount": 2}) as c:
        assert c.wait() == 2
        assert containers.inspect(c)["RestartCount"] == 2
    host.assert_nothing_left(c)
    with pytest.raises(SpecError, match="cannot specify both --restart and --rm"):
        containers.start(busybox_image, ["true"], root=state_root, remove=True, restart_policy={"Name": "always"})
    with pytest.raises(SpecError, match="a restart policy needs a detached container"):
        containers.run(busybox_image, ["true"], root=state_root, remove=False, restart_policy={"Name": "always"})


@pytest.mark.parametrize("flags, says", [("--interval=5x", "--interval=5x: not a duration"),
                                         ("--timeout=500us", "--timeout=500us: cannot be less than 1ms")])
def test_a_bad_healthcheck_duration_in_a_dockerfile_names_its_line(mr, tmp_path, flags, says):
    mr.ok("load", "-i", mr.image, "-t", "busybox")
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nHEALTHCHECK {flags} CMD true\n")
    r = mr("build", "-q", "-t", "bad-check", str(tmp_path))
    assert r.returncode != 0 and says in r.stderr.decode() and b"Traceback" not in r.stderr


def test_a_foreground_container_shows_no_health_it_does_not_have(mr, tmp_path):
    r = mr("run", "--network", "none", "--name", "fg", "--health-cmd", "true", mr.image, "sh", "-c",
           "sleep 0.2; echo done")
    assert r.returncode == 0 and r.stdout == b"done\n"
    assert "Health" not in mr.inspect("fg")["State"]   # (no monitor: nothing probed it)
    mr.ok("rm", "fg")
