"""Images: load, pull, push, tag, remove, save, inspect, prune, and the logins
a registry asks for.

Lecture idea: an image is a read-only template -- a config and a stack of
layers -- that a name (``busybox:latest``) points at, and registries are
where images are shared.  The catalog (``runtime/catalog.py``) keeps the
names and what they point at; ``image/`` reads, stores, pulls and pushes the
images themselves.  Progress is reported through the callbacks a caller
passes (``report(layer, status)``, ``on_bytes(digest, n, size)``); nothing
here prints.
"""

import os

from minirt.errors import ImageError, MinirtError
from minirt.image import Store
from minirt.runtime.catalog import Catalog, check_name, repo_digests, users

__all__ = ["check_name", "repo_digests", "reference", "listing", "lookup", "names", "tag", "remover",
           "load", "pull", "missing", "push", "save", "inspect", "size", "prune", "prune_build_cache",
           "registry", "login", "known_login", "logout", "login_key"]


def reference(text, optional=False):
    """``text`` as docker names an image (docker.io/library/busybox:latest); with
    ``optional``, None for a text that is no name (a path, an id)."""
    from minirt.image.reference import parse, parse_optional

    return parse_optional(text) if optional else parse(text)


def listing(root):
    """(tags, catalog entry) of every image."""
    return Catalog(root).list()


def lookup(root, ref):
    """The catalog entry of the image ``ref`` names; ImageError if none."""
    entry = Catalog(root).lookup(ref)
    if entry is None:
        raise ImageError(f"no such image: {ref}")
    return entry


def names(root, image_id):
    """The tags that point at ``image_id``."""
    return Catalog(root).names(image_id)


def tag(root, source, target):
    Catalog(root).tag(source, target)


def remover(root, force=False):
    """A function that removes the image a ref names (``rmi``) and returns
    what it did, a line each; it refuses an image a container uses unless
    ``force``, as docker does."""
    catalog = Catalog(root)
    in_use = users(root, catalog)
    return lambda ref: catalog.remove(ref, in_use, force=force)


def load(root, path, tags=()):
    """Load an archive (docker, OCI) or OCI layout: (image id, its tags)."""
    return Catalog(root).load(path, Store(root), tags=tags)


def missing(root, image):
    """The reference to pull for ``run IMAGE`` when ``image`` is neither a file
    nor loaded, else None."""
    ref = reference(image, optional=True)
    if ref is None or image.endswith(".tar") or os.path.exists(image) or Catalog(root).lookup(image) is not None:
        return None
    return ref


def pull(root, ref, *, platform=None, insecure=(), report=None, on_bytes=None):
    """Pull ``ref`` (a Reference) into the catalog: (image, whether it was new).
    ``platform``: ``os/arch[/variant]``, else this host's."""
    from minirt.image.formats import parse_platform

    wanted = parse_platform(platform) if platform else None
    return Catalog(root).pull(ref, Store(root), platform=wanted, insecure=insecure,
                              report=report, on_bytes=on_bytes)


def push(root, name, *, insecure=(), announce=None, status=None, on_bytes=None):
    """Push the image the tag ``name`` names: (its Reference, digest, manifest
    bytes).  ``announce(ref, names)`` is called once the image is found, with
    how each blob is to be shown (a layer by its diff_id, as docker)."""
    from minirt.image.pull import connect
    from minirt.image.push import push as upload

    ref = reference(name)
    if ref.digest:
        raise MinirtError(f"cannot push a digest reference: {name} (push a tag)")
    catalog = Catalog(root)
    entry, media, manifest, files, sources = catalog.pushed(ref.familiar, root)
    if announce:
        announce(ref, {b["digest"]: diff_id[7:19] for b, diff_id in zip(entry["blobs"], entry["layers"])})
    client = connect(ref, insecure)
    try:
        digest = upload(client, ref, media, manifest, files, sources, status, on_bytes)
    finally:
        client.close()
    catalog.record_push(entry["id"], f"{ref.repository}@{digest}")
    return ref, digest, manifest


def save(root, refs, out, format="docker-archive"):
    """Write the images ``refs`` name to the binary file ``out`` as one archive;
    every name is checked before a byte is written."""
    from minirt.image.write import write_archive

    if format not in ("docker-archive", "oci-archive"):
        raise MinirtError(f"invalid --format {format!r}: expected docker-archive or oci-archive")
    write_archive(out, Catalog(root).saved(refs, root), format)


def inspect(root, ref):
    """docker's ``image inspect`` record of the image ``ref`` names."""
    catalog = Catalog(root)
    entry = catalog.lookup(ref)
    if entry is None:
        raise ImageError(f"no such image: {ref}")
    config = entry["config"]
    return {"Id": entry["id"], "RepoTags": catalog.names(entry["id"]), "RepoDigests": repo_digests(entry),
            "Parent": "", "Comment": "", "Created": config.get("created", ""),
            "Author": config.get("author", ""), "Config": config.get("config") or {},
            "Architecture": config.get("architecture", ""), "Os": config.get("os", ""),
            **({"Variant": config["variant"]} if config.get("variant") else {}),
            "Size": size(entry),
            "RootFS": {"Type": "layers", "Layers": entry["layers"]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}}


def size(entry):
    """The bytes of an image's blobs (its layers as they came: compressed when they were)."""
    return sum(b["size"] for b in entry.get("blobs") or ())


def prune(root, everything=False):
    """``image prune [-a]``: (what was deleted, bytes freed)."""
    from minirt.runtime import prune as sweep

    return sweep.prune_images(root, everything=everything)


def prune_build_cache(root):
    """``builder prune``: (what was deleted, bytes freed)."""
    from minirt.runtime import prune as sweep

    return sweep.prune_build_cache(root)


# -- registries' logins -------------------------------------------------------------------

def registry(text):
    """A registry's name as docker keys it (``docker.io`` for Docker Hub)."""
    from minirt.image.reference import parse_registry

    return parse_registry(text)


def login_key(registry_name):
    """How the credentials file names ``registry_name``."""
    from minirt.image import credentials

    return credentials.key(registry_name)


def known_login(registry_name):
    """(user, password) stored for ``registry_name``, or None."""
    from minirt.image import credentials

    return credentials.lookup(registry_name)


def login(registry_name, user, password, insecure=()):
    """Check ``user`` and ``password`` with the registry, as docker does (a wrong
    password is not kept), then store them; the file they went to."""
    from minirt.image import credentials
    from minirt.image.reference import DEFAULT_DOMAIN, DOCKER_HUB
    from minirt.image.registry import Client

    client = Client(DOCKER_HUB if registry_name == DEFAULT_DOMAIN else registry_name, (user, password), insecure)
    try:
        client.request("GET", "/v2/", scope="", what=f"{registry_name}: login").close()
    finally:
        client.close()
    return credentials.store(registry_name, user, password)


def logout(registry_name):
    """Forget the login for ``registry_name``; whether there was one."""
    from minirt.image import credentials

    return credentials.remove(registry_name)
