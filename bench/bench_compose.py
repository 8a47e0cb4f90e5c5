"""minirt compose against docker-compose and podman-compose: ``up -d`` until every
service is healthy, then ``down``, for the same 5-service file.

The file (FILE below): five busybox services -- a web server, an api, a
worker, a cache and a database -- each with a healthcheck probed every 100 ms,
on the project's network, the database with a named volume, and depends_on
between them.  Timed for each tool, in turns (``_timing.py``'s habits):

- **up to healthy**: from ``up -d`` until the engine reports all five
  containers healthy, polled every 20 ms with one ``inspect`` of the five
  (the poll's own cost is in every tool's time alike);
- **down**: ``down -v``, until it returns (containers, network and volume gone).

Peers, each with state of its own (tests/engines.py): Debian's docker-compose
(1.29) against a dockerd started here, and Debian's podman-compose (1.0)
driving podman with runc and cgroupfs.  podman runs its healthchecks from
systemd timers, which this host (no systemd as PID 1) does not have: here the
poll itself runs ``podman healthcheck run`` for each container not yet
healthy, which is what the timer would do (so podman's probes run as often as
the poll, more often than the others').  Services stop on SIGTERM at once
(``init: true``), so no tool waits out a grace period.

Not a test: run as root, ``make bench`` or ``.venv/bin/python
bench/bench_compose.py [--runs N]``.  Results go to bench/results/compose.json.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from _timing import engines_module, python_env, remove_cgroup, run_quiet, summary, table, unmount_under, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from minirt.image.busybox import build_busybox_image  # noqa: E402

PROJECT = "benchshop"
SERVICES = ("db", "cache", "api", "worker", "web")
HEALTH = "{test: [CMD, 'true'], interval: 100ms, timeout: 5s, retries: 30}"
FILE = f"""\
services:
  db:
    image: busybox
    init: true
    command: sleep 3600
    volumes: [data:/data]
    healthcheck: {HEALTH}
  cache:
    image: busybox
    init: true
    command: sleep 3600
    healthcheck: {HEALTH}
  api:
    image: busybox
    init: true
    command: httpd -f -p 8000
    depends_on: [db, cache]
    healthcheck: {HEALTH}
  worker:
    image: busybox
    init: true
    command: sleep 3600
    depends_on: [db]
    healthcheck: {HEALTH}
  web:
    image: busybox
    init: true
    command: httpd -f -p 80
    depends_on: [api]
    healthcheck: {HEALTH}
volumes:
  data:
"""


class Tool:
    """One compose implementation: ``up()`` to healthy, ``down()``."""

    def __init__(self, name, compose, inspect, env=None, probe=None):
        self.name, self.compose, self.inspect, self.env, self.probe = name, compose, inspect, env, probe

    def up(self):
        run_quiet(self.compose + ["up", "-d"], env=self.env, stderr=subprocess.DEVNULL)
        names = [self.container(s) for s in SERVICES]
        deadline = time.monotonic() + 120
        while True:
            r = subprocess.run(self.inspect + names, capture_output=True, env=self.env)
            health = {}
            if r.returncode == 0:
                for record in json.loads(r.stdout):
                    health[record["Name"].lstrip("/")] = ((record.get("State") or {}).get("Health") or {}).get(
                        "Status") or record.get("State", {}).get("Healthcheck", {}).get("Status")
            if len(health) == len(names) and all(s == "healthy" for s in health.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not all healthy after 120 s: {health}")
            if self.probe:
                for name in names:
                    if health.get(name) != "healthy":
                        self.probe(name)
            time.sleep(0.02)

    def down(self):
        run_quiet(self.compose + ["down", "-v"], env=self.env, stderr=subprocess.DEVNULL)

    def container(self, service):
        # docker-compose 1.x and podman-compose 1.0 join with "_", docker compose v2 and minirt with "-".
        return f"{PROJECT}-{service}-1" if self.name == "minirt compose" else f"{PROJECT}_{service}_1"


def tools(tmp, project_dir, root, docker, podman):
    env = python_env(REPO, tmp)
    minirt = [sys.executable, "-m", "minirt", "--root", root]
    out = [Tool("minirt compose", minirt + ["compose", "-p", PROJECT, "-f", os.path.join(project_dir, "compose.yaml")],
                minirt + ["inspect"], env=env)]
    if docker is not None:
        denv = dict(os.environ, DOCKER_HOST=f"unix://{docker.sock}", COMPOSE_INTERACTIVE_NO_CLI="1")
        out.append(Tool("docker-compose", ["docker-compose", "-p", PROJECT, "-f",
                                           os.path.join(project_dir, "compose.yaml")],
                        ["docker", "inspect"], env=denv))
    if podman is not None:
        base = podman.base[1:]

        def probe(name):
            subprocess.run(podman.base + ["healthcheck", "run", name], capture_output=True, env=podman.env)

        out.append(Tool("podman-compose", ["podman-compose", "--podman-args", shlex.join(base),
                                           "--podman-run-args", "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024",
                                           "-p", PROJECT, "-f", os.path.join(project_dir, "compose.yaml")],
                        podman.base + ["inspect"], env=podman.env, probe=probe))
    return out


# podman's networks keep their namespaces in /run/netns, which it makes a
# mount point of itself (as `ip netns add` does) and leaves so.
NETNS_DIR = "/run/netns"


def unmount_netns_dir():
    """Undo the /run/netns mount podman made, once nothing is named in it."""
    if os.path.ismount(NETNS_DIR) and not os.listdir(NETNS_DIR):
        subprocess.run(["umount", NETNS_DIR], capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("MINIRT_BENCH_RUNS", "5")))
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_compose.py: run as root (the engines and minirt's bridges need it)")
    tmp = tempfile.mkdtemp(prefix="minirt-bench-compose-")
    netns_mounted = os.path.ismount(NETNS_DIR)
    cgroup_parent = f"minirt-bench-{os.getpid()}"
    engines = engines_module()
    docker = podman = None
    contenders = []
    try:
        image = str(build_busybox_image(os.path.join(tmp, "busybox.tar"), form="docker"))
        project_dir = os.path.join(tmp, PROJECT)
        os.makedirs(project_dir)
        with open(os.path.join(project_dir, "compose.yaml"), "w") as f:
            f.write(FILE)
        root = os.path.join(tmp, "minirt")
        run_quiet([sys.executable, "-m", "minirt", "--root", root, "load", "-i", image], env=python_env(REPO, tmp))
        if shutil.which("docker-compose"):
            docker = engines.Docker(os.path.join(tmp, "docker"), cgroup_parent)
            assert docker("load", "-i", image).returncode == 0
        else:
            print("docker-compose: left out (apt-get install docker-compose)")
        if shutil.which("podman-compose"):
            podman = engines.Podman(os.path.join(tmp, "podman"), cgroup_parent)
            assert podman("load", "-i", image).returncode == 0
        else:
            print("podman-compose: left out (apt-get install podman-compose)")
        contenders = tools(tmp, project_dir, root, docker, podman)
        for tool in contenders:  # warm-up, untimed
            tool.up()
            tool.down()
        samples = {f"{t.name}: {what}": [] for t in contenders for what in ("up to healthy", "down")}
        for _ in range(options.runs):
            for tool in contenders:
                for what, step in (("up to healthy", tool.up), ("down", tool.down)):
                    time.sleep(0.2)
                    start = time.perf_counter()
                    step()
                    samples[f"{tool.name}: {what}"].append((time.perf_counter() - start) * 1000)
        results = {}
        for what in ("up to healthy", "down"):
            rows = {name.split(":")[0]: summary(ms) for name, ms in samples.items() if name.endswith(what)}
            results[what] = rows
            print(f"\n{what}: 5 services, {options.runs} runs each ({os.cpu_count()} CPUs):")
            print(table(rows, {"x minirt": "minirt compose"}))
        path = write_results("compose", {"runs": options.runs, "file": FILE, "host": {
            "kernel": platform.release(), "python": platform.python_version(), "cpus": os.cpu_count()},
            "cases": results})
        print(f"\nresults: {path}")
    finally:
        for tool in contenders:
            try:
                tool.down()
            except (subprocess.CalledProcessError, OSError):
                pass
        if docker is not None:
            docker("network", "prune", "-f")
            docker.stop()
        if podman is not None:
            podman.stop()
        subprocess.run([sys.executable, "-m", "minirt", "--root", os.path.join(tmp, "minirt"), "system", "prune",
                        "--volumes"], capture_output=True, env=python_env(REPO, tmp))
        unmount_under(tmp)
        if not netns_mounted:
            unmount_netns_dir()
        remove_cgroup(cgroup_parent)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
