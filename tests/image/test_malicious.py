"""A corpus of hostile and broken images.  Each is refused with its own one-line
message; none writes anything outside the layer directory, and none leaves a
half-unpacked layer in the store."""

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from minirt.errors import ImageError
from minirt.image import Store, open_image
from minirt.image.formats import OCI_CONFIG, OCI_MANIFEST
from minirt.image.write import Layout

UNIQ = uuid.uuid4().hex[:8]


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret").write_text("host secret")
    return d


def _snapshot(tmp_path, tree):
    return {k: v for k, v in tree(tmp_path).items() if not k.startswith("root")}


def _assert_clean(tmp_path):
    for sub in ("layers/sha256", "layers/tmp", "layers/rootless/sha256", "layers/rootless-tmp"):
        d = tmp_path / "root" / sub
        assert not d.exists() or os.listdir(d) == [], f"{sub} not empty"


def refused(tmp_path, snapshot, path, message, rootless=False):
    """Opening and unpacking ``path`` fails with ``message``, and changes nothing."""
    before = _snapshot(tmp_path, snapshot)
    with pytest.raises(ImageError) as e:
        with open_image(path) as img:
            Store(tmp_path / "root", rootless=rootless).unpack(img)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(str(path)), text
    assert message in text, text
    assert _snapshot(tmp_path, snapshot) == before
    _assert_clean(tmp_path)
    return text


# --- hostile layers ---------------------------------------------------------------

def hostile(T, outside):
    """(id, members, message): layers that try to write outside their directory."""
    o = str(outside)
    return [
        ("dotdot", [T.file(f"../escape-{UNIQ}", b"x")], "escapes the layer with '..'"),
        ("dotdot-deep", [T.dir("a"), T.file(f"a/../../escape-{UNIQ}", b"x")], "escapes the layer with '..'"),
        ("absolute", [T.file(f"/tmp/minirt-abs-{UNIQ}", b"x")], "absolute path"),
        ("symlink-write-through", [T.sym("evil", o), T.file("evil/pwned", b"x")],
         "goes through the symlink 'evil'"),
        ("symlink-relative-up", [T.sym("up", "../../../../../.."), T.file(f"up/tmp/pwned-{UNIQ}", b"x")],
         "goes through the symlink 'up'"),
        ("symlink-dir-through", [T.dir("etc"), T.sym("etc/d", o), T.dir("etc/d/sub")],
         "goes through the symlink 'etc/d'"),
        ("symlink-whiteout-through", [T.sym("w", o), T.file("w/.wh.secret")],
         "goes through the symlink 'w'"),
        ("symlink-opaque-through", [T.sym("w", o), T.file("w/.wh..wh..opq")],
         "goes through the symlink 'w'"),
        ("symlink-hardlink-name-through", [T.file("f", b"x"), T.sym("s", o), T.link("s/l", "f")],
         "goes through the symlink 's'"),
        ("replaced-dir-becomes-symlink", [T.dir("a"), T.dir("a/b"), T.sym("a", o), T.file("a/b/x", b"x")],
         "goes through the symlink 'a'"),
        ("hardlink-dotdot", [T.link("l", "../outside/secret")],
         "hard link target '../outside/secret' escapes the layer with '..'"),
        ("hardlink-absolute", [T.link("l", f"{o}/secret")], f"hard link target '{o}/secret' is an absolute path"),
        ("hardlink-through-symlink", [T.sym("s", o), T.link("l", "s/secret")],
         "hard link target 's/secret' goes through the symlink 's'"),
        ("hardlink-missing", [T.link("l", "nothere")], "hard link to missing target 'nothere'"),
        ("hardlink-directory", [T.dir("d"), T.link("l", "d")], "hard link to a directory 'd'"),
        ("hardlink-itself", [T.file("f", b"x"), T.link("f", "f")], "hard link to itself"),
        ("whiteout-dotdot", [T.file(".wh..")], "whiteout of an invalid name"),
        ("file-as-parent", [T.file("a", b"x"), T.file("a/b", b"y")], "'a' is not a directory"),
        ("root-not-dir", [T.file("./", b"x")], "the layer's root is not a directory"),
        ("unsupported-type", [(T.info("vol", type=b"V"), None)], "unsupported member type 'V'"),
    ]


@pytest.mark.parametrize("case", range(20))
def test_hostile_layer_refused(case, T, make_layer, image, outside, tmp_path, snapshot):
    cases = hostile(T, outside)
    assert len(cases) == 20
    name, members, message = cases[case]
    path = image(make_layer(*members))
    text = refused(tmp_path, snapshot, path, message)
    assert ": layer sha256:" in text and ": member " in text
    assert (outside / "secret").read_text() == "host secret"
    assert not list(Path("/tmp").glob(f"*{UNIQ}*")) and not list(Path("/").glob(f"*{UNIQ}*"))


def test_hostile_messages_are_all_different(T, outside):
    messages = [m for _, _, m in hostile(T, outside)]
    distinct = {m for m in messages}
    # The same refusal for the same reason is fine; every reason has its own words.
    assert len(distinct) >= 14


def test_hostile_layer_under_a_good_one(T, make_layer, image, outside, tmp_path, snapshot):
    good = make_layer(T.file("ok", b"fine"))
    bad = make_layer(T.sym("evil", str(outside)), T.file("evil/pwned", b"x"))
    path = image(good, bad)
    with pytest.raises(ImageError, match="goes through the symlink"):
        with open_image(path) as img:
            Store(tmp_path / "root").unpack(img)
    # The good layer is complete and kept; the bad one left nothing behind.
    done = os.listdir(tmp_path / "root/layers/sha256")
    assert done == [hashlib.sha256(good).hexdigest()]
    assert os.listdir(tmp_path / "root/layers/tmp") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_device_node_refused_when_it_cannot_be_made(T, make_layer, image, tmp_path):
    path = image(make_layer(T.dir("dev"), T.dev("dev/sda", "b", 8, 0)))
    root = tmp_path / "nobody-root"
    root.mkdir()
    os.chmod(root, 0o777)
    for p in (path, *path.parents):
        if p == Path("/"):
            break
        os.chmod(p, os.stat(p).st_mode | 0o055)
    code = ("import sys\nfrom minirt.errors import ImageError\nfrom minirt.image import open_image, Store\n"
            "try:\n    Store(sys.argv[2]).unpack(open_image(sys.argv[1]))\n"
            "except ImageError as e:\n    print(e)\n")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-c", code, str(path), str(root)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "member 'dev/sda': cannot make device node 8:0 (not permitted here)" in out.stdout
    assert os.listdir(root / "layers/rootless/sha256") == []
    assert os.listdir(root / "layers/rootless-tmp") == []


# --- hostile tar headers: both tar readers check every field ----------------------

def hostile_headers(R):
    """id -> (tar bytes, message): headers whose fields lie.  Each is refused by both
    the layer extractor and the outer-archive reader, with the same words."""
    def pax(records, member=None):
        return R.tar(R.pax(records), member or R.member("f", data=b"hello"))

    def field(**fields):
        return R.tar(R.member("f", data=b"hello", **fields))

    damaged = bytearray(R.tar(R.member("a", data=b"x"), R.member("b", data=b"y")))
    damaged[1024 + 1] ^= 1  # the second header's name: its checksum no longer adds up
    base256 = b"\x80\0" + (1 << 40).to_bytes(6, "big")
    return {
        # A negative size once made the extractor copy forever.
        "pax-size-negative": (pax({"size": "-5"}), "bad pax size '-5'"),
        "pax-size-words": (pax({"size": "abc"}), "bad pax size 'abc'"),
        "pax-size-plus": (pax({"size": "+5"}), "bad pax size '+5'"),
        "pax-size-arabic-digit": (pax({"size": "\u0665"}), "bad pax size"),
        "pax-uid-negative": (pax({"uid": "-1"}), "bad pax uid '-1'"),
        "pax-uid-2^40": (pax({"uid": str(1 << 40)}), "owner 1099511627776:0 out of range"),
        "pax-gid-minus-one": (pax({"gid": str((1 << 32) - 1)}), "owner 0:4294967295 out of range"),
        "pax-mtime-nan": (pax({"mtime": "nan"}), "bad pax mtime 'nan'"),
        "pax-mtime-1e400": (pax({"mtime": "1e400"}), "bad pax mtime '1e400'"),
        "pax-mtime-inf": (pax({"mtime": "-inf"}), "bad pax mtime '-inf'"),
        "pax-mtime-huge": (pax({"mtime": "9" * 30}), "bad pax mtime"),
        "pax-mtime-empty": (pax({"mtime": ""}), "bad pax mtime ''"),
        "pax-atime-nan": (pax({"atime": "nan"}), "bad pax atime 'nan'"),
        "pax-atime-1e400": (pax({"atime": "1e400"}), "bad pax atime '1e400'"),
        "pax-global-mtime-nan": (R.tar(R.pax({"mtime": "nan"}, type=b"g"), R.member("f")), "bad pax mtime 'nan'"),
        "pax-path-nul": (pax({"path": b"a\0b"}), "name with a NUL byte"),
        "pax-linkpath-nul": (pax({"linkpath": b"x\0y"}, R.member("s", b"2")), "name with a NUL byte"),
        "pax-record-length": (R.tar(R.member("pax", b"x", b"99 path=a\n"), R.member("f")), "bad pax record"),
        "pax-sparse": (pax({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}), "sparse member"),
        "size-negative": (field(size=b"-0000000005\0"), "bad size"),
        "size-base256-negative": (field(size=b"\xff" * 12), "bad size"),
        "mode-0o": (field(mode=b"0o00644\0"), "bad mode"),
        "mode-sign": (field(mode=b"+000644\0"), "bad mode"),
        "uid-base256-2^40": (field(uid=base256), "owner 1099511627776:0 out of range"),
        "gid-words": (field(gid=b"abc\0"), "bad gid"),
        "mtime-underscore": (field(mtime=b"1_000\0"), "bad mtime"),
        "devmajor-words": (R.tar(R.member("d", b"3", devmajor=b"xyz\0")), "bad devmajor"),
        "typeflag-sparse": (R.tar(R.member("f", b"S")), "sparse member"),
        "damaged-second-header": (bytes(damaged), "bad header checksum at offset 1024"),
        "header-cut-short": (R.member("a", data=b"x") + R.member("b")[:100], "header at offset 1024 cut short"),
        "extended-header-cut-short": (R.member("pax", b"x", size=b"%011o\0" % 4000), "extended header at offset 0 cut short"),
    }


HEADER_CASES = ["pax-size-negative", "pax-size-words", "pax-size-plus", "pax-size-arabic-digit",
                "pax-uid-negative", "pax-uid-2^40", "pax-gid-minus-one", "pax-mtime-nan", "pax-mtime-1e400",
                "pax-mtime-inf", "pax-mtime-huge", "pax-mtime-empty", "pax-atime-nan", "pax-atime-1e400",
                "pax-global-mtime-nan", "pax-path-nul", "pax-linkpath-nul", "pax-record-length", "pax-sparse",
                "size-negative", "size-base256-negative", "mode-0o", "mode-sign", "uid-base256-2^40",
                "gid-words", "mtime-underscore", "devmajor-words", "typeflag-sparse", "damaged-second-header",
                "header-cut-short", "extended-header-cut-short"]


def test_header_cases_are_all_listed(R):
    assert sorted(hostile_headers(R)) == sorted(HEADER_CASES)


@pytest.mark.parametrize("case", HEADER_CASES)
def test_hostile_header_in_a_layer_refused(case, R, image, tmp_path, snapshot):
    data, message = hostile_headers(R)[case]
    text = refused(tmp_path, snapshot, image(data), message)
    assert ": layer sha256:" in text


@pytest.mark.parametrize("case", HEADER_CASES)
def test_hostile_header_in_an_image_archive_refused(case, R, tmp_path, snapshot):
    data, message = hostile_headers(R)[case]
    path = tmp_path / "outer.tar"
    path.write_bytes(data)
    text = refused(tmp_path, snapshot, path, message)
    assert "not a tar archive" in text or "truncated archive" in text


def test_device_number_out_of_range_refused(R, image, tmp_path, snapshot):
    big = b"\x80" + (1 << 40).to_bytes(7, "big")
    refused(tmp_path, snapshot, image(R.tar(R.member("d", b"3", devmajor=big))),
            "member 'd': device number 1099511627776:0 out of range")


# --- corrupt images -----------------------------------------------------------------

def custom(tmp_path, blobs, diff_ids, *, layer_media="application/vnd.oci.image.layer.v1.tar",
           config_media=OCI_CONFIG, manifest_media=OCI_MANIFEST, edit_manifest=None, edit_config=None):
    """An OCI layout assembled by hand, so that each part can be wrong."""
    layout = Layout(tmp_path / "bad")
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if edit_config:
        edit_config(config)
    cdesc = layout.add_json(config, config_media)
    descs = [layout.add_blob(b, layer_media) for b in blobs]
    manifest = {"schemaVersion": 2, "mediaType": manifest_media, "config": cdesc, "layers": descs}
    if edit_manifest:
        edit_manifest(manifest)
    mdesc = layout.add_json(manifest, manifest_media)
    layout.write_index([mdesc])
    return layout


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def good(T, make_layer):
    return make_layer(T.dir("etc"), T.file("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
                      T.file("big", os.urandom(200_000)))


def test_not_a_tar(tmp_path, snapshot):
    p = tmp_path / "junk.tar"
    p.write_bytes(os.urandom(4096))
    refused(tmp_path, snapshot, p, "not a tar archive")


def test_empty_file(tmp_path, snapshot):
    p = tmp_path / "empty.tar"
    p.write_bytes(b"")
    refused(tmp_path, snapshot, p, "not a tar archive")


def test_compressed_archive(tmp_path, snapshot, image, good):
    p = image(good, form="docker")
    gz = tmp_path / "image.tar.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    refused(tmp_path, snapshot, gz, "compressed image archive; decompress it first")


def test_missing_file(tmp_path, snapshot):
    refused(tmp_path, snapshot, tmp_path / "nothere.tar", "No such file or directory")


def test_truncated_archive(tmp_path, snapshot, image, good):
    p = image(good, form="docker")
    data = p.read_bytes()
    # Keep the metadata members but cut the layer blob in half.
    with tarfile.open(p) as t:
        layer = max(t.getmembers(), key=lambda m: m.size)
    p.write_bytes(data[:layer.offset_data + layer.size // 2])
    refused(tmp_path, snapshot, p, "truncated archive")


def test_archive_without_index_or_manifest(tmp_path, snapshot):
    p = tmp_path / "plain.tar"
    with tarfile.open(p, "w") as t:
        t.add(__file__, arcname="hello.py")
    refused(tmp_path, snapshot, p, "not an image: archive has neither index.json nor manifest.json")


def test_directory_without_index(tmp_path, snapshot):
    d = tmp_path / "dir"
    d.mkdir()
    refused(tmp_path, snapshot, d, "not an image: directory has neither index.json nor manifest.json")


def test_layer_digest_mismatch(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)])
    blob = lay.blobs / sha(good)[7:]
    data = bytearray(blob.read_bytes())
    data[1000] ^= 1
    blob.write_bytes(bytes(data))
    refused(tmp_path, snapshot, lay.path, f"bad: layer {sha(good)[:19]}...: digest mismatch")


def test_layer_digest_mismatch_in_docker_archive(tmp_path, snapshot, image, good):
    p = image(good, form="docker")
    data = bytearray(p.read_bytes())
    i = data.index(b"root:x:0:0")
    data[i] = ord("R")
    p.write_bytes(bytes(data))
    refused(tmp_path, snapshot, p, f".tar: layer {sha(good)[:19]}...: digest mismatch")


def test_manifest_digest_mismatch(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)])
    index = json.loads((lay.path / "index.json").read_text())
    mblob = lay.blobs / index["manifests"][0]["digest"][7:]
    mblob.write_bytes(mblob.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    refused(tmp_path, snapshot, lay.path, "manifest sha256:")
    refused(tmp_path, snapshot, lay.path, "digest mismatch")


def test_config_digest_mismatch(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)])
    manifest = json.loads(next(p for p in lay.blobs.iterdir()
                               if b'"config":{' in p.read_bytes()).read_text())
    cblob = lay.blobs / manifest["config"]["digest"][7:]
    cblob.write_bytes(cblob.read_bytes().replace(b'"amd64"', b'"AMD64"'))
    text = refused(tmp_path, snapshot, lay.path, ": config sha256:")
    assert text.endswith("digest mismatch")


def test_diff_id_mismatch(tmp_path, snapshot, good, T, make_layer):
    other = make_layer(T.file("x", b"other"))
    lay = custom(tmp_path, [good], [sha(other)])
    refused(tmp_path, snapshot, lay.path, f"content does not match diff_id {sha(other)[:19]}...")


def test_diff_id_mismatch_compressed(tmp_path, snapshot, good, T, make_layer):
    other = make_layer(T.file("x", b"other"))
    lay = custom(tmp_path, [gzip.compress(good)], [sha(other)])
    refused(tmp_path, snapshot, lay.path, "content does not match diff_id")


def test_size_mismatch(tmp_path, snapshot, good):
    def edit(m):
        m["layers"][0]["size"] += 1
    lay = custom(tmp_path, [good], [sha(good)], edit_manifest=edit)
    refused(tmp_path, snapshot, lay.path, f"size {len(good)} but manifest says {len(good) + 1}")


def test_bad_json_index(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)])
    (lay.path / "index.json").write_text("{not json")
    refused(tmp_path, snapshot, lay.path, "index.json: bad JSON")


def test_bad_json_docker_manifest(tmp_path, snapshot):
    p = tmp_path / "docker.tar"
    with tarfile.open(p, "w") as t:
        data = b"[{,]"
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        import io
        t.addfile(ti, io.BytesIO(data))
    refused(tmp_path, snapshot, p, "manifest.json: bad JSON")


def test_unsupported_layer_media_type(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)],
                 layer_media="application/vnd.oci.image.layer.v1.tar+encrypted")
    refused(tmp_path, snapshot, lay.path, "unsupported media type 'application/vnd.oci.image.layer.v1.tar+encrypted'")


def test_unsupported_config_media_type(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)], config_media="application/vnd.cncf.helm.config.v1+json")
    refused(tmp_path, snapshot, lay.path, "config has unsupported media type")


def test_unsupported_manifest_media_type(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)], manifest_media="application/vnd.example+json")
    refused(tmp_path, snapshot, lay.path, "unsupported media type 'application/vnd.example+json'")


def test_missing_layer_blob(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)])
    (lay.blobs / sha(good)[7:]).unlink()
    refused(tmp_path, snapshot, lay.path, f"missing blob blobs/sha256/{sha(good)[7:]}")


def test_missing_blob_in_archive(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)])
    (lay.blobs / sha(good)[7:]).unlink()
    p = tmp_path / "arch.tar"
    with tarfile.open(p, "w") as t:
        t.add(lay.path, arcname=".")
    refused(tmp_path, snapshot, p, "missing blob")


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "sha256:" + "A" * 64,
                                    "sha512:" + "a" * 128, "sha256:" + "a" * 63, 42])
def test_path_traversal_in_digest(tmp_path, snapshot, good, digest):
    lay = custom(tmp_path, [good], [sha(good)])
    index = json.loads((lay.path / "index.json").read_text())
    index["manifests"][0]["digest"] = digest
    (lay.path / "index.json").write_text(json.dumps(index))
    refused(tmp_path, snapshot, lay.path, f"invalid digest {digest!r} (want sha256:<64 hex digits>)")


def test_path_traversal_in_layer_digest(tmp_path, snapshot, good):
    def edit(m):
        m["layers"][0]["digest"] = "sha256:../../../../etc/shadow"
    lay = custom(tmp_path, [good], [sha(good)], edit_manifest=edit)
    refused(tmp_path, snapshot, lay.path, "invalid digest 'sha256:../../../../etc/shadow'")


def test_path_traversal_in_diff_id(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], ["sha256:../../x"])
    refused(tmp_path, snapshot, lay.path, "config: diff_id: invalid digest 'sha256:../../x'")


def test_layer_count_mismatch(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good, good], [sha(good)])
    refused(tmp_path, snapshot, lay.path, "2 layers but config lists 1 diff_ids")


def test_truncated_gzip_layer(tmp_path, snapshot, good):
    gz = gzip.compress(good)[:-2000]
    lay = custom(tmp_path, [gz], [sha(good)])
    refused(tmp_path, snapshot, lay.path, "truncated gzip data")


def test_corrupt_gzip_layer(tmp_path, snapshot, good):
    gz = bytearray(gzip.compress(good))
    gz[10:30] = b"\xff" * 20
    lay = custom(tmp_path, [bytes(gz)], [sha(good)])
    refused(tmp_path, snapshot, lay.path, "corrupt gzip data")


def test_corrupt_zstd_layer(tmp_path, snapshot, good):
    import zstandard
    zs = bytearray(zstandard.ZstdCompressor().compress(good))
    zs[4] = 0xff  # the frame header descriptor
    lay = custom(tmp_path, [bytes(zs)], [sha(good)])
    refused(tmp_path, snapshot, lay.path, "corrupt zstd data")


def test_truncated_zstd_layer(tmp_path, snapshot, good):
    import zstandard
    zs = zstandard.ZstdCompressor().compress(good)[:-100]
    lay = custom(tmp_path, [zs], [sha(good)])
    refused(tmp_path, snapshot, lay.path, "truncated zstd data")


def test_truncated_layer_tar(tmp_path, snapshot, good):
    cut = good[:len(good) // 2 + 100]
    lay = custom(tmp_path, [cut], [sha(good)])
    refused(tmp_path, snapshot, lay.path, "truncated layer")


def test_layer_not_a_tar(tmp_path, snapshot):
    junk = os.urandom(5000)
    lay = custom(tmp_path, [junk], [sha(junk)])
    refused(tmp_path, snapshot, lay.path, "not a tar archive")


def test_config_without_diff_ids(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)], edit_config=lambda c: c.pop("rootfs"))
    refused(tmp_path, snapshot, lay.path, "config has no rootfs.diff_ids")


def test_index_without_manifests(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)])
    lay.write_index([])
    refused(tmp_path, snapshot, lay.path, "index.json: no manifests")


def test_index_loop(tmp_path, snapshot):
    # An index cannot name itself (its digest would change), but it can nest
    # deeper than any real image: refuse instead of recursing forever.
    layout = Layout(tmp_path / "deep")
    desc = layout.add_json({"schemaVersion": 2, "manifests": []}, "application/vnd.oci.image.index.v1+json")
    for _ in range(10):
        desc = layout.add_json({"schemaVersion": 2, "manifests": [desc]},
                               "application/vnd.oci.image.index.v1+json")
    layout.write_index([desc])
    refused(tmp_path, snapshot, layout.path, "indexes nested too deeply")


def test_manifest_json_escape_in_directory(tmp_path, snapshot, outside):
    # A docker-form directory names files by path; "../" stays inside it.
    d = tmp_path / "dockerdir"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps([{"Config": "../outside/secret", "Layers": []}]))
    refused(tmp_path, snapshot, d, "missing blob ../outside/secret")


@pytest.mark.parametrize("text,message", [("[]", "index.json: not a JSON object"),
                                          ('{"manifests": "x"}', "index.json: no manifests"),
                                          ('{"manifests": [{"digest": 1}]}', "invalid digest 1"),
                                          ('{"manifests": [7]}', "index.json: no manifests")])
def test_wrong_json_shapes(tmp_path, snapshot, good, text, message):
    lay = custom(tmp_path, [good], [sha(good)])
    (lay.path / "index.json").write_text(text)
    refused(tmp_path, snapshot, lay.path, message)


def test_docker_manifest_not_a_list(tmp_path, snapshot, image, good):
    d = image(good, form="oci-layout")
    (d / "index.json").unlink()
    (d / "manifest.json").write_text('{"Config": "x"}')
    refused(tmp_path, snapshot, d, "manifest.json: not a JSON list")


# --- hostile configs: wrong types and deep nesting are one-line errors --------------

BAD_RUN_CONFIGS = [
    ({"Cmd": "true"}, 'Cmd must be a list of strings, got "true"'),  # once ran as "t"
    ({"Entrypoint": "sh"}, 'Entrypoint must be a list of strings, got "sh"'),
    ({"Cmd": ["echo", 1]}, "Cmd must be a list of strings, got [...]"),
    ({"Env": "A=1"}, 'Env must be a list of strings, got "A=1"'),
    ({"Env": ["A=1", None]}, "Env must be a list of strings, got [...]"),
    ({"WorkingDir": 5}, "WorkingDir must be a string, got 5"),
    ({"User": 0}, "User must be a string, got 0"),
    ({"User": ["root"]}, "User must be a string, got [...]"),
    ({"Labels": ["a=b"]}, "Labels must be an object, got [...]"),
    ({"Labels": {"a": 1}}, "Labels must be an object, got {...}"),
    ({"ExposedPorts": ["80/tcp"]}, "ExposedPorts must be an object, got [...]"),
    ({"ExposedPorts": {"80/tcp": "yes"}}, "ExposedPorts must be an object, got {...}"),
    ({"Volumes": "/data"}, 'Volumes must be an object, got "/data"'),
    ({"StopSignal": 9}, "StopSignal must be a string, got 9"),
    ({"Cmd": ["sh\u0000", "-c"]}, "Cmd holds a NUL byte"),
    ({"WorkingDir": "x" * 100}, None),  # long is fine: relative is refused later, by spec.py
]


@pytest.mark.parametrize("run,message", BAD_RUN_CONFIGS)
def test_wrong_types_in_the_run_config(tmp_path, snapshot, good, run, message):
    lay = custom(tmp_path, [good], [sha(good)], edit_config=lambda c: c.update(config=run))
    if message is None:
        open_image(lay.path).close()
    else:
        refused(tmp_path, snapshot, lay.path, f"bad: config: {message}")


@pytest.mark.parametrize("run", [[], "x", 5, True])
def test_run_config_not_an_object(tmp_path, snapshot, good, run):
    lay = custom(tmp_path, [good], [sha(good)], edit_config=lambda c: c.update(config=run))
    refused(tmp_path, snapshot, lay.path, 'bad: config: "config" must be an object, got ')


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_config(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)])
    index = json.loads((lay.path / "index.json").read_text())
    manifest = json.loads((lay.blobs / index["manifests"][0]["digest"][7:]).read_text())
    config = (lay.blobs / manifest["config"]["digest"][7:]).read_bytes()
    manifest["config"] = lay.add_blob(config[:-1] + b',"history":' + DEEP + b"}", OCI_CONFIG)
    lay.write_index([lay.add_json(manifest, OCI_MANIFEST)])
    refused(tmp_path, snapshot, lay.path, "config sha256:")
    refused(tmp_path, snapshot, lay.path, "bad JSON: JSON nested too deeply")


def test_deeply_nested_manifest(tmp_path, snapshot, good):
    lay = custom(tmp_path, [good], [sha(good)])
    index = json.loads((lay.path / "index.json").read_text())
    manifest = (lay.blobs / index["manifests"][0]["digest"][7:]).read_bytes()
    lay.write_index([lay.add_blob(manifest[:-1] + b',"annotations":' + DEEP + b"}", OCI_MANIFEST)])
    refused(tmp_path, snapshot, lay.path, "manifest sha256:")
    refused(tmp_path, snapshot, lay.path, "bad JSON: JSON nested too deeply")


@pytest.mark.parametrize("name", ["index.json", "manifest.json"])
def test_deeply_nested_index(tmp_path, snapshot, name):
    d = tmp_path / "deep"
    d.mkdir()
    (d / name).write_bytes(DEEP)
    refused(tmp_path, snapshot, d, f"deep: {name}: bad JSON: JSON nested too deeply")
