"""Fixtures for the OCI runtime tests: minirt-runc on its own (minirt/oci), and
engines driving a runtime given by path.

- ``runtime_path``: this tree's ``minirt-runc`` (what an engine is given as
  its runtime's path: the front door, minirt/oci/minirt-runc), with its
  runtime beside it; ``runtime_path.calls()`` lists what reached the runtime.
- ``oci(*args)``: ``minirt-runc --root TMP ARGS`` -> CompletedProcess (text);
  as ``oci.log(*args)`` with ``--log FILE --log-format json`` too.  The
  test process is the containers' subreaper, as an engine's shim is:
  ``oci.reap(pid)`` waits for an exited PID 1; at the end every container
  left is deleted by force and reaped.
- ``bundle(args, **changes)``: a bundle directory on a busybox rootfs, with
  ``minirt-runc spec``'s config, the process's args, no terminal, and its
  cgroup under the session's cgroup parent (the leak check sees it);
  ``reachable(bundle)`` moves it where a user namespace's root reaches it.
- ``detached(**changes)``: such a bundle's container, sleeping, run
  ``--detach`` -> (id, cgroup path).

The engine tests (test_containerd.py, test_docker.py, test_podman.py) run
once per runtime in RUNTIMES, with engines of their own configured for it:

- ``runtime``: the runtime's executable (runc's command line): runc; crun
  where it runs (it refuses this project's hybrid cgroup hosts); and minirt's
  ``minirt-runc`` beside the venv's python; each behind a wrapper that notes
  how it is called (``runtime_calls()``).
- ``oci_containerd``, ``oci_docker``, ``oci_podman``: tests/engines.py's
  engines with that runtime as ``oci`` (containerd's RuntimeClass handler and
  docker's --add-runtime name) or as podman's --runtime, and images/busybox.tar
  loaded as ``busybox:latest``.
- ``runtime_state(root, cid)``: the runtime's own ``state`` of a container:
  proof that this runtime, not the engine's default, made it.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from minirt.kernel import libc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


FRONT_DOOR = os.path.join(REPO, "minirt", "oci", "minirt-runc")


@pytest.fixture(scope="session")
def runtime_path(tmp_path_factory):
    """This tree's front door, and beside it its runtime (``minirt-oci``),
    which notes each command line it is given in ``runtime_path.calls``."""
    directory = tmp_path_factory.mktemp("runtime")
    shutil.copy(FRONT_DOOR, directory / "minirt-runc")
    calls = directory / "runtime-calls"
    behind = directory / "minirt-oci"
    behind.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n'
                      f'PYTHONPATH={REPO} exec {sys.executable} -P -m minirt.oci "$@"\n')
    behind.chmod(0o755)
    return RuntimePath(directory / "minirt-runc", calls)


class RuntimePath(str):
    """The front door's path; ``calls()``: the command lines its runtime was
    given since the last ``calls()``, each a list of words."""

    def __new__(cls, path, calls):
        self = super().__new__(cls, str(path))
        self.calls_file = calls
        return self

    def calls(self):
        try:
            with open(self.calls_file) as f:
                lines = [line.split() for line in f]
        except FileNotFoundError:
            return []
        os.unlink(self.calls_file)
        return lines


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    from minirt.image.busybox import busybox_rootfs

    path = tmp_path_factory.mktemp("rootfs") / "rootfs"
    path.mkdir()
    busybox_rootfs(path)
    return str(path)


class Runtime:
    def __init__(self, path, root, log):
        self.path, self.root, self.log_path = path, root, log

    def __call__(self, *args, timeout=30, stdout=None):
        """Its output goes through files, not pipes: a container's PID 1
        inherits them, and a pipe would not end before the container does."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run([self.path, "--root", self.root, *args], stdin=subprocess.DEVNULL,
                               stdout=stdout or out, stderr=err, text=True, timeout=timeout)
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        return r

    def log(self, *args, **kwargs):
        return self("--log", self.log_path, "--log-format", "json", *args, **kwargs)

    def state(self, cid):
        r = self("state", cid)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    @staticmethod
    def reap(pid):
        """Wait for the container's PID 1, adopted by us (the subreaper).

        An exec'd process of the container that we adopted too must be reaped
        first: a dying PID 1 waits until every process of its pid namespace is
        gone, zombies included, and a plain waitpid for it would wait forever."""
        deadline = time.monotonic() + 60
        while True:
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if got:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"PID 1 {pid} has not exited")
            reap_adopted_zombies(but=pid)
            time.sleep(0.01)

    def ids(self):
        try:
            return [d for d in os.listdir(os.path.join(self.root, "containers")) if not d.startswith(".")]
        except FileNotFoundError:
            return []


def reap_adopted_zombies(but):
    """Reap our children that died inside a nested pid namespace (a container's
    exec'd processes, adopted by us as subreaper), but not ``but`` (the PID 1
    whose status the caller wants), and no other: the session's own children
    (registries ...) keep their exit status for their Popen."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except (OSError, ValueError):
            continue
        if entry != str(but) and fields.get("PPid", "").strip() == me \
                and fields.get("State", "").strip().startswith("Z") and len(fields.get("NSpid", "").split()) > 1:
            try:
                os.waitpid(int(entry), 0)
            except ChildProcessError:
                pass


@pytest.fixture
def oci(runtime_path, tmp_path):
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    runtime = Runtime(runtime_path, str(tmp_path / "state"), str(tmp_path / "log.json"))
    try:
        yield runtime
    finally:
        for cid in runtime.ids():
            pid = json.loads(runtime("state", cid).stdout or "{}").get("pid")
            runtime("delete", "--force", cid)
            if pid:
                runtime.reap(pid)
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 0)


@pytest.fixture
def bundle(busybox_rootfs, runtime_path, tmp_path):
    parent = os.environ["MINIRT_CGROUP_PARENT"]  # the session's (tests/conftest.py)
    made = []

    def make(args, **changes):
        directory = tmp_path / f"bundle{len(made)}"
        directory.mkdir()
        shutil.copytree(busybox_rootfs, directory / "rootfs", symlinks=True)
        subprocess.run([runtime_path, "spec"], cwd=directory, check=True)
        config = json.loads((directory / "config.json").read_text())
        config["process"]["args"] = list(args)
        config["process"]["terminal"] = False
        config["root"]["readonly"] = False
        config["linux"]["cgroupsPath"] = f"/{parent}/oci-{len(made)}-{os.getpid()}"
        for key, value in changes.items():
            target = config
            *path, last = key.split("__")
            for part in path:
                target = target.setdefault(part, {})
            if value is None:
                target.pop(last, None)
            else:
                target[last] = value
        (directory / "config.json").write_text(json.dumps(config))
        made.append(directory)
        return str(directory)

    return make


@pytest.fixture
def detached(oci, bundle):
    """``detached(**changes)``: ``run --detach`` of a bundle whose process
    sleeps (with those changes) -> (its id, its cgroup's path); ``oci``
    deletes it at the end."""

    def run(**changes):
        b = bundle(["sleep", "100"], **changes)
        cid = os.path.basename(b)
        r = oci("run", "--detach", "--bundle", b, cid)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(b, "config.json")) as f:
            return cid, json.load(f)["linux"]["cgroupsPath"]

    return run


@pytest.fixture
def reachable():
    """reachable(bundle): the bundle moved where a user namespace's root (host
    uid 100000) reaches its rootfs, as runc too needs it -- not under pytest's
    0700 directory; the new path.  Removed at the end."""
    made = []

    def move(b):
        made.append(tempfile.mkdtemp(prefix="minirt-oci-userns-"))
        os.chmod(made[-1], 0o711)
        return shutil.move(b, made[-1])

    try:
        yield move
    finally:
        for directory in made:
            shutil.rmtree(directory)


CGROUP_PARENT = os.environ["MINIRT_CGROUP_PARENT"]  # the session's (tests/conftest.py)
MINIRT_RUNC = os.path.join(os.path.dirname(sys.executable), "minirt-runc")


def _hybrid_cgroups():
    with open("/proc/self/mounts") as f:
        return any(line.split()[1:3] == ["/sys/fs/cgroup/unified", "cgroup2"] for line in f)


RUNTIMES = [pytest.param(shutil.which("runc") or "/usr/sbin/runc", id="runc")]
if shutil.which("crun") and not _hybrid_cgroups():
    RUNTIMES.append(pytest.param(shutil.which("crun"), id="crun"))
RUNTIMES.append(pytest.param(MINIRT_RUNC, id="minirt"))  # installed by make install (pyproject)


BEHIND = {}  # wrapper -> the runtime it runs


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request, tmp_path_factory):
    """The path an engine is given: a shell script of the runtime's name that
    notes each command line (``runtime_calls``) and execs the runtime itself.
    That the engine called the path it was given, and how, is then checked."""
    directory = tmp_path_factory.mktemp("runtime")
    wrapper = directory / os.path.basename(request.param)
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {directory / "calls"}\nexec {request.param} "$@"\n')
    wrapper.chmod(0o755)
    BEHIND[str(wrapper)] = request.param
    return str(wrapper)


@pytest.fixture(scope="module")
def runtime_calls(runtime):
    """runtime_calls(): the command lines the engines gave the runtime so far,
    each a list of words; runtime_calls.verbs(): their commands (create, start...)."""
    log = os.path.join(os.path.dirname(runtime), "calls")

    def calls():
        if not os.path.exists(log):
            return []
        with open(log) as f:
            return [line.split() for line in f]

    verbs = {"create", "start", "run", "exec", "kill", "delete", "pause", "resume", "state", "ps", "update"}
    calls.verbs = lambda: {next((w for w in words if w in verbs), None) for words in calls()} - {None}
    return calls


@pytest.fixture(scope="module")
def runtime_state(runtime):
    """runtime_state(root, cid): the runtime's ``state`` JSON of ``cid`` (root None:
    its default root), or None when it knows no such container (asked directly,
    not through the wrapper: these calls are the test's, not the engine's)."""
    def state(root, cid):
        r = subprocess.run([BEHIND[runtime], *(["--root", root] if root else []), "state", cid],
                           capture_output=True, text=True, timeout=30)
        return json.loads(r.stdout) if r.returncode == 0 else None
    return state


def _ready(engine, *load):
    """Yield ``engine`` once ``engine(*load)`` has loaded the image; stop it after."""
    try:
        loaded = engine(*load)
        assert loaded.returncode == 0, loaded.stderr.decode()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def oci_containerd(engines, runtime, busybox_image, tmp_path_factory):
    engine = engines.Containerd(tmp_path_factory.mktemp("containerd"), CGROUP_PARENT, runtimes={"oci": runtime})
    yield from _ready(engine, "images", "import", busybox_image)


@pytest.fixture(scope="module")
def oci_docker(engines, runtime, busybox_image, tmp_path_factory):
    engine = engines.Docker(tmp_path_factory.mktemp("docker"), CGROUP_PARENT, runtimes={"oci": runtime})
    yield from _ready(engine, "load", "-i", busybox_image)


@pytest.fixture(scope="module")
def oci_podman(engines, runtime, busybox_image, tmp_path_factory):
    engine = engines.Podman(tmp_path_factory.mktemp("podman"), CGROUP_PARENT, runtime=runtime)
    yield from _ready(engine, "load", "-i", busybox_image)
