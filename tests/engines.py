"""Real container engines for the interoperability tests: a ``dockerd``, a
``podman`` and a ``containerd`` of their own, with all their state in a
temporary directory, never the host's (/var/lib/docker, /var/lib/containers,
/var/lib/containerd), and nothing left when stopped: processes, mounts and
cgroups go.  Each can drive another OCI runtime than runc, given by path (runc's
command line: ../shared/conformance/engine-argv.txt lists how each calls it).

- Docker and Podman share the docker CLI's ``inspect``: ``engine.status(ID)``
  (created, running, paused, exited ...) and ``engine.wait_for(ID, STATUS)``.
- ``Docker(tmp, runtimes={NAME: PATH})``: Debian's dockerd with its own data
  root, exec root, pid file and socket; no bridge, no iptables (the tests run
  with --network none); each extra runtime added with ``--add-runtime``, for
  ``docker run --runtime NAME``.  ``docker(*args)`` runs the client against it.
- ``Podman(tmp, runtime="runc")``: podman with its own root, runroot and
  tmpdir, the runtime by name or path (crun refuses hybrid cgroups) and a
  containers.conf of its own that lists the runtime in
  ``runtime_supports_json``, cgroupfs, file events, and the rlimits this
  machine allows (no CAP_SYS_RESOURCE: the hard limits cannot be raised).
- ``Containerd(tmp, runtimes={NAME: PATH})``: Debian's containerd 1.6 with its
  own root, state, sockets and config.toml, in which each runtime is a runc
  shim whose ``options.BinaryName`` is PATH: a Kubernetes RuntimeClass handler
  NAME, as a node would configure it (the CRI plugin loads and checks it; ctr
  itself cannot name a handler, so ``ctr_run`` gives the shim the same binary
  with ``--runc-binary``).  ``containerd(*args)`` runs ``ctr`` against it, in
  the namespace "test"; ``ctr_run(NAME, IMAGE, ID, *CMD)`` runs a container.

Containers of all three go under ``cgroup_parent`` (the test session's), so the
suite's leak check sees any they leave.
"""

import json
import os
import shutil
import signal
import subprocess
import time


class _DockerCLI:
    """What docker's and podman's command lines have alike."""

    def status(self, cid):
        return self("inspect", "-f", "{{.State.Status}}", cid).stdout.decode().strip()

    def wait_for(self, cid, status, timeout=20):
        deadline = time.monotonic() + timeout
        while self.status(cid) != status:
            assert time.monotonic() < deadline, f"{cid}: {self.status(cid)}, not {status}"
            time.sleep(0.05)


class Docker(_DockerCLI):
    def __init__(self, tmp, cgroup_parent, runtimes=None):
        self.dir = str(tmp)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "docker.sock")
        self.exec_root = os.path.join(self.dir, "exec")  # its containerd, and the runtimes' state (runtime-*)
        self.log = open(os.path.join(self.dir, "dockerd.log"), "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", os.path.join(self.dir, "data"),
             "--exec-root", self.exec_root, "--pidfile", os.path.join(self.dir, "dockerd.pid"),
             "-H", f"unix://{self.sock}", "--bridge=none", "--iptables=false", "--ip6tables=false",
             "--ip-masq=false", "--userland-proxy=false", "--cgroup-parent", cgroup_parent,
             *[f"--add-runtime={name}={path}" for name, path in (runtimes or {}).items()]],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_until_serving(self, "dockerd")

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


class Podman(_DockerCLI):
    def __init__(self, tmp, cgroup_parent, runtime="runc"):
        self.dir = str(tmp)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.cgroup_parent = cgroup_parent
        # podman gives a runtime --log-format=json only if its name (the path's
        # last part) is listed; CONTAINERS_CONF is then the only file it reads.
        conf = os.path.join(self.dir, "containers.conf")
        with open(conf, "w") as f:
            names = sorted({"runc", "crun", os.path.basename(runtime)})
            f.write(f"[engine]\nruntime_supports_json = {json.dumps(names)}\n")  # a TOML array, too
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.base = ["podman", "--root", os.path.join(self.dir, "root"), "--runroot", os.path.join(self.dir, "run"),
                     "--tmpdir", os.path.join(self.dir, "tmp"), "--storage-driver", "overlay",
                     "--cgroup-manager", "cgroupfs", "--runtime", runtime, "--events-backend", "file"]

    def __call__(self, *args, input=None, timeout=120):
        return subprocess.run(self.base + list(args), input=input, capture_output=True, timeout=timeout, env=self.env)

    def run(self, *args, detach=False, timeout=120):
        """``podman run --rm`` (or ``-d``) as this machine allows it, in the session's cgroup."""
        return subprocess.run(self.run_argv(*args, detach=detach), capture_output=True, timeout=timeout, env=self.env)

    def run_argv(self, *args, detach=False):
        """The command line of ``run`` (to be run with ``env``)."""
        return self.base + ["run", "-d" if detach else "--rm", "--network", "none", "--cgroups", "no-conmon",
                            "--cgroup-parent", "/" + self.cgroup_parent,
                            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", *args]

    def stop(self):
        self("rm", "-af")
        self("system", "reset", "-f")
        _unmount_under(self.dir)


class Containerd:
    NAMESPACE = "test"

    def __init__(self, tmp, cgroup_parent, runtimes=None):
        self.dir = str(tmp)
        os.makedirs(self.dir, exist_ok=True)
        self.cgroup_parent = cgroup_parent
        self.sock = os.path.join(self.dir, "containerd.sock")
        self.runtimes = dict(runtimes or {"runc": shutil.which("runc")})
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w") as f:
            f.write(self._config())
        self.log = open(os.path.join(self.dir, "containerd.log"), "wb")
        self.proc = subprocess.Popen(["containerd", "--config", config], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        _wait_until_serving(self, "containerd")

    def runtime_root(self, name):
        """Where runtime ``name`` keeps its containers' state (runc's --root)."""
        return os.path.join(self.dir, "runtime", name)

    def _config(self):
        """config.toml: everything under our directory, no TCP, no plugin that
        needs what this host has not (aufs, btrfs, zfs, devmapper, tracing), and
        each runtime as a RuntimeClass handler: a runc shim with its binary."""
        def q(text):
            return json.dumps(str(text))  # a TOML basic string, too
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        lines = ["version = 2", f"root = {q(os.path.join(self.dir, 'root'))}",
                 f"state = {q(os.path.join(self.dir, 'state'))}",
                 'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",'
                 ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",'
                 ' "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
                 "[grpc]", f"  address = {q(self.sock)}", "[ttrpc]", f"  address = {q(self.sock + '.ttrpc')}",
                 f"{cri}]", "  disable_tcp_service = true", '  stream_server_address = "127.0.0.1"',
                 f"{cri}.cni]", f"  bin_dir = {q(os.path.join(self.dir, 'cni', 'bin'))}",
                 f"  conf_dir = {q(os.path.join(self.dir, 'cni', 'conf'))}",
                 f"{cri}.containerd]", f"  default_runtime_name = {q(next(iter(self.runtimes)))}"]
        for name, path in self.runtimes.items():
            lines += [f"{cri}.containerd.runtimes.{name}]", '  runtime_type = "io.containerd.runc.v2"',
                      f"{cri}.containerd.runtimes.{name}.options]", f"  BinaryName = {q(path)}",
                      f"  Root = {q(self.runtime_root(name))}"]
        return "\n".join(lines) + "\n"

    def __call__(self, *args, input=None, timeout=120):
        return subprocess.run(self.ctr_argv(*args), input=input, capture_output=True, timeout=timeout)

    def ctr_argv(self, *args):
        return ["ctr", "--address", self.sock, "--namespace", self.NAMESPACE, *args]

    def ctr_run(self, runtime, image, cid, *command, detach=False, timeout=120):
        """``ctr run`` of ``command`` in container ``cid`` through the runc shim
        with runtime ``runtime``'s binary and root, in the session's cgroup."""
        return subprocess.run(self.ctr_run_argv(runtime, image, cid, *command, detach=detach),
                              capture_output=True, timeout=timeout)

    def ctr_run_argv(self, runtime, image, cid, *command, detach=False):
        """The command line of ``ctr_run``."""
        return self.ctr_argv("run", *(["--detach"] if detach else ["--rm"]), "--runtime", "io.containerd.runc.v2",
                             "--runc-binary", self.runtimes[runtime], "--runc-root", self.runtime_root(runtime),
                             "--cgroup", f"/{self.cgroup_parent}/{cid}", image, cid, *command)

    def stop(self):
        if self.proc.poll() is None:
            for cid in self("containers", "list", "--quiet").stdout.decode().split():
                self("tasks", "kill", "--all", "--signal", "SIGKILL", cid)
                self("tasks", "delete", "--force", cid)
                self("containers", "delete", cid)
        _stop(self.proc)
        # The shims are daemons (parent: init), each serving our socket: any left go now.
        for pid in _pids_with_argument(self.sock):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        _unmount_under(self.dir)


def _wait_until_serving(engine, name):
    """Until ``engine("version")`` answers; if the daemon dies or takes a minute, stop it and say so."""
    deadline = time.monotonic() + 60
    while engine("version").returncode != 0:
        if engine.proc.poll() is not None or time.monotonic() > deadline:
            engine.stop()
            raise RuntimeError(f"{name} did not start: see {engine.log.name}")
        time.sleep(0.1)


def _pids_with_argument(word):
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if word.encode() in f.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


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
