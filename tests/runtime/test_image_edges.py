"""Images at the edges: hostile metadata through the command line and the API,
and the number of layers an image may have.

Hostile: each image is refused before anything is made, by the CLI with one
line ``minirt: ...`` and exit code 125, by ``minirt.run`` with an ImageError;
the state root is left as it was, so the next run works.

Layers: none (``FROM scratch`` with only a CMD: docker runs it on an empty
root, and so does minirt), 128 and more (the overlay's mount options once
overflowed their page at 60 layers), with whiteouts across the stack, as
root, with ``--userns=remap`` and rootless; and a clear error past overlayfs's
500.
"""

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest

import minirt
from minirt.errors import ImageError
from minirt.image.write import write_image

pytestmark = pytest.mark.privileged

BUSYBOX = "/bin/busybox"  # Debian's busybox-static


def tar(*members) -> bytes:
    """A layer: members are (name, data or None for a directory, pax records or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, pax in members:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.mtime = 0o755, 1_000_000
            if data is None:
                ti.type = tarfile.DIRTYPE
            else:
                ti.size = len(data)
            ti.pax_headers = pax or {}
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def busybox_layer() -> bytes:
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("bin/busybox")
        ti.mode, ti.size = 0o755, len(binary)
        t.addfile(ti, io.BytesIO(binary))
        for applet in ("sh", "cat", "ls", "test", "wc", "true"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(link)
    return buf.getvalue()


def cli(root, *args):
    return subprocess.run([sys.executable, "-m", "minirt", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=120)


def state(root):
    """What a run may leave in a state root: containers and unpacked layers."""
    found = []
    for sub in ("containers", "layers/sha256", "layers/tmp"):
        d = os.path.join(root, sub)
        found += [f"{sub}/{n}" for n in os.listdir(d)] if os.path.isdir(d) else []
    return sorted(found)


# --- hostile images --------------------------------------------------------------

HOSTILE = {
    "cmd-a-string": ([busybox_layer()], {"Cmd": "true"}, 'config: Cmd must be a list of strings, got "true"'),
    "workdir-a-number": ([busybox_layer()], {"Cmd": ["true"], "WorkingDir": 5}, "WorkingDir must be a string"),
    "env-a-string": ([busybox_layer()], {"Cmd": ["true"], "Env": "A=1"}, "Env must be a list of strings"),
    "pax-size-negative": ([tar(("f", b"hello", {"size": "-5"}))], None, "bad pax size '-5'"),
    "pax-mtime-nan": ([tar(("f", b"x", {"mtime": "nan"}))], None, "bad pax mtime 'nan'"),
    "pax-atime-1e400": ([tar(("f", b"x", {"atime": "1e400"}))], None, "bad pax atime '1e400'"),
    "pax-uid-2^40": ([tar(("f", b"x", {"uid": str(1 << 40)}))], None, "owner 1099511627776:0 out of range"),
}


@pytest.fixture(scope="module")
def good_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.tar"
    return str(write_image(path, [busybox_layer()], form="docker", config={"Cmd": ["true"]}))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_image_cli_one_line_125_nothing_changed(case, tmp_path, good_image):
    layers, config, message = HOSTILE[case]
    image = write_image(tmp_path / "bad.tar", layers, form="docker", config=config or {"Cmd": ["true"]})
    root = tmp_path / "root"
    assert cli(root, "run", "--rm", "--network", "none", good_image).returncode == 0
    before = state(root)
    r = cli(root, "run", "--rm", "--network", "none", str(image))
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith("minirt: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert r.stdout == ""
    assert state(root) == before
    assert cli(root, "run", "--rm", "--network", "none", good_image).returncode == 0


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_image_api_raises_image_error(case, tmp_path):
    layers, config, message = HOSTILE[case]
    image = write_image(tmp_path / "bad", layers, form="oci-layout", config=config or {"Cmd": ["true"]})
    with pytest.raises(ImageError, match=message.replace("(", r"\(").replace("[", r"\[")):
        minirt.run(str(image), root=str(tmp_path / "root"), network="none")
    assert state(tmp_path / "root") == []


# --- how many layers ---------------------------------------------------------------

def stacked_image(path, n):
    """``n`` layers: busybox at the bottom; each layer above adds /l/<i>; the second
    adds /gone/{a,b} and /opq/old, the top one deletes /gone/a (a whiteout) and
    makes /opq opaque, 126 or more layers above them."""
    layers = [busybox_layer(), tar(("l", None, None), ("l/1", b"1", None), ("gone", None, None),
                                   ("gone/a", b"a", None), ("gone/b", b"b", None), ("opq", None, None),
                                   ("opq/old", b"o", None))]
    layers += [tar(("l", None, None), (f"l/{i}", str(i).encode(), None)) for i in range(2, n - 1)]
    layers.append(tar(("l", None, None), (f"l/{n - 1}", str(n - 1).encode(), None), ("gone/.wh.a", b"", None),
                      ("opq", None, None), ("opq/.wh..wh..opq", b"", None), ("opq/new", b"n", None)))
    assert len(layers) == n
    return write_image(path, layers, form="oci-layout", config={"Cmd": ["sh"]})


CHECK = "cat /l/1 /l/{top}; ls /l | wc -l; test -e /gone/a || echo a-gone; cat /gone/b; ls /opq"


def expected(n):
    return f"1{n - 1}{n - 1}\na-gone\nbnew\n".encode()


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    d = tmp_path_factory.mktemp("many")
    return {n: stacked_image(d / f"img{n}", n) for n in (128, 200, 500)}


@pytest.mark.parametrize("n", [128, 500])
def test_many_layers_run(many, tmp_path, n):
    r = minirt.run(str(many[n]), ["sh", "-c", CHECK.format(top=n - 1)], root=str(tmp_path / "root"), network="none")
    assert (r.exit_code, r.stdout, r.stderr) == (0, expected(n), b"")


def test_many_layers_with_userns_remap(many):
    root = tempfile.mkdtemp(prefix="minirt-remap-many-")
    os.chmod(root, 0o755)  # the shifted root (uid 100000) must reach the layers
    try:
        r = minirt.run(str(many[200]), ["sh", "-c", CHECK.format(top=199)], root=root, network="none",
                       userns="remap")
    finally:
        shutil.rmtree(root)
    assert (r.exit_code, r.stdout, r.stderr) == (0, expected(200), b"")


def test_many_layers_rootless(many, nobody, home):
    image = os.path.join(home, "many")
    subprocess.run(["cp", "-r", str(many[200]), image], check=True)
    subprocess.run(["chmod", "-R", "a+rX", image], check=True)
    r = nobody("run", "--rm", image, "sh", "-c", CHECK.format(top=199))
    assert (r.returncode, r.stdout, r.stderr) == (0, expected(200), b"")


def test_more_layers_than_overlayfs_stacks(tmp_path):
    image = stacked_image(tmp_path / "img", 501)
    r = cli(tmp_path / "root", "run", "--rm", "--network", "none", str(image), "true")
    assert (r.returncode, r.stderr) == (125, f"minirt: {image}: 501 layers, but overlayfs stacks at most 500\n")
    assert state(tmp_path / "root") == []


def test_image_without_layers_runs_on_an_empty_root(tmp_path):
    # FROM scratch with only a CMD: docker runs it on an empty root filesystem.
    image = write_image(tmp_path / "scratch", [], form="oci-layout", config={"Cmd": ["/busybox", "ls", "/"]})
    r = minirt.run(str(image), root=str(tmp_path / "root"), network="none", volumes=[f"{BUSYBOX}:/busybox:ro"])
    assert (r.exit_code, r.stdout.split(), r.stderr) == (0, [b"busybox", b"dev", b"etc", b"proc", b"sys"], b"")


def test_image_without_layers_and_without_a_binary(tmp_path):
    # What docker says too: the command is not found (127), not a crash.
    image = write_image(tmp_path / "scratch.tar", [], form="docker", config={"Cmd": ["/hello"]})
    r = cli(tmp_path / "root", "run", "--rm", "--network", "none", str(image))
    assert r.returncode == 127 and r.stderr.count("\n") == 1 and "/hello" in r.stderr, r.stderr
