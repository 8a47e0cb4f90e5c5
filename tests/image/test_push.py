"""minirt push to a real registry (Debian's docker-registry): the digests an image
had are the digests it has there, as skopeo reports them; blobs the repository
has are not sent, blobs another repository has are mounted, large ones go up in
chunks; bearer tokens for pull,push; and what minirt pushed, skopeo copies and
podman pulls and runs."""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import tarfile

import pytest

from minirt.image.push import CHUNK
from minirt.image.write import Layout
from minirt.runtime.catalog import Catalog

registry = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
    "registry", pathlib.Path(__file__).with_name("registry.py")))
registry.__spec__.loader.exec_module(registry)
BUSYBOX = os.path.realpath("images/busybox.tar")


@pytest.fixture(scope="module")
def plain(registries):
    return registries()


@pytest.fixture(scope="module")
def other(registries):
    return registries()


@pytest.fixture(scope="module")
def counted(registries, plain):
    """The plain registry again, through a proxy that notes every request."""
    return registries.proxy(plain)


@pytest.fixture(scope="module")
def token(registries):
    return registries("token")


minirt, ok = registry.minirt, registry.ok


def loaded(root, name, archive=BUSYBOX):
    """``archive`` loaded into the store under ``root``, named ``name``; its entry."""
    ok(minirt(root, "load", "-i", str(archive)))
    ok(minirt(root, "tag", "busybox", name))
    return Catalog(str(root / "state")).lookup(name)


def skopeo(*args):
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True).stdout


def test_push_keeps_the_digests_skopeo_reports(plain, tmp_path):
    with tarfile.open(BUSYBOX) as tar:  # the archive's own manifest: what the image came with
        manifest = json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]
    ref = f"{plain.host}/pushed:1"
    entry = loaded(tmp_path, ref)
    assert entry["manifest"]["digest"] == manifest
    out = ok(minirt(tmp_path, "push", ref)).splitlines()
    size = entry["manifest"]["size"]
    assert out == [f"The push refers to repository [{plain.host}/pushed]", f"{entry['layers'][0][7:19]}: Pushed",
                   f"1: digest: {manifest} size: {size}"]
    assert plain.inspect("pushed:1")["Digest"] == manifest
    assert plain.inspect("pushed:1", raw=True)["config"]["digest"] == entry["id"]
    again = ok(minirt(tmp_path, "push", ref)).splitlines()
    assert again[1:] == [f"{entry['layers'][0][7:19]}: Layer already exists", out[2]]
    assert ok(minirt(tmp_path, "push", "-q", ref)) == ref + "\n"
    inspected = json.loads(ok(minirt(tmp_path, "image", "inspect", ref)))[0]
    assert f"{plain.host}/pushed@{manifest}" in inspected["RepoDigests"]  # as docker records a push
    skopeo("copy", "-q", "--preserve-digests", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'copy'}:1")
    index = json.loads((tmp_path / "copy" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == manifest


def test_prune_keeps_an_images_manifest(tmp_path):
    entry = loaded(tmp_path, "kept:1")
    ok(minirt(tmp_path, "system", "prune"))
    assert (tmp_path / "state" / "layers" / "blobs" / "sha256" / entry["manifest"]["digest"][7:]).is_file()
    ok(minirt(tmp_path, "rmi", "kept:1", "busybox"))
    ok(minirt(tmp_path, "system", "prune"))
    assert os.listdir(tmp_path / "state" / "layers" / "blobs" / "sha256") == []  # with its image


def test_a_pulled_image_pushed_to_another_registry_keeps_its_digests(plain, other, tmp_path):
    ref = plain.push("docker-archive:" + BUSYBOX, "from:1")  # skopeo: docker's manifest, gzipped layers
    ok(minirt(tmp_path, "pull", "-q", ref))
    ok(minirt(tmp_path, "tag", ref, f"{other.host}/to:2"))
    ok(minirt(tmp_path, "push", f"{other.host}/to:2"))
    assert other.inspect("to:2")["Digest"] == plain.inspect("from:1")["Digest"]
    assert other.inspect("to:2", raw=True) == plain.inspect("from:1", raw=True)


def test_a_blob_another_repository_has_is_mounted_not_uploaded(counted, plain, tmp_path):
    plain.push("docker-archive:" + BUSYBOX, "mount/a:1")
    ok(minirt(tmp_path, "pull", "-q", f"{counted.host}/mount/a:1"))  # the blobs came from mount/a
    ok(minirt(tmp_path, "tag", f"{counted.host}/mount/a:1", f"{counted.host}/mount/b:1"))
    counted.requests.clear()
    out = ok(minirt(tmp_path, "push", f"{counted.host}/mount/b:1")).splitlines()
    assert out[1].endswith(": Mounted from mount/a")
    mounts = [(m, p.split("?")[0], s) for m, p, s in counted.requests if "mount=" in p]
    assert mounts == [("POST", "/v2/mount/b/blobs/uploads/", 201)] * 2  # layer and config
    assert not [r for r in counted.requests if r[0] in ("PATCH", "PUT") and "/blobs/" in r[1]]
    assert plain.inspect("mount/b:1")["Digest"] == plain.inspect("mount/a:1")["Digest"]


def test_a_large_blob_goes_up_in_chunks(counted, plain, tmp_path):
    layout = Layout(tmp_path / "big")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "noise").write_bytes(os.urandom(CHUNK + CHUNK // 2))
    layer = layout.add_layer(tree)
    manifest, config = layout.add_image([layer], {"Cmd": ["sh"]}, tag="latest")
    ok(minirt(tmp_path, "load", "-i", str(tmp_path / "big"), "-t", f"{counted.host}/big:1"))
    counted.requests.clear()
    ok(minirt(tmp_path, "push", f"{counted.host}/big:1"))
    patches = [p for m, p, _ in counted.requests if m == "PATCH"]
    assert len(patches) == math.ceil(layer[0]["size"] / CHUNK) == 2  # the config went up in one PUT
    assert len([p for m, p, _ in counted.requests if m == "PUT" and "digest=" in p]) == 2
    assert plain.inspect("big:1")["Digest"] == manifest["digest"]
    assert plain.inspect("big:1", raw=True)["config"] == config


def test_an_image_that_came_without_a_manifest_gets_one_the_same_every_time(plain, tmp_path):
    legacy = tmp_path / "legacy.tar"  # skopeo writes docker save's old form: manifest.json only
    skopeo("copy", "-q", "docker-archive:" + BUSYBOX, f"docker-archive:{legacy}:busybox:latest")
    entry = loaded(tmp_path, f"{plain.host}/legacy:1", legacy)
    assert "manifest" not in entry
    first = ok(minirt(tmp_path, "push", f"{plain.host}/legacy:1")).splitlines()[-1]
    ok(minirt(tmp_path, "tag", "busybox", f"{plain.host}/legacy:2"))
    second = ok(minirt(tmp_path, "push", f"{plain.host}/legacy:2")).splitlines()[-1]
    digest = first.split()[2]
    assert second.split()[2] == digest == plain.inspect("legacy:2")["Digest"]
    assert plain.inspect("legacy:1", raw=True)["config"]["digest"] == entry["id"]


def test_an_image_pulled_from_an_index_is_pushed_as_its_platform(plain, tmp_path, two_platforms):
    # as docker (its classic image store): the platform's manifest, the one the store holds
    descs, index = two_platforms(tmp_path / "multi")
    ref = plain.push(f"oci:{tmp_path / 'multi'}:1", "multi:1", "--all")
    ok(minirt(tmp_path, "pull", "-q", "--platform", "linux/arm64", ref))
    ok(minirt(tmp_path, "tag", ref, f"{plain.host}/one:1"))
    out = ok(minirt(tmp_path, "push", f"{plain.host}/one:1"))
    assert out.splitlines()[-1] == f"1: digest: {descs[1]['digest']} size: {descs[1]['size']}"
    assert plain.inspect("one:1", raw=True)["mediaType"] == descs[1]["mediaType"] != index["mediaType"]


def test_push_with_bearer_tokens(token, tmp_path):
    ref = f"{token.host}/team/pushed:1"
    loaded(tmp_path, ref)
    r = minirt(tmp_path, "push", ref)
    assert r.returncode == 125 and "token server: unauthorized (log in first" in r.stderr
    ok(minirt(tmp_path, "login", "-u", token.user, "--password-stdin", token.host, input=token.password + "\n"))
    token.tokens.requests.clear()
    ok(minirt(tmp_path, "push", ref))
    assert token.tokens.requests and all("scope=repository%3Ateam%2Fpushed%3Apull%2Cpush" in r
                                         for r in token.tokens.requests)
    ok(minirt(tmp_path, "tag", ref, f"{token.host}/team/second:1"))
    token.tokens.requests.clear()
    out = ok(minirt(tmp_path, "push", f"{token.host}/team/second:1"))
    assert "Mounted from team/pushed" in out  # with a token for pull,push here and pull there
    assert any("scope=repository%3Ateam%2Fpushed%3Apull&" in r + "&" for r in token.tokens.requests)
    assert token.inspect("team/second:1")["Digest"] == token.inspect("team/pushed:1")["Digest"]


@pytest.mark.privileged
def test_podman_pulls_and_runs_what_minirt_pushed(plain, tmp_path, podman):
    ref = f"{plain.host}/podman:1"
    loaded(tmp_path, ref)
    digest = ok(minirt(tmp_path, "push", ref)).split()[-3]

    def run(*args):
        r = podman(*args)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode()

    run("pull", "-q", "--tls-verify=false", ref)
    assert json.loads(run("images", "--format", "json"))[0]["Digest"] == digest
    r = podman.run(ref, "echo", "pushed by minirt")
    assert (r.returncode, r.stdout) == (0, b"pushed by minirt\n"), r.stderr.decode()


def test_at_a_terminal_push_shows_the_bytes_going(plain, tmp_path, terminal, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    ref = f"{plain.host}/shown:1"
    layout = Layout(tmp_path / "big")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "data").write_bytes(os.urandom(CHUNK + 1000))  # two chunks: a count in between
    layout.add_image([layout.add_layer(tree, None)], {"Cmd": ["true"]})
    ok(minirt(tmp_path, "load", "-i", str(tmp_path / "big"), "-t", ref))
    t = terminal("--root", str(tmp_path / "state"), "push", ref)
    assert t.wait() == 0, t.out
    text = t.out.decode()
    assert "Pushing 8.4MB/8.4MB" in text and "\x1b[2K" in text and ": Pushed" in text
    assert text.rstrip().splitlines()[-1].startswith("1: digest: sha256:")
