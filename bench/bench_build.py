"""Building an image from a Dockerfile: ``minirt build`` beside ``buildah bud`` and
``docker build``, in one run.

Not a test (``make bench`` runs it).  The same context and Dockerfile (a
tutorial-shaped app: WORKDIR, COPY of a source tree, three RUN steps, ENV, CMD)
from the same busybox base image, loaded into each engine first, every build
with ``--network none``:

- cold: ``--no-cache``: every step runs (the base image is there);
- warm: the same build again: every step is a cache hit;
- edit: one source file changed since the last build: the steps before the
  COPY are cache hits, the COPY and the steps after it run again.

Each engine has its own state in a temporary directory (a dockerd of its own:
tests/engines.py); everything is removed at the end.  docker's BuildKit is not
among them: Debian 12's docker CLI reaches it only through the buildx plugin,
which Debian does not package (``DOCKER_BUILDKIT=1 docker build`` says "the
buildx component is missing"); the classic builder is docker's here.  Reported: median and
90th percentile of RUNS builds, and each engine's median over minirt's.

Run as root: ``make bench`` or ``.venv/bin/python bench/bench_build.py [--runs N]``.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile

from _timing import engines_module, measure, python_env, remove_cgroup, run_quiet, summary, table, unmount_under, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from minirt.image.busybox import build_busybox_image  # noqa: E402

DOCKERFILE = """\
FROM busybox
WORKDIR /app
COPY src/ ./src/
RUN for i in $(seq 1 100); do echo "line $i" >> /app/generated.txt; done
RUN tar -czf /app/src.tgz -C /app src
RUN wc -l /app/generated.txt > /app/count
ENV APP_MODE=production
CMD ["cat", "/app/count"]
"""


def context(directory):
    os.makedirs(os.path.join(directory, "src", "pkg"))
    with open(os.path.join(directory, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    for i in range(200):
        with open(os.path.join(directory, "src", "pkg", f"module{i}.py"), "w") as f:
            f.write(f"def f{i}():\n    return {i}\n" * 20)
    return directory


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("MINIRT_BENCH_RUNS", "5")))
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_build.py: run as root (docker and buildah here need it)")
    tmp = tempfile.mkdtemp(prefix="minirt-bench-build-")
    cgroup_parent = f"minirt-bench-{os.getpid()}"
    docker = None
    try:
        image = os.path.join(tmp, "busybox.tar")
        build_busybox_image(image, form="docker")
        ctx = context(os.path.join(tmp, "ctx"))
        env = python_env(REPO, tmp)

        root = os.path.join(tmp, "minirt")
        run_quiet([sys.executable, "-m", "minirt", "--root", root, "load", "-i", image, "-t", "busybox"], env=env)
        buildah = ["buildah", "--root", os.path.join(tmp, "buildah"), "--runroot", os.path.join(tmp, "buildah-run"),
                   "--storage-driver", "overlay"]
        run_quiet(buildah + ["pull", "-q", f"docker-archive:{image}"])
        docker = engines_module().Docker(os.path.join(tmp, "docker"), cgroup_parent)
        assert docker("load", "-i", image).returncode == 0

        def minirt(*flags):
            return lambda: run_quiet([sys.executable, "-m", "minirt", "--root", root, "build", *flags,
                                      "-t", "bench-app", ctx], env=env, stderr=subprocess.DEVNULL)

        def bud(*flags):
            return lambda: run_quiet(buildah + ["bud", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                                                "--network", "none", "--layers", *flags, "-q", "-t", "bench-app",
                                                ctx], stderr=subprocess.DEVNULL)

        def docker_build(*flags):
            denv = dict(os.environ, DOCKER_BUILDKIT="0")
            return lambda: run_quiet(["docker", "-H", f"unix://{docker.sock}", "build", "--network", "none",
                                      *flags, "-q", "-t", "bench-app", ctx], env=denv, stderr=subprocess.DEVNULL)

        edited = os.path.join(ctx, "src", "pkg", "module0.py")

        def edit(build):
            def run():
                with open(edited, "a") as f:
                    f.write("# edited\n")
                build()
            return run

        kinds = {"minirt build": minirt, "buildah bud": bud, "docker build": docker_build}
        results = {}
        for case, flags, wrap in (("cold (--no-cache)", ("--no-cache",), None), ("warm (all cached)", (), None),
                                  ("edit (one source file changed)", (), edit)):
            contenders = {name: (wrap(make(*flags)) if wrap else make(*flags)) for name, make in kinds.items()}
            samples = measure(contenders, options.runs, pause=0.2)
            rows = {name: summary(ms) for name, ms in samples.items()}
            results[case] = rows
            print(f"\n{case}, {options.runs} builds each:")
            print(table(rows, {"x minirt": "minirt build"}))
        path = write_results("build", {"runs": options.runs, "host": {
            "kernel": platform.release(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "loadavg": os.getloadavg()}, "cases": results})
        print(f"\nresults: {path}")
    finally:
        if docker is not None:
            docker.stop()
        subprocess.run(["buildah", "--root", os.path.join(tmp, "buildah"), "--runroot",
                        os.path.join(tmp, "buildah-run"), "--storage-driver", "overlay", "rm", "--all"],
                       capture_output=True)
        subprocess.run(["buildah", "--root", os.path.join(tmp, "buildah"), "--runroot",
                        os.path.join(tmp, "buildah-run"), "--storage-driver", "overlay", "rmi", "--all", "-f"],
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "minirt", "--root", os.path.join(tmp, "minirt"), "system", "prune"],
                       capture_output=True, env=python_env(REPO, tmp))
        unmount_under(tmp)
        remove_cgroup(cgroup_parent)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
