"""What does a container network cost?

1. Start-to-exit of ``true``, ``--network none`` against ``--network bridge``
   (the default as root) and ``--network slirp4netns`` (the rootless default;
   here run as root), both through the Python API (in-process, pyroute2's
   netlink classes already imported: what a test suite pays per container) and
   through the command line (a fresh Python each time: a bridged CLI also
   imports them, in its plumber process while it starts the container; the
   target is the bridged CLI within 1.5 times the ``none`` one).
2. TCP throughput from the host into a container: through a published port
   (``-p 127.0.0.1:PORT:5001``, i.e. nftables DNAT plus masquerade of the
   loopback source) against straight to the container's own address on the
   bridge.  The server in the container is busybox ``nc -l`` writing to
   /dev/null; the host sends a fixed amount and times until the server has
   closed (so the time covers delivery, not just the local socket buffer).

Traffic goes only between this host and the benchmark's own container, on the
addresses minirt assigned.  Everything is made under a temporary state root
and network prefix (``minirt-bench-<pid>``) and pruned at the end.

Run as root: ``make bench`` or ``.venv/bin/python bench/bench_network.py [--runs N]``.
"""

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from _timing import measure, python_env, summary, table, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# Our own bridge names and nft table, apart from any real minirt on this host.
os.environ["MINIRT_NET_PREFIX"] = "mb" + format(os.getpid() % 36 ** 5, "x")[-5:]

import minirt  # noqa: E402
from minirt.image.busybox import build_busybox_image  # noqa: E402
from minirt.runtime import prune  # noqa: E402


def startup(image, root, runs, pause, tmp):
    env = python_env(REPO, tmp)

    def cli(net):
        return lambda: subprocess.run([sys.executable, "-m", "minirt", "--root", root, "run", "--rm",
                                       "--network", net, image, "true"], env=env, check=True,
                                      stdout=subprocess.DEVNULL)

    def api(net):
        return lambda: minirt.run(image, ["true"], root=root, network=net)

    return measure({"API   --network none": api("none"), "API   --network bridge": api("bridge"),
                    "CLI   --network none": cli("none"), "CLI   --network bridge": cli("bridge"),
                    "CLI   --network slirp4netns": cli("slirp4netns")},
                   runs, pause)


def throughput(image, root, megabytes, runs):
    """MB/s host -> container, through the published port and directly."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = "while true; do nc -l -p 5001 > /dev/null; done"
    results = {"published 127.0.0.1:PORT": [], "direct CONTAINER_IP:5001": []}
    with minirt.start(image, ["sh", "-c", server], root=root, ports=[f"127.0.0.1:{port}:5001"]) as c:
        address = c.state()["networks"][0]["address"]
        targets = {"published 127.0.0.1:PORT": ("127.0.0.1", port),
                   "direct CONTAINER_IP:5001": (address, 5001)}
        block = b"\0" * (1 << 20)
        for name, target in targets.items():
            _send(target, block)  # warm-up (and wait until the server listens)
        for _ in range(runs):
            for name, target in targets.items():
                start = time.perf_counter()
                _send(target, block * megabytes)
                results[name].append(megabytes / (time.perf_counter() - start))
    return results


def _send(target, data, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(target, timeout=5) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                s.recv(1)  # EOF once the server has read everything and closed
                return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each (default 20)")
    parser.add_argument("--pause", type=float, default=50, help="ms of quiet before each start (default 50)")
    parser.add_argument("--megabytes", type=int, default=256, help="MB per throughput run (default 256)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_network: run as root (bridges need it)")

    tmp = tempfile.mkdtemp(prefix="minirt-bench-net-")
    root = os.path.join(tmp, "root")
    try:
        image = os.path.join(tmp, "busybox.tar")
        build_busybox_image(image, form="docker")
        minirt.run(image, ["true"], root=root, network="none")  # unpack once, untimed

        samples = startup(image, root, args.runs, args.pause / 1000, tmp)
        rows = {name: summary(ms) for name, ms in samples.items()}
        print(f"start to exit of `true`, {args.runs} runs each\n")
        print(table(rows, {"x API none": "API   --network none", "x CLI none": "CLI   --network none"}))

        rates = throughput(image, root, args.megabytes, max(3, args.runs // 4))
        print(f"\nTCP host -> container, {args.megabytes} MB per run, MB/s (median, min)\n")
        for name, values in rates.items():
            values = sorted(values)
            print(f"  {name:28} {values[len(values) // 2]:9.0f}  {values[0]:9.0f}")
        path = write_results("network", {
            "runs": args.runs, "megabytes": args.megabytes,
            "host": {"kernel": platform.release(), "python": platform.python_version(),
                     "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
            "startup": rows, "startup_samples_ms": samples,
            "throughput_mb_s": {name: sorted(v) for name, v in rates.items()},
        })
        print(f"\nwritten to {os.path.relpath(path)}")
    finally:
        prune.prune(root)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
