"""Many detached containers: how fast they start, what each costs in memory, how
fast they all go away.

- **start rate**: ``--count`` (200) containers, each ``minirt run -d --network none
  IMAGE sleep`` as its own process (``--network bridge`` to time the default), ``--parallel`` (8) of those processes at a time; containers
  per second of wall time.  With ``runc`` installed, ``runc run -d`` of the same
  number from one shared bundle (read-only rootfs, the same busybox files) is timed
  the same way for comparison.  runc leaves no process of its own behind; minirt
  leaves one monitor per container (``runtime/monitor.py``, as conmon for podman).
- **memory**: PSS (proportional set size: private pages plus a fair share of shared
  ones; ``/proc/PID/smaps_rollup``) of every monitor and of every container's own
  processes, while all of them run.  PSS adds up: the total is what the host pays.
- **removal**: ``minirt rm -f`` of all of them in one command.

Not a test: run as root, ``make bench`` or
``.venv/bin/python bench/bench_lifecycle.py [--count N] [--parallel P]``.
Results go to bench/results/lifecycle.json.
"""

import argparse
import concurrent.futures
import contextlib
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _timing import make_bundle, write_results

PYTHON = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TAG = f"minirt-bench-lc-{os.getpid()}"

sys.path.insert(0, REPO)   # this checkout's minirt, whatever the venv has installed


def pss_kb(pid, field="Pss"):
    """One field of /proc/PID/smaps_rollup in kB, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def in_parallel(argvs, parallel, env=None, output=True):
    """Run every argv, ``parallel`` at a time; return (wall seconds, stdouts).

    ``output=False`` for commands whose container inherits their stdout and
    stderr (``runc run -d``): reading those pipes would wait for the container."""
    def one(argv):
        if not output:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=env, check=True)
            return ""
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:6])}...: {r.stderr.decode().strip()}")
        return r.stdout.decode()

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        outs = list(pool.map(one, argvs))
    return time.perf_counter() - start, outs


def summary(values):
    values = [v for v in values if v is not None]
    return {"n": len(values), "mean": statistics.mean(values), "median": statistics.median(values),
            "min": min(values), "max": max(values), "total": sum(values)}


# -- minirt ----------------------------------------------------------------------------

def bench_minirt(tmp, image, count, parallel, env, network):
    from minirt.kernel import cgroups
    from minirt.runtime import state

    root = os.path.join(tmp, "root")
    cli = [PYTHON, "-m", "minirt", "--root", root]
    subprocess.run(cli + ["run", "--rm", image, "true"], check=True, env=env)   # unpack, untimed
    run_d = cli + ["run", "-d", "--network", network, image, "sleep", "3600"]
    wall, outs = in_parallel([run_d] * count, parallel, env)
    ids = [out.strip() for out in outs]
    time.sleep(1)   # let every container settle (its shell exec'd, pages touched)

    monitors, monitors_anon, containers = [], [], []
    for cid in ids:
        info = state.load(root, cid)
        assert info["status"] == "running", info
        monitors.append(pss_kb(info["monitor_pid"]))
        monitors_anon.append(pss_kb(info["monitor_pid"], "Pss_Anon"))
        pids = cgroups.for_container(cid, os.environ["MINIRT_CGROUP_PARENT"]).pids()
        containers.append(sum(pss_kb(p) or 0 for p in pids))
    listed = len(subprocess.run(cli + ["ps", "-q"], capture_output=True, check=True, env=env).stdout.split())

    start = time.perf_counter()
    subprocess.run(cli + ["rm", "-f", *ids], check=True, capture_output=True, env=env)
    rm_wall = time.perf_counter() - start
    left = state.container_ids(root)
    return {
        "count": count, "parallel": parallel, "start_wall_s": wall, "start_rate_per_s": count / wall,
        "listed_by_ps": listed,
        "monitor_pss_kb": summary(monitors), "monitor_pss_anon_kb": summary(monitors_anon),
        "container_pss_kb": summary(containers),
        "total_pss_kb": sum(m or 0 for m in monitors) + sum(containers),
        "rm_f_all_s": rm_wall, "rm_rate_per_s": count / rm_wall, "left_after_rm": len(left),
    }


# -- runc, for comparison ------------------------------------------------------------

def bench_runc(tmp, rootfs, count, parallel):
    runc = shutil.which("runc", path=SYSTEM_PATH)
    if not runc:
        return None
    bundle = os.path.join(tmp, "bundle")
    make_bundle(bundle, rootfs, runc, ["sleep", "3600"])   # a read-only root: one for all of them
    state_dir = os.path.join(tmp, "runc")
    names = [f"{TAG}-{i}" for i in range(count)]
    base = [runc, "--root", state_dir]
    try:
        wall, _ = in_parallel([base + ["run", "-d", "-b", bundle, n] for n in names], parallel, output=False)
        time.sleep(1)
        pss = []
        for n in names:
            r = subprocess.run(base + ["state", n], capture_output=True)
            if r.returncode == 0:
                pss.append(pss_kb(json.loads(r.stdout)["pid"]))
        start = time.perf_counter()
        for n in names:
            subprocess.run(base + ["delete", "-f", n], capture_output=True)
        rm_wall = time.perf_counter() - start
    finally:
        for n in names:
            subprocess.run(base + ["delete", "-f", n], capture_output=True)
    return {"count": count, "parallel": parallel, "start_wall_s": wall, "start_rate_per_s": count / wall,
            "container_pss_kb": summary(pss), "delete_f_all_s": rm_wall}


# -- set-up and clean-up ---------------------------------------------------------------

@contextlib.contextmanager
def scratch():
    tmp = tempfile.mkdtemp(prefix=TAG + "-")
    os.environ["MINIRT_CGROUP_PARENT"] = TAG
    try:
        yield tmp
    finally:
        root = os.path.join(tmp, "root")
        from minirt.runtime import state
        left = state.container_ids(root)
        if left:
            subprocess.run([PYTHON, "-m", "minirt", "--root", root, "rm", "-f", *left], capture_output=True)
        for d in sorted(glob.glob(f"/sys/fs/cgroup/*/{TAG}") + glob.glob(f"/sys/fs/cgroup/{TAG}")):
            with contextlib.suppress(OSError):
                os.rmdir(d)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="containers (default 200)")
    parser.add_argument("--parallel", type=int, default=8, help="minirt processes at a time (default 8)")
    parser.add_argument("--network", default="none",
                        help="minirt's --network (default none: lo only, as runc's default config)")
    parser.add_argument("--no-runc", action="store_true", help="skip the runc comparison")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_lifecycle: run as root (containers need it)")

    from minirt.image import Store, open_image
    from minirt.image.busybox import build_busybox_image

    with scratch() as tmp:
        env = dict(os.environ, PYTHONPATH=REPO)   # with scratch()'s MINIRT_CGROUP_PARENT
        image = os.path.join(tmp, "busybox.tar")
        build_busybox_image(image, form="docker")
        with open_image(image) as img:
            [rootfs] = Store(os.path.join(tmp, "root")).unpack(img)
        m = bench_minirt(tmp, image, args.count, args.parallel, env, args.network)
        r = None if args.no_runc else bench_runc(tmp, str(rootfs), args.count, args.parallel)

    mb = 1024
    print(f"{args.count} detached `sleep` containers in busybox, {args.parallel} starting at a time, "
          f"{os.cpu_count()} CPUs\n")
    rows = [(f"minirt run -d --network {args.network}", f"{m['start_rate_per_s']:.1f}/s", f"{m['start_wall_s']:.1f} s",
             f"{m['monitor_pss_kb']['mean'] / mb:.2f} MB ({m['monitor_pss_anon_kb']['mean'] / mb:.2f} anon)",
             f"{m['container_pss_kb']['mean'] / mb:.2f} MB", f"{m['total_pss_kb'] / mb:.0f} MB",
             f"{m['rm_f_all_s']:.1f} s")]
    if r:
        rows.append(("runc run -d (shared bundle)", f"{r['start_rate_per_s']:.1f}/s", f"{r['start_wall_s']:.1f} s",
                     "none", f"{r['container_pss_kb']['mean'] / mb:.2f} MB",
                     f"{r['container_pss_kb']['total'] / mb:.0f} MB", f"{r['delete_f_all_s']:.1f} s (one by one)"))
    head = ("", "start rate", "start wall", "PSS per monitor", "PSS per container", "total PSS", "remove all")
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]
    for row in [head] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"\nps listed {m['listed_by_ps']} of {args.count}; left after rm -f: {m['left_after_rm']}")

    path = write_results("lifecycle", {
        "host": {"kernel": platform.release(), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "network": args.network, "minirt": m, "runc": r,
    })
    print(f"written to {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
