"""How long does it take to start a container, run `true` in it, and clean up?
And to run `true` in a container that is already running (exec)?

Measured side by side, in one run, on the same busybox root filesystem:

- ``minirt run --rm IMAGE true`` through the command line (a fresh Python each time);
- ``minirt.run(IMAGE, ["true"])``, the Python API, timed in-process (no interpreter
  start-up: this is what a test suite calling minirt pays per container);
- ``runc run`` and ``crun run`` with an OCI bundle (``runc spec``'s defaults, command
  ``true``), the runtimes that docker and podman use;
- Python's own start-up, the floor under any command line written in Python;
- ``minirt exec``, ``runc exec`` and ``crun exec`` of ``true`` in a running
  container of their own (``sleep``), started before timing begins.

The image's layers are unpacked before timing starts, so this measures starting a
container, not unpacking one (``bench_unpack.py`` does that).  runc and crun get a
hard-linked copy of minirt's unpacked layer as their rootfs: the same files, while
whatever they create inside (mount points) stays out of minirt's store.

The targets come from issue 2: the API must beat ``runc run``, and the CLI must stay
within Python's start-up plus 30 ms, i.e. minirt itself may add only 30 ms.  To see
where the CLI's time goes, the table also times importing ``minirt.cli`` with
``minirt.options`` (the parser), and ``minirt.api.containers`` (the rest of what ``minirt
run`` imports) in a bare Python.

Fairness: every contender runs once untimed, then they take turns with a pause
before each run (see ``_timing.py``: on cgroup v1 a container started right after
another one skips a ~10 ms wait in the kernel).  Every timed Python runs this
checkout with cached bytecode, as an installed package would.  On this project's
"hybrid" cgroup host crun only runs in a wrapper that hides a mount; the wrapper is
timed alone and subtracted run by run.

Run as root: ``make bench`` or ``.venv/bin/python bench/bench_run.py [--runs N]``.
"""

import argparse
import contextlib
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

from _timing import make_bundle, measure, python_env, run_quiet, summary, table, write_results

PYTHON = sys.executable                         # the venv's python (the Makefile uses it)
MINIRT = os.path.join(os.path.dirname(PYTHON), "minirt")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TAG = f"minirt-bench-{os.getpid()}"             # names of everything this script creates
SLEEPER = TAG + "-sleeper"                      # runc's and crun's container to exec into
CGROUP_PARENT = TAG + "-minirt"                 # minirt's cgroups (runc's container TAG has /TAG)

# Measure this checkout's minirt, whatever the venv happens to have installed.
sys.path.insert(0, REPO)


# -- the root filesystem ---------------------------------------------------------

def busybox_image(tmp):
    """A busybox image built by minirt's own image code, or None if it is missing."""
    try:
        from minirt.image.busybox import build_busybox_image
    except ImportError as e:
        print(f"note: no busybox image ({e}); timing runc and crun only", file=sys.stderr)
        return None
    path = os.path.join(tmp, "busybox.tar")
    build_busybox_image(path, form="docker")
    return path


def unpacked_layer(image, root):
    """Unpack ``image`` into minirt's store under ``root``; return its one layer dir."""
    from minirt.image import Store, open_image
    with open_image(image) as img:
        layers = Store(root).unpack(img)
    if len(layers) != 1:
        sys.exit(f"bench_run: {image}: expected a one-layer busybox image, got {len(layers)} layers")
    return str(layers[0])


def handmade_rootfs(path):
    """/bin/busybox and a symlink per applet: enough for runc and crun to run `true`."""
    os.makedirs(os.path.join(path, "bin"))
    busybox = os.path.join(path, "bin", "busybox")
    shutil.copy2("/bin/busybox", busybox)
    for applet in subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split():
        if applet != "busybox":  # the list names busybox itself; keep the binary
            os.symlink("busybox", os.path.join(path, "bin", applet))


def cgroup2_hider():
    """The argv prefix that runs a command with the cgroup2 mount out of sight.

    On a "hybrid" host (cgroup v1 controllers plus a controller-less cgroup2 at
    /sys/fs/cgroup/unified) crun 1.8 refuses to start.  The prefix gives the
    command a private mount namespace without that mount; it costs a fork/exec
    or two, which is timed on its own ("crun's unshare wrapper") and subtracted.
    """
    with open("/proc/self/mounts") as f:
        hybrid = any(line.split()[1:3] == ["/sys/fs/cgroup/unified", "cgroup2"] for line in f)
    if not hybrid:
        return []
    return ["unshare", "-m", "sh", "-c", 'umount /sys/fs/cgroup/unified && exec "$@"', "sh"]


# -- set-up and clean-up ---------------------------------------------------------

@contextlib.contextmanager
def scratch():
    """A temporary directory for everything; on the way out, remove all we made."""
    tmp = tempfile.mkdtemp(prefix=TAG + "-")
    os.environ["MINIRT_CGROUP_PARENT"] = CGROUP_PARENT   # ours alone to remove
    try:
        yield tmp
    finally:
        cleanup(tmp)


def cleanup(tmp):
    root = os.path.join(tmp, "root")
    for d in glob.glob(os.path.join(root, "containers", "*")):   # minirt containers left behind
        from minirt.runtime.container import Container
        from minirt.spec import ContainerSpec
        try:
            with open(os.path.join(d, "config.json")) as f:
                Container(ContainerSpec.from_json(json.load(f)), root).delete(force_remove=True)
        except Exception as e:  # noqa: BLE001 -- report it, and clean up the rest
            print(f"bench_run: cleaning up {d}: {e}", file=sys.stderr)
    for argv in (["runc", "--root", os.path.join(tmp, "runc")],
                 cgroup2_hider() + ["crun", "--root", os.path.join(tmp, "crun")]):
        for name in (TAG, SLEEPER) if os.path.isdir(argv[-1]) else ():
            subprocess.run(argv + ["delete", "-f", name], capture_output=True,
                           env=dict(os.environ, PATH=SYSTEM_PATH))
    for d in [d for name in (CGROUP_PARENT, TAG, SLEEPER)
              for d in glob.glob(f"/sys/fs/cgroup/*/{name}") + glob.glob(f"/sys/fs/cgroup/{name}")]:
        with contextlib.suppress(OSError):
            os.rmdir(d)
    with open("/proc/self/mounts") as f:
        if any(line.split()[1].startswith(tmp) for line in f):
            print(f"bench_run: something is still mounted under {tmp}; not removing it", file=sys.stderr)
            return
    shutil.rmtree(tmp, ignore_errors=True)


# -- the benchmark ---------------------------------------------------------------

def contenders(tmp, image, rootfs):
    """Name -> a callable that does the thing once (and raises if it fails)."""
    runc = shutil.which("runc", path=SYSTEM_PATH)
    crun = shutil.which("crun", path=SYSTEM_PATH)
    root = os.path.join(tmp, "root")
    bundle = os.path.join(tmp, "bundle")
    make_bundle(bundle, rootfs, runc, ["true"])
    hide = cgroup2_hider()
    env = python_env(REPO, tmp)
    c = {}
    if image:
        import minirt

        def api():
            # runc's default config has a network namespace with only lo: compare like with like.
            result = minirt.run(image, ["true"], root=root, network="none")
            assert result.exit_code == 0, result

        c["minirt run (CLI)"] = lambda: run_quiet([MINIRT, "--root", root, "run", "--rm", "--network", "none", image, "true"], env=env)
        c["minirt.run() (API)"] = api
    c["runc run"] = lambda: run_quiet([runc, "--root", os.path.join(tmp, "runc"), "run", "-b", bundle, TAG])
    if crun:
        c["crun run"] = lambda: run_quiet(hide + [crun, "--root", os.path.join(tmp, "crun"), "run", "-b", bundle, TAG])
        if hide:
            c["crun's unshare wrapper"] = lambda: run_quiet(hide + ["true"])
    c.update(exec_contenders(tmp, image, rootfs, env))
    c["python -S -c pass"] = lambda: run_quiet([PYTHON, "-S", "-c", "pass"], env=env)
    c["python -c pass"] = lambda: run_quiet([PYTHON, "-c", "pass"], env=env)
    for module in ("minirt.cli, minirt.options", "minirt.api.containers"):
        c[f"python -c 'import {module}'"] = lambda m=module: run_quiet([PYTHON, "-c", f"import {m}"], env=env)
    return c


def exec_contenders(tmp, image, rootfs, env):
    """``exec true`` into a sleeping container of each runtime, started here."""
    runc = shutil.which("runc", path=SYSTEM_PATH)
    crun = shutil.which("crun", path=SYSTEM_PATH)
    root = os.path.join(tmp, "root")
    bundle = os.path.join(tmp, "sleeper")
    make_bundle(bundle, rootfs, runc, ["sleep", "1000000"])
    hide = cgroup2_hider()
    c = {}
    if image:
        cid = subprocess.run([MINIRT, "--root", root, "run", "-d", "--network", "none", image, "sleep", "1000000"],
                             env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True).stdout.strip()
        c["minirt exec (CLI)"] = lambda: run_quiet([MINIRT, "--root", root, "exec", cid, "true"], env=env)
    runtimes = [("runc exec", [runc, "--root", os.path.join(tmp, "runc")])]
    if crun:
        runtimes.append(("crun exec", hide + [crun, "--root", os.path.join(tmp, "crun")]))
    for name, argv in runtimes:
        run_quiet(argv + ["run", "-d", "-b", bundle, SLEEPER], stderr=subprocess.DEVNULL)
        c[name] = lambda argv=argv: run_quiet(argv + ["exec", SLEEPER, "true"])
    return c


def paired(samples, name, minus):
    """Run-by-run differences: each pair was timed moments apart, so drift cancels."""
    return [a - b for a, b in zip(samples[name], samples[minus])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each (default 30)")
    parser.add_argument("--pause", type=float, default=50, help="ms of quiet before each run (default 50)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_run: run as root (containers need it)")

    with scratch() as tmp:
        image = busybox_image(tmp)
        if image:
            rootfs = unpacked_layer(image, os.path.join(tmp, "root"))
        else:
            rootfs = os.path.join(tmp, "handmade-rootfs")
            handmade_rootfs(rootfs)
        samples = measure(contenders(tmp, image, rootfs), args.runs, args.pause / 1000)

    rows = {}
    for name, ms in samples.items():
        rows[name] = summary(ms)
        if name == "crun's unshare wrapper":
            rows["crun run, wrapper subtracted"] = summary(paired(samples, "crun run", name))
        if name == "crun exec" and "crun's unshare wrapper" in samples:
            rows["crun exec, wrapper subtracted"] = summary(paired(samples, name, "crun's unshare wrapper"))
    peers = [n for n in ("runc run", "crun run, wrapper subtracted", "crun run") if n in rows]
    fastest = min(peers, key=lambda n: rows[n]["median_ms"])
    print(f"{args.runs} runs each, `true` in busybox; ratios are medians over runc's and over the fastest peer ({fastest})\n")
    print(table({n: s for n, s in rows.items() if " exec" not in n}, {"x runc": "runc run", "x best": fastest}))
    execs = {n: s for n, s in rows.items() if " exec" in n}
    if "runc exec" in execs:
        print("\n" + table(execs, {"x runc": "runc exec"}))

    startup = rows["python -c pass"]["median_ms"]
    imports = {m: summary(paired(samples, f"python -c 'import {m}'", "python -c pass"))["median_ms"]
               for m in ("minirt.cli, minirt.options", "minirt.api.containers")}
    print("\nimport time on top of python -c pass (median of paired runs): " +
          ", ".join(f"{m} {ms:.1f} ms" for m, ms in imports.items()) + "\n")

    targets = {}
    if image:
        api, runc, cli = (rows[n]["median_ms"] for n in ("minirt.run() (API)", "runc run", "minirt run (CLI)"))
        targets["API faster than runc run"] = (api < runc, f"{api:.1f} ms vs {runc:.1f} ms")
        targets["CLI within python start-up + 30 ms"] = (cli <= startup + 30,
                                                         f"{cli:.1f} ms vs {startup:.1f} + 30 ms")
    for name, (ok, detail) in targets.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}: {detail}")

    path = write_results("run", {
        "runs": args.runs,
        "pause_ms": args.pause,
        "host": {"kernel": platform.release(), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "results": rows,
        "import_ms": imports,
        "targets": {name: {"pass": ok, "detail": detail} for name, (ok, detail) in targets.items()},
        "samples_ms": samples,
    })
    print(f"\nwritten to {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
