"""Benchmark: unpacking a large image, minirt's store against ``umoci unpack``.

Not a test (``make bench`` runs it).  The image is a Debian ``debootstrap
--variant=minbase`` root filesystem saved as an OCI layout with one gzip layer
(the way registries ship layers), cached under /var/tmp/minirt-bench.  Without
debootstrap or a Debian mirror it falls back to a copy of this Python
installation, which is large and file-rich too.

Both sides run as a fresh process into an empty directory, so each time
includes start-up, decompression, digest checks and writing every file.
Reported: the median of RUNS runs, and umoci's time over minirt's.

``--fast-path`` measures the other end instead, the path every ``minirt run``
takes: the image (images/busybox.tar) is already unpacked, so the store only
opens the archive, checks index, manifest and config, and finds each layer by
its diff_id.  Reported: the import cost of ``minirt.image``, one
``open_image`` + ``Store.unpack`` in a warm process, and a fresh process doing
both over a bare ``python -c pass``.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("MINIRT_BENCH_CACHE", "/var/tmp/minirt-bench"))
RUNS = int(os.environ.get("MINIRT_BENCH_RUNS", "5"))
ROOTLESS = os.geteuid() != 0


def debian_rootfs() -> Path | None:
    """A minbase Debian tree, made once with debootstrap as it leaves it
    (apt's downloads included); None if that cannot be done."""
    from minirt.errors import ImageError
    from minirt.image.debian import debootstrap

    rootfs = CACHE / "debian-minbase"
    if rootfs.is_dir():
        return rootfs
    if ROOTLESS:
        return None
    tmp = CACHE / "debian-minbase.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"building {rootfs} with debootstrap (once) ...", flush=True)
    try:
        debootstrap(tmp)
    except ImageError as e:
        print(f"no Debian tree: {e}")
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    tmp.rename(rootfs)
    return rootfs


def source_tree() -> tuple[Path, str]:
    rootfs = debian_rootfs()
    if rootfs is not None:
        return rootfs, "debian bookworm minbase"
    return Path(sys.base_prefix), f"python installation {sys.base_prefix}"


def build_image(tree: Path, name: str) -> Path:
    from minirt.image.write import write_image

    layout = CACHE / f"image-{name}"
    if not (layout / "index.json").exists():
        print(f"writing {layout} ...", flush=True)
        shutil.rmtree(layout, ignore_errors=True)
        write_image(layout, [tree], form="oci-layout", compression="gzip", tag="latest")
    return layout


MINIRT = """
import sys
from minirt.image import open_image, Store
with open_image(sys.argv[1]) as img:
    Store(sys.argv[2]).unpack(img)
"""


def time_runs(cmd_for) -> list[float]:
    times = []
    for _ in range(RUNS):
        work = Path(tempfile.mkdtemp(dir=CACHE, prefix="run-"))
        try:
            t = time.perf_counter()
            subprocess.run(cmd_for(work), check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t)
        finally:
            shutil.rmtree(work)
    return times


FAST_PATH = """
import sys
from minirt.image import open_image, Store
with open_image(sys.argv[1]) as img:
    Store(sys.argv[2]).unpack(img)
"""


def fast_path() -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _timing

    here = Path(__file__).resolve().parent.parent
    image = here / "images" / "busybox.tar"
    if not image.exists():
        from minirt.image.busybox import build_busybox_image
        build_busybox_image(image, form="docker")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with .pyc files, as installed
    root = tempfile.mkdtemp(prefix="minirt-bench-")
    try:
        py = [sys.executable]
        run = lambda argv: _timing.run_quiet(argv, env=env, cwd=here)
        run(py + ["-c", FAST_PATH, str(image), root])  # unpack once; write .pyc files
        samples = _timing.measure({
            "python -c pass": lambda: run(py + ["-c", "pass"]),
            "python -c 'import minirt.image'": lambda: run(py + ["-c", "import minirt.image"]),
            "python: open_image + unpack": lambda: run(py + ["-c", FAST_PATH, str(image), root]),
        }, runs=RUNS * 8, pause=0.01)
        rows = {name: _timing.summary(ms) for name, ms in samples.items()}

        from minirt.image import Store, open_image
        def once():
            with open_image(image) as img:
                Store(root).unpack(img)
        rows["in process: open_image + unpack"] = _timing.summary(
            _timing.measure({"x": once}, runs=200, pause=0)["x"])
    finally:
        shutil.rmtree(root)
    print(f"fast path: {image}, already unpacked")
    print(_timing.table(rows, {}))
    base = rows["python -c pass"]["median_ms"]
    for name in ("python -c 'import minirt.image'", "python: open_image + unpack"):
        print(f"{name}: +{rows[name]['median_ms'] - base:.1f} ms over python's start-up")
    return 0


def main() -> int:
    if "--fast-path" in sys.argv[1:]:
        return fast_path()
    CACHE.mkdir(parents=True, exist_ok=True)
    tree, what = source_tree()
    layout = build_image(tree, "debian" if what.startswith("debian") else "python")
    blob_mb = sum(f.stat().st_size for f in (layout / "blobs/sha256").iterdir()) / 1e6
    files = sum(len(f) + len(d) for _, d, f in os.walk(tree))
    print(f"image: {what}, {files} entries, {blob_mb:.0f} MB gzip ({layout})")

    rows = [("minirt Store.unpack", time_runs(
        lambda w: [sys.executable, "-c", MINIRT, str(layout), str(w)]))]
    umoci = shutil.which("umoci")
    if umoci:
        flags = ["--rootless"] if ROOTLESS else []
        rows.append(("umoci unpack", time_runs(
            lambda w: [umoci, "unpack", *flags, "--image", f"{layout}:latest", str(w / "bundle")])))

    base = statistics.median(rows[0][1])
    print(f"\n{'':22}{'median':>10}{'min':>10}{'max':>10}{'ratio':>8}   ({RUNS} runs each)")
    for name, ts in rows:
        med = statistics.median(ts)
        print(f"{name:22}{med:>9.2f}s{min(ts):>9.2f}s{max(ts):>9.2f}s{med / base:>7.2f}x")
    if umoci:
        ratio = statistics.median(rows[1][1]) / base
        print(f"\nminirt is {ratio:.2f}x as fast as umoci (target: >= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
