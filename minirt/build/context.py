"""The build context: the directory a build may copy from, as .dockerignore leaves it.

Lecture idea: ``docker build .`` sends "." to the builder; COPY and ADD can
only take files from it.  A path in a COPY is resolved inside the context
(``..`` and absolute symlinks stop at its top), and what .dockerignore names is
not there at all.  The same three questions (``find``, ``listdir``,
``resolve``) are asked of another stage's files (``view.View``), so COPY reads
both alike.
"""

import os

from minirt.build import ignore
from minirt.build.view import resolve


class Context:
    def __init__(self, root: str, rules=None):
        self.root = os.path.realpath(root)
        self.rules = rules if rules is not None else ignore.read(self.root)

    def find(self, rel: str):
        """The host path of ``rel`` (no symlink followed), or None if it is
        missing or ignored."""
        parts = [p for p in rel.split("/") if p and p != "."]
        path = os.path.join(self.root, *parts)
        if not os.path.lexists(path):
            return None
        if parts and self.rules.ignored("/".join(parts)):
            # an ignored directory is still there for what an exception keeps in it
            keeps_some = self.rules.has_exceptions and os.path.isdir(path) and not os.path.islink(path)
            return path if keeps_some else None
        return path

    def listdir(self, rel: str) -> list:
        parts = [p for p in rel.split("/") if p and p != "."]
        names = sorted(os.listdir(os.path.join(self.root, *parts)))
        prefix = "/".join(parts) + "/" if parts else ""
        return [n for n in names if not self.rules.ignored(prefix + n)]

    def resolve(self, rel: str, follow_last: bool = True) -> str:
        return resolve(self, rel, follow_last)
