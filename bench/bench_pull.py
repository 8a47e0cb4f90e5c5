"""Benchmark: pulling an image from a registry to a runnable state, minirt
against podman, skopeo + umoci, and docker.

Not a test (``make bench`` runs it).  The bench starts Debian's
docker-registry on 127.0.0.1 (the tests' ``tests/image/registry.py``), pushes
two images into it with skopeo -- the Debian ``debootstrap --variant=minbase``
image of ``bench_unpack.py`` (one 92 MB gzip layer, built once and cached) and
the busybox example image -- and then times, side by side in one run:

- ``minirt pull`` into a fresh state directory (a fresh Python each time);
- ``podman pull`` with its own ``--root``/``--runroot`` (overlay driver);
- ``skopeo copy docker://... oci:DIR`` followed by ``umoci unpack``;
- ``docker pull`` against a dockerd the bench starts with its own data root,
  exec root and socket, and stops afterwards.

Every contender ends with the image unpacked and ready to run, from an empty
store: what it made is removed after each run, untimed, and the disk is
synced so that no contender pays for the previous one's write-back.  Every
contender runs once untimed first; then they take turns (``_timing.py``).
Reported: median and p90 of each, and each over minirt's median.

Run as root: ``make bench`` or ``.venv/bin/python bench/bench_pull.py [--runs N]``;
``MINIRT_BENCH_BASELINE=DIR`` times the minirt checked out in DIR beside this one.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import bench_unpack
from _timing import measure, python_env, run_quiet, summary, table, write_results

PYTHON = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "image"))
from registry import Registry  # noqa: E402  (the tests' real registry, on 127.0.0.1)

MINIRT = "minirt pull"
BASELINE = os.environ.get("MINIRT_BENCH_BASELINE")  # e.g. a worktree of main: timed beside this one


def images(tmp) -> dict:
    """name -> the skopeo source of each image pushed to the registry."""
    bench_unpack.CACHE.mkdir(parents=True, exist_ok=True)
    tree, what = bench_unpack.source_tree()
    layout = bench_unpack.build_image(tree, "debian" if what.startswith("debian") else "python")
    busybox = os.path.join(REPO, "images", "busybox.tar")
    if not os.path.exists(busybox):
        from minirt.image.busybox import build_busybox_image
        busybox = os.path.join(tmp, "busybox.tar")
        build_busybox_image(busybox, form="docker")
    return {what: f"oci:{layout}:latest", "busybox": f"docker-archive:{busybox}"}


class Dockerd:
    """A docker daemon of the bench's own: its data, state and socket under ``dir``,
    no bridge or iptables rules, the registry on 127.0.0.1 allowed without TLS."""

    def __init__(self, dir, registry):
        self.dir, self.sock = dir, os.path.join(dir, "docker.sock")
        os.makedirs(dir)
        self.log = open(os.path.join(dir, "dockerd.log"), "w+")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", os.path.join(dir, "data"), "--exec-root", os.path.join(dir, "exec"),
             "--pidfile", os.path.join(dir, "dockerd.pid"), "-H", "unix://" + self.sock,
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--insecure-registry", registry],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while subprocess.run(self.docker("version"), capture_output=True).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                self.log.seek(0)
                raise RuntimeError(f"dockerd did not start: {self.log.read()[-1500:]}")
            time.sleep(0.2)

    def docker(self, *args):
        return ["docker", "-H", "unix://" + self.sock, *args]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def contenders(tmp, ref, dockerd) -> tuple[dict, dict]:
    """(name -> one pull, name -> the clean-up after it)."""
    work = os.path.join(tmp, "work")
    os.makedirs(work, exist_ok=True)
    env = python_env(REPO, tmp)

    def clean(*argv):
        def after():
            if argv:
                subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
            if _mounted(work):
                sys.exit(f"bench_pull: something is still mounted under {work}")
            shutil.rmtree(work)
            os.mkdir(work)  # empty, for the next run
            os.sync()
        return after

    runs = {MINIRT: lambda: run_quiet([PYTHON, "-m", "minirt", "--root", work, "pull", "-q", ref], env=env)}
    after = {MINIRT: clean()}
    if BASELINE:  # another checkout of minirt, to measure a change before and after in one run
        old = python_env(BASELINE, os.path.join(tmp, "baseline"))
        runs[MINIRT + " (baseline)"] = lambda: run_quiet(
            [PYTHON, "-m", "minirt", "--root", work, "pull", "-q", ref], env=old)
        after[MINIRT + " (baseline)"] = clean()
    if shutil.which("podman"):
        podman = ["podman", "--root", os.path.join(work, "root"), "--runroot", os.path.join(work, "run"),
                  "--storage-driver", "overlay", "--events-backend", "none"]
        runs["podman pull"] = lambda: run_quiet(podman + ["pull", "-q", "--tls-verify=false", ref])
        after["podman pull"] = clean(*podman, "rmi", "-a", "-f")
    if shutil.which("skopeo") and shutil.which("umoci"):
        layout = os.path.join(work, "oci") + ":latest"

        def skopeo_umoci():
            run_quiet(["skopeo", "copy", "-q", "--src-tls-verify=false", "docker://" + ref, "oci:" + layout])
            run_quiet(["umoci", "unpack", "--image", layout, os.path.join(work, "bundle")])
        runs["skopeo copy + umoci unpack"] = skopeo_umoci
        after["skopeo copy + umoci unpack"] = clean()
    if dockerd:
        runs["docker pull"] = lambda: run_quiet(dockerd.docker("pull", "-q", ref))
        after["docker pull"] = clean(*dockerd.docker("rmi", "-f", ref))
    return runs, after


def _mounted(path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].startswith(path) for line in f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("MINIRT_BENCH_RUNS", "5")),
                        help="timed runs of each contender on the large image (default 5; busybox: 4x)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_pull: run as root (podman, dockerd and the Debian image need it)")

    tmp = tempfile.mkdtemp(prefix="minirt-bench-pull-", dir="/var/tmp")
    registry = dockerd = None
    report, targets = {}, {}
    try:
        sources = images(tmp)
        os.mkdir(os.path.join(tmp, "registry"))
        registry = Registry(os.path.join(tmp, "registry"))
        if shutil.which("dockerd") and shutil.which("docker"):
            dockerd = Dockerd(os.path.join(tmp, "dockerd"), registry.host)
        else:
            print("note: no dockerd; docker pull is not timed", file=sys.stderr)
        for i, (what, source) in enumerate(sources.items()):
            name = what.split()[0]
            ref = registry.push(source, f"{name}:latest")
            runs = args.runs if i == 0 else args.runs * 4
            pulls, after = contenders(tmp, ref, dockerd)
            samples = measure(pulls, runs, pause=0.5, after=after)
            rows = {n: summary(ms) for n, ms in samples.items()}
            size = sum(layer["size"] for layer in registry.inspect(f"{name}:latest", raw=True)["layers"])
            print(f"\n{what}: {size / 1e6:.1f} MB compressed, {runs} runs each; x minirt: each over minirt's median\n")
            print(table(rows, {"x minirt": MINIRT}))
            peers = [n for n in rows if not n.startswith(MINIRT)]
            ok = all(rows[MINIRT]["median_ms"] < rows[n]["median_ms"] for n in peers)
            targets[f"{name}: minirt pull faster than every peer"] = (
                ok, ", ".join(f"{n} {rows[n]['median_ms'] / rows[MINIRT]['median_ms']:.2f}x" for n in peers))
            report[what] = {"compressed_bytes": size, "runs": runs, "results": rows, "samples_ms": samples}
    finally:
        if dockerd:
            dockerd.stop()
        if registry:
            registry.stop()
        if _mounted(tmp):
            print(f"bench_pull: something is still mounted under {tmp}; not removing it", file=sys.stderr)
        else:
            shutil.rmtree(tmp)

    print()
    for name, (ok, detail) in targets.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}: {detail}")
    path = write_results("pull", {
        "host": {"kernel": platform.release(), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "images": report,
        "targets": {name: {"pass": ok, "detail": detail} for name, (ok, detail) in targets.items()},
    })
    print(f"\nwritten to {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
