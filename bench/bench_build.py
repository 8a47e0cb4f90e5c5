"""Building an image from a Dockerfile: ``minirt build`` beside ``buildah bud`` and
``docker build``, in one run.

Not a test (``make bench`` runs it).  The same contexts and Dockerfiles (a
tutorial-shaped app: WORKDIR, COPY of a source tree, three RUN steps, ENV, CMD)
from the same base images, loaded into each engine first: busybox, and Debian's
minbase (images/debian.tar, made once if missing: ``make images``; the app then
also adds a user and runs as it).  Every build with ``--network none``:

- cold: ``--no-cache``: every step runs (the base image is there);
- warm: the same build again: every step is a cache hit;
- edit: one source file changed since the last build: the steps before the
  COPY are cache hits, the COPY and the steps after it run again.

Each engine has its own state in a temporary directory (a dockerd of its own:
tests/engines.py); everything is removed at the end.  docker's BuildKit is not
among them: Debian 12's docker CLI reaches it only through the buildx plugin,
which Debian does not package (``DOCKER_BUILDKIT=1 docker build`` says "the
buildx component is missing"); the classic builder is docker's here.  Reported: median and
90th percentile of RUNS builds, each engine's median over minirt's, and the load
average before and after each case (the host may be shared: say it with the numbers).

Run as root: ``make bench`` or ``.venv/bin/python bench/bench_build.py [--runs N]
[--base busybox|debian|all]``.
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

from minirt.errors import ImageError  # noqa: E402
from minirt.image.busybox import build_busybox_image  # noqa: E402
from minirt.image.debian import made_once  # noqa: E402

DOCKERFILES = {"busybox": """\
FROM busybox
WORKDIR /app
COPY src/ ./src/
RUN for i in $(seq 1 100); do echo "line $i" >> /app/generated.txt; done
RUN tar -czf /app/src.tgz -C /app src
RUN wc -l /app/generated.txt > /app/count
ENV APP_MODE=production
CMD ["cat", "/app/count"]
""", "debian": """\
FROM debian:bookworm
RUN useradd --system --create-home --home-dir /srv/app app
WORKDIR /srv/app
COPY src/ ./src/
RUN for i in $(seq 1 100); do echo "line $i" >> generated.txt; done
RUN tar -czf src.tgz src
RUN wc -l generated.txt > count
USER app
ENV APP_MODE=production
CMD ["cat", "/srv/app/count"]
"""}


def context(directory, dockerfile):
    os.makedirs(os.path.join(directory, "src", "pkg"))
    with open(os.path.join(directory, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    for i in range(200):
        with open(os.path.join(directory, "src", "pkg", f"module{i}.py"), "w") as f:
            f.write(f"def f{i}():\n    return {i}\n" * 20)
    return directory


def base_images(tmp, wanted):
    """base -> the docker archive of its image: busybox made here, Debian's
    made once (images/debian.tar) or left out with the reason."""
    images = {}
    if wanted in ("busybox", "all"):
        images["busybox"] = str(build_busybox_image(os.path.join(tmp, "busybox.tar"), form="docker"))
    if wanted in ("debian", "all"):
        path = os.path.join(REPO, "images", "debian.tar")
        try:
            made_once(path)
            images["debian"] = path
        except ImageError as e:
            print(f"debian: left out: {e}")
    return images


def builders(ctx, tag, root, env, buildah, docker):
    """Engine name -> ``make(*flags)``: a callable building ``ctx`` as ``tag``."""
    def minirt(*flags):
        return lambda: run_quiet([sys.executable, "-m", "minirt", "--root", root, "build", *flags,
                                  "-t", tag, ctx], env=env, stderr=subprocess.DEVNULL)

    def bud(*flags):
        return lambda: run_quiet(buildah + ["bud", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                                            "--network", "none", "--layers", *flags, "-q", "-t", tag,
                                            ctx], stderr=subprocess.DEVNULL)

    def docker_build(*flags):
        denv = dict(os.environ, DOCKER_BUILDKIT="0")
        return lambda: run_quiet(["docker", "-H", f"unix://{docker.sock}", "build", "--network", "none",
                                  *flags, "-q", "-t", tag, ctx], env=denv, stderr=subprocess.DEVNULL)

    return {"minirt build": minirt, "buildah bud": bud, "docker build": docker_build}


def editing(path):
    """``edit(build)``: the build after a line is added to the source file ``path``."""
    def edit(build):
        def run():
            with open(path, "a") as f:
                f.write("# edited\n")
            build()
        return run
    return edit


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("MINIRT_BENCH_RUNS", "5")))
    parser.add_argument("--base", choices=("busybox", "debian", "all"), default="all")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_build.py: run as root (docker and buildah here need it)")
    tmp = tempfile.mkdtemp(prefix="minirt-bench-build-")
    cgroup_parent = f"minirt-bench-{os.getpid()}"
    docker = None
    try:
        images = base_images(tmp, options.base)
        env = python_env(REPO, tmp)
        root = os.path.join(tmp, "minirt")
        buildah = ["buildah", "--root", os.path.join(tmp, "buildah"), "--runroot", os.path.join(tmp, "buildah-run"),
                   "--storage-driver", "overlay"]
        docker = engines_module().Docker(os.path.join(tmp, "docker"), cgroup_parent)
        for image in images.values():
            run_quiet([sys.executable, "-m", "minirt", "--root", root, "load", "-i", image], env=env)
            run_quiet(buildah + ["pull", "-q", f"docker-archive:{image}"])
            assert docker("load", "-i", image).returncode == 0

        results = {}
        for base in images:
            ctx = context(os.path.join(tmp, f"ctx-{base}"), DOCKERFILES[base])
            kinds = builders(ctx, f"bench-{base}", root, env, buildah, docker)
            edit = editing(os.path.join(ctx, "src", "pkg", "module0.py"))
            for case, flags, wrap in (("cold (--no-cache)", ("--no-cache",), None), ("warm (all cached)", (), None),
                                      ("edit (one source file changed)", (), edit)):
                contenders = {name: (wrap(make(*flags)) if wrap else make(*flags)) for name, make in kinds.items()}
                before = os.getloadavg()
                samples = measure(contenders, options.runs, pause=0.2)
                rows = {name: summary(ms) for name, ms in samples.items()}
                results[f"{base}: {case}"] = {"rows": rows, "loadavg": [before, os.getloadavg()]}
                print(f"\n{base}, {case}, {options.runs} builds each (load average {_load(before)} before, "
                      f"{_load(os.getloadavg())} after, {os.cpu_count()} CPUs):")
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


def _load(average):
    return " ".join(f"{x:.1f}" for x in average)


if __name__ == "__main__":
    main()
