"""The example image: a busybox root filesystem, built without docker.

Lecture idea: a container image "includes everything needed to run" the
software -- and for a shell, that can be one static binary.  Busybox is a
single executable that acts as ``sh``, ``ls``, ``ps`` and some 300 other
commands depending on the name it is called by, so a root filesystem is that
binary, a symlink per command, a few directories and an /etc/passwd.

``make images`` (images/build.py) and the tests call ``build_busybox_image``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from minirt.image.write import write_image

BUSYBOX = "/bin/busybox"  # Debian's busybox-static: no shared libraries needed
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONFIG = {"Env": [f"PATH={PATH}"], "Cmd": ["sh"]}

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
users:x:100:
nogroup:x:65534:
"""

# (path, mode): the directories a program expects to find.  /dev, /proc and
# /sys stay empty: the runtime mounts them.
DIRS = [("bin", 0o755), ("sbin", 0o755), ("usr", 0o755), ("usr/bin", 0o755),
        ("usr/sbin", 0o755), ("etc", 0o755), ("root", 0o700), ("home", 0o755),
        ("tmp", 0o1777), ("var", 0o755), ("var/tmp", 0o1777), ("dev", 0o755),
        ("proc", 0o555), ("sys", 0o555)]


def busybox_rootfs(dest: str | os.PathLike, busybox: str = BUSYBOX) -> Path:
    """Lay out a busybox root filesystem in the empty directory ``dest``."""
    dest = Path(dest)
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} not found: install Debian's busybox-static")
    for d, mode in DIRS:
        (dest / d).mkdir(exist_ok=True)
        os.chmod(dest / d, mode)  # chmod: mkdir's mode is cut by the umask
    shutil.copyfile(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    listing = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    for applet in listing.stdout.split():
        link = dest / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        # Absolute on purpose: right inside the container, wrong on the host,
        # which is why layers.py never follows a symlink.
        os.symlink("/bin/busybox", link)
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    for name in ("hostname", "hosts", "resolv.conf"):
        (dest / "etc" / name).write_text("")  # mount points for the runtime's files
    for f in ("etc/passwd", "etc/group", "etc/hostname", "etc/hosts", "etc/resolv.conf"):
        os.chmod(dest / f, 0o644)
    return dest


def build_busybox_image(out_path: str | os.PathLike, form: str = "docker", *,
                        compression: str | None = None, tag: str | None = None,
                        busybox: str = BUSYBOX) -> Path:
    """Write the busybox image as "docker", "oci-archive" or "oci-layout".

    Deterministic: the same busybox binary always gives the same digests.
    docker archives hold the layer uncompressed (as ``docker save`` does);
    the OCI forms gzip it unless ``compression`` says otherwise.
    """
    if compression is None and form != "docker":
        compression = "gzip"
    if tag is None:
        tag = "busybox:latest" if form == "docker" else "latest"
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="minirt-busybox-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        busybox_rootfs(rootfs, busybox)
        return write_image(out_path, [rootfs], form=form, config=CONFIG, tag=tag,
                           compression=compression, mtime=0, owner=(0, 0))
