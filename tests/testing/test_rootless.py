"""The plugin as an unprivileged user runs it (a CI job without sudo): rootless
containers in user namespaces, its state in the user's own directories, and
nothing left behind.  The user is nobody, through ``setpriv``, as
tests/runtime/test_rootless.py runs minirt."""

import os
import subprocess
import time

import pytest

pytestmark = pytest.mark.privileged  # (root, to become nobody)

NOBODY = 65534


def processes_of(uid):
    """The live processes (not zombies) of ``uid``."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                dead = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            if os.stat(f"/proc/{pid}").st_uid == uid and not dead:
                found.add(pid)
        except FileNotFoundError:
            pass
    return found


def test_the_plugin_runs_rootless_as_an_unprivileged_user(world_inner):
    inner = world_inner
    before = processes_of(NOBODY)
    inner.write("test_sandbox.py", """
        def test_root_inside_is_nobody_outside(container):
            r = container("sh", "-c", "id -u; cat /proc/self/uid_map")
            assert r.exit_code == 0
            uid, mapping = r.stdout.decode().splitlines()
            assert uid == "0" and mapping.split() == ["0", "65534", "1"]

        def test_a_background_container_and_the_assertions(container):
            c = container.start("sleep", "60")
            assert c.exec("echo", "hi").stdout == b"hi\\n"
            assert_not_writable(c, "/proc/sys/kernel")
        """)
    for top, _dirs, files in os.walk(inner.dir):
        for path in [top] + [os.path.join(top, f) for f in files]:
            os.chown(path, NOBODY, NOBODY)
    r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *inner.argv()],
                       cwd=inner.dir, env={**inner.env(), "HOME": inner.dir}, capture_output=True, timeout=300)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0 and "2 passed" in out, out
    assert len(inner.runs()) == 1
    assert os.stat(inner.base).st_uid == NOBODY  # (its state is the user's own)
    deadline = time.monotonic() + 5  # (a detached container's monitor exits moments after it)
    while not processes_of(NOBODY) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(NOBODY) <= before  # (its containers have no cgroup to find them by)
