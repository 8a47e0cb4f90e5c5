"""Named images: ``minirt load``, ``minirt images``, ``minirt rmi``.

Lecture idea: an image name such as ``busybox:latest`` is only a pointer to an
image id (the digest of its config), and an image is only a config plus a list
of layers.  Loading an archive unpacks its layers into the shared store and
records the config and the layer list under ``images/<id>.json``; the tags live
in ``images/tags.json``.  Running ``busybox:latest`` then needs no archive.
"""

import itertools
import os
import time

from minirt.errors import ImageError
from minirt.image.store import release
from minirt.runtime import state

_loads = itertools.count()


def _normalize(tag):
    """A tag as the catalog keeps it: docker's familiar form (``alpine:latest`` for
    ``alpine`` or ``docker.io/library/alpine``); a name that is no reference as it was."""
    from minirt.image.reference import parse_optional

    ref = parse_optional(tag)
    if ref is not None and ref.digest is None:
        return ref.familiar
    name, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    return f"{name}:{version}"


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
        """Unpack the image at ``path`` into ``store`` and name it. Returns (id, tags)."""
        from minirt.image import open_image

        with open_image(path) as img:
            names = [_normalize(t) for t in (list(tags) or list(getattr(img, "tags", None) or []))]
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
        """Unpack ``img``'s layers and record it under ``names``; True if a tag moved."""
        lease = f"load-{os.getpid()}-{next(_loads)}"  # until the entry names its layers
        diff_ids = [layer.diff_id for layer in img.layers]
        try:
            store.lease(lease, diff_ids)
            store.unpack(img, **unpack)
            entry = {"id": img.id, "config": img.config, "source": source,
                     "layers": diff_ids, "loaded_at": time.time()}
            if getattr(img, "digest", None):
                entry["repo_digests"] = [source]
            os.makedirs(self.dir, exist_ok=True)
            state.write_json(os.path.join(self.dir, img.id.split(":", 1)[1] + ".json"), entry)
        finally:
            release(lease)
        with state.locked(self.dir, ".lock"):
            table = self._tags()
            moved = any(table.get(name) != img.id for name in names)
            for name in names:
                table[name] = img.id
            state.write_json(self.tags_file, table)
        return moved

    def lookup(self, ref):
        """The catalog entry for a tag or an image id (prefix), or None."""
        table = self._tags()
        image_id = table.get(_normalize(ref)) or self._by_digest(ref)
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
        from minirt.image.reference import parse_optional

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
        """[(tags, entry)] for every loaded image."""
        table = self._tags()
        out = []
        for f in sorted(self._files()):
            entry = self._read(f)
            out.append((sorted(t for t, i in table.items() if i == entry["id"]), entry))
        return out

    def remove(self, ref, in_use=()):
        """Untag ``ref``; delete the image when no tag is left. Returns what was done."""
        entry = self.lookup(ref)
        if entry is None:
            raise ImageError(f"no such image: {ref}")
        with state.locked(self.dir, ".lock"):
            table = self._tags()
            name = _normalize(ref)
            if name in table:
                del table[name]
                done = [f"Untagged: {name}"]
            else:
                done = [f"Untagged: {t}" for t, i in table.items() if i == entry["id"]]
                table = {t: i for t, i in table.items() if i != entry["id"]}
            if entry["id"] not in table.values():
                if entry["id"] in in_use:
                    raise ImageError(f"image {ref} is in use by a container; remove the container first")
                os.unlink(os.path.join(self.dir, entry["id"].split(":", 1)[1] + ".json"))
                done.append(f"Deleted: {entry['id']}")
            state.write_json(self.tags_file, table)
        return done

    def layers_in_use(self):
        return {d for _, entry in self.list() for d in entry["layers"]}
