"""Pushing an image: its blobs and its manifest, from the store up to a registry.

Lecture idea: the library of images that ``docker run`` pulls from is filled
by ``docker push``.  A push is a pull backwards, in the order that keeps the
registry whole: first every blob the manifest names (the layers, then the
config), then the manifest under the tag -- a registry refuses a manifest
whose blobs it lacks.  The blobs go up as they were kept (still compressed,
byte for byte) and the manifest too, so the digests do not change: an image
pulled as ``sha256:abc...`` is pushed as ``sha256:abc...``.

Each blob goes the cheapest way that works, as docker's does:

1. ``HEAD /v2/<name>/blobs/<digest>``: the repository has it already
   ("Layer already exists");
2. ``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>``: another
   repository of the same registry has it (the image was pulled from there,
   or pushed there): the registry links it, not one byte is sent ("Mounted
   from other").  A registry that cannot mount opens an upload instead;
3. an upload ("Pushed"): ``POST .../blobs/uploads/`` opens one, and the
   answer's ``Location`` says where the bytes go -- a small blob in a single
   ``PUT <location>?digest=<digest>``, a large one in ``PATCH``es of CHUNK
   bytes (``Content-Range``: a broken connection costs one chunk, not the
   blob), closed by ``PUT ?digest=``.  The registry hashes what it got and
   refuses a digest that does not match.

Authentication, retries and redirects are ``registry.Client``'s; the bearer
token asked for is for ``pull,push`` on the repository (and ``pull`` on the
one a blob is mounted from).  Read ``push`` first.
"""

import os
import urllib.parse

from minirt.digests import sha256
from minirt.errors import ImageError
from minirt.image.formats import CONFIG_TYPES, MANIFEST_TYPES
from minirt.image.registry import Client
from minirt.lightjson import loads

# Blobs up to CHUNK go up in one request, larger ones in pieces of CHUNK:
# the piece is what a retry sends again, and what is held in memory.
CHUNK = 8 << 20
MOUNT_TRIES = 3          # other repositories asked for a blob before it is uploaded (docker's limit)
OCTETS = {"Content-Type": "application/octet-stream"}


def push(client: Client, ref, media: str, manifest: bytes, files: dict, sources: dict, report=None,
         on_bytes=None) -> str:
    """Push ``manifest`` (its bytes as given, of type ``media``) under ``ref``'s
    tag, after the blobs it names (``files``: digest -> path of the blob).
    ``sources``: digest -> repositories (``host/path``) the blob is known to be
    in, to mount from.  ``report(digest, status)`` hears how each layer went,
    ``on_bytes(digest, n, size)`` of each piece of a layer uploaded.
    Returns the manifest's digest."""
    if media not in MANIFEST_TYPES:
        raise ImageError(f"{ref.familiar}: cannot push a manifest of type {media!r}")
    config, layers = _blobs(ref.familiar, manifest)
    repo = _Repository(client, ref)
    done = set()
    for digest in layers + [config]:
        if digest not in done:
            path = files.get(digest)
            if path is None or not os.path.isfile(path):
                raise ImageError(f"{ref.familiar}: blob {digest} is missing from the store; pull or load the image again")
            status = repo.put_blob(digest, path, [s for s in sources.get(digest, ()) if s != ref.repository],
                                   on_bytes if digest != config else None)
            done.add(digest)
            if report and digest != config:
                report(digest, status)
    return repo.put_manifest(media, manifest)


def _blobs(source: str, manifest: bytes) -> tuple[str, list[str]]:
    """The config's and the layers' digests the manifest names."""
    try:
        document = loads(manifest)
        config, layers = document["config"], [d["digest"] for d in document["layers"]]
        if config["mediaType"] in CONFIG_TYPES:
            return config["digest"], layers
    except (ValueError, UnicodeDecodeError, TypeError, KeyError):
        pass
    raise ImageError(f"{source}: the stored manifest is damaged; pull or load the image again")


class _Repository:
    """One repository of a registry, being pushed to."""

    def __init__(self, client: Client, ref):
        self.client, self.ref, self.source = client, ref, ref.familiar
        self.base = f"/v2/{ref.path}"
        self.scope = f"repository:{ref.path}:pull,push"

    def put_blob(self, digest: str, path: str, sources: list, on_bytes=None) -> str:
        what = f"{self.source}: blob {digest[:19]}..."
        resp = self.client.request("HEAD", f"{self.base}/blobs/{digest}", scope=self.scope, what=what, ok=(200, 404))
        resp.close()
        if resp.status == 200:
            return "Layer already exists"
        location = None
        for source in [s for s in sources if s.startswith(self.ref.domain + "/")][:MOUNT_TRIES]:
            other = source[len(self.ref.domain) + 1:]
            location = self._mount(digest, other, what)
            if location is None:
                return f"Mounted from {other}"
            if location:
                break  # not there: the registry opened an upload instead
        self._upload(digest, path, location or self._start(what), what, on_bytes or (lambda *_: None))
        return "Pushed"

    def _mount(self, digest: str, other: str, what: str):
        """None if the registry mounted the blob from ``other``; else the
        Location of the upload it opened instead (or None: open one)."""
        query = urllib.parse.urlencode({"mount": digest, "from": other})
        try:
            resp = self.client.request("POST", f"{self.base}/blobs/uploads/?{query}", what=f"{what}: mount",
                                       scope=f"{self.scope} repository:{other}:pull", ok=(201, 202))
        except ImageError:
            return ""  # not allowed to read there, say: upload it then
        resp.close()
        return None if resp.status == 201 else self._location(resp, what)

    def _start(self, what: str) -> str:
        resp = self.client.request("POST", f"{self.base}/blobs/uploads/", scope=self.scope, what=f"{what}: upload",
                                   ok=(202,))
        resp.close()
        return self._location(resp, what)

    def _upload(self, digest: str, path: str, location: str, what: str, on_bytes) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            body, offset = None, 0
            if size <= CHUNK:
                body = f.read()  # monolithic: the bytes with the closing PUT
            while body is None and offset < size:
                data = f.read(CHUNK)
                resp = self.client.request("PATCH", location, scope=self.scope, body=data, what=f"{what}: upload",
                                           headers={**OCTETS, "Content-Range": f"{offset}-{offset + len(data) - 1}"},
                                           ok=(202,))
                resp.close()
                location, offset = self._location(resp, what), offset + len(data)
                on_bytes(digest, len(data), size)
        glue = "&" if "?" in location else "?"
        resp = self.client.request("PUT", f"{location}{glue}digest={urllib.parse.quote(digest)}", scope=self.scope,
                                   body=body, headers=OCTETS, what=f"{what}: upload", ok=(201,))
        resp.close()
        if body:
            on_bytes(digest, len(body), size)

    def _location(self, resp, what: str) -> str:
        """Where the upload goes on: the answer's Location, as a URL (it may be on another host)."""
        location = resp.getheader("Location")
        if not location:
            raise ImageError(f"{what}: upload: the registry gave no Location")
        url = urllib.parse.urljoin(f"{self.client.base}{self.base}/blobs/uploads/", location)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ImageError(f"{what}: upload: Location {location[:80]!r} is not an HTTP URL")
        return url

    def put_manifest(self, media: str, manifest: bytes) -> str:
        digest = "sha256:" + sha256(manifest).hexdigest()
        what = f"{self.source}: manifest"
        resp = self.client.request("PUT", f"{self.base}/manifests/{self.ref.tag}", scope=self.scope, body=manifest,
                                   headers={"Content-Type": media}, what=what, ok=(201,))
        resp.close()
        stored = resp.getheader("Docker-Content-Digest")
        if stored and stored != digest:
            raise ImageError(f"{what}: the registry stored it as {stored[:19]}..., not {digest[:19]}...")
        return digest
