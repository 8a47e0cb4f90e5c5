"""Small timing helpers shared by the bench/ scripts.

A benchmark here compares a handful of *contenders* (callables that do one
thing once) over many runs.  Four habits keep the numbers honest:

- each contender runs once untimed first (warm caches, page cache, lazy imports);
- the contenders take turns, run 1 of each, then run 2 of each, ..., so a host
  that gets busier or quieter half way through shifts all of them alike;
- a short pause before each timed run lets the host settle, so that no contender
  profits from the one before it.  (On cgroup v1, moving a process into a cgroup
  waits for an RCU grace period, ~10 ms, unless another move happened moments
  before: back to back, each container start would flatter the next one.)
- we report the median (typical) and the 90th percentile (the slow tail), never
  the mean, which one stray 200 ms hiccup would drag around.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_env(repo, tmp):
    """The environment of every timed Python: the checkout ``repo`` first on the
    path, and bytecode cached (under ``tmp``) as an installed package has it.
    Without the cache, PYTHONDONTWRITEBYTECODE=1 makes each run compile minirt
    from source again."""
    env = dict(os.environ, PYTHONPATH=repo, PYTHONPYCACHEPREFIX=os.path.join(tmp, "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_quiet(argv, **kwargs):
    """Run ``argv`` to completion with no output; raise if it fails."""
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True, **kwargs)


def measure(contenders, runs, pause=0.05, after=None):
    """Time each callable in ``contenders`` (name -> fn) ``runs`` times, in turns,
    ``pause`` seconds after the previous one.  ``after`` (name -> fn), if given,
    is called untimed after each run of that contender (to clean up).

    Returns name -> list of durations in milliseconds.
    """
    after = after or {}
    for name, fn in contenders.items():
        fn()  # warm-up, untimed
        after.get(name, _nothing)()
    samples = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            time.sleep(pause)
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
            after.get(name, _nothing)()
    return samples


def _nothing():
    pass


def summary(ms):
    """Median and 90th percentile of a list of milliseconds."""
    ms = sorted(ms)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return {"median_ms": statistics.median(ms), "p90_ms": p90}


def table(rows, references):
    """Format rows (name -> summary) as an aligned table.

    ``references`` maps a column title to the row name each median is divided
    by, e.g. {"x runc": "runc run"}; a missing reference row leaves the column empty.
    """
    width = max(len(name) for name in rows)
    head = f"{'':{width}}  {'median ms':>9}  {'p90 ms':>8}" + "".join(f"  {t:>7}" for t in references)
    lines = [head, "-" * len(head)]
    for name, s in rows.items():
        line = f"{name:{width}}  {s['median_ms']:9.1f}  {s['p90_ms']:8.1f}"
        for ref in references.values():
            ratio = f"{s['median_ms'] / rows[ref]['median_ms']:.2f}" if ref in rows else "-"
            line += f"  {ratio:>7}"
        lines.append(line)
    return "\n".join(lines)


def write_results(name, data):
    """Write ``data`` as bench/results/<name>.json (gitignored); return the path."""
    directory = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name + ".json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    return path


def make_bundle(bundle, rootfs, runc, args):
    """An OCI bundle for runc or crun: runc's default config.json (its root
    read-only) running ``args`` without a terminal, and a hard-linked copy of
    ``rootfs``."""
    os.makedirs(bundle)
    subprocess.run(["cp", "-al", rootfs, os.path.join(bundle, "rootfs")], check=True)
    subprocess.run([runc, "spec", "--bundle", bundle], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"].update(args=list(args), terminal=False)
    with open(path, "w") as f:
        json.dump(config, f, indent=1)


def engines_module():
    """tests/engines.py: the real engines (dockerd, podman, containerd) with state of their own."""
    spec = importlib.util.spec_from_file_location("engines", os.path.join(REPO, "tests", "engines.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unmount_under(directory):
    """Unmount whatever is still mounted below ``directory``, deepest first."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(directory + "/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def remove_cgroup(name):
    """Remove the cgroup ``name`` (and what is below it) from every hierarchy, as far as empty:
    at the top, and under our own cgroups (where a runtime puts a relative cgroupsPath)."""
    with open("/proc/self/cgroup") as f:
        ours = {line.rstrip("\n").split(":", 2)[2].lstrip("/") for line in f}
    for top in [os.path.join("/sys/fs/cgroup", c) for c in os.listdir("/sys/fs/cgroup")] + ["/sys/fs/cgroup"]:
        for sub, _dirs, _files in [walked for parent in sorted(ours | {""})
                                   for walked in os.walk(os.path.join(top, parent, name), topdown=False)]:
            try:
                os.rmdir(sub)
            except OSError:
                pass
