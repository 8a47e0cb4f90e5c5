"""Start-to-exit of ``true`` through each engine, with each OCI runtime under it:
podman, ctr (containerd) and docker, each driving runc, crun and minirt's
``minirt-runc``, side by side.

Not a test (``make bench`` runs it).  What one run times is the engine's whole
command, as a user types it, from the busybox image already loaded:

- ``podman run --rm --runtime PATH --network none busybox true`` (through conmon);
- ``ctr run --rm --runc-binary PATH busybox ID true`` (containerd's runc shim);
- ``docker run --rm --runtime NAME --network none busybox true``, NAME added to
  the dockerd with ``--add-runtime NAME=PATH``.

So the runtime's share is what differs between the rows of one engine: the
ratio column divides each median by runc's under the same engine (issue 18's
target: minirt faster than runc under each).  Each engine has its own state in
a temporary directory (tests/engines.py); everything is removed at the end.

crun is tried first and left out, with the error it gives, where it refuses to
run: crun 1.8 refuses "hybrid" cgroup hosts (cgroup v1 controllers plus a
controller-less cgroup2), this project's.  minirt's runtime is this
checkout's ``minirt-runc`` (its front door, minirt/oci/minirt-runc), copied
into the temporary directory, and beside it its ``minirt-oci``: the console
script pip makes, with this checkout first on its path and its bytecode
cached there, as an installed package has it (an engine calls its runtime four
or five times per container; without the cache, PYTHONDONTWRITEBYTECODE=1
would have each call compile minirt again).  It says so itself, since conmon
passes the runtime no environment.  ``--runtime NAME=PATH`` adds a runtime,
or replaces one of the same name.

Reported: median and 90th percentile of RUNS runs (turns taken, a pause
before each: _timing.py), and the load average before and after, since other
work on a 2-core host moves these numbers.

Run as root: ``make bench`` or ``.venv/bin/python bench/bench_oci.py [--runs N] [--runtime NAME=PATH]``.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile

from _timing import REPO, engines_module, measure, remove_cgroup, run_quiet, summary, table, unmount_under, write_results

sys.path.insert(0, REPO)

from minirt.image.busybox import build_busybox_image  # noqa: E402

LAUNCHER = """#!{python}
import sys
sys.path.insert(0, {repo!r})
sys.pycache_prefix, sys.dont_write_bytecode = {cache!r}, False
from minirt.oci.cli import command
sys.exit(command())
"""
CGROUP_PARENT = f"minirt-bench-oci-{os.getpid()}"


def runtimes(given, tmp):
    """name -> path of the runtimes on this host (minirt's: this checkout's,
    launched from ``tmp``), with those ``given`` (NAME=PATH each)."""
    found = {name: shutil.which(name) for name in ("runc", "crun")}
    found["minirt"] = os.path.join(tmp, "minirt-runc")
    shutil.copy(os.path.join(REPO, "minirt", "oci", "minirt-runc"), found["minirt"])
    with open(os.path.join(tmp, "minirt-oci"), "w") as f:
        f.write(LAUNCHER.format(python=sys.executable, repo=REPO, cache=os.path.join(tmp, "pycache")))
    os.chmod(os.path.join(tmp, "minirt-oci"), 0o755)
    for spec in given:
        name, _, path = spec.partition("=")
        if not name or not os.access(path, os.X_OK):
            sys.exit(f"bench_oci: --runtime {spec}: NAME=PATH of an executable expected")
        found[name] = os.path.abspath(path)
    return {name: path for name, path in found.items() if path}


class Engines:
    """The three engines, each with every runtime, the image loaded; ``argv(engine,
    runtime)`` is the command that runs ``true`` once."""

    def __init__(self, tmp, image, paths):
        engines = engines_module()
        self.started = []
        self.podman = {}
        for name, path in paths.items():  # one per runtime: podman's runtime is a global flag
            self.podman[name] = self._start(engines.Podman, os.path.join(tmp, f"podman-{name}"), runtime=path)
            self._check(self.podman[name]("load", "-q", "-i", image))
        self.docker = self._start(engines.Docker, os.path.join(tmp, "docker"),
                                  runtimes={f"bench-{name}": path for name, path in paths.items()})
        self._check(self.docker("load", "-q", "-i", image))
        self.containerd = self._start(engines.Containerd, os.path.join(tmp, "containerd"), runtimes=paths)
        self._check(self.containerd("images", "import", image))

    def _start(self, kind, directory, **options):
        engine = kind(directory, CGROUP_PARENT, **options)
        self.started.append(engine)
        return engine

    @staticmethod
    def _check(result):
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(result.args)}: {result.stderr.decode().strip()}")

    def argv(self, engine, runtime):
        """(argv, environment) of one ``true`` through ``engine`` with ``runtime``."""
        if engine == "podman":
            return self.podman[runtime].run_argv("busybox", "true"), self.podman[runtime].env
        if engine == "docker":
            return ["docker", "-H", f"unix://{self.docker.sock}", "run", "--rm", "--runtime", f"bench-{runtime}",
                    "--network", "none", "busybox", "true"], None
        return self.containerd.ctr_run_argv(runtime, "busybox:latest", f"bench-{runtime}", "true"), None

    def stop(self):
        for engine in reversed(self.started):
            engine.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("MINIRT_BENCH_RUNS", "10")),
                        help="timed runs of each (default 10)")
    parser.add_argument("--pause", type=float, default=100, help="ms of quiet before each run (default 100)")
    parser.add_argument("--runtime", action="append", default=[], metavar="NAME=PATH",
                        help="time this runtime too (a name of the table's replaces that runtime)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_oci: run as root (the engines need it)")
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="minirt-bench-oci-")
    engines = None
    try:
        image = os.path.join(tmp, "busybox.tar")
        build_busybox_image(image, form="docker")
        paths = runtimes(args.runtime, tmp)
        engines = Engines(tmp, image, paths)
        contenders, refused = {}, {}
        for engine in ("podman", "ctr", "docker"):
            for runtime in paths:
                argv, env = engines.argv(engine, runtime)
                tried = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
                if tried.returncode != 0:  # (crun on a hybrid cgroup host)
                    lines = (tried.stderr.strip() or tried.stdout.strip() or f"exit {tried.returncode}").splitlines()
                    refused[f"{engine} + {runtime}"] = lines[0]
                    continue
                contenders[f"{engine} + {runtime}"] = lambda argv=argv, env=env: run_quiet(
                    argv, env=env, stderr=subprocess.DEVNULL)
        samples = measure(contenders, args.runs, args.pause / 1000)
    finally:
        if engines is not None:
            engines.stop()
        unmount_under(tmp)
        remove_cgroup(CGROUP_PARENT)
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    rows = {name: summary(ms) for name, ms in samples.items()}
    print(f"`true` in busybox through each engine, {args.runs} runs each; "
          f"ratio: median over runc's under the same engine")
    print(f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} CPUs)\n")
    for engine in ("podman", "ctr", "docker"):
        group = {name: s for name, s in rows.items() if name.startswith(engine + " ")}
        if group:
            print(table(group, {"x runc": f"{engine} + runc"}) + "\n")
    for name, why in refused.items():
        print(f"not timed: {name}: it fails here: {why}")
    targets = {}
    for engine in ("podman", "ctr", "docker"):
        ours, runc = rows.get(f"{engine} + minirt"), rows.get(f"{engine} + runc")
        if ours and runc:
            targets[f"minirt faster than runc under {engine}"] = (
                ours["median_ms"] < runc["median_ms"], f"{ours['median_ms']:.0f} ms vs {runc['median_ms']:.0f} ms")
    for name, (ok, detail) in targets.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}: {detail}")
    path = write_results("oci", {
        "runs": args.runs, "pause_ms": args.pause,
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                 "loadavg_before": load_before, "loadavg_after": load_after},
        "runtimes": paths, "results": rows, "refused": refused,
        "targets": {name: {"pass": ok, "detail": detail} for name, (ok, detail) in targets.items()},
        "samples_ms": samples})
    print(f"\nwritten to {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
