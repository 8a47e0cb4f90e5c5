"""A stack of unpacked layers read as one tree, without mounting it.

Lecture idea: an image's root filesystem is its layers stacked (overlayfs does
it for a running container).  The builder often needs to look into that stack
without running anything: is the COPY destination a directory, what owner and
mode has a parent directory, which uid is ``--chown=app``, what files does
``COPY --from=build /out`` take.  This module answers by overlayfs's own rules,
reading the layer directories from the top down:

- a name in a higher layer hides the same name below it;
- a whiteout (a 0/0 character device) hides the name in every layer below;
- an opaque directory (``trusted.overlay.opaque`` or ``user.overlay.opaque``
  set to ``y``) hides everything below it in lower layers.
"""

import os
import posixpath
import stat

from minirt.errors import BuildError

_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
_MAX_LINKS = 40  # as the kernel's path walk


class View:
    """The merged tree of ``layers`` (directories, bottom first); ``rootless``:
    they belong to a rootless store, whose files are all the user's (root's,
    in the container)."""

    def __init__(self, layers, rootless=False):
        self.layers = list(layers)
        self.rootless = rootless

    def owner(self, st) -> tuple:
        """The (uid, gid) a file with lstat ``st`` has in the image."""
        return (0, 0) if self.rootless else (st.st_uid, st.st_gid)

    def find(self, rel: str):
        """The host path holding ``rel`` (relative to the tree's root, no
        symlinks followed), or None if the stack has no such name."""
        parts = [p for p in rel.split("/") if p and p != "."]
        for layer in reversed(self.layers):
            path, hidden = layer, False
            for i, part in enumerate(parts):
                path = os.path.join(path, part)
                try:
                    st = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    path = None
                    break
                if _is_whiteout(st):
                    return None
                if i < len(parts) - 1:
                    if not stat.S_ISDIR(st.st_mode):
                        return None  # a file here hides a directory of that name below
                    hidden = hidden or _is_opaque(path)  # then nothing below it in lower layers
            if path is not None:
                return path
            if hidden:
                return None
        return self.layers[0] if not parts and self.layers else None

    def lstat(self, rel: str):
        path = self.find(rel)
        return os.lstat(path) if path else None

    def listdir(self, rel: str) -> list:
        """The names in directory ``rel``, merged across the layers."""
        names, gone = set(), set()
        parts = [p for p in rel.split("/") if p and p != "."]
        for layer in reversed(self.layers):
            path = os.path.join(layer, *parts)
            if not os.path.isdir(path) or os.path.islink(path):
                if os.path.lexists(path):
                    break  # a file or whiteout here hides directories below
                continue
            for name in os.listdir(path):
                if name in names or name in gone:
                    continue
                (gone if _is_whiteout(os.lstat(os.path.join(path, name))) else names).add(name)
            if _is_opaque(path):
                break
        return sorted(names)

    def resolve(self, rel: str, follow_last: bool = True) -> str:
        return resolve(self, rel, follow_last)

    def read(self, rel: str, limit: int = 1 << 20) -> bytes:
        """The content of file ``rel`` (symlinks followed), or b"" if there is none."""
        path = self.find(self.resolve(rel))
        if path is None or not os.path.isfile(path):
            return b""
        with open(path, "rb") as f:
            return f.read(limit)


def resolve(tree, rel: str, follow_last: bool = True) -> str:
    """``rel`` with its symlinks resolved inside ``tree`` (anything with
    ``find(rel) -> host path or None``): an absolute link or ``..`` never
    leaves the tree's root.  A clean absolute path."""
    done, todo, links = "/", [p for p in rel.split("/") if p], 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            done = posixpath.dirname(done)
            continue
        candidate = posixpath.join(done, part)
        path = tree.find(candidate)
        if path and os.path.islink(path) and (todo or follow_last):
            links += 1
            if links > _MAX_LINKS:
                raise BuildError(f"{rel}: too many levels of symbolic links")
            target = os.readlink(path)
            done = "/" if target.startswith("/") else done
            todo = [p for p in target.split("/") if p] + todo
            continue
        done = candidate
    return done


def _is_whiteout(st) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    for key in _OPAQUE:
        try:
            if os.getxattr(path, key, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False
