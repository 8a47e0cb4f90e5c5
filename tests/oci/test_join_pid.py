"""A bundle's pid namespace given by ``path``: its process is born in that
namespace (the runtime steps in for the one clone, then back), and ``exec``
joins it too."""

import os

import pytest

from tests.oci.test_cli import wait_for

pytestmark = pytest.mark.privileged


def test_a_pid_namespace_joined_by_path(oci, bundle, tmp_path):
    assert oci("create", "--bundle", bundle(["sleep", "100"]), "--pid-file", str(tmp_path / "a"), "a").returncode == 0
    assert oci("start", "a").returncode == 0
    first = int((tmp_path / "a").read_text())
    theirs = os.readlink(f"/proc/{first}/ns/pid")
    hook_saw = tmp_path / "hook"  # createRuntime runs in `create`, after the clone
    namespaces = [{"type": t} for t in ("mount", "ipc", "uts", "network")] + [
        {"type": "pid", "path": f"/proc/{first}/ns/pid"}]
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"readlink /proc/self/ns/pid > {hook_saw}"]}
    b = bundle(["sh", "-c", "cat /proc/1/cmdline; echo; readlink /proc/self/ns/pid; exec sleep 100"],
               linux__namespaces=namespaces, hooks={"createRuntime": [hook]})
    out = tmp_path / "out"
    with open(out, "w") as f:
        r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "b"), "b", stdout=f)
    assert r.returncode == 0, r.stderr
    second = int((tmp_path / "b").read_text())
    assert hook_saw.read_text().strip() == os.readlink("/proc/self/ns/pid")  # minirt-runc went back to its own
    assert oci("start", "b").returncode == 0
    wait_for(lambda: out.read_text().count("\n") == 2)
    assert out.read_text().splitlines() == ["sleep\x00100\x00", theirs]  # a's PID 1 is its PID 1 too
    assert os.readlink(f"/proc/{second}/ns/pid") == theirs
    r = oci("exec", "b", "readlink", "/proc/self/ns/pid")
    assert (r.returncode, r.stdout) == (0, theirs + "\n")
    for cid, pid in (("b", second), ("a", first)):
        assert oci("delete", "--force", cid).returncode == 0
        oci.reap(pid)


def test_a_pid_namespace_path_that_is_not_one_is_refused(oci, bundle, tmp_path):
    b = bundle(["true"], linux__namespaces=[{"type": "mount"}, {"type": "pid", "path": str(tmp_path)}])
    r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c")
    assert r.returncode == 1 and f"linux.namespaces: {tmp_path} is not a pid namespace" in r.stderr, r.stderr
    assert oci.ids() == [] and not (tmp_path / "pid").exists()
    b = bundle(["true"], linux__namespaces=[{"type": "mount"}, {"type": "pid", "path": "/proc/self/ns/net"}])
    r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "c")
    assert r.returncode == 1 and "linux.namespaces: /proc/self/ns/net is not a pid namespace" in r.stderr, r.stderr
    assert oci.ids() == [] and not (tmp_path / "pid").exists()
