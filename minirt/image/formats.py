"""Image formats: from a file on disk to a config and a list of layers.

Lecture idea: "Docker Images" -- an image is not a disk, it is a small JSON
config (what to run, with which environment) plus an ordered stack of layers
(tarballs of file changes).  Everything else in an image file is bookkeeping
that says which blob is which, and checksums that prove nobody changed them.

Three ways of packing the same thing are in common use, and this module reads
all of them:

- an **OCI layout**: a directory with ``oci-layout``, ``index.json`` and
  ``blobs/sha256/<hex>``; every blob is named by the sha256 of its bytes;
- an **OCI archive** (``podman save --format oci-archive``, ``skopeo copy
  oci-archive:``): the same layout packed in a tar file;
- a **docker archive** (``docker save``): a tar with ``manifest.json`` that lists
  the config and layer files by path.  Docker 25 and later also add
  ``index.json``, so the archive is an OCI layout as well.

The path from ``index.json`` to the layers is a chain of *descriptors*
(media type, digest, size): index -> (maybe nested indexes, one per platform)
-> manifest -> config and layers.  Each hop is checked against the digest that
names it, so a single trusted digest vouches for the whole image.  Layers are
only described here; reading and checking them is ``store.py``'s job, because a
layer that is already unpacked need not be read at all.

Read ``open_image`` first.
"""

import os
import posixpath

from minirt import lightjson
from minirt.digests import is_digest, is_hex_digest, sha256  # not hashlib's: see digests.py
from minirt.errors import ImageError
from minirt.image.tarindex import TarFormatError, read_index

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
MANIFEST_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
CONFIG_TYPES = {OCI_CONFIG, DOCKER_CONFIG}
# The media type says how a layer was compressed, but we believe the bytes,
# not the label (store.py sniffs the magic number).  The type only has to say
# "this is a filesystem layer" rather than, say, an encrypted one.
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    DOCKER_LAYER,
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}

# Manifests and configs are small; a huge one is an attack or a mistake.
MAX_JSON = 16 << 20

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
HOST_PLATFORM = ("linux", _GOARCH.get(os.uname().machine, os.uname().machine))
# What an entry of an index without a variant means (containerd normalises so).
_DEFAULT_VARIANT = {"arm": "v7", "arm64": "v8", "amd64": "v1"}


def parse_platform(text: str) -> tuple:
    """``linux/amd64`` or ``linux/arm/v7`` -> ("linux", "amd64") or ("linux", "arm", "v7")."""
    parts = tuple(text.split("/"))
    if not 2 <= len(parts) <= 3 or not all(parts) or not all(p.replace("_", "").isalnum() for p in parts):
        raise ImageError(f"invalid platform {text!r} (want os/arch[/variant], e.g. linux/amd64)")
    return parts


def config_platform(config: dict) -> tuple:
    """The platform an image config says it is for: the one to ask an index for, again."""
    return tuple(p for p in (config.get("os"), config.get("architecture"), config.get("variant")) if p)


def host_variants(arch: str) -> list[str]:
    """The variants of ``arch`` this machine runs, best first, as containerd's
    platform matcher has them when a platform names none: for arm the CPU's own
    (v7, unless the kernel says armv6 or armv5) and then the older ones -- v7
    code dies on a v6 CPU; for arm64 v8, for amd64 v1; [] (any) for the rest."""
    if arch != "arm":
        return [_DEFAULT_VARIANT[arch]] if arch in _DEFAULT_VARIANT else []
    machine = os.uname().machine
    own = int(machine[4]) if machine[:4] == "armv" and machine[4:5] in ("5", "6", "7") else 7
    return [f"v{n}" for n in range(own, 4, -1)]


class Layer:
    """One layer of an image, as the manifest and config describe it.

    ``digest`` names the blob as stored (maybe compressed); ``diff_id`` names
    the uncompressed tar, and is what the store keys unpacked layers by.  A
    legacy docker archive (``<id>/layer.tar``) makes no claim about the blob's
    digest; then ``digest`` is None and only ``diff_id`` is checked.
    ``size`` is the blob's size in bytes, when the manifest says it.
    """

    __slots__ = ("digest", "media_type", "size", "diff_id")

    def __init__(self, digest, media_type, size, diff_id):
        self.digest, self.media_type, self.size, self.diff_id = digest, media_type, size, diff_id

    def _key(self):
        return (self.digest, self.media_type, self.size, self.diff_id)

    def __eq__(self, other):  # a value: two descriptions of one blob are one layer
        return type(other) is type(self) and other._key() == self._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"Layer({self.digest!r}, {self.media_type!r}, {self.size!r}, {self.diff_id!r})"


class Image:
    """An opened image: its config, its layers, and a way to read its blobs."""

    def __init__(self, source: str, blobs: "BlobSource", config: dict, id: str,
                 layers: list[Layer], manifest: dict, paths: dict[Layer, str], config_bytes: bytes = b""):
        self.source = source
        self.config = config
        self.config_bytes = config_bytes  # as stored: its sha256 is the id
        self.id = id  # sha256 of the config: docker's "IMAGE ID"
        self.layers = layers
        self.manifest = manifest
        self._blobs = blobs
        self._paths = paths
        self.tags: list[str] = []  # the names the archive gives the image, e.g. "busybox:latest"
        # (media type, bytes) of its manifest as it came, when it came with one (push sends it again)
        self.manifest_blob: tuple[str, bytes] | None = None
        self.remote = False  # its layers are downloads (pull.py), worth resuming

    def open_layer(self, layer: Layer, offset: int = 0):
        """The layer's blob, exactly as stored (still compressed, unchecked),
        from byte ``offset`` on."""
        return self._blobs.open(self._paths[layer], layer.digest or layer.diff_id, offset)

    def close(self) -> None:
        self._blobs.close()

    def __enter__(self) -> "Image":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Image {self.source} {len(self.layers)} layers>"


def open_image(path: str | os.PathLike, ref: str | None = None,
               platform: tuple[str, str] = HOST_PLATFORM) -> Image:
    """Open a docker archive, an OCI archive or an OCI layout directory.

    ``ref`` picks one image by tag when the file holds several.  Raises
    ImageError, naming the file and the problem, on anything unreadable,
    corrupt or unsafe.
    """
    source = os.fspath(path)
    is_dir = os.path.isdir(source)
    try:
        if is_dir:
            blobs: BlobSource = _DirBlobs(source)
        else:
            blobs = _TarBlobs(source)
    except OSError as e:
        raise ImageError(f"{source}: {e.strerror or e}") from None
    try:
        kept = None
        if blobs.exists("index.json"):
            (manifest, config, cdata, id, layers, paths), kept = _read_oci(blobs, ref, platform)
        elif blobs.exists("manifest.json"):
            manifest, config, cdata, id, layers, paths = _read_docker(blobs, ref)
        else:
            what = "directory" if is_dir else "archive"
            raise ImageError(f"{source}: not an image: {what} has neither index.json nor manifest.json")
        check_platform(source, config, platform)
        check_run_config(source, config)
        image = Image(source, blobs, config, id, layers, manifest, paths, cdata)
        image.tags = _tags(blobs, id)
        image.manifest_blob = kept
        return image
    except BaseException:
        blobs.close()
        raise


# --- where blobs come from: a directory or a tar file -------------------------

class BlobSource:
    source: str

    def exists(self, name: str) -> bool: ...
    def open(self, name: str, what: str, offset: int = 0): ...
    def close(self) -> None: ...

    def read(self, name: str, what: str, limit: int = MAX_JSON) -> bytes:
        with self.open(name, what) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{self.source}: {what}: larger than {limit} bytes")
        return data

    def read_json(self, name: str, what: str, digest: str | None = None,
                  size: int | None = None, want: type = dict) -> tuple:
        data = self.read(name, what)
        if digest is not None:
            check_digest(self.source, what, data, digest)
        if size is not None and len(data) != size:
            raise ImageError(f"{self.source}: {what}: size {len(data)} but descriptor says {size}")
        try:
            obj = lightjson.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ImageError(f"{self.source}: {what}: bad JSON: {e}") from None
        if not isinstance(obj, want):
            raise ImageError(f"{self.source}: {what}: not a JSON {'object' if want is dict else 'list'}")
        return obj, data


class _DirBlobs(BlobSource):
    def __init__(self, source: str):
        self.source = source

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.source, _clean(name)))

    def open(self, name: str, what: str, offset: int = 0):
        # _clean() resolves ".." against the layout's top, never above it.
        try:
            f = open(os.path.join(self.source, _clean(name)), "rb")
            f.seek(offset)
            return f
        except FileNotFoundError:
            raise ImageError(f"{self.source}: {what}: missing blob {name}") from None
        except OSError as e:
            raise ImageError(f"{self.source}: {what}: {name}: {e.strerror}") from None

    def close(self) -> None:
        pass


class _TarBlobs(BlobSource):
    """Blobs inside an (uncompressed) tar file, read in place, never extracted.

    The member table is read once (tarindex.py); a blob is then a window onto
    the file at the member's offset, so a layer is streamed straight from the
    archive.
    """

    def __init__(self, source: str):
        self.source = source
        self.fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            head = os.pread(self.fd, 4, 0)
            if head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd":
                raise ImageError(f"{source}: compressed image archive; decompress it first")
            if not head:
                raise ImageError(f"{source}: not a tar archive (empty file)")
            try:
                members = read_index(self.fd)
            except TarFormatError as e:
                if e.truncated:
                    raise ImageError(f"{source}: truncated archive ({e})") from None
                raise ImageError(f"{source}: not a tar archive ({e})") from None
            self.members = {_clean(m.name): m for m in members}
        except BaseException:
            os.close(self.fd)
            raise

    def _resolve(self, name: str, what: str):
        # skopeo's docker archives link legacy paths to the real files, so
        # follow links, but only inside the archive's own namespace.
        name = _clean(name)
        for _ in range(16):
            m = self.members.get(name)
            if m is None or m.type not in ("symlink", "hardlink"):
                return m
            if m.type == "symlink":
                name = _clean(posixpath.join(posixpath.dirname(name), m.linkname))
            else:
                name = _clean(m.linkname)
        raise ImageError(f"{self.source}: {what}: too many levels of links at {name}")

    def exists(self, name: str) -> bool:
        m = self._resolve(name, name)
        return m is not None and m.type == "file"

    def open(self, name: str, what: str, offset: int = 0):
        m = self._resolve(name, what)
        if m is None:
            raise ImageError(f"{self.source}: {what}: missing blob {name}")
        if m.type != "file":
            raise ImageError(f"{self.source}: {what}: {name} is not a regular file")
        # A descriptor of its own, so that two blobs can be read at once.
        return _Window(os.dup(self.fd), m.offset + min(offset, m.size), m.size - min(offset, m.size))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Window:
    """A read-only file object over bytes [offset, offset+size) of a file."""

    def __init__(self, fd: int, offset: int, size: int):
        self.fd = fd
        self.pos = offset
        self.end = offset + size

    def read(self, n: int = -1) -> bytes:
        left = self.end - self.pos
        if n is None or n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self.fd, n, self.pos)
        self.pos += len(data)
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _clean(name: str) -> str:
    """An archive member name in one canonical spelling ("./a//b" -> "a/b")."""
    name = posixpath.normpath("/" + name).lstrip("/")
    return name


# --- OCI: index.json -> (nested indexes) -> manifest -> config + layers ------------

def blob_path(source: str, digest: str, what: str) -> str:
    # A digest names a blob by its content.  Checking its form before using it
    # as part of a path is what keeps "sha256:../../etc/passwd" off the host.
    if not is_digest(digest):
        raise ImageError(f"{source}: {what}: invalid digest {digest!r} (want sha256:<64 hex digits>)")
    return "blobs/sha256/" + digest[7:]


def check_digest(source: str, what: str, data: bytes, digest: str) -> None:
    if "sha256:" + sha256(data).hexdigest() != digest:
        raise ImageError(f"{source}: {what}: digest mismatch")


def _descriptor(source: str, what: str, d) -> tuple[str, str, int | None]:
    if not isinstance(d, dict):
        raise ImageError(f"{source}: {what}: descriptor is not an object")
    digest = d.get("digest")
    blob_path(source, digest, what)
    size = d.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ImageError(f"{source}: {what}: bad size {size!r}")
    return d.get("mediaType", ""), digest, size


def _short(digest: str | None) -> str:
    return digest[:19] + "..." if digest else "?"


def _ref_names(d: dict) -> set[str]:
    ann = d.get("annotations") or {}
    names = {ann.get("org.opencontainers.image.ref.name"), ann.get("io.containerd.image.name")}
    names.discard(None)
    return names


def _tags(blobs: "BlobSource", config_digest: str) -> list[str]:
    """The image's names: docker's RepoTags, or an index entry's full image name.

    A bare OCI ``ref.name`` such as "latest" names a tag without a repository,
    so it is not a name on its own.
    """
    if blobs.exists("manifest.json"):
        try:
            entries, _ = blobs.read_json("manifest.json", "manifest.json", want=list)
        except ImageError:
            entries = []
        tags = [t for e in entries if isinstance(e, dict) and config_digest[7:] in str(e.get("Config"))
                for t in (e.get("RepoTags") or []) if isinstance(t, str)]
        if tags:
            return tags
    try:
        index, _ = blobs.read_json("index.json", "index.json")
    except ImageError:
        return []
    names = {n for e in index.get("manifests") or [] if isinstance(e, dict) for n in _ref_names(e)}
    return sorted(n for n in names if ":" in n or "/" in n)


def _ref_matches(ref: str, names: set[str]) -> bool:
    # "busybox:latest" matches a layout's bare "latest" tag, and the other way round.
    for n in names:
        if n == ref or n.rsplit(":", 1)[-1] == ref or ref.rsplit(":", 1)[-1] == n:
            return True
    return False


def _read_oci(blobs: BlobSource, ref: str | None, plat: tuple[str, str]):
    src = blobs.source
    index, data = blobs.read_json("index.json", "index.json")
    what, media, digest = "index.json", OCI_INDEX, None
    for depth in range(8):
        if media in INDEX_TYPES:
            d = pick_manifest(src, what, index, ref if depth == 0 else None, plat)
            media, digest, size = _descriptor(src, f"{what}: manifest", d)
            what = f"{'manifest list' if media in INDEX_TYPES else 'manifest'} {_short(digest)}"
            if media not in INDEX_TYPES | MANIFEST_TYPES:
                raise ImageError(f"{src}: {what}: unsupported media type {media!r}")
            index, data = blobs.read_json(blob_path(src, digest, what), what, digest, size)
            if index.get("mediaType") and index["mediaType"] != media:
                raise ImageError(f"{src}: {what}: media type {index['mediaType']!r} "
                                 f"but descriptor says {media!r}")
        else:
            break
    else:
        raise ImageError(f"{src}: indexes nested too deeply")
    return read_manifest(blobs, what, index), (media, data)


def pick_manifest(src: str, what: str, index: dict, ref: str | None, plat: tuple) -> dict:
    """The entry of ``index`` for platform ``plat`` ((os, arch) or (os, arch, variant))
    and, if given, named ``ref``.  Without a variant, the best one of
    ``host_variants`` (arm/v7 before arm/v6)."""
    entries = index.get("manifests")
    entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    if not entries:
        raise ImageError(f"{src}: {what}: no manifests")
    if ref is not None:
        entries = [e for e in entries if _ref_matches(ref, _ref_names(e))]
        if not entries:
            raise ImageError(f"{src}: no image named {ref!r}")

    def fits(e: dict) -> bool:
        p = e.get("platform")
        if not isinstance(p, dict):
            # Attestations (buildx) hide behind an "unknown/unknown" platform
            # or an annotation; an entry without a platform is the image.
            return (e.get("annotations") or {}).get("vnd.docker.reference.type") is None
        return (p.get("os"), p.get("architecture")) == plat[:2] and (
            len(plat) < 3 or p.get("variant") in (None, plat[2]))

    good = [e for e in entries if fits(e)]
    ladder = host_variants(plat[1]) if len(plat) < 3 else []
    if ladder:  # no variant asked for: the best one this machine runs
        def rank(e: dict) -> int:
            p = e.get("platform")
            variant = (p.get("variant") or _DEFAULT_VARIANT[plat[1]]) if isinstance(p, dict) else ladder[0]
            return ladder.index(variant) if variant in ladder else len(ladder)
        best = min(map(rank, good), default=len(ladder))
        good = [e for e in good if rank(e) == best < len(ladder)]
    if not good:
        have = sorted({f"{(e.get('platform') or {}).get('os')}/{(e.get('platform') or {}).get('architecture')}"
                       for e in entries})
        raise ImageError(f"{src}: no {'/'.join(plat)} image (has {', '.join(have)})")
    if len({e.get("digest") for e in good}) > 1:
        names = sorted(n for e in good for n in _ref_names(e)) or [str(len(good))]
        raise ImageError(f"{src}: holds several images ({', '.join(names)}); name one")
    return good[0]


def read_manifest(blobs: BlobSource, what: str, manifest: dict):
    src = blobs.source
    media, cdigest, csize = _descriptor(src, f"{what}: config", manifest.get("config"))
    if media not in CONFIG_TYPES:
        raise ImageError(f"{src}: {what}: config has unsupported media type {media!r}")
    cwhat = f"config {_short(cdigest)}"
    config, cdata = blobs.read_json(blob_path(src, cdigest, cwhat), cwhat, cdigest, csize)
    diff_ids = _diff_ids(src, config)
    descs = manifest.get("layers")
    if not isinstance(descs, list):
        raise ImageError(f"{src}: {what}: no layer list")
    if len(descs) != len(diff_ids):
        raise ImageError(f"{src}: {what}: {len(descs)} layers but config lists {len(diff_ids)} diff_ids")
    layers, paths = [], {}
    for d, diff_id in zip(descs, diff_ids):
        media, digest, size = _descriptor(src, f"{what}: layer", d)
        if media not in LAYER_TYPES:
            raise ImageError(f"{src}: layer {_short(digest)}: unsupported media type {media!r}")
        layer = Layer(digest, media, size, diff_id)
        path = blob_path(src, digest, "layer")
        if not blobs.exists(path):
            raise ImageError(f"{src}: layer {_short(digest)}: missing blob {path}")
        layers.append(layer)
        paths[layer] = path
    return manifest, config, cdata, cdigest, layers, paths


def _diff_ids(src: str, config: dict) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        raise ImageError(f"{src}: config has no rootfs.diff_ids")
    for i in ids:
        blob_path(src, i, "config: diff_id")
    return ids


def check_platform(src: str, config: dict, plat: tuple) -> None:
    have = (config.get("os"), config.get("architecture"))
    if have != plat[:2] and have != (None, None):
        raise ImageError(f"{src}: image is for {have[0]}/{have[1]}, not {plat[0]}/{plat[1]}")


# What to run, and the JSON type docker reads each field as: an image whose
# config does not fit them is refused whole (docker load fails to unmarshal it),
# so that later steps never meet a string where a list belongs ("Cmd": "true"
# would otherwise run as "t").
_STRING, _STRINGS, _MAP = "a string", "a list of strings", "an object"
_RUN_FIELDS = {"User": _STRING, "WorkingDir": _STRING, "StopSignal": _STRING, "Env": _STRINGS,
               "Entrypoint": _STRINGS, "Cmd": _STRINGS, "Shell": _STRINGS, "OnBuild": _STRINGS,
               "Labels": _MAP, "ExposedPorts": _MAP, "Volumes": _MAP}


def check_run_config(src: str, config: dict) -> None:
    """Refuse (ImageError) an image config whose run fields have the wrong types."""
    run = config.get("config")
    if run is None:
        return
    if not isinstance(run, dict):
        raise ImageError(f"{src}: config: \"config\" must be an object, got {_shown(run)}")
    for field, want in _RUN_FIELDS.items():
        value = run.get(field)
        if value is None:
            continue
        if want is _STRING:
            items = [value] if isinstance(value, str) else None
        elif want is _STRINGS:
            items = value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None
        else:  # Labels map to strings; ExposedPorts and Volumes to (empty) objects
            item = str if field == "Labels" else dict
            ok = isinstance(value, dict) and all(isinstance(v, item) for v in value.values())
            items = list(value) if ok else None
        if items is None:
            raise ImageError(f"{src}: config: {field} must be {want}, got {_shown(value)}")
        if any("\0" in v for v in items):
            raise ImageError(f"{src}: config: {field} holds a NUL byte")


def _shown(value) -> str:
    """A JSON value as a short piece of text for a message (a list or object unopened:
    it may nest as deep as the parser allowed)."""
    if isinstance(value, (list, dict)):
        return "[...]" if isinstance(value, list) else "{...}"
    text = lightjson.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- docker save (legacy form): manifest.json names files by path ----------------

def _digest_in_name(path):
    """The digest a docker-save member's name claims (``<hex>.json``, ``<hex>.tar``,
    ``blobs/sha256/<hex>``), or None (the legacy ``<id>/layer.tar``: no digest)."""
    stem, dot, ext = path.removeprefix("blobs/sha256/").partition(".")
    if is_hex_digest(stem) and ext in (("tar", "json") if dot else ("",)):
        return "sha256:" + stem
    return None


def _read_docker(blobs: BlobSource, ref: str | None):
    src = blobs.source
    entries, _ = blobs.read_json("manifest.json", "manifest.json", want=list)
    if not entries or not all(isinstance(e, dict) for e in entries):
        raise ImageError(f"{src}: manifest.json: not a list of images")
    if ref is not None:
        entries = [e for e in entries if _ref_matches(ref, set(e.get("RepoTags") or []))]
        if not entries:
            raise ImageError(f"{src}: no image named {ref!r}")
    if len(entries) > 1:
        names = sorted(t for e in entries for t in (e.get("RepoTags") or [])) or [str(len(entries))]
        raise ImageError(f"{src}: holds several images ({', '.join(names)}); name one")
    entry = entries[0]
    cpath = entry.get("Config")
    if not isinstance(cpath, str):
        raise ImageError(f"{src}: manifest.json: no Config")
    # Docker names the config file by its own digest: that is the claim we check.
    config, cdata = blobs.read_json(cpath, "config", _digest_in_name(_clean(cpath)))
    diff_ids = _diff_ids(src, config)
    lpaths = entry.get("Layers")
    if not isinstance(lpaths, list) or not all(isinstance(p, str) for p in lpaths):
        raise ImageError(f"{src}: manifest.json: no Layers list")
    if len(lpaths) != len(diff_ids):
        raise ImageError(f"{src}: manifest.json: {len(lpaths)} layers but config lists {len(diff_ids)} diff_ids")
    sources = entry.get("LayerSources") or {}
    layers, paths = [], {}
    for lpath, diff_id in zip(lpaths, diff_ids):
        digest = _digest_in_name(_clean(lpath))
        media = DOCKER_LAYER
        if digest in sources and isinstance(sources[digest], dict):
            media = sources[digest].get("mediaType", media)
        layer = Layer(digest, media, None, diff_id)
        if not blobs.exists(lpath):
            raise ImageError(f"{src}: layer {_short(digest or diff_id)}: missing blob {lpath}")
        layers.append(layer)
        paths[layer] = lpath
    id = "sha256:" + sha256(cdata).hexdigest()
    return {"schemaVersion": 1, "docker": entry}, config, cdata, id, layers, paths
