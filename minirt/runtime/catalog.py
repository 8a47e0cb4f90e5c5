"""The image catalog: ``minirt load``, ``pull``, ``push``, ``images``, ``rmi``, ``tag``, ``image prune``.

Lecture idea: an image name such as ``busybox:latest`` is only a pointer to an
image id (the digest of its config), and an image is only a config plus a list
of layers.  Loading an archive unpacks its layers into the shared store and
records the config and the layer list under ``images/<id>.json``; the tags live
in ``images/tags.json``; a pulled image records where it came from as well
(``repo_digests``: ``name@sha256:...`` of its manifest).  Running
``busybox:latest`` then needs no archive.
Tagging adds a pointer; ``rmi`` takes one away, and deletes the image with its
last name, unless a container still runs on it.  The blobs the image came in
are kept too (``image/store.py``), with the manifest it came with, so that
``minirt save`` and ``push`` can give it back with the same digests.

What a name may be and how it is completed (``busybox`` is
``docker.io/library/busybox:latest``, kept and shown as ``busybox:latest``) is
decided by ``image/reference.py`` alone, for every command: load, pull, tag,
rmi, save, run.
"""

import itertools
import os
import time

from minirt.digests import is_digest, sha256
from minirt.errors import ImageError, MinirtError
from minirt.image.reference import parse, parse_optional
from minirt.image.store import blob_path, keep_blob, release
from minirt.runtime import lifecycle, state

_loads = itertools.count()


def check_name(text):
    """The name ``text`` gives an image, as the catalog keeps it: docker's
    familiar form (``busybox:latest``); ImageError in docker's words if it is none."""
    ref = parse(text)
    if ref.digest:
        raise ImageError(f"invalid reference format: {text!r}: a tag cannot name a digest")
    return ref.familiar


def _name(text):
    """The tag ``text`` may be looked up by, or None (a digest, an id, a path)."""
    ref = parse_optional(text)
    return ref.familiar if ref is not None and ref.digest is None else None


class Catalog:
    def __init__(self, root):
        self.dir = os.path.join(root, "images")
        self.tags_file = os.path.join(self.dir, "tags.json")

    def _tags(self):
        try:
            return state.read_json(self.tags_file)
        except FileNotFoundError:
            return {}

    def load(self, path, store, tags=()):
        """Unpack the image at ``path`` into ``store``, keep its blobs, and name
        it. Returns (id, tags)."""
        from minirt.image import open_image

        with open_image(path) as img:
            names = [check_name(t) for t in (list(tags) or list(getattr(img, "tags", None) or []))]
            self._add(img, store, names, source=os.path.abspath(path))
        return img.id, names

    def pull(self, ref, store, *, platform=None, insecure=(), report=None, on_bytes=None, workers=4):
        """Pull ``ref`` (a reference.Reference) from its registry into ``store``
        and name it.  Returns (image, whether anything was new)."""
        from minirt.image.formats import HOST_PLATFORM
        from minirt.image.pull import connect, open_remote

        with open_remote(ref, connect(ref, insecure), platform or HOST_PLATFORM, on_bytes) as img:
            known = self.lookup(img.id) is not None and all(store.has(layer.diff_id) for layer in img.layers)
            new = self._add(img, store, [] if ref.digest else [ref.familiar],
                            source=f"{ref.repository}@{img.digest}", workers=workers, report=report)
        return img, new or not known

    def _add(self, img, store, names, source, **unpack):
        """Unpack ``img``'s layers, keep its blobs, and record it under ``names``;
        True if a tag moved."""
        import io

        lease = f"load-{os.getpid()}-{next(_loads)}"  # until the entry names its layers and blobs
        diff_ids = [layer.diff_id for layer in img.layers]
        media, manifest = img.manifest_blob or (None, None)
        mdigest = manifest and "sha256:" + sha256(manifest).hexdigest()
        try:
            store.lease(lease, diff_ids + [img.id] + [layer.digest for layer in img.layers if layer.digest]
                        + [mdigest] * bool(manifest))
            store.unpack(img, keep_blobs=True, **unpack)
            keep_blob(store.root, io.BytesIO(img.config_bytes), img.id, f"{img.source}: config")
            blobs = []
            for layer in img.layers:  # kept by the unpack, unless the layer was there already
                digest, size = self._keep(store.root, img, layer)
                blobs.append({"mediaType": layer.media_type, "digest": digest, "size": size})
            entry = {"id": img.id, "config": img.config, "source": source, "layers": diff_ids,
                     "blobs": blobs, "config_size": len(img.config_bytes), "loaded_at": time.time()}
            if manifest:  # as it came: push sends it again, so the image keeps its digest
                keep_blob(store.root, io.BytesIO(manifest), mdigest, f"{img.source}: manifest")
                entry["manifest"] = {"mediaType": media, "digest": mdigest, "size": len(manifest)}
            path = os.path.join(self.dir, img.id.split(":", 1)[1] + ".json")
            pulled = self._repo_digests(path, source if getattr(img, "digest", None) else None)
            if pulled:
                entry["repo_digests"] = pulled
            os.makedirs(self.dir, exist_ok=True)
            state.write_json(path, entry)
        finally:
            release(lease)
        with state.locked(self.dir, ".lock"):
            table = self._tags()
            moved = any(table.get(name) != img.id for name in names)
            for name in names:
                table[name] = img.id
            state.write_json(self.tags_file, table)
        return moved

    @staticmethod
    def _repo_digests(path, pinned):
        """Every ``repo@digest`` the image was pulled as, ``pinned`` (or None)
        first: one a repository, as docker keeps them."""
        try:
            kept = state.read_json(path).get("repo_digests") or []
        except (OSError, ValueError, AttributeError):
            kept = []
        if pinned is None:
            return kept
        return [pinned] + [d for d in kept if d.split("@")[0] != pinned.split("@")[0]]

    @staticmethod
    def _keep(root, img, layer):
        if layer.digest and os.path.isfile(blob_path(root, layer.digest)):
            return layer.digest, os.path.getsize(blob_path(root, layer.digest))  # not fetched again
        with img.open_layer(layer) as blob:
            return keep_blob(root, blob, layer.digest, f"{img.source}: layer")

    def names(self, image_id):
        return sorted(t for t, i in self._tags().items() if i == image_id)

    def tag(self, source, target):
        """Name the image ``source`` names ``target`` too (moved from another
        image, if it named one). Returns the full name."""
        name = check_name(target)
        entry = self.lookup(source)
        if entry is None:
            raise ImageError(f"no such image: {source}")
        with state.locked(self.dir, ".lock"):
            table = self._tags()
            table[name] = entry["id"]
            state.write_json(self.tags_file, table)
        return name

    def lookup(self, ref):
        """The catalog entry for a tag or an image id (prefix), or None."""
        table = self._tags()
        image_id = table.get(_name(ref)) or self._by_digest(ref)
        if image_id is None:
            hexid = ref.split(":", 1)[-1].lower()
            matches = [f[:-5] for f in self._files() if f.startswith(hexid)] if len(hexid) >= 4 else []
            if len(matches) != 1:
                return None
            image_id = "sha256:" + matches[0]
        try:
            return self._read(image_id.split(":", 1)[1] + ".json")
        except FileNotFoundError:
            return None

    def _by_digest(self, ref):
        """The id of the image pulled as ``name@sha256:...``, or None."""
        parsed = parse_optional(ref)
        if parsed is None or parsed.digest is None:
            return None
        pinned = f"{parsed.repository}@{parsed.digest}"
        return next((e["id"] for _, e in self.list() if pinned in e.get("repo_digests", ())), None)

    def _read(self, name):
        """A catalog entry, checked as its image was when loaded: it may have been
        written by an older minirt or by hand, and the run trusts its config."""
        from minirt.digests import is_digest
        from minirt.image.formats import check_run_config

        path = os.path.join(self.dir, name)
        try:
            entry = state.read_json(path)
            if not isinstance(entry, dict) or not is_digest(entry.get("id")):
                raise ImageError("no image id")
            layers = entry.get("layers")
            if not isinstance(layers, list) or not all(is_digest(d) for d in layers):
                raise ImageError("layers must be a list of digests")
            if not isinstance(entry.get("config"), dict):
                raise ImageError("config must be an object")
            blobs = entry.get("blobs", layers)  # none: loaded by an older minirt
            if not isinstance(blobs, list) or len(blobs) != len(layers) or not all(
                    isinstance(b, dict) and is_digest(b.get("digest")) and type(b.get("size")) is int
                    for b in entry.get("blobs", [])):
                raise ImageError("blobs must be a list of descriptors, one a layer")
            check_run_config("config", entry["config"])
        except (ImageError, ValueError) as e:
            raise ImageError(f"{path}: damaged catalog entry ({e}); load the image again") from None
        return entry

    def _files(self):
        try:
            return [f for f in os.listdir(self.dir) if f.endswith(".json") and f != "tags.json"]
        except FileNotFoundError:
            return []

    def list(self):
        """[(tags, entry)] for every loaded image, newest first."""
        table = self._tags()
        out = []
        for f in self._files():
            entry = self._read(f)
            out.append((sorted(t for t, i in table.items() if i == entry["id"]), entry))
        out.sort(key=lambda te: (-(te[1].get("loaded_at") or 0), te[1]["id"]))
        return out

    def remove(self, ref, users, force=False):
        """Untag ``ref`` (a name; an id: every name); delete the image with its
        last name.  ``users`` maps image ids to [(container id, running)] of the
        containers that run on it: they stop it, unless forced (not a running
        one: its layers stay anyway, held by the container).  Returns docker's lines."""
        entry = self.lookup(ref)
        if entry is None:
            raise ImageError(f"no such image: {ref}")
        image_id, short = entry["id"], entry["id"][7:19]
        with state.locked(self.dir, ".lock"):
            table = self._tags()
            names = [t for t, i in table.items() if i == image_id]
            by_name = table.get(_name(ref)) == image_id
            untag = [_name(ref)] if by_name else names
            if not by_name and len(names) > 1 and not force:
                raise ImageError(f"conflict: unable to delete {short} (must be forced)"
                                 " - image is referenced in multiple repositories")
            last = len(untag) == len(names)
            for cid, running in users.get(image_id, []) if last else []:
                if by_name and not force:
                    raise ImageError(f'conflict: unable to remove repository reference "{untag[0]}" (must force)'
                                     f" - container {cid[:12]} is using its referenced image {short}")
                if running or not force:
                    raise ImageError(f"conflict: unable to delete {short} ({'cannot' if running else 'must'}"
                                     f" be forced) - image is being used by {'running' if running else 'stopped'}"
                                     f" container {cid[:12]}")
            for name in untag:
                del table[name]
            done = [f"Untagged: {name}" for name in untag]
            if last:
                os.unlink(os.path.join(self.dir, image_id.split(":", 1)[1] + ".json"))
                done.append(f"Deleted: {image_id}")
            state.write_json(self.tags_file, table)
        return done

    def _kept(self, ref, root):
        """The entry of the image ``ref`` names and the paths of its config's
        and layers' blobs (in that order), which must all be in the store."""
        entry = self.lookup(ref)
        if entry is None:
            raise ImageError(f"no such image: {ref}")
        if "blobs" not in entry:
            raise ImageError(f"{ref}: loaded by an older minirt, which kept no blobs; load it again")
        paths = [blob_path(root, d) for d in [entry["id"]] + [b["digest"] for b in entry["blobs"]]]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise ImageError(f"{ref}: blob {missing[0]} is missing from the store; load the image again")
        return entry, paths

    def saved(self, refs, root):
        """What ``write.write_archive`` needs to save the images ``refs`` name:
        one dict per image, with the names given (an id names none)."""
        images = {}
        for ref in refs:
            entry, paths = self._kept(ref, root)
            image = images.setdefault(entry["id"], {
                "config": (entry["id"], paths[0]), "tags": [],
                "layers": [(b["digest"], p) for b, p in zip(entry["blobs"], paths[1:])],
                "platform": (entry["config"].get("os") or "linux", entry["config"].get("architecture") or "")})
            name = _name(ref)
            if self._tags().get(name) == entry["id"] and name not in image["tags"]:
                image["tags"].append(name)
        return list(images.values())

    def pushed(self, name, root):
        """What ``push.push`` sends for the image the tag ``name`` names: its
        entry, its manifest (media type, bytes) -- the one it came with, or,
        if it came with none, one written from its blobs, the same every time --
        the path of each blob by digest, and the repositories each blob is known
        to be in (any image's RepoDigests), to mount it from."""
        from minirt.image.formats import OCI_MANIFEST
        from minirt.image.write import stored_manifest

        entry, paths = self._kept(name, root)
        layers = [(b["digest"], path) for b, path in zip(entry["blobs"], paths[1:])]
        kept = entry.get("manifest")
        if isinstance(kept, dict) and is_digest(kept.get("digest")) and os.path.isfile(blob_path(root, kept["digest"])):
            with open(blob_path(root, kept["digest"]), "rb") as f:
                media, manifest = kept.get("mediaType"), f.read()
            if "sha256:" + sha256(manifest).hexdigest() != kept["digest"]:
                raise ImageError(f"{name}: its manifest {kept['digest'][:19]}... is damaged in the store;"
                                 " pull or load the image again")
        else:
            media, manifest = OCI_MANIFEST, stored_manifest((entry["id"], paths[0]), layers)
        sources = {}
        for _, other in self.list():
            repos = [d.split("@")[0] for d in other.get("repo_digests") or ()]
            for digest in [other["id"]] + [b["digest"] for b in other.get("blobs") or ()]:
                sources.setdefault(digest, []).extend(r for r in repos if r not in sources[digest])
        return entry, media, manifest, dict([(entry["id"], paths[0])] + layers), sources

    def record_push(self, image_id, pinned):
        """Remember that the image went up as ``pinned`` (``repo@digest``): docker
        shows it in RepoDigests, and a later push to the same registry mounts from it."""
        path = os.path.join(self.dir, image_id.split(":", 1)[1] + ".json")
        with state.locked(self.dir, ".lock"):
            entry = state.read_json(path)
            entry["repo_digests"] = self._repo_digests(path, pinned)
            state.write_json(path, entry)

    def in_use(self):
        """The layers and blobs (hex digests) that loaded images record."""
        used = set()
        for _, entry in self.list():
            used.update(d.split(":")[-1] for d in entry["layers"] + [entry["id"]])
            used.update(b["digest"].split(":")[-1] for b in (entry.get("blobs") or []) + [entry.get("manifest")] if b)
        return used


def repo_digests(entry):
    """Where a pulled image came from, as docker shows it: ``busybox@sha256:...``."""
    pinned = [parse_optional(d) for d in entry.get("repo_digests") or ()]
    return [f"{r.familiar_repository}@{r.digest}" for r in pinned if r is not None and r.digest]


def users(root, catalog):
    """{image id: [(container id, running)]}: a container uses the image whose
    layers it runs on (whatever name it was run by, or a path to the same image)."""
    by_layers = {tuple(d.split(":")[-1] for d in entry["layers"]): entry["id"] for _, entry in catalog.list()}
    found = {}
    for cid in state.container_ids(root):
        try:
            config = state.read_json(f"{state.containers_dir(root)}/{cid}/config.json")
            layers = tuple(os.path.basename(layer) for layer in config.get("layers") or ())
            running = lifecycle.is_up(state.load(root, cid))
        except (OSError, ValueError, AttributeError, TypeError, MinirtError):
            continue
        if layers in by_layers:
            found.setdefault(by_layers[layers], []).append((cid, running))
    return found
