"""Benchmark: what a test pays for a fresh container -- pytest-minirt against
testcontainers-python and pytest-docker.

Not a test (``make bench`` runs it).  Each contender is a pytest suite of N
tests written the way its plugin's users write them, each test making a fresh
busybox container that runs ``true``, asserting it succeeded, and removing it:

- ``pytest-minirt``: ``container("true")`` (minirt/testing/, no daemon);
- ``testcontainers``: ``DockerContainer("busybox:latest").with_command("true")``
  as a context manager, waiting for the exit code (its Ryuk reaper off: it
  would pull an image from Docker Hub; with it on, each session pays more);
- ``pytest-docker``: its ``docker_services`` fixture with ``--container-scope
  function`` and a compose file of one service, set up with ``run --rm``
  (``true`` exits, so ``up --wait`` cannot be used) and torn down with ``down -v``;
  ``docker-compose`` v1 (Debian's; ``docker compose`` v2 is not packaged here).

The docker peers talk to a dockerd the bench starts with state of its own
(``tests/engines.py``), busybox loaded into it; every container, minirt's
too, has no network (that dockerd has no bridge).  The per-test overhead is
the slope: (wall time of a suite of 2N tests - that of N tests) / N, so that
what a session pays once -- pytest's start-up, the plugins' imports, minirt
unpacking the image into the session's store, the docker client's
connection -- cancels out (it is reported apart, as the N suite's wall time).
Sequential, and under pytest-xdist ``-n 2`` (then per test of the whole run,
both workers together).  Each suite runs once untimed, then they take turns
(``_timing.py``).  N is 100 for pytest-minirt and 10 for the docker peers
(``--tests``), whose containers take a second or more each.

Targets (issue 21): pytest-minirt at least 20 times faster than testcontainers,
and under 25 ms per container.

Run as root: ``make bench`` or ``.venv/bin/python bench/bench_pytest.py [--runs N] [--tests N]``.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

from _timing import engines_module, python_env, remove_cgroup, summary, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSYBOX = os.path.join(REPO, "images", "busybox.tar")

SUITES = {
    "pytest-minirt": (["-p", "minirt.testing"], """
        import pytest

        @pytest.mark.minirt(image={image!r}, network="none")
        def test_{n}(container):
            {body}
        """, 'assert container("true").exit_code == 0'),
    "testcontainers": ([], """
        from testcontainers.core.container import DockerContainer

        def test_{n}():
            {body}
        """, 'with DockerContainer("busybox:latest").with_command("true").with_kwargs(network_mode="none") as c:\n'
             '        assert c.get_wrapped_container().wait()["StatusCode"] == 0'),
    "pytest-docker": (["-p", "pytest_docker", "--container-scope", "function"], """
        import pytest

        @pytest.fixture(scope="function")
        def docker_compose_command():  # Debian's, a Python program: not to see our PYTHONPATH
            return "env -u PYTHONPATH docker-compose"

        @pytest.fixture(scope="function")
        def docker_compose_file():
            return {compose!r}

        @pytest.fixture(scope="function")
        def docker_setup():
            return ["run --rm app"]

        def test_{n}(docker_services):
            {body}
        """, "pass  # docker_services ran the container (a failure raises)"),
}
COMPOSE = "services:\n  app:\n    image: busybox:latest\n    command: [\"true\"]\n    network_mode: none\n"


def write_suite(directory, name, tests, image, compose):
    """The suite ``name`` with ``tests`` tests."""
    _, template, body = SUITES[name]
    os.makedirs(directory)
    with open(os.path.join(directory, "test_suite.py"), "w") as f:
        for n in range(tests):
            f.write(textwrap.dedent(template).format(n=n, body=body, image=image, compose=compose) + "\n")


def timed_run(directory, plugin_args, xdist, env):
    """The wall time of pytest on ``directory``, in ms."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin_args,
            *(["-p", "xdist", "-n", "2"] if xdist else []), directory]
    start = time.perf_counter()
    r = subprocess.run(argv, cwd=directory, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"bench_pytest: {' '.join(argv)} failed:\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
    return elapsed * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("MINIRT_BENCH_RUNS", "3")),
                        help="timed runs of each suite (default 3)")
    # (pytest-minirt's N: 100, since the slope of 20 tests of ~13 ms each is lost in a
    # session's start-up noise; it read 20.0x with 20 and 14.5x with 100 in one hour)
    parser.add_argument("--tests", type=int, nargs=2, default=(100, 10), metavar=("MINIRT", "DOCKER"),
                        help="N, the tests of the smaller suite: pytest-minirt's, the docker peers' (default 100 10)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_pytest: run as root (minirt's containers and the dockerd need it)")
    missing = [m for m in ("testcontainers", "pytest_docker", "xdist") if not _importable(m)]
    if missing:
        sys.exit(f"bench_pytest: {', '.join(missing)} missing: pip install -e '.[bench,test]'")

    tmp = tempfile.mkdtemp(prefix="mbt-", dir="/var/tmp")
    cgroup_parent = f"minirt-bench-{os.getpid()}"
    docker = None
    try:
        image = BUSYBOX
        if not os.path.exists(image):
            from minirt.image.busybox import build_busybox_image
            image = os.path.join(tmp, "busybox.tar")
            build_busybox_image(image, form="docker")
        docker = engines_module().Docker(os.path.join(tmp, "docker"), cgroup_parent)
        loaded = docker("load", "-i", image)
        assert loaded.returncode == 0, loaded.stderr
        compose = os.path.join(tmp, "docker-compose.yml")
        with open(compose, "w") as f:
            f.write(COMPOSE)
        # Bytecode cached, as a user's Python does (this environment may set
        # PYTHONDONTWRITEBYTECODE): else pytest rewrites each suite's asserts
        # again in every session, a cost per test in the slope, for everyone.
        env = {**python_env(REPO, tmp), "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
               "DOCKER_HOST": f"unix://{docker.sock}", "TESTCONTAINERS_RYUK_DISABLED": "true",
               "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        runs, sizes = {}, {}
        for name, (plugin_args, _, _) in SUITES.items():
            sizes[name] = args.tests[0] if name == "pytest-minirt" else args.tests[1]
            for times in (1, 2):
                directory = os.path.join(tmp, f"{name}-{times}n")
                write_suite(directory, name, sizes[name] * times, image, compose)
                plugins = plugin_args + (["--minirt-root", os.path.join(tmp, "minirt")]
                                         if name == "pytest-minirt" else [])
                for xdist in (False, True):
                    runs[(name, xdist, times)] = (directory, plugins, xdist)
        for (name, xdist, times), how in runs.items():
            if times == 1:
                timed_run(*how, env)  # warm-up, untimed
        walls = {key: [] for key in runs}
        for _ in range(args.runs):
            for key, how in runs.items():
                time.sleep(0.5)
                walls[key].append(timed_run(*how, env))
    finally:
        if docker:
            docker.stop()
        remove_cgroup(cgroup_parent)
        shutil.rmtree(tmp, ignore_errors=True)

    samples, sessions = {}, {}
    for name in SUITES:
        for xdist in (False, True):
            row = f"{name}{' -n 2' if xdist else ''}"
            n, twice = walls[(name, xdist, 1)], walls[(name, xdist, 2)]
            samples[row] = [(b - a) / sizes[name] for a, b in zip(n, twice)]  # the same round
            sessions[row] = summary(n)["median_ms"]
    rows = {name: summary(ms) for name, ms in samples.items()}
    width = max(map(len, rows))
    print(f"\nper-test overhead of a fresh container (run true, assert, remove), {args.runs} runs; "
          f"x minirt: over pytest-minirt's median in the same mode\n")
    print(f"{'':{width}}  {'median ms':>9}  {'p90 ms':>8}  {'x minirt':>8}  {'N tests':>7}  {'N suite s':>9}")
    for name, s in rows.items():
        mode = " -n 2" if name.endswith(" -n 2") else ""
        ours = rows["pytest-minirt" + mode]["median_ms"]
        print(f"{name:{width}}  {s['median_ms']:9.1f}  {s['p90_ms']:8.1f}  {s['median_ms'] / ours:8.1f}  "
              f"{sizes[name.split()[0]]:7}  {sessions[name] / 1000:9.2f}")
    targets = {}
    for mode in ("", " -n 2"):
        ours, theirs = rows["pytest-minirt" + mode]["median_ms"], rows["testcontainers" + mode]["median_ms"]
        targets[f"pytest-minirt{mode} >= 20x faster than testcontainers{mode}"] = (
            theirs >= 20 * ours, f"{theirs / ours:.1f}x")
        targets[f"pytest-minirt{mode} < 25 ms per container"] = (ours < 25, f"{ours:.1f} ms")
    print()
    for name, (ok, detail) in targets.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}: {detail}")
    path = write_results("pytest", {
        "host": {"kernel": platform.release(), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "tests": sizes, "results": rows, "samples_ms": samples, "suite_of_n_ms": sessions,
        "targets": {name: {"pass": ok, "detail": detail} for name, (ok, detail) in targets.items()},
    })
    print(f"\nwritten to {os.path.relpath(path)}")


def _importable(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
