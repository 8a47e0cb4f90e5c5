"""The build context: the directory a build may copy from, as .dockerignore leaves it.

Lecture idea: ``docker build .`` sends "." to the builder; COPY and ADD can
only take files from it.  A path in a COPY is resolved inside the context
(``..`` and absolute symlinks stop at its top), and what .dockerignore names is
not there at all.  The same three questions (``find``, ``listdir``,
``resolve``) are asked of another stage's files (``view.View``), so COPY reads
both alike.
"""

import os
import shutil
import tempfile

from minirt import bounded
from minirt.build import ignore
from minirt.build.view import resolve
from minirt.errors import BuildError


class Context:
    def __init__(self, root: str, rules=None):
        self.root = os.path.realpath(root)
        self.rules = rules if rules is not None else ignore.read(self.root)
        self.hidden = set()  # host paths inside the context that are not part of it

    def hide(self, path: str):
        """Leave ``path`` out (minirt's state root, when it lies inside the
        context: a COPY would otherwise copy the build into itself)."""
        self.hidden.add(os.path.realpath(path))

    def find(self, rel: str):
        """The host path of ``rel`` (no symlink followed), or None if it is
        missing or ignored."""
        parts = [p for p in rel.split("/") if p and p != "."]
        path = os.path.join(self.root, *parts)
        if not os.path.lexists(path) or path in self.hidden:
            return None
        if parts and self.rules.ignored("/".join(parts)):
            # an ignored directory is still there for what an exception keeps in it
            keeps_some = self.rules.has_exceptions and os.path.isdir(path) and not os.path.islink(path)
            return path if keeps_some else None
        return path

    def listdir(self, rel: str) -> list:
        parts = [p for p in rel.split("/") if p and p != "."]
        folder = os.path.join(self.root, *parts)
        prefix = "/".join(parts) + "/" if parts else ""
        return [n for n in sorted(os.listdir(folder))
                if not self.rules.ignored(prefix + n) and os.path.join(folder, n) not in self.hidden]

    def resolve(self, rel: str, follow_last: bool = True) -> str:
        return resolve(self, rel, follow_last)


class Input:
    """What ``minirt build PATH|-`` was given, as docker reads it: a context
    directory with its Dockerfile (``-f`` names another; ``NAME.dockerignore``
    beside it comes before the context's .dockerignore), or on stdin either a
    Dockerfile alone (an empty context) or a tar of the whole context.  Use
    it as a context manager: what it unpacked goes at the end."""

    def __init__(self, path: str, dockerfile: str | None = None, stdin=None):
        self.made = None
        if path == "-":
            self.from_stdin(stdin, dockerfile)
            return
        if not os.path.isdir(path):
            raise BuildError(f"unable to prepare context: {path}: not a directory")
        if dockerfile == "-":
            self.context, self.text, self.name = Context(path), _text(stdin.read(), "stdin"), "Dockerfile"
            return
        file = dockerfile or os.path.join(path, "Dockerfile")
        self.text, self.name = _read(file), os.path.basename(file)
        own = file + ".dockerignore"
        self.context = Context(path, ignore.read_file(own) if os.path.isfile(own) else None)

    def from_stdin(self, stdin, dockerfile):
        self.made = tempfile.mkdtemp(prefix="minirt-context-")
        data = os.path.join(self.made, "stdin")
        with open(data, "wb") as f:
            shutil.copyfileobj(stdin, f)
        with open(data, "rb") as f:
            head = f.read(512)
        if head[257:262] == b"ustar" or head.startswith(b"\x1f\x8b"):  # a tar of the context
            from minirt.build.copy import unpack_archive

            root = os.path.join(self.made, "context")
            os.mkdir(root)
            unpack_archive(data, root, "the context on stdin")
            file = os.path.join(root, (dockerfile or "Dockerfile").lstrip("/"))
            self.text, self.name = _read(file), os.path.basename(file)
        else:
            root = os.path.join(self.made, "empty")
            os.mkdir(root)
            with open(data, "rb") as f:
                self.text, self.name = _text(f.read(16 << 20), "stdin"), "Dockerfile"
        os.unlink(data)
        self.context = Context(root)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.made:
            shutil.rmtree(self.made, ignore_errors=True)


def _read(path):
    if not os.path.isfile(path):
        raise BuildError(f"unable to read the Dockerfile: {path}: no such file")
    return _text(bounded.read(path, "Dockerfile", 16 * bounded.MiB, BuildError), path)


def _text(data, what):
    try:
        return data.decode() if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise BuildError(f"{what}: the Dockerfile is not UTF-8 text") from None
