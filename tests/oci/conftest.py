"""Fixtures for the OCI runtime tests (minirt/oci).

- ``runtime_path``: an executable that runs this tree's ``minirt-runc`` (what
  an engine is given as its runtime's path).
- ``oci(*args)``: ``minirt-runc --root TMP ARGS`` -> CompletedProcess (text);
  as ``oci.log(*args)`` with ``--log FILE --log-format json`` too.  The
  test process is the containers' subreaper, as an engine's shim is:
  ``oci.reap(pid)`` waits for an exited PID 1; at the end every container
  left is deleted by force and reaped.
- ``bundle(args, **changes)``: a bundle directory on a busybox rootfs, with
  ``minirt-runc spec``'s config, the process's args, no terminal, and its
  cgroup under the session's cgroup parent (the leak check sees it).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from minirt.kernel import libc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def runtime_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("runtime") / "minirt-runc"
    path.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -P -m minirt.oci "$@"\n')
    path.chmod(0o755)
    return str(path)


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
        """Wait for the container's PID 1, adopted by us (the subreaper)."""
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return None

    def ids(self):
        try:
            return [d for d in os.listdir(os.path.join(self.root, "containers")) if not d.startswith(".")]
        except FileNotFoundError:
            return []


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
