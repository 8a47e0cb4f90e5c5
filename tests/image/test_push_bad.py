"""Pushing to a registry that misbehaves, and pushing what cannot be pushed: each a
one-line error (exit 125) or a successful retry, and the store unchanged.  The
real registry cannot misbehave, so a small Python server here takes uploads
(checking each digest, as a registry does) and fails in one way per test."""

import hashlib
import importlib.util
import itertools
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.parse

import pytest

registry = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
    "registry", pathlib.Path(__file__).with_name("registry.py")))
registry.__spec__.loader.exec_module(registry)
BUSYBOX = os.path.realpath("images/busybox.tar")


class Sink(registry.Handler):
    fault = None
    hits = []        # (method, path, headers)
    uploads = itertools.count()
    cdn = None       # another server's host:port, for "cdn"

    def do_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Sink.hits.append((self.command, self.path, dict(self.headers)))
        f, path = Sink.fault, urllib.parse.urlsplit(self.path)
        if f == "cdn" and self.headers.get("Authorization") != "Basic dTpw" and path.path.startswith("/v2/"):
            return self.reply(401, b"", {"WWW-Authenticate": 'Basic realm="x"'})
        if self.path == "/v2/":
            return self.reply(200, b"{}")
        if f == "401":
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}',
                              {"WWW-Authenticate": 'Basic realm="x"'})
        if f == "403" and self.command != "HEAD":  # may pull, may not push
            return self.reply(403, b'{"errors":[{"code":"DENIED","message":"requested access to the resource '
                                   b'is denied"}]}')
        if self.command == "HEAD":
            return self.reply(404, b"")
        if self.command == "POST":
            where = f"http://{Sink.cdn}/upload/" if f == "cdn" else "/v2/app/blobs/uploads/"
            return self.reply(202, b"", {"Location": f"{where}{next(Sink.uploads)}?_state=x"})
        if "/manifests/" in self.path:
            return self.reply(201, b"", {"Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()})
        puts = sum(1 for m, p, _ in Sink.hits if m == "PUT" and "/manifests/" not in p)
        if f == "stall":
            time.sleep(3)
            return self.reply(201, b"")
        if f == "500" or f == "500-once" and puts == 1:
            return self.reply(500, b'{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}')
        digest = urllib.parse.parse_qs(path.query).get("digest", [""])[0]
        if f == "digest" or digest != "sha256:" + hashlib.sha256(body).hexdigest():
            return self.reply(400, b'{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not '
                                   b'match uploaded content"}]}')
        self.reply(201, b"", {"Location": f"/v2/app/blobs/{digest}"})

    do_HEAD = do_POST = do_PUT = do_PATCH = do_GET = do_any


@pytest.fixture(scope="module")
def server():
    (host, stop), (Sink.cdn, stop_cdn) = registry.serve(Sink, 2)
    yield host
    stop()
    stop_cdn()


def minirt(root, *args):
    return subprocess.run([sys.executable, "-m", "minirt", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, XDG_CONFIG_HOME=str(root / "cfg"), DOCKER_CONFIG=str(root / "d"),
                                   MINIRT_REGISTRY_TIMEOUT="0.5"))


@pytest.fixture
def loaded(server, tmp_path):
    """A store holding busybox, tagged for the faulty registry as app:1."""
    for args in (["load", "-i", BUSYBOX], ["tag", "busybox", f"{server}/app:1"]):
        assert minirt(tmp_path, *args).returncode == 0
    Sink.hits[:] = []
    return f"{server}/app:1"


def snapshot(root):
    """Every file of the store (but leases and temporary files), with its bytes."""
    out = {}
    for d, _, files in os.walk(root):
        for n in files:
            path = os.path.join(d, n)
            if "leases" not in path and "/tmp" not in path:
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.mark.parametrize("fault, message", [
    ("401", "unauthorized (log in first: minirt login"),
    ("403", "denied (DENIED: requested access to the resource is denied)"),
    ("500", "upload: 500 Internal Server Error (UNKNOWN: disk on fire) (after 4 attempts)"),
    ("digest", "upload: 400 Bad Request (DIGEST_INVALID: provided digest did not match uploaded content)"),
    ("stall", "upload: no answer (timed out) (after 4 attempts)"),
])
def test_a_faulty_registry_is_one_line_and_changes_nothing(loaded, tmp_path, fault, message):
    Sink.fault = fault
    before = snapshot(tmp_path)
    r = minirt(tmp_path, "push", loaded)
    assert r.returncode == 125, r
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith(f"minirt: {loaded}: ") and message in err, err
    assert snapshot(tmp_path) == before
    assert not any("/manifests/" in p for _, p, _ in Sink.hits)  # no manifest without its blobs


def test_500_on_an_upload_then_success(loaded, tmp_path):
    Sink.fault = "500-once"
    r = minirt(tmp_path, "push", loaded)
    assert r.returncode == 0, r
    puts = [p for m, p, _ in Sink.hits if m == "PUT" and "/uploads/" in p]
    assert len(puts) == 3 and puts[0] == puts[1]  # the failed one, sent again; then the other blob
    assert r.stdout.splitlines()[-1].startswith("1: digest: sha256:")


def test_an_upload_on_another_host_gets_no_credentials(loaded, tmp_path):
    Sink.fault = "cdn"
    (tmp_path / "cfg" / "minirt").mkdir(parents=True)
    (tmp_path / "cfg" / "minirt" / "config.json").write_text(json.dumps({"auths": {loaded.split("/")[0]: {
        "auth": "dTpw"}}}))
    r = minirt(tmp_path, "push", loaded)
    assert r.returncode == 0, r
    cdn = [h for _, p, h in Sink.hits if p.startswith("/upload/")]
    assert len(cdn) == 2 and not any("Authorization" in h for h in cdn)  # layer and config, to the other host
    registry = [h for _, p, h in Sink.hits if p.startswith("/v2/app/")]
    assert "Authorization" not in registry[0]  # the first asks for the challenge: then the login goes along
    assert len(registry) > 3 and all(h.get("Authorization") == "Basic dTpw" for h in registry[1:])


def test_what_cannot_be_pushed(loaded, tmp_path):
    before = snapshot(tmp_path)
    digest = "sha256:" + "ab" * 32
    for ref, message in [("nothere:1", "no such image: nothere:1"),
                         (f"{loaded.split(':1')[0]}@{digest}", "cannot push a digest reference"),
                         ("Busybox", "repository name (library/Busybox) must be lowercase")]:
        r = minirt(tmp_path, "push", ref)
        assert r.returncode == 125 and message in r.stderr and r.stderr.count("\n") == 1, r
    assert snapshot(tmp_path) == before and Sink.hits == []


def test_a_damaged_manifest_in_the_store_is_not_pushed(loaded, tmp_path):
    entry = next(json.loads(p.read_text()) for p in (tmp_path / "images").glob("*.json") if p.name != "tags.json")
    manifest = tmp_path / "layers" / "blobs" / "sha256" / entry["manifest"]["digest"][7:]
    manifest.write_bytes(manifest.read_bytes().replace(b'"layers"', b'"Layers"'))
    r = minirt(tmp_path, "push", loaded)
    assert r.returncode == 125 and r.stderr.count("\n") == 1, r
    assert f"manifest sha256:{manifest.name[:12]}... is damaged in the store" in r.stderr and Sink.hits == []
