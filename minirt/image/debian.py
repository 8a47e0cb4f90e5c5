"""The example image of a distribution: Debian's minbase, made by debootstrap.

Lecture idea: "Docker maintains a library of images that you can run" --
ubuntu, fedora, debian: a distribution's base image is its smallest install,
the root filesystem its own installer makes, minus what only the machine that
made it had.  Where busybox (busybox.py) is one static binary, this is the
real thing a Dockerfile usually starts from: some 6,000 files, shared
libraries, hard links (``perl`` and ``perl5.36.0``), setuid programs (``su``,
``passwd``), system users in /etc/passwd (``www-data``, ``nobody``, apt's
``_apt``), dpkg's database and apt to install more.

``debootstrap --variant=minbase`` installs Debian's *required* packages and
apt from a Debian mirror (its default one).  Then, as the images on Docker
Hub are made, the tree loses what belongs to the machine that built it or to
the download, not to Debian:

- /etc/hostname and /etc/resolv.conf are the build host's: left empty, as
  mount points for the runtime's own (busybox.py does the same);
- /dev holds device nodes debootstrap made: emptied, the runtime mounts /dev;
- the downloaded packages and package lists (80 MB of the 200) are apt's
  cache: removed, as ``apt-get clean && rm -rf /var/lib/apt/lists/*`` does
  (``apt-get update`` fetches the lists again);
- debootstrap's own log.

``make images`` (images/build.py) and the tests' ``debian_image`` fixture
call ``made_once``: images/debian.tar is made the first time and kept.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from minirt.errors import ImageError
from minirt.image.busybox import PATH
from minirt.image.write import write_image

SUITE = "bookworm"
CONFIG = {"Env": [f"PATH={PATH}"], "Cmd": ["bash"]}
TIMEOUT = 30 * 60  # seconds: a mirror that stalls must not hang `make images`

# What the tree sheds (see above): emptied files, emptied directories, removed files.
HOST_FILES = ("etc/hostname", "etc/resolv.conf")
EMPTIED = ("dev", "var/cache/apt/archives", "var/lib/apt/lists")
KEPT = ("partial", "lock")  # apt's own working entries in those directories
REMOVED = ("var/log/bootstrap.log", "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin")


def debootstrap(dest: str | os.PathLike, suite: str = SUITE) -> Path:
    """``debootstrap --variant=minbase SUITE DEST``, as it leaves it (root and
    a reachable Debian mirror needed).  A failure is one ImageError with the
    last line debootstrap wrote."""
    dest = Path(dest)
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap not found: install Debian's debootstrap")
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root")
    with tempfile.TemporaryFile() as log:
        # a session of its own: on a timeout, its downloads (wget) are stopped too
        child = subprocess.Popen(["debootstrap", "--variant=minbase", suite, str(dest)],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = child.wait(TIMEOUT)
        except BaseException as e:  # the timeout, or Ctrl-C: nothing of it goes on
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            if isinstance(e, subprocess.TimeoutExpired):
                raise ImageError(f"debootstrap {suite}: stopped after {TIMEOUT} s") from None
            raise
        if code != 0:
            log.seek(0)
            lines = log.read().decode(errors="replace").strip().splitlines() or ["(no output)"]
            raise ImageError(f"debootstrap {suite} failed (exit {code}): {lines[-1]}")
    return dest


def debian_rootfs(dest: str | os.PathLike, suite: str = SUITE) -> Path:
    """A Debian minbase root filesystem in the empty directory ``dest``,
    without what only its build host had (see the module's docstring)."""
    dest = debootstrap(dest, suite)
    for rel in HOST_FILES:
        with open(dest / rel, "w"):
            pass
        os.chmod(dest / rel, 0o644)
    for rel in EMPTIED:
        for entry in os.scandir(dest / rel):
            if entry.name in KEPT and rel != "dev":
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    for rel in REMOVED:
        if os.path.lexists(dest / rel):
            os.unlink(dest / rel)
    return dest


def build_debian_image(out_path: str | os.PathLike, form: str = "docker", *, suite: str = SUITE,
                       tag: str | None = None) -> Path:
    """Write the Debian minbase image (one gzip layer; owners, modes, hard
    links and times as debootstrap left them) as "docker" or "oci-archive"."""
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="minirt-debian-", dir=_scratch()) as tmp:
        rootfs = debian_rootfs(Path(tmp) / "rootfs", suite)
        return write_image(out_path, [rootfs], form=form, config=CONFIG, compression="gzip",
                           tag=tag or (f"debian:{suite}" if form == "docker" else suite))


def _scratch() -> str:
    """Where the 200 MB tree is made: /var/tmp (a disk), not a /tmp in memory."""
    return "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()


def made_once(path: str | os.PathLike) -> bool:
    """The docker archive ``path`` made by ``build_debian_image`` unless it
    exists already (True: made now)."""
    if os.path.exists(path):
        return False
    build_debian_image(path)
    return True
