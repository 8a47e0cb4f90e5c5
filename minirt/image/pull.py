"""Pulling an image: from a reference to a verified config and a stack of layer streams.

Lecture idea: ``docker run hello-world`` "pulls" the image first: it asks the
registry for the tag's manifest, follows an index (one manifest per platform)
to this machine's, reads the config, and fetches the layers it does not have.
Every hop is named by a digest and checked, so one digest -- the manifest's,
which ``minirt pull`` prints -- vouches for every byte.

``open_remote`` returns an ``Image`` like ``formats.open_image`` does, whose
``open_layer`` streams the blob from the registry.  So the store unpacks a
pulled layer exactly as a loaded one (``Store.unpack``): hashed and
decompressed while the bytes arrive, extracted into a temporary directory,
renamed into place only once both digests matched; the blob itself is kept
on the way (for ``minirt save``).  Nothing is downloaded twice, and nothing
unverified is ever under a layer's or a blob's real name.  A download
that breaks off is resumed where it stopped (an HTTP ``Range`` request),
and so is one a killed pull left behind (``store._Partial``).

Read ``open_remote`` first.
"""

import http.client

from minirt.digests import sha256
from minirt.errors import ImageError
from minirt.image.formats import (DOCKER_LIST, DOCKER_MANIFEST, HOST_PLATFORM, INDEX_TYPES, MANIFEST_TYPES,
                                  OCI_INDEX, OCI_MANIFEST, BlobSource, Image, blob_path, check_platform,
                                  check_run_config, pick_manifest, read_manifest)
from minirt.image.registry import RETRIES, Client
from minirt.lightjson import loads

ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
# distribution refuses to store a manifest above 4 MiB; a bigger one is not an image.
MAX_MANIFEST = 4 << 20
CHUNK = 1 << 20


def connect(ref, insecure=()) -> Client:
    """A client for ``ref``'s registry, with the login kept for it (``credentials.py``)."""
    from minirt.image import credentials

    return Client(ref.registry, credentials.lookup(ref.domain), insecure)


def open_remote(ref, client: Client, platform: tuple = HOST_PLATFORM, on_bytes=None) -> Image:
    """The image ``ref`` (a ``reference.Reference``) names, for ``platform``.
    Its ``digest`` is the manifest's (of the index, if the tag names one, as docker prints).
    ``on_bytes(layer_digest, n, size)`` hears of every piece of a layer that arrives."""
    source = ref.familiar
    blobs = RegistryBlobs(client, ref)
    try:
        data, media = blobs.manifest(ref.object, f"{source}: manifest")
        top = "sha256:" + sha256(data).hexdigest()
        if ref.digest and top != ref.digest:
            raise ImageError(f"{source}: manifest digest mismatch (got {top[:19]}...)")
        what = f"{source}: manifest"
        for _ in range(8):
            document = _json(data, what)
            if media not in INDEX_TYPES:
                break
            d = pick_manifest(source, what, document, None, platform)
            digest, size = d.get("digest"), d.get("size")
            blob_path(source, digest, "index")  # a digest, before it goes into a URL
            what = f"{source}: manifest {digest[:19]}..."
            data, media = blobs.manifest(digest, what)
            if "sha256:" + sha256(data).hexdigest() != digest or (size is not None and len(data) != size):
                raise ImageError(f"{what}: digest mismatch")
        else:
            raise ImageError(f"{source}: indexes nested too deeply")
        if media not in MANIFEST_TYPES:
            raise ImageError(f"{what}: unsupported manifest type {media!r}")
        manifest, config, cdata, id, layers, paths = read_manifest(blobs, what, document)
        check_platform(source, config, platform)
        check_run_config(source, config)
        img = Image(source, blobs, config, id, layers, manifest, paths, cdata)
        img.digest, img.manifest_blob, img.remote = top, (media, data), True
        blobs.on_bytes = on_bytes  # from here on, only layers are read
        blobs.sizes = {layer.digest: layer.size for layer in layers}  # read no further than promised
        return img
    except BaseException:
        blobs.close()
        raise


def _json(data: bytes, what: str) -> dict:
    try:
        obj = loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{what}: bad JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ImageError(f"{what}: not a JSON object")
    return obj


class RegistryBlobs(BlobSource):
    """A repository's blobs, as ``formats`` reads blobs from a layout (``blobs/sha256/<hex>``)."""

    def __init__(self, client: Client, ref):
        self.client, self.source, self.on_bytes, self.sizes = client, ref.familiar, None, {}
        self.repo = f"/v2/{ref.path}"
        self.scope = f"repository:{ref.path}:pull"

    def manifest(self, object: str, what: str) -> tuple[bytes, str]:
        """A manifest's bytes (at most MAX_MANIFEST) and media type."""
        resp = self.client.request("GET", f"{self.repo}/manifests/{object}", scope=self.scope,
                                   headers={"Accept": ACCEPT}, what=what)
        try:
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > MAX_MANIFEST:
                raise ImageError(f"{what}: {int(length)} bytes, more than a manifest may be ({MAX_MANIFEST})")
            data = resp.read(MAX_MANIFEST + 1)
            if len(data) > MAX_MANIFEST:
                raise ImageError(f"{what}: more than {MAX_MANIFEST} bytes, more than a manifest may be")
        finally:
            resp.close()
        media = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        if media not in INDEX_TYPES | MANIFEST_TYPES:
            # Some registries say application/json: then the document's own mediaType decides.
            declared = _json(data, what).get("mediaType")
            if declared not in INDEX_TYPES | MANIFEST_TYPES:
                raise ImageError(f"{what}: unsupported manifest type {declared or media!r}"
                                 " (docker's schema 1 is not read)")
            media = declared
        return data, media

    def exists(self, name: str) -> bool:
        return True  # asked when the blob is fetched: the registry says 404 then

    def open(self, name: str, what: str, offset: int = 0):
        digest = "sha256:" + name.rsplit("/", 1)[-1]
        return _BlobReader(self, digest, f"{self.source}: {what}", offset)

    def close(self) -> None:
        self.client.close()


class _BlobReader:
    """A blob as a file, from byte ``offset`` on: read straight from the registry,
    resumed if the connection breaks."""

    def __init__(self, blobs: RegistryBlobs, digest: str, what: str, offset: int = 0):
        self.blobs, self.digest, self.what = blobs, digest, what
        self.pos, self.size, self.resp = offset, blobs.sizes.get(digest), None
        if self.size is None or offset < self.size:  # else there is nothing left to ask for
            self._open()

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.pos}-"} if self.pos else {}
        resp = self.blobs.client.request("GET", f"{self.blobs.repo}/blobs/{self.digest}",
                                         scope=self.blobs.scope, headers=headers, what=self.what,
                                         ok=(200, 206))
        if self.size is None:
            length = resp.getheader("Content-Length")
            self.size = int(length) if length and length.isdigit() else None
        self.resp = resp
        skip = self.pos if resp.status == 200 else 0  # a server that ignored the Range sends it all again
        while skip:
            data = resp.read(min(skip, CHUNK))
            if not data:
                raise ImageError(f"{self.what}: truncated download")
            skip -= len(data)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (a chunk if n < 0), as many as have arrived: what
        is read is passed on (and kept) at once, not when a whole chunk is in.
        b"" only at the end of the blob."""
        want = CHUNK if n is None or n < 0 else n
        if self.size is not None:
            want = min(want, self.size - self.pos)  # never past the promised end
        if want <= 0:
            return b""
        why = None
        for _ in range(RETRIES):
            try:
                data = self.resp.read1(want)
            except (OSError, http.client.HTTPException) as e:
                data, why = b"", e
            if data:
                self.pos += len(data)
                if self.blobs.on_bytes:
                    self.blobs.on_bytes(self.digest, len(data), self.size)
                return data
            if self.size is None and why is None:
                return b""
            self.resp.close()  # broken off early: ask for the rest
            self._open()
        raise ImageError(f"{self.what}: truncated download ({self.pos} of {self.size} bytes"
                         f"{', ' + str(why) if why else ''})")

    def close(self) -> None:
        if self.resp is not None:
            self.resp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
