"""Real container engines for the interoperability tests: a ``dockerd`` and a
``podman`` of their own, with all their state in a temporary directory, never
the host's (/var/lib/docker, /var/lib/containers), and nothing left when
stopped: processes, mounts and cgroups go.

- ``Docker(tmp)``: Debian's dockerd with its own data root, exec root, pid
  file and socket; no bridge, no iptables (the tests run with --network none).
  ``docker(*args)`` runs the client against it.
- ``Podman(tmp)``: podman with its own root, runroot and tmpdir, runc (crun
  refuses hybrid cgroups), cgroupfs, file events, and the rlimits this machine
  allows (no CAP_SYS_RESOURCE: the hard limits cannot be raised).

Containers of both go under ``cgroup_parent`` (the test session's), so the
suite's leak check sees any they leave.
"""

import os
import signal
import subprocess
import time


class Docker:
    def __init__(self, tmp, cgroup_parent):
        self.dir = str(tmp)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "docker.sock")
        self.log = open(os.path.join(self.dir, "dockerd.log"), "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", os.path.join(self.dir, "data"),
             "--exec-root", os.path.join(self.dir, "exec"), "--pidfile", os.path.join(self.dir, "dockerd.pid"),
             "-H", f"unix://{self.sock}", "--bridge=none", "--iptables=false", "--ip6tables=false",
             "--ip-masq=false", "--userland-proxy=false", "--cgroup-parent", cgroup_parent],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while self("version").returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not start: see {self.log.name}")
            time.sleep(0.2)

    def __call__(self, *args, input=None, timeout=120):
        return subprocess.run(["docker", "-H", f"unix://{self.sock}", *args], input=input,
                              capture_output=True, timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            ids = self("ps", "-aq").stdout.split()
            if ids:
                self("rm", "-f", *[i.decode() for i in ids])
        _stop(self.proc)  # its containerd, a child in its session, goes with it
        self.log.close()
        _unmount_under(self.dir)


class Podman:
    def __init__(self, tmp, cgroup_parent):
        self.dir = str(tmp)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.cgroup_parent = cgroup_parent
        self.base = ["podman", "--root", os.path.join(self.dir, "root"), "--runroot", os.path.join(self.dir, "run"),
                     "--tmpdir", os.path.join(self.dir, "tmp"), "--storage-driver", "overlay",
                     "--cgroup-manager", "cgroupfs", "--runtime", "runc", "--events-backend", "file"]

    def __call__(self, *args, input=None, timeout=120):
        return subprocess.run(self.base + list(args), input=input, capture_output=True, timeout=timeout)

    def run(self, *args, timeout=120):
        """``podman run --rm`` as this machine allows it, in the session's cgroup."""
        return self("run", "--rm", "--network", "none", "--cgroups", "no-conmon",
                    "--cgroup-parent", "/" + self.cgroup_parent,
                    "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", *args, timeout=timeout)

    def stop(self):
        self("rm", "-af")
        self("system", "reset", "-f")
        _unmount_under(self.dir)


def _stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything of its session still there
    except ProcessLookupError:
        pass


def _unmount_under(directory):
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(directory + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
