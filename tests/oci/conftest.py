"""Engines driving an OCI runtime given by path: each test module of tests/oci
runs once per runtime in RUNTIMES, with engines of its own configured for it.

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

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CGROUP_PARENT = os.environ["MINIRT_CGROUP_PARENT"]  # the session's (tests/conftest.py)
MINIRT_RUNC = os.path.join(os.path.dirname(sys.executable), "minirt-runc")


def _hybrid_cgroups():
    with open("/proc/self/mounts") as f:
        return any(line.split()[1:3] == ["/sys/fs/cgroup/unified", "cgroup2"] for line in f)


RUNTIMES = [pytest.param(shutil.which("runc") or "/usr/sbin/runc", id="runc")]
if shutil.which("crun") and not _hybrid_cgroups():
    RUNTIMES.append(pytest.param(shutil.which("crun"), id="crun"))
RUNTIMES.append(pytest.param(MINIRT_RUNC, id="minirt", marks=pytest.mark.skipif(
    not os.path.exists(MINIRT_RUNC), reason=f"{MINIRT_RUNC} does not exist yet (minirt's OCI runtime, branch oci)")))


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
