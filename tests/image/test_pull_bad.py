"""A registry that misbehaves: each fault a one-line error (exit 125) or a successful
retry, and the store unchanged.  The real registry cannot misbehave, so a small
Python server here serves a real image (made by the project's writer) and
breaks it in one way per test."""

import hashlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from minirt.image.write import write_image

registry = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
    "registry", pathlib.Path(__file__).with_name("registry.py")))
registry.__spec__.loader.exec_module(registry)
H = "sha256:" + "ab" * 32


class Faulty(registry.Handler):
    fault = None
    blobs, manifest = {}, b""
    hits, headers = [], []
    cdn = None  # another server's host:port, for "redirect"

    def do_GET(self):
        Faulty.hits.append(self.path)
        Faulty.headers.append(dict(self.headers))
        f = Faulty.fault
        if f == "redirect" and self.headers.get("Authorization") != "Basic dTpw" and not self.path.startswith("/cdn/"):
            return self.reply(401, b"", {"WWW-Authenticate": 'Basic realm="x"'})
        if self.path == "/v2/":
            return self.reply(200, b"{}")
        if f == "stall":
            time.sleep(3)
            return self.reply(200, b"")
        if f == "401":
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}',
                              {"WWW-Authenticate": 'Basic realm="x"'})
        if f == "403":
            return self.reply(403, b'{"errors":[{"code":"DENIED","message":"not yours"}]}')
        if f == "500":
            return self.reply(500, b'{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}')
        if f == "429" and sum(1 for h in Faulty.hits if "/manifests/" in h) == 1:
            return self.reply(429, b"slow down", {"Retry-After": "0"})
        if f == "loop":
            return self.reply(307, b"", {"Location": self.path})
        if "/manifests/" in self.path:
            if self.path.endswith("/missing"):
                return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')
            if f in ("evil-index", "no-digest"):
                entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10,
                         "platform": {"os": "linux", "architecture": "amd64"}}
                if f == "evil-index":
                    entry["digest"] = "sha256:../../../v2/other/manifests/x"
                index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": [entry]}
                return self.reply(200, json.dumps(index).encode(),
                                  {"Content-Type": "application/vnd.oci.image.index.v1+json"})
            if f == "huge":
                return self.reply(200, b" " * (10 << 20), {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            return self.reply(200, Faulty.manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        digest = self.path.rsplit("/", 1)[-1]
        data = Faulty.blobs.get(digest)
        if data is None:
            return self.reply(404, b"")
        if f == "redirect" and not self.path.startswith("/cdn/"):
            return self.reply(307, b"", {"Location": f"http://{Faulty.cdn}/cdn/{digest}"})
        first = len([h for h in Faulty.hits if h == self.path]) == 1
        if f in ("resume", "killed") and len(data) > 1000 and (first or f == "killed"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            if f == "killed":
                time.sleep(30)  # stalls half way: the test kills the pull
            self.close_connection = True
            return
        start = self.headers.get("Range", "bytes=0-")[6:].split("-")[0]
        if int(start) and f in ("resume", None):
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - int(start)))
            self.end_headers()
            self.wfile.write(data[int(start):])
            return
        if f == "oversized" and len(data) > 1000:  # a layer (a config is bounded by MAX_JSON)
            data += bytes(4 << 20)
        if f == "wrong" and len(data) > 1000:  # gzip's mtime: still good gzip, another digest
            data = data[:4] + bytes([data[4] ^ 1]) + data[5:]
        if f == "truncated" and len(data) > 1000:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.reply(200, data)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faulty")
    tree = tmp / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "hello").write_bytes(os.urandom(200_000))
    layout = write_image(tmp / "layout", [tree], form="oci-layout", compression="gzip")
    index = json.loads((layout / "index.json").read_text())
    blobs = {}
    for f in (layout / "blobs" / "sha256").iterdir():
        blobs["sha256:" + f.name] = f.read_bytes()
    Faulty.manifest = blobs[index["manifests"][0]["digest"]]
    Faulty.blobs = blobs
    (host, stop), (Faulty.cdn, stop_cdn) = registry.serve(Faulty, 2)
    yield host
    stop()
    stop_cdn()


def pull(root, ref, env=None):
    return subprocess.run([sys.executable, "-m", "minirt", "--root", str(root), "pull", ref],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, XDG_CONFIG_HOME=str(root / "cfg"), DOCKER_CONFIG=str(root / "d"),
                                   MINIRT_REGISTRY_TIMEOUT="0.5", **(env or {})))


def snapshot(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root)
                  for n in dirs + files if "leases" not in d and "/tmp" not in d)


@pytest.mark.parametrize("fault, ref, message", [
    (None, "app:missing", "manifest: not found (MANIFEST_UNKNOWN: manifest unknown)"),
    ("401", "app", "unauthorized (log in first: minirt login"),
    ("403", "app", "denied (DENIED: not yours)"),
    ("500", "app", "500 Internal Server Error (UNKNOWN: disk on fire) (after 4 attempts)"),
    ("loop", "app", "more than 8 redirects"),
    ("huge", "app", "more than a manifest may be"),
    ("evil-index", "app", "invalid digest 'sha256:../../../v2/other/manifests/x'"),
    ("no-digest", "app", "invalid digest None"),
    ("stall", "app", "no answer (timed out) (after 4 attempts)"),
    ("truncated", "app", "truncated download"),
    ("wrong", "app", "digest mismatch"),
    (None, f"app@{H}", "manifest digest mismatch"),
])
def test_a_faulty_registry_is_one_line_and_changes_nothing(server, tmp_path, fault, ref, message):
    Faulty.fault, Faulty.hits[:] = fault, []
    before = snapshot(tmp_path)
    r = pull(tmp_path, f"{server}/{ref}")
    assert r.returncode == 125, r
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith("minirt: ") and message in err, err
    assert "Traceback" not in r.stderr
    after = snapshot(tmp_path)
    assert [p for p in after if p not in before and "layers/sha256/" in p] == []
    assert not any(p.startswith("images/") and p.endswith(".json") for p in after)


def test_a_layer_is_read_no_further_than_its_descriptor_says(server, tmp_path):
    Faulty.fault, Faulty.hits[:] = "oversized", []  # 4 MB more than promised, for ever as far as we care
    r = pull(tmp_path, f"{server}/app")
    assert r.returncode == 0, r.stderr


def test_429_then_success(server, tmp_path):
    Faulty.fault, Faulty.hits[:] = "429", []
    r = pull(tmp_path, f"{server}/app")
    assert r.returncode == 0, r.stderr
    assert "Status: Downloaded newer image for" in r.stdout
    assert sum(1 for h in Faulty.hits if "/manifests/" in h) == 2


def test_bad_references_and_platforms(tmp_path):
    for args, message in [(["pull", "Alpine"], "repository name (library/Alpine) must be lowercase"),
                          (["pull", "--platform", "linux", "x"], "invalid platform 'linux'"),
                          (["pull", "a@sha256:12"], "invalid checksum digest length"),
                          (["login", "-u", "x", "-p", "y", "a b"], "invalid registry name 'a b' (want HOST[:PORT])"),
                          (["login", "-u", "x", "-p", "y", "http://x:y:z"], "invalid registry name 'http://x:y:z'"),
                          (["login", "-u", "x", "-p", "y", ""], "invalid registry name ''"),
                          (["login", "-u", "x", "localhost"], "login needs -u USER and a password"),
                          (["logout", "-"], "invalid registry name '-'")]:
        r = subprocess.run([sys.executable, "-m", "minirt", "--root", str(tmp_path), *args],
                           capture_output=True, text=True)
        assert r.returncode == 125 and message in r.stderr and r.stderr.count("\n") == 1, r


def test_a_redirect_to_another_host_gets_no_credentials(server, tmp_path):
    Faulty.fault, Faulty.hits[:], Faulty.headers[:] = "redirect", [], []
    (tmp_path / "cfg" / "minirt").mkdir(parents=True)
    (tmp_path / "cfg" / "minirt" / "config.json").write_text(json.dumps({"auths": {server: {"auth": "dTpw"}}}))
    r = pull(tmp_path, f"{server}/app")
    assert r.returncode == 0, r.stderr
    cdn = [h for p, h in zip(Faulty.hits, Faulty.headers) if p.startswith("/cdn/")]
    assert len(cdn) == 2  # config and layer, from the other host
    assert not any("Authorization" in h for h in cdn)
    registry = [h for p, h in zip(Faulty.hits, Faulty.headers) if p.startswith("/v2/app/blobs/")]
    assert len(registry) == 2 and all(h.get("Authorization") == "Basic dTpw" for h in registry)


def test_a_broken_download_resumes_where_it_stopped(server, tmp_path):
    Faulty.fault, Faulty.hits[:], Faulty.headers[:] = "resume", [], []
    r = pull(tmp_path, f"{server}/app")
    assert r.returncode == 0, r.stderr
    ranges = [h["Range"] for h in Faulty.headers if "Range" in h]
    assert len(ranges) == 1 and ranges[0] != "bytes=0-"


def test_a_killed_pull_leaves_nothing_a_later_pull_trips_on(server, tmp_path):
    Faulty.fault, Faulty.hits[:] = "killed", []
    p = subprocess.Popen([sys.executable, "-m", "minirt", "--root", str(tmp_path), "pull", f"{server}/app"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg")))
    try:
        while not any("/blobs/" in h for h in Faulty.hits[1:]) and p.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        p.kill()
        p.wait()
    assert not os.listdir(tmp_path / "layers" / "sha256")  # nothing under a layer's real name
    assert not (tmp_path / "images").exists()
    Faulty.fault = None
    r = pull(tmp_path, f"{server}/app")
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp_path / "layers" / "tmp") == []  # the dead pull's half layer swept away


def _layer():
    return max(Faulty.blobs, key=lambda d: len(Faulty.blobs[d]))


def _partial(root):
    return root / "layers" / "blobs" / "tmp" / ("partial-" + _layer()[7:])


def _layer_requests():
    return [h.get("Range", "bytes=0-") for p, h in zip(Faulty.hits, Faulty.headers) if p.endswith(_layer())]


def test_a_killed_pull_is_continued_by_the_next_one(server, tmp_path):
    Faulty.fault, Faulty.hits[:] = "killed", []  # half the layer, then silence
    p = subprocess.Popen([sys.executable, "-m", "minirt", "--root", str(tmp_path), "pull", f"{server}/app"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg")))
    try:
        deadline = time.monotonic() + 30
        while not (_partial(tmp_path).exists() and _partial(tmp_path).stat().st_size) and p.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        p.kill()
        p.wait()
    have = _partial(tmp_path).stat().st_size
    assert 0 < have < len(Faulty.blobs[_layer()])
    assert not (tmp_path / "layers" / "blobs" / "sha256" / _layer()[7:]).exists()  # nothing unverified named
    Faulty.fault, Faulty.hits[:], Faulty.headers[:] = None, [], []
    r = pull(tmp_path, f"{server}/app")
    assert r.returncode == 0, r.stderr
    assert _layer_requests() == [f"bytes={have}-"]  # only the rest was asked for
    assert not _partial(tmp_path).exists()
    kept = tmp_path / "layers" / "blobs" / "sha256" / _layer()[7:]
    assert kept.read_bytes() == Faulty.blobs[_layer()]


def test_an_interrupted_pull_keeps_what_arrived(server, tmp_path, monkeypatch):
    # Ctrl-C lands in the main thread, in the extraction: nothing wrong with the bytes
    from minirt.image import Store, layers
    from minirt.image.reference import parse
    from minirt.runtime.catalog import Catalog

    def interrupted(stream, *args, **kwargs):
        stream.read(100_000)
        raise KeyboardInterrupt

    monkeypatch.setattr(layers, "apply_layer", interrupted)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    Faulty.fault = None
    with pytest.raises(KeyboardInterrupt):
        Catalog(str(tmp_path)).pull(parse(f"{server}/app"), Store(tmp_path))
    assert _partial(tmp_path).stat().st_size > 0


def test_a_partial_download_that_does_not_match_is_discarded(server, tmp_path):
    partial = _partial(tmp_path)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(os.urandom(1000))  # not the layer's first bytes
    Faulty.fault, Faulty.hits[:], Faulty.headers[:] = None, [], []
    r = pull(tmp_path, f"{server}/app")
    assert r.returncode == 0, r.stderr
    assert _layer_requests() == ["bytes=1000-", "bytes=0-"]  # tried, found wrong, downloaded whole
    assert not partial.exists()
    assert (tmp_path / "layers" / "blobs" / "sha256" / _layer()[7:]).read_bytes() == Faulty.blobs[_layer()]


def test_a_partial_longer_than_the_blob_is_not_continued(server, tmp_path):
    partial = _partial(tmp_path)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(Faulty.blobs[_layer()] + b"more")
    Faulty.fault, Faulty.hits[:], Faulty.headers[:] = None, [], []
    r = pull(tmp_path, f"{server}/app")
    assert r.returncode == 0, r.stderr
    assert _layer_requests() == ["bytes=0-"] and not partial.exists()


def test_image_prune_removes_stale_partial_downloads(tmp_path):
    partial = _partial(tmp_path)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a layer")
    r = subprocess.run([sys.executable, "-m", "minirt", "--root", str(tmp_path), "image", "prune", "-f"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not partial.exists()


def test_an_unknown_host_is_not_asked_again(tmp_path):
    r = pull(tmp_path, "no-such-host.invalid/app")
    assert r.returncode == 125
    assert r.stderr.strip().endswith("cannot look up no-such-host.invalid: Name or service not known"), r.stderr
