"""Images made by other tools (skopeo, umoci) run, not just load.

skopeo rewrites the project's busybox image into the forms it writes itself;
umoci builds a two-layer image from scratch, the second layer deleting a file
of the first (a whiteout) — the container must not see that file.
"""

import os
import shutil
import subprocess

import pytest

import minirt
from minirt.image.busybox import build_busybox_image

pytestmark = pytest.mark.privileged


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


def sh(*cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{cmd}: {out.stderr}"


@pytest.mark.parametrize("form", ["docker-archive:{out}.tar:busybox:latest", "oci-archive:{out}.tar:latest"])
def test_skopeo_copies_run(tmp_path, state_root, form):
    layout = build_busybox_image(tmp_path / "layout", "oci-layout")
    target = form.format(out=tmp_path / "copy")
    sh(tool("skopeo"), "--insecure-policy", "copy", "-q", f"oci:{layout}:latest", target)
    r = minirt.run(target.split(":")[1], ["sh", "-c", "echo $((40+2)); hostname"], root=state_root, hostname="sk")
    assert (r.exit_code, r.stdout) == (0, b"42\nsk\n")


def test_umoci_built_image_with_a_whiteout_runs(tmp_path, state_root):
    umoci = tool("umoci")
    layout, bundle = tmp_path / "layout", tmp_path / "bundle"
    sh(umoci, "init", "--layout", str(layout))
    sh(umoci, "new", "--image", f"{layout}:t")
    sh(umoci, "unpack", "--image", f"{layout}:t", str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir()
    shutil.copy("/bin/busybox", rootfs / "bin/busybox")
    for applet in ("sh", "cat", "ls", "test"):
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "etc").mkdir()
    (rootfs / "etc/motd").write_text("made by umoci\n")
    (rootfs / "etc/gone").write_text("deleted in layer 2\n")
    sh(umoci, "repack", "--refresh-bundle", "--image", f"{layout}:t", str(bundle))
    (rootfs / "etc/gone").unlink()
    sh(umoci, "repack", "--image", f"{layout}:t", str(bundle))
    sh(umoci, "config", "--image", f"{layout}:t", "--config.cmd", "sh", "--config.env", "PATH=/bin")
    shutil.rmtree(bundle)
    r = minirt.run(str(layout), ["sh", "-c", "cat /etc/motd; test -e /etc/gone || echo whiteout-honoured"],
                   root=state_root)
    assert (r.exit_code, r.stdout, r.stderr) == (0, b"made by umoci\nwhiteout-honoured\n", b"")
