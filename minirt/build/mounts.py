"""RUN --mount: what a RUN step may see without it landing in the layer.

Lecture idea: a layer is what the step changed -- so a compiler's cache, the
source tree a step only reads, or scratch space must be *mounted* for the
step, not copied into the image.  BuildKit's forms, as minirt's runtime
mounts them (``-v`` and ``--tmpfs`` underneath):

- ``type=bind,target=/src[,source=dir][,from=stage|image][,rw]``: a directory of
  the build context (or of another stage or image), read-only unless ``rw``
  (then the writes are thrown away); its content is part of the step's cache key;
- ``type=cache,target=/root/.cache[,id=name][,uid=,gid=,mode=]``: a directory kept
  between builds (under the state root's ``build-cache/mounts``), shared by
  every step that names the same id, never part of a cache key;
- ``type=tmpfs,target=/tmp[,size=64m]``: empty memory for the step.

``secret`` and ``ssh`` mounts need the build's ``--secret``/``--ssh``, which
minirt build does not have: they are refused, never silently dropped.
"""

import hashlib
import os
import posixpath
import shutil
import tempfile

from minirt.build import copy as copying
from minirt.build.context import Context
from minirt.errors import BuildError
from minirt.spec import Mount

_KEYS = {"type", "target", "dst", "destination", "source", "src", "from", "readonly", "ro", "rw",
         "readwrite", "id", "sharing", "mode", "uid", "gid", "size", "required"}


class Mounts:
    """The mounts of one RUN: ``volumes`` and ``tmpfs`` for the spec, ``key``
    for its cache key, ``targets`` (the mount points, not part of the layer)."""

    def __init__(self):
        self.volumes, self.tmpfs, self.targets, self.key = [], [], [], []


def parse(texts, *, tree_of, cache_root, tmp, workdir, where) -> Mounts:
    """``tree_of(name or None)``: the tree (context or stage view) a bind reads."""
    mounts = Mounts()
    for text in texts:
        options = _options(text, where)
        kind = options.get("type", "bind")
        target = options.get("target") or options.get("dst") or options.get("destination")
        if not target:
            raise BuildError(f"{where}: --mount={text}: a mount needs target=PATH")
        target = posixpath.normpath(posixpath.join(workdir or "/", target))
        mounts.targets.append(target)
        if kind == "bind":
            _bind(mounts, options, target, tree_of, tmp, where, text)
        elif kind == "cache":
            _cache(mounts, options, target, cache_root, where, text)
        elif kind == "tmpfs":
            size = options.get("size")
            mounts.tmpfs.append(f"{target}:size={size}" if size else target)
        elif kind in ("secret", "ssh"):
            raise BuildError(f"{where}: --mount=type={kind}: minirt build has no --{kind} to take it from")
        else:
            raise BuildError(f"{where}: --mount={text}: unknown mount type {kind!r} (bind, cache or tmpfs)")
    return mounts


def _options(text, where):
    options = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise BuildError(f"{where}: --mount={text}: unknown option {key!r}")
        options[key] = value if eq else "true"
    return options


def _bind(mounts, options, target, tree_of, tmp, where, text):
    tree = tree_of(options.get("from"))
    source = tree.resolve(options.get("source") or options.get("src") or "/")
    path = tree.find(source)
    if path is None:
        raise BuildError(f"{where}: --mount={text}: {source}: no such file or directory")
    mounts.key.append(copying.content_key([(tree, source)]))
    writable = options.get("rw") in ("true", "1") or options.get("readwrite") in ("true", "1")
    plain = isinstance(tree, Context) and not tree.rules.rules  # a directory as it is on the host
    if writable or not plain:
        # A private copy: writes vanish with it, and a stage's layers or a
        # filtered context become one directory.
        copy = tempfile.mkdtemp(prefix="mount-", dir=tmp)
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        name = "/" if is_dir else "/" + posixpath.basename(source)
        copying.write(copy, [(tree, source)], name, base=_Empty(), workdir="/", where=where)
        path = copy if is_dir else os.path.join(copy, name[1:])
    mounts.volumes.append(Mount(path, target, readonly=not writable))


def _cache(mounts, options, target, cache_root, where, text):
    name = options.get("id") or target
    path = os.path.join(cache_root, hashlib.sha256(name.encode()).hexdigest()[:32])
    if not os.path.isdir(path):
        try:
            mode = int(options.get("mode", "755"), 8)
            uid, gid = int(options.get("uid", "0")), int(options.get("gid", "0"))
        except ValueError:
            raise BuildError(f"{where}: --mount={text}: mode is octal, uid and gid are numbers") from None
        os.makedirs(cache_root, mode=0o700, exist_ok=True)
        fresh = tempfile.mkdtemp(dir=cache_root)
        os.chmod(fresh, mode)
        os.chown(fresh, uid, gid)
        try:
            os.rename(fresh, path)
        except OSError:
            shutil.rmtree(fresh)  # another build made it first
    mounts.volumes.append(Mount(path, target))


class _Empty:
    """A base image with nothing in it (a bind's private copy stands alone)."""

    @staticmethod
    def owner(st):
        return st.st_uid, st.st_gid

    @staticmethod
    def lstat(rel):
        return None

    @staticmethod
    def resolve(rel, follow_last=True):
        return posixpath.normpath("/" + rel)
