"""``--preserve-fds N`` of create, run and exec: the caller's descriptors 3 ..
3+N-1 reach the container's process as they are, and no others."""

import os
import shlex
import subprocess
import tempfile

import pytest

pytestmark = pytest.mark.privileged

# Writes to its descriptor 3, and says so if it got a 4 as well.
REPORT = ["sh", "-c", "echo kept >&3; if [ -e /proc/self/fd/4 ]; then echo leaked 4 >&3; fi"]


def with_fds(oci, fds, *args):
    """``minirt-runc --root ROOT ARGS`` with the files ``fds`` open (for
    appending) as its descriptors 3, 4, ...: (exit code, stderr)."""
    redirects = " ".join(f"{3 + i}>>{shlex.quote(str(path))}" for i, path in enumerate(fds))
    command = f"exec {shlex.quote(oci.path)} --root {shlex.quote(oci.root)} {shlex.join(args)} {redirects}"
    with tempfile.TemporaryFile("w+") as err:  # (a pipe would stay open as long as PID 1)
        r = subprocess.run(["sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=err, timeout=30)
        err.seek(0)
        return r.returncode, err.read()


def test_create_passes_on_exactly_the_descriptors_named(oci, bundle, tmp_path):
    three, four = tmp_path / "three", tmp_path / "four"
    code, err = with_fds(oci, [three, four], "create", "--preserve-fds", "1", "--bundle", bundle(REPORT),
                         "--pid-file", str(tmp_path / "pid"), "p1")
    assert code == 0, err
    pid = int((tmp_path / "pid").read_text())
    assert three.read_text() == ""  # not before start
    assert oci("start", "p1").returncode == 0
    assert os.WEXITSTATUS(oci.reap(pid)) == 0
    assert three.read_text() == "kept\n" and four.read_text() == ""
    assert oci("delete", "p1").returncode == 0


def test_run_passes_them_too(oci, bundle, tmp_path):
    three = tmp_path / "three"
    code, err = with_fds(oci, [three], "run", "--preserve-fds", "1", "--bundle", bundle(REPORT), "p2")
    assert (code, err) == (0, "")
    assert three.read_text() == "kept\n"
    assert oci.ids() == []


def test_exec_passes_them_and_without_the_flag_keeps_them_out(oci, bundle, tmp_path):
    r = oci("create", "--bundle", bundle(["sleep", "100"]), "--pid-file", str(tmp_path / "pid"), "p3")
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "pid").read_text())
    assert oci("start", "p3").returncode == 0
    three, four = tmp_path / "three", tmp_path / "four"
    assert with_fds(oci, [three, four], "exec", "--preserve-fds", "1", "p3", *REPORT) == (0, "")
    assert three.read_text() == "kept\n" and four.read_text() == ""
    code, err = with_fds(oci, [three], "exec", "p3", "sh", "-c", "echo again >&3")
    assert code != 0 and "Bad file descriptor" in err  # (sh's own complaint: it has no 3)
    assert three.read_text() == "kept\n"
    assert oci("delete", "--force", "p3").returncode == 0
    oci.reap(pid)


@pytest.mark.parametrize("value, given, message", [
    ("x", 1, "--preserve-fds takes a number, not 'x'"),
    ("-1", 1, "--preserve-fds takes a number, not '-1'"),
    ("2", 1, "--preserve-fds 2: file descriptor 4 was not passed to minirt-runc"),
])
def test_a_bad_count_is_refused_and_makes_nothing(oci, bundle, tmp_path, value, given, message):
    files = [tmp_path / f"fd{i}" for i in range(given)]
    code, err = with_fds(oci, files, "create", "--preserve-fds", value, "--bundle", bundle(["true"]), "p4")
    assert code == 1 and err.strip() == f"minirt-runc: {message}"
    assert oci.ids() == []
