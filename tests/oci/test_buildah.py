"""buildah builds with minirt-runc as its runtime (``bud --runtime PATH
--isolation oci``: create, start, state, delete for each RUN step), with its
storage in a temporary directory and nothing left after."""

import subprocess

import pytest

pytestmark = pytest.mark.privileged


@pytest.fixture
def buildah(tmp_path, busybox_image):
    base = ["buildah", "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"),
            "--storage-driver", "overlay"]

    def run(*args):
        return subprocess.run(base + list(args), capture_output=True, text=True, timeout=300)

    assert run("pull", f"docker-archive:{busybox_image}").returncode == 0
    try:
        yield run
    finally:
        run("rm", "-a")
        run("rmi", "-a", "-f")
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f if line.split()[1].startswith(str(tmp_path) + "/")]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)


def test_run_steps_build(buildah, runtime_path, tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo built > /hello && cat /hello && id -u\n")
    r = buildah("bud", "--runtime", runtime_path, "--isolation", "oci", "--network", "none",
                "--cgroup-manager", "cgroupfs", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                "-t", "built:1", str(context))
    assert r.returncode == 0, r.stderr
    assert "built\n0\n" in r.stdout
    assert "localhost/built" in buildah("images").stdout
