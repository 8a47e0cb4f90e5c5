"""The state root is private (the CVE-2021-41091 class).

Image layers and containers' writable layers hold files that are harmless inside
a container and dangerous on the host: a setuid-root binary, a world-writable
device node.  If a host user can reach them by path, they run as root there.
So no user but the state root's owner may traverse it: the tests play the host
user ``nobody`` (through setpriv) and try.
"""

import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import pytest

import minirt
from minirt.image.busybox import busybox_rootfs
from minirt.image.write import write_image
from minirt.runtime import prune, state
from minirt.runtime.container import Container

from .conftest import NOBODY

pytestmark = pytest.mark.privileged

HOST_ID = shutil.which("id")  # a dynamically linked binary that says who it runs as


def as_nobody(*cmd):
    """``cmd`` as the host user nobody; through sh, as setpriv opens its program before it
    changes users."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           "sh", "-c", 'exec "$0" "$@"', *cmd], capture_output=True)


def dangerous_layer():
    """A setuid-root copy of the host's id(1) and a world-writable /dev/null."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = open(HOST_ID, "rb").read()
        suid = tarfile.TarInfo("suid-id")
        suid.size, suid.mode = len(data), 0o4755
        tar.addfile(suid, io.BytesIO(data))
        null = tarfile.TarInfo("null")
        null.type, null.mode, null.devmajor, null.devminor = tarfile.CHRTYPE, 0o666, 1, 3
        tar.addfile(null)
    return buf.getvalue()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dangerous")
    (tmp / "rootfs").mkdir()
    rootfs = busybox_rootfs(tmp / "rootfs")
    return str(write_image(tmp / "dangerous.tar", [rootfs, dangerous_layer()], form="docker",
                           config={"Cmd": ["sh"], "Env": ["PATH=/bin:/sbin"]}))


@pytest.fixture
def parent():
    """Where state roots go: a directory every user may traverse, as /var/lib is."""
    d = tempfile.mkdtemp(prefix="minirt-private-")
    os.chmod(d, 0o755)
    yield d
    for root in os.listdir(d):
        prune.prune(os.path.join(d, root))
    shutil.rmtree(d)


def plant_in_upper(image, root):
    """A stopped container that wrote a setuid-root id(1) into its writable layer.
    Returns the file's host path."""
    r = minirt.run(image, ["sh", "-c", "cat > /mine && chmod 4755 /mine"], root=root, remove=False,
                   input=open(HOST_ID, "rb").read())
    assert r.exit_code == 0, r.stderr
    return os.path.join(state.containers_dir(root), r.id, "upper", "mine")


def assert_out_of_nobodys_reach(root, upper_file):
    [layer] = [d for d in os.listdir(os.path.join(root, "layers", "sha256"))
               if os.path.exists(os.path.join(root, "layers", "sha256", d, "suid-id"))]
    layer = os.path.join(root, "layers", "sha256", layer)
    assert os.stat(os.path.join(layer, "suid-id")).st_mode & stat.S_ISUID  # it is there, as the image says
    for suid in (os.path.join(layer, "suid-id"), upper_file):
        r = as_nobody(suid, "-u")
        assert r.returncode != 0 and b"euid=0" not in r.stdout and b"Permission denied" in r.stderr, (suid, r)
    r = as_nobody("sh", "-c", f"echo x > {os.path.join(layer, 'null')}")
    assert r.returncode != 0 and b"Permission denied" in r.stderr, r
    assert os.stat(root).st_mode & 0o007 == 0


def test_nobody_cannot_reach_setuid_files_or_devices_in_a_new_state_root(image, parent):
    root = os.path.join(parent, "state")
    assert_out_of_nobodys_reach(root, plant_in_upper(image, root))
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert {d: stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) for d in os.listdir(root)} == \
        {d: 0o700 for d in os.listdir(root)}


def test_an_existing_world_readable_state_root_is_repaired_on_first_use(image, parent):
    root = os.path.join(parent, "state")
    upper_file = plant_in_upper(image, root)
    for d in (root, os.path.join(root, "layers"), os.path.join(root, "layers", "sha256"),
              os.path.join(root, "containers"), os.path.dirname(os.path.dirname(upper_file))):
        os.chmod(d, 0o755)  # as an older minirt left them
    assert as_nobody(upper_file, "-u").returncode == 0  # the hole, before the repair

    r = minirt.run(image, ["true"], root=root)
    assert r.exit_code == 0, r.stderr
    assert_out_of_nobodys_reach(root, upper_file)
    for d in ("layers", "containers"):
        assert os.stat(os.path.join(root, d)).st_mode & 0o067 == 0, d  # (0710: as docker)


def test_rootless_state_root_is_private_to_its_user(home, nobody):
    r = nobody("run", "--rm", os.path.join(home, "busybox.tar"), "true")
    assert r.returncode == 0, r.stderr
    st = os.stat(os.path.join(home, "root"))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o700)


def test_remap_containers_reach_their_layers_and_upper_in_a_private_root(image, parent):
    root = os.path.join(parent, "state")
    r = minirt.run(image, ["sh", "-c", "echo hi > /f && cat /f /etc/hostname >/dev/null && id -u"],
                   root=root, userns="remap")
    assert (r.exit_code, r.stdout) == (0, b"0\n"), r.stderr
    assert os.stat(root).st_mode & 0o007 == 0
    # Nothing of a container without remap is open to the remapped group.
    plain = plant_in_upper(image, root)
    assert os.stat(os.path.dirname(os.path.dirname(plain))).st_mode & 0o077 == 0
    c = Container.load(root, os.path.basename(os.path.dirname(os.path.dirname(plain))))
    c.remove(force=True)
