"""The content-addressed store: unpack once, share between images, survive
crashes and concurrent unpackers."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minirt.errors import ImageError
from minirt.image import Store, open_image
from minirt.image import store as store_mod


def _count_reads(monkeypatch):
    opened = []
    real = store_mod.Image.open_layer

    def spy(self, layer):
        opened.append(layer.diff_id)
        return real(self, layer)

    monkeypatch.setattr(store_mod.Image, "open_layer", spy)
    return opened


def test_shared_layer_unpacked_once(image, T, make_layer, tmp_path, monkeypatch):
    base = make_layer(T.file("base", b"b" * 10000))
    app1 = make_layer(T.file("app", b"one"))
    app2 = make_layer(T.file("app", b"two"))
    img1 = image(base, app1, form="docker")
    img2 = image(base, app2, form="oci-archive", compression="gzip")
    opened = _count_reads(monkeypatch)
    store = Store(tmp_path / "root")
    with open_image(img1) as img:
        d1 = store.unpack(img)
    with open_image(img2) as img:
        d2 = store.unpack(img)
    assert d1[0] == d2[0] and d1[1] != d2[1]
    sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
    assert opened == [sha(base), sha(app1), sha(app2)]  # base read once
    assert sorted(os.listdir(tmp_path / "root/layers/sha256")) == sorted(
        s[7:] for s in (sha(base), sha(app1), sha(app2)))


def test_second_unpack_reads_nothing(image, T, make_layer, tmp_path, monkeypatch):
    path = image(make_layer(T.file("f", b"x")), make_layer(T.file("g", b"y")), form="docker")
    store = Store(tmp_path / "root")
    with open_image(path) as img:
        first = store.unpack(img)
    opened = _count_reads(monkeypatch)
    with open_image(path) as img:
        assert store.unpack(img) == first
    assert opened == []


def test_same_layer_twice_in_one_image(image, T, make_layer, unpack):
    l = make_layer(T.file("f", b"x"))
    a, b = unpack(image(l, l))
    assert a == b


def test_layer_dir_validates_diff_id(tmp_path):
    from minirt.errors import ImageError
    with pytest.raises(ImageError, match="invalid diff_id"):
        Store(tmp_path).layer_dir("sha256:../../etc")


def test_stale_temporary_layers_are_swept(image, T, make_layer, tmp_path):
    store = Store(tmp_path / "root")
    tmp = tmp_path / "root/layers/tmp"
    tmp.mkdir(parents=True)
    # A process that died half way (pid 2**22+1 cannot exist) and a live one.
    (tmp / f"deadbeef-{2**22 + 1}-0").mkdir()
    (tmp / f"deadbeef-{2**22 + 1}-0/half").write_text("x")
    live = tmp / f"cafe-{os.getpid()}-99"
    live.mkdir()
    with open_image(image(make_layer(T.file("f", b"x")))) as img:
        store.unpack(img)
    assert os.listdir(tmp) == [live.name]


def test_rename_race_loser_uses_winner(image, T, make_layer, tmp_path, monkeypatch):
    layer = make_layer(T.file("f", b"winner?"))
    path = image(layer)
    store = Store(tmp_path / "root")
    final = Path(store.layer_dir("sha256:" + hashlib.sha256(layer).hexdigest()))
    real_rename = os.rename

    def racing_rename(src, dst):
        # Another process finishes the same layer just before us.
        if str(dst) == str(final) and not final.exists():
            os.makedirs(final)
            (final / "f").write_bytes(b"winner")
        return real_rename(src, dst)

    monkeypatch.setattr(store_mod.os, "rename", racing_rename)
    with open_image(path) as img:
        [d] = store.unpack(img)
    assert Path(d, "f").read_bytes() == b"winner"
    assert os.listdir(tmp_path / "root/layers/tmp") == []


def test_concurrent_unpackers_both_succeed(image, T, make_layer, tmp_path):
    # Big enough that the two unpacks overlap.
    members = [T.file(f"d{i % 50}/f{i}", os.urandom(2000)) for i in range(3000)]
    path = image(make_layer(*members), make_layer(T.file("top", b"t")), form="docker",
                 compression="gzip")
    root = tmp_path / "root"
    code = ("import sys, time\nfrom minirt.image import open_image, Store\n"
            "t = float(sys.argv[3])\nwhile time.time() < t: pass\n"
            "with open_image(sys.argv[1]) as img:\n"
            "    print(' '.join(map(str, Store(sys.argv[2]).unpack(img))))\n")
    import time
    go = str(time.time() + 1.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(root), go],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len({o[0] for o in outs}) == 1
    assert len(os.listdir(root / "layers/sha256")) == 2
    assert os.listdir(root / "layers/tmp") == []
    [big, _] = outs[0][0].split()
    assert len(os.listdir(os.path.join(big, "d7"))) == 60


def test_rootless_and_root_stores_do_not_mix(image, T, make_layer, tmp_path):
    path = image(make_layer(T.dir("d"), T.file("d/.wh..wh..opq")))
    with open_image(path) as img:
        [a] = Store(tmp_path / "root", rootless=False).unpack(img)
        [b] = Store(tmp_path / "root", rootless=True).unpack(img)
    assert a != b
    assert os.path.dirname(b) == str(tmp_path / "root/layers/rootless/sha256")
    assert Store(tmp_path).rootless == (os.geteuid() != 0)


def test_image_without_layers_gets_the_empty_layer(image, unpack):
    # FROM scratch with only a CMD; docker names the empty layer by this diff_id.
    [d] = unpack(image())
    assert d.name == hashlib.sha256(bytes(1024)).hexdigest() and os.listdir(d) == []


def test_more_layers_than_overlayfs_stacks_are_refused_before_unpacking(image, T, make_layer, tmp_path):
    path = image(*[make_layer(T.file(f"f{i}", b"x")) for i in range(501)])
    with pytest.raises(ImageError, match=r": 501 layers, but overlayfs stacks at most 500$"):
        with open_image(path) as img:
            Store(tmp_path / "root").unpack(img)
    assert not (tmp_path / "root/layers/sha256").exists()


@pytest.mark.parametrize("key", ["", "../escape", "a/b", ".hidden"])
def test_a_lease_key_must_name_a_file_in_the_leases_directory(tmp_path, key):
    with pytest.raises(ValueError):
        Store(tmp_path / "root").lease(key, [])
    assert not (tmp_path / "escape").exists()


def test_a_lease_keeps_its_layers_from_remove_unused_until_released(tmp_path):
    from minirt.image.store import EMPTY_LAYER, release, remove_unused

    store = Store(tmp_path / "root", rootless=True)
    kept = store.layer_dir(EMPTY_LAYER.diff_id)
    store.lease("run-1", [])  # no layers: the empty one
    os.makedirs(kept)
    assert remove_unused(store.root, set) == [] and os.path.isdir(kept)
    release("run-1")
    assert remove_unused(store.root, set) == [EMPTY_LAYER.diff_id] and not os.path.exists(kept)
    assert os.listdir(os.path.join(store.root, "layers", "leases")) == []


def test_kept_blobs_are_checked_leased_and_swept_with_what_a_dead_load_left(tmp_path):
    import hashlib
    import io

    from minirt.errors import ImageError
    from minirt.image.store import blob_path, keep_blob, release, remove_unused

    root = str(tmp_path / "root")
    data = b"a blob"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with pytest.raises(ImageError, match="digest is " + digest):
        keep_blob(root, io.BytesIO(data), "sha256:" + "0" * 64, "test")
    assert keep_blob(root, io.BytesIO(data), digest, "test") == (digest, len(data))
    assert keep_blob(root, io.BytesIO(b""), digest, "test") == (digest, len(data))  # kept: not read again
    with open(blob_path(root, digest), "rb") as f:
        assert f.read() == data
    tmp = os.path.join(root, "layers", "blobs", "tmp")
    assert os.listdir(tmp) == []   # the refused one left nothing
    open(os.path.join(tmp, f"blob-{2**22 + 1}-0"), "w").close()   # a load killed half way (no such pid)
    open(os.path.join(tmp, f"blob-{os.getpid()}-99"), "w").close()   # one under way
    Store(root).lease("load-1", [digest])
    assert remove_unused(root, set) == [] and os.path.isfile(blob_path(root, digest))
    assert os.listdir(tmp) == [f"blob-{os.getpid()}-99"]
    release("load-1")
    assert remove_unused(root, set) == [digest] and not os.path.exists(blob_path(root, digest))
