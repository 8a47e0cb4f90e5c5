"""Writing images: a directory tree becomes a layer, layers become an image.

Lecture idea: "Create a DockerFile ... run a docker build to turn your
configuration into an image".  Under the build tool, an image is made of
three plain steps, which this module does without docker:

1. tar up a root filesystem -> a layer (its sha256 is the ``diff_id``),
   maybe compress it -> a blob (its sha256 is the layer's ``digest``);
2. write a config (what to run, and the list of diff_ids) and a manifest
   (the config's and the layers' digests) as blobs;
3. point at the manifest from ``index.json`` (an OCI layout), then maybe pack
   the layout in a tar (an OCI archive) or add docker's ``manifest.json``
   (a docker archive, the form ``docker load`` reads).

Output is deterministic: members are sorted, owners and times can be fixed,
and gzip headers carry no timestamp, so the same tree gives the same digests.

Read ``write_image`` first.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

from minirt.image.formats import HOST_PLATFORM, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST

LAYER_MEDIA = {
    None: "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
EPOCH = "1970-01-01T00:00:00Z"


# --- step 1: a tree becomes a layer ------------------------------------------------

def tar_tree(root: str | os.PathLike, out, *, mtime: int | None = None,
             owner: tuple[int, int] | None = None, clamp: int | None = None, ids=None) -> None:
    """Write the tree under ``root`` to the file ``out`` as a layer tar.

    ``mtime`` replaces every timestamp, ``owner`` every uid/gid; ``clamp``
    lowers later timestamps to it (SOURCE_DATE_EPOCH: a rebuild on another
    day gives the same bytes); ``ids(path, stat)`` gives each file's (uid, gid)
    when the disk cannot say (a build without root).  overlayfs
    whiteouts in the tree (0/0 character devices, opaque xattrs) are written
    as the OCI ``.wh.`` members they stand for, so an overlay's upper
    directory becomes a proper layer.
    """
    root = os.fspath(root)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _tar_dir(tar, root, "", mtime, owner, clamp, ids)


def _tar_dir(tar: tarfile.TarFile, root: str, rel: str, mtime, owner, clamp=None, ids=None) -> None:
    path = os.path.join(root, rel) if rel else root
    for name in sorted(os.listdir(path)):
        arc = f"{rel}/{name}" if rel else name
        full = os.path.join(root, arc)
        st = os.lstat(full)
        when = int(st.st_mtime) if mtime is None else mtime
        when = min(when, clamp) if clamp is not None else when
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            ti = tarfile.TarInfo(_whiteout(arc))  # an overlay whiteout
            ti.mtime = when
            tar.addfile(ti)
            continue
        ti = tar.gettarinfo(full, arc)
        if ti is None:
            continue  # a socket: not something a layer can hold
        ti.uname = ti.gname = ""
        ti.mtime = when
        if owner is not None:
            ti.uid, ti.gid = owner
        elif ids is not None:
            ti.uid, ti.gid = ids(full, st)
        opaque = False
        for key in os.listxattr(full, follow_symlinks=False):
            value = os.getxattr(full, key, follow_symlinks=False)
            if key in ("trusted.overlay.opaque", "user.overlay.opaque"):
                opaque = value == b"y"
            elif not key.startswith(("trusted.overlay.", "user.overlay.")):
                ti.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        if ti.isreg():
            with open(full, "rb") as f:
                tar.addfile(ti, f)
        else:
            tar.addfile(ti)
        if ti.isdir():
            if opaque:
                o = tarfile.TarInfo(arc + "/.wh..wh..opq")
                o.mtime = ti.mtime
                tar.addfile(o)
            _tar_dir(tar, root, arc, mtime, owner, clamp, ids)


def _whiteout(arc: str) -> str:
    head, _, name = arc.rpartition("/")
    return f"{head}/.wh.{name}" if head else f".wh.{name}"


class _HashingWriter:
    def __init__(self, out):
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


# --- steps 2 and 3: blobs in an OCI layout -------------------------------------------

class Layout:
    """An OCI layout directory being written: ``oci-layout``, blobs, ``index.json``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.blobs = self.path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def add_blob(self, data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (self.blobs / digest[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_json(self, obj, media_type: str) -> dict:
        return self.add_blob(json.dumps(obj, indent=None, separators=(",", ":")).encode(), media_type)

    def add_layer(self, source, compression: str | None = None, *, mtime: int | None = None,
                  owner: tuple[int, int] | None = None, clamp: int | None = None, ids=None) -> tuple[dict, str]:
        """Add a layer from a directory tree, or from the bytes of a tar.

        Returns the layer's descriptor and its diff_id.
        """
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the blob from other users
        try:
            with os.fdopen(fd, "wb") as f:
                blob = _HashingWriter(f)
                if compression == "gzip":
                    z = gzip.GzipFile(fileobj=blob, mode="wb", mtime=0, compresslevel=6)
                elif compression == "zstd":
                    import zstandard
                    z = zstandard.ZstdCompressor(level=3).stream_writer(blob, closefd=False)
                elif compression is None:
                    z = None
                else:
                    raise ValueError(f"unknown compression {compression!r}")
                tar = _HashingWriter(z or blob)
                if isinstance(source, (bytes, bytearray)):
                    tar.write(source)
                else:
                    tar_tree(source, tar, mtime=mtime, owner=owner, clamp=clamp, ids=ids)
                if z is not None:
                    z.close()
            os.rename(tmp, self.blobs / blob.digest[7:])
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        desc = {"mediaType": LAYER_MEDIA[compression], "digest": blob.digest, "size": blob.size}
        return desc, tar.digest

    def add_image(self, layers: list[tuple[dict, str]], config: dict | None = None, *,
                  platform: tuple[str, str] = HOST_PLATFORM, tag: str | None = None,
                  index: bool = True) -> tuple[dict, dict]:
        """Write config and manifest for ``layers``.

        Returns the descriptors of the manifest and of the config; with
        ``index``, ``index.json`` points at this manifest alone.
        """
        image_config = {
            "created": EPOCH,
            "architecture": platform[1],
            "os": platform[0],
            "config": dict(config or {}),
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
            "history": [{"created": EPOCH, "created_by": "minirt.image.write"} for _ in layers],
        }
        cdesc = self.add_json(image_config, OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc,
                    "layers": [d for d, _ in layers]}
        mdesc = self.add_json(manifest, OCI_MANIFEST)
        mdesc["platform"] = {"architecture": platform[1], "os": platform[0]}
        if tag:
            mdesc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        if index:
            self.write_index([mdesc])
        return mdesc, cdesc

    def write_index(self, descriptors: list[dict]) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        (self.path / "index.json").write_text(json.dumps(index, indent=2))


def write_image(out: str | os.PathLike, layers: list, *, form: str = "docker",
                config: dict | None = None, tag: str | None = None,
                compression: str | None = None, mtime: int | None = None,
                owner: tuple[int, int] | None = None,
                platform: tuple[str, str] = HOST_PLATFORM) -> Path:
    """Write an image whose layers (bottom first) are trees or tar bytes.

    ``form``: "docker" (a ``docker save`` archive that is also an OCI
    layout), "oci-archive" or "oci-layout" (a directory).
    """
    out = Path(out)
    if form == "oci-layout":
        layout = Layout(out)
        descs = [layout.add_layer(s, compression, mtime=mtime, owner=owner) for s in layers]
        layout.add_image(descs, config, platform=platform, tag=tag or "latest")
        return out
    if form not in ("docker", "oci-archive"):
        raise ValueError(f"unknown image form {form!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        layout = Layout(work)
        descs = [layout.add_layer(s, compression, mtime=mtime, owner=owner) for s in layers]
        if form == "docker":
            tag = tag or "latest:latest"
            m, c = layout.add_image(descs, config, platform=platform, index=False)
            m["annotations"] = {"io.containerd.image.name": tag,
                                "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[-1]}
            layout.write_index([m])
            # docker's own manifest.json: the same blobs, named by path.  Any
            # docker (old or new) loads this; new ones also read index.json.
            entry = {"Config": "blobs/sha256/" + c["digest"][7:],
                     "RepoTags": [tag],
                     "Layers": ["blobs/sha256/" + d["digest"][7:] for d, _ in descs]}
            (work / "manifest.json").write_text(json.dumps([entry]))
        else:
            layout.add_image(descs, config, platform=platform, tag=tag or "latest")
        tar_archive(work, out)
    finally:
        shutil.rmtree(work)
    return out


def tar_archive(src: Path, out: Path) -> None:
    """Pack a directory as an image archive: sorted, root-owned, timeless."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                arc = os.path.relpath(full, src)
                if os.path.basename(arc).startswith(".tmp-"):
                    continue
                ti = _plain(tar.gettarinfo(full, arc))
                if ti.isreg():
                    with open(full, "rb") as data:
                        tar.addfile(ti, data)
                else:
                    tar.addfile(ti)
    os.rename(tmp, out)


def _plain(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    """An archive member as image archives have them: root's, timeless, 0755/0644."""
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = 0
    ti.mode = 0o755 if ti.isdir() else 0o644
    return ti


# --- stored blobs become an archive again (``minirt save``) -------------------------

OCI_LAYER_MEDIA = {"tar": LAYER_MEDIA[None], "gzip": LAYER_MEDIA["gzip"], "zstd": LAYER_MEDIA["zstd"]}


def stored_manifest(config: tuple[str, str], layers: list[tuple[str, str]]) -> bytes:
    """An OCI manifest for a config and layers kept as blobs, each (digest, path of
    the blob); each layer's media type from its bytes.  The same blobs always
    give the same bytes, so the same manifest digest."""
    from minirt.image.stream import sniff

    descriptors = []
    for digest, path in layers:
        with open(path, "rb") as f:
            media = OCI_LAYER_MEDIA[sniff(f.read(4))]
        descriptors.append({"mediaType": media, "digest": digest, "size": os.path.getsize(path)})
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": descriptors,
                       "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": os.path.getsize(config[1])}},
                      separators=(",", ":")).encode()


def write_archive(out, images: list[dict], form: str = "docker-archive") -> None:
    """Write ``images`` to the file object ``out`` as one tar stream: a
    docker-archive (``docker save``'s layout: ``manifest.json`` and an OCI
    layout) or an oci-archive.  Each image is a dict: ``config`` and
    ``layers``, as (digest, path of the blob) with the blobs copied unchanged,
    so that every digest (the image id too) is the one the image had;
    ``tags``, its names; ``platform``, (os, architecture).  Only the manifest
    and the index are new, written as OCI's (``stored_manifest``).
    """
    blobs, descriptors, entries = {}, [], []
    for image in images:
        cdigest, cpath = image["config"]
        blobs[cdigest] = cpath
        blobs.update(image["layers"])
        manifest = stored_manifest(image["config"], image["layers"])
        mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        blobs[mdigest] = manifest
        desc = {"mediaType": OCI_MANIFEST, "digest": mdigest, "size": len(manifest),
                "platform": {"os": image["platform"][0], "architecture": image["platform"][1]}}
        for tag in image["tags"] or [None]:
            names = {} if tag is None else {"org.opencontainers.image.ref.name": tag} if form == "oci-archive" \
                else {"io.containerd.image.name": tag, "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1]}
            descriptors.append(dict(desc, annotations=names) if names else desc)
        entries.append({"Config": "blobs/sha256/" + cdigest[7:], "RepoTags": image["tags"] or None,
                        "Layers": ["blobs/sha256/" + d[7:] for d, _ in image["layers"]]})
    files = {"index.json": {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors},
             "oci-layout": {"imageLayoutVersion": "1.0.0"}}
    if form == "docker-archive":
        files["manifest.json"] = entries
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in ("blobs", "blobs/sha256"):
            tar.addfile(_dir(name))
        for digest in sorted(blobs):
            source = blobs[digest]
            if isinstance(source, bytes):
                _add_bytes(tar, "blobs/sha256/" + digest[7:], source)
            else:
                with open(source, "rb") as f:
                    ti = _plain(tarfile.TarInfo("blobs/sha256/" + digest[7:]))
                    ti.size = os.fstat(f.fileno()).st_size
                    tar.addfile(ti, f)
        for name in sorted(files):
            _add_bytes(tar, name, json.dumps(files[name], separators=(",", ":")).encode())


def _dir(name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    return _plain(ti)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    ti = _plain(tarfile.TarInfo(name))
    ti.size = len(data)
    tar.addfile(ti, io.BytesIO(data))
