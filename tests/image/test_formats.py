"""Reading every image form: docker archives (new and legacy), OCI archives and
layouts; nested indexes and platform choice; compression by bytes, not names."""

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from minirt.errors import ImageError
from minirt.image import Layer, Store, open_image
from minirt.image.formats import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX
from minirt.image.write import Layout


@pytest.fixture
def base(T, make_layer):
    return make_layer(T.dir("etc"), T.file("etc/hello", b"hello\n"), T.sym("bin", "usr/bin"),
                      T.dir("usr"), T.dir("usr/bin"), T.file("usr/bin/tool", b"#!", mode=0o755))


@pytest.mark.parametrize("form", ["docker", "oci-archive", "oci-layout"])
@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_every_form_and_compression(image, unpack, base, form, compression, snapshot):
    path = image(base, form=form, compression=compression, config={"Cmd": ["sh"], "Env": ["A=1"]})
    with open_image(path) as img:
        assert img.config["config"] == {"Cmd": ["sh"], "Env": ["A=1"]}
        assert img.config["os"] == "linux"
        assert img.source == str(path)
        [layer] = img.layers
        assert isinstance(layer, Layer)
        assert layer.diff_id == "sha256:" + hashlib.sha256(base).hexdigest()
        image_id = img.id
    [d] = unpack(path)
    assert (d / "etc/hello").read_bytes() == b"hello\n"
    assert (d / "bin").readlink().as_posix() == "usr/bin"
    assert d.name == layer.diff_id[7:]
    with open_image(image(base, form="docker", compression=compression,
                          config={"Cmd": ["sh"], "Env": ["A=1"]})) as img:
        assert img.id == image_id  # the same config in every form


def test_all_forms_unpack_to_the_same_directory(image, unpack, base):
    dirs = {tuple(unpack(image(base, form=f, compression=c)))
            for f in ("docker", "oci-archive", "oci-layout") for c in (None, "gzip", "zstd")}
    assert len(dirs) == 1


def test_layers_bottom_first(image, unpack, T, make_layer):
    a = make_layer(T.file("a", b"1"), T.file("shared", b"lower"))
    b = make_layer(T.file("b", b"2"), T.file("shared", b"upper"))
    path = image(a, b, form="docker")
    with open_image(path) as img:
        assert [l.diff_id for l in img.layers] == [
            "sha256:" + hashlib.sha256(x).hexdigest() for x in (a, b)]
    lower, upper = unpack(path)
    assert (lower / "shared").read_bytes() == b"lower"
    assert (upper / "shared").read_bytes() == b"upper"


def test_compression_is_read_from_the_bytes_not_the_label(tmp_path, unpack, base):
    # A gzip blob labelled as a plain tar, and a plain tar labelled gzip.
    layout = Layout(tmp_path / "lay")
    gz, diff = layout.add_layer(base, "gzip")
    gz["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
    plain, diff2 = layout.add_layer(make_other(base), None)
    plain["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    layout.add_image([(gz, diff), (plain, diff2)])
    a, b = unpack(tmp_path / "lay")
    assert (a / "etc/hello").exists() and (b / "other").exists()


def make_other(base):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("other")
        t.addfile(ti)
    return buf.getvalue()


def test_multi_member_gzip_and_multi_frame_zstd(tmp_path, unpack, base):
    import zstandard

    half = len(base) // 2
    gz = gzip.compress(base[:half], mtime=0) + gzip.compress(base[half:], mtime=0)
    zs = (zstandard.ZstdCompressor().compress(base[:half]) +
          zstandard.ZstdCompressor().compress(base[half:]))
    diff = "sha256:" + hashlib.sha256(base).hexdigest()
    for blob in (gz, zs):
        layout = Layout(tmp_path / "lay")
        desc = layout.add_blob(blob, "application/vnd.oci.image.layer.v1.tar")
        layout.add_image([(desc, diff)])
        [d] = unpack(tmp_path / "lay", root=tmp_path / f"root{len(blob)}")
        assert (d / "etc/hello").read_bytes() == b"hello\n"


def legacy_docker_archive(path, layers, config=None):
    """What docker < 25 writes: <v1 id>/layer.tar, <config digest>.json, manifest.json."""
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": config or {},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    chex = hashlib.sha256(cfg).hexdigest()
    files = {f"{chex}.json": cfg}
    names = []
    for i, l in enumerate(layers):
        v1 = hashlib.sha256(b"v1" + bytes([i])).hexdigest()
        files[f"{v1}/VERSION"] = b"1.0"
        files[f"{v1}/json"] = b"{}"
        files[f"{v1}/layer.tar"] = l
        names.append(f"{v1}/layer.tar")
    files["manifest.json"] = json.dumps([{"Config": f"{chex}.json", "RepoTags": ["old:1"],
                                          "Layers": names}]).encode()
    files["repositories"] = b'{"old": {"1": "x"}}'
    with tarfile.open(path, "w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return path


def test_legacy_docker_archive(tmp_path, unpack, base, T, make_layer):
    top = make_layer(T.file("etc/.wh.hello"))
    path = legacy_docker_archive(tmp_path / "old.tar", [base, top], {"Cmd": ["true"]})
    with open_image(path) as img:
        assert img.config["config"]["Cmd"] == ["true"]
        assert [l.digest for l in img.layers] == [None, None]
    lower, upper = unpack(path)
    assert (lower / "etc/hello").exists()
    assert (upper / "etc/hello").lstat().st_rdev == 0


def test_legacy_docker_archive_config_digest_checked(tmp_path, base):
    path = legacy_docker_archive(tmp_path / "old.tar", [base])
    with tarfile.open(path) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    with tarfile.open(path, "w") as t:
        for m, data in members:
            if m.name.endswith(".json") and len(m.name) == 69:
                data = data.replace(b'"os": "linux"', b'"os": "linux" ')
                m.size = len(data)
            t.addfile(m, io.BytesIO(data))
    with pytest.raises(ImageError, match=r"old.tar: config: digest mismatch"):
        open_image(path)


def nested(tmp_path, base, list_type=OCI_INDEX, manifest_type=None):
    """index.json -> index (arm64, amd64) -> manifests, as multi-arch images are."""
    layout = Layout(tmp_path / "multi")
    arm, _ = layout.add_image([layout.add_layer(make_other(base))], {"Cmd": ["arm"]},
                              platform=("linux", "arm64"), index=False)
    amd, _ = layout.add_image([layout.add_layer(base)], {"Cmd": ["amd"]},
                              platform=("linux", "amd64"), index=False)
    if manifest_type:
        for desc in (arm, amd):
            blob = layout.blobs / desc["digest"][7:]
            m = json.loads(blob.read_text())
            m["mediaType"] = manifest_type
            new = layout.add_json(m, manifest_type)
            desc.update(digest=new["digest"], size=new["size"], mediaType=manifest_type)
    attestation = {"mediaType": arm["mediaType"], "digest": arm["digest"], "size": arm["size"],
                   "platform": {"os": "unknown", "architecture": "unknown"},
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
    inner = layout.add_json({"schemaVersion": 2, "mediaType": list_type,
                             "manifests": [attestation, arm, amd]}, list_type)
    inner["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    layout.write_index([inner])
    return layout.path


def test_nested_index_picks_linux_amd64(tmp_path, base):
    with open_image(nested(tmp_path, base)) as img:
        assert img.config["config"]["Cmd"] == ["amd"]


def test_docker_manifest_list(tmp_path, base):
    path = nested(tmp_path, base, DOCKER_LIST, DOCKER_MANIFEST)
    with open_image(path) as img:
        assert img.config["config"]["Cmd"] == ["amd"]
    with open_image(path, platform=("linux", "arm64")) as img:
        assert img.config["config"]["Cmd"] == ["arm"]


def test_no_matching_platform(tmp_path, base):
    with pytest.raises(ImageError, match=r"no linux/s390x image \(has linux/amd64, linux/arm64, unknown/unknown\)"):
        open_image(nested(tmp_path, base), platform=("linux", "s390x"))


def test_config_for_another_platform(image, base):
    path = image(base, platform=("linux", "arm64"))
    with pytest.raises(ImageError, match=r"img0: no linux/amd64 image \(has linux/arm64\)"):
        open_image(path)
    # A legacy docker archive has no index to say so; the config does.
    legacy = legacy_docker_archive(path.parent / "arm.tar", [base])
    with tarfile.open(legacy) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    cfg = json.dumps({"architecture": "arm64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(base).hexdigest()]}}).encode()
    with tarfile.open(legacy, "w") as t:
        for m, data in members:
            if m.name == "manifest.json":
                entry = json.loads(data)
                entry[0]["Config"] = "config.json"
                data = json.dumps(entry).encode()
            m.size = len(data)
            t.addfile(m, io.BytesIO(data))
        ti = tarfile.TarInfo("config.json")
        ti.size = len(cfg)
        t.addfile(ti, io.BytesIO(cfg))
    with pytest.raises(ImageError, match=r"arm.tar: image is for linux/arm64, not linux/amd64"):
        open_image(legacy)


def test_several_images_need_a_name(tmp_path, base):
    layout = Layout(tmp_path / "two")
    one, _ = layout.add_image([layout.add_layer(base)], {"Cmd": ["one"]}, tag="one", index=False)
    two, _ = layout.add_image([layout.add_layer(make_other(base))], {"Cmd": ["two"]}, tag="two", index=False)
    layout.write_index([one, two])
    with pytest.raises(ImageError, match=r"holds several images \(one, two\); name one"):
        open_image(layout.path)
    with open_image(layout.path, ref="two") as img:
        assert img.config["config"]["Cmd"] == ["two"]
    with pytest.raises(ImageError, match=r"no image named 'three'"):
        open_image(layout.path, ref="three")


def test_docker_archive_ref(image, base):
    path = image(base, form="docker", tag="busybox:1.36")
    with open_image(path, ref="busybox:1.36") as img:
        assert img.layers


def test_reopening_an_unpacked_image_reads_no_layer(image, base, tmp_path, T, make_layer, monkeypatch):
    """A run whose layers are unpacked costs no layer reading, hashing or
    unpacking: the store trusts its own directories, named by diff_id."""
    big = make_layer(*[T.file(f"f{i}", b"x" * 1000) for i in range(2000)])
    path = image(base, big, form="docker", compression="gzip")
    store = Store(tmp_path / "root")
    with open_image(path) as img:
        first = store.unpack(img)

    def untouchable(*args, **kwargs):
        raise AssertionError("an unpacked layer was read again")
    monkeypatch.setattr(Store, "_unpack_layer", untouchable)
    with open_image(path) as img:
        monkeypatch.setattr(img, "open_layer", untouchable)
        assert store.unpack(img) == first
