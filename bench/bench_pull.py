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

(The dockerd and podman are the tests' own, ``tests/engines.py``.)  Every
contender ends with the image unpacked and ready to run, from an empty store,
on a fresh ext4 of the bench's own (``scratch_filesystem``): what it made is
removed after each run, untimed, and the disk is synced so that no contender
pays for the previous one's write-back.  Every
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

import bench_unpack
from _timing import measure, python_env, run_quiet, summary, table, write_results

PYTHON = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "image"))
sys.path.insert(0, os.path.join(REPO, "tests"))
import engines  # noqa: E402  (the tests' dockerd and podman of their own: nothing of the host's)
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


def scratch_filesystem(tmp) -> str:
    """A fresh ext4 (mkfs's defaults, with a journal) in a sparse file under
    ``tmp``, mounted: where every contender writes.  Not the host's disk: on
    ext4 without a journal (this development VM's) the inode allocator steps
    over every inode freed in the last 5-10 s, and the clean-up after one
    contender made the next one's file creation several times slower."""
    image, mnt = os.path.join(tmp, "fs.img"), os.path.join(tmp, "fs")
    with open(image, "wb") as f:
        f.truncate(8 << 30)
    # Inode tables written now, not by a kernel thread while the contenders run.
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image], check=True)
    os.mkdir(mnt)
    subprocess.run(["mount", "-o", "loop", image, mnt], check=True)
    return mnt


def contenders(work, ref, docker, cgroup_parent) -> tuple[dict, dict]:
    """(name -> one pull into ``work``, name -> the clean-up after it)."""
    os.makedirs(work, exist_ok=True)
    env = python_env(REPO, os.path.dirname(work))

    def clean(then=None):
        def after():
            if then:
                then()
            if _mounted(work):
                sys.exit(f"bench_pull: something is still mounted under {work}")
            shutil.rmtree(work)
            os.mkdir(work)  # empty, for the next run
            os.sync()
        return after

    def minirt(checkout):
        return lambda: run_quiet([PYTHON, "-m", "minirt", "--root", work, "pull", "-q", ref],
                                 env=python_env(checkout, os.path.dirname(work)))

    runs, after = {MINIRT: minirt(REPO)}, {MINIRT: clean()}
    if BASELINE:  # another checkout of minirt, to measure a change before and after in one run
        runs[MINIRT + " (baseline)"], after[MINIRT + " (baseline)"] = minirt(BASELINE), clean()
    if shutil.which("podman"):
        def podman():
            return engines.Podman(os.path.join(work, "podman"), cgroup_parent)

        def podman_pull():
            done = podman()("pull", "-q", "--tls-verify=false", ref)
            if done.returncode:
                raise RuntimeError(f"podman pull failed: {done.stderr.decode()[-500:]}")
        runs["podman pull"], after["podman pull"] = podman_pull, clean(lambda: podman().stop())
    if shutil.which("skopeo") and shutil.which("umoci"):
        layout = os.path.join(work, "oci") + ":latest"

        def skopeo_umoci():
            run_quiet(["skopeo", "copy", "-q", "--src-tls-verify=false", "docker://" + ref, "oci:" + layout])
            run_quiet(["umoci", "unpack", "--image", layout, os.path.join(work, "bundle")])
        runs["skopeo copy + umoci unpack"], after["skopeo copy + umoci unpack"] = skopeo_umoci, clean()
    if docker:
        def docker_pull():
            done = docker("pull", "-q", ref)
            if done.returncode:
                raise RuntimeError(f"docker pull failed: {done.stderr.decode()[-500:]}")
        runs["docker pull"] = docker_pull
        after["docker pull"] = clean(lambda: docker("rmi", "-f", ref))
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

    tmp = tempfile.mkdtemp(prefix="mbp-", dir="/var/tmp")  # short: podman refuses a runroot of 50 characters
    cgroup_parent = f"minirt-bench-{os.getpid()}"
    registry = docker = fs = None
    report, targets = {}, {}
    try:
        sources = images(tmp)
        os.mkdir(os.path.join(tmp, "registry"))
        registry = Registry(os.path.join(tmp, "registry"))
        fs = scratch_filesystem(tmp)
        if shutil.which("dockerd") and shutil.which("docker"):  # 127.0.0.0/8 needs no TLS, as for everyone
            docker = engines.Docker(os.path.join(fs, "docker"), cgroup_parent)
        else:
            print("note: no dockerd; docker pull is not timed", file=sys.stderr)
        for i, (what, source) in enumerate(sources.items()):
            name = what.split()[0]
            ref = registry.push(source, f"{name}:latest")
            runs = args.runs if i == 0 else args.runs * 4
            pulls, cleanups = contenders(os.path.join(fs, "work"), ref, docker, cgroup_parent)
            samples = measure(pulls, runs, pause=0.5, after=cleanups)
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
        if docker:
            docker.stop()
        if registry:
            registry.stop()
        if fs:
            subprocess.run(["umount", fs], check=True)
        if _mounted(tmp):
            print(f"bench_pull: something is still mounted under {tmp}; not removing it", file=sys.stderr)
        else:
            shutil.rmtree(tmp)
        for controller in os.listdir("/sys/fs/cgroup"):  # made only if an engine ran a container
            path = os.path.join("/sys/fs/cgroup", controller, cgroup_parent)
            if os.path.isdir(path):
                os.rmdir(path)

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
