"""``.dockerignore``: which files of the build context the build may not see.

Lecture idea: the build turns a directory (the context) into an image, and only
what the Dockerfile may use should go in -- not ``.git``, not secrets, not the
last build's output.  The rules are docker's (moby's patternmatcher):

- one pattern a line; ``#`` starts a comment line; blank lines are skipped;
  patterns are cleaned like paths (``./a//b/`` is ``a/b``, a leading ``/`` goes);
- ``*`` is any run of characters but ``/``, ``?`` one such character, ``[a-z]`` a
  class, ``\\`` escapes; ``**`` is any number of directories, even none;
- a pattern that matches a directory matches everything under it;
- ``!pattern`` brings back what an earlier pattern excluded; the last pattern
  that matches a path decides.
"""

import os
import posixpath
import re

from minirt import bounded
from minirt.errors import BuildError


class Ignore:
    """The compiled patterns of one .dockerignore (none: nothing is ignored)."""

    def __init__(self, patterns=()):
        self.rules = []  # (regex, is_exception)
        for pattern in patterns:
            exception = pattern.startswith("!")
            if exception:
                pattern = pattern[1:].strip()
            self.rules.append((_compile(_clean(pattern)), exception))
        self.has_exceptions = any(exception for _, exception in self.rules)

    def ignored(self, path: str) -> bool:
        """Whether ``path`` (relative to the context, ``/``-separated) is ignored."""
        parents = path.split("/")[:-1]
        ignored = False
        for regex, exception in self.rules:
            if exception != ignored:  # only a later rule of the other kind can change the answer
                continue
            if regex.match(path) or any(regex.match("/".join(parents[:i + 1])) for i in range(len(parents))):
                ignored = not exception
        return ignored

    def prunes(self, directory: str) -> bool:
        """Whether a walk may skip ``directory`` entirely: it is ignored and no
        exception could bring back anything under it."""
        return not self.has_exceptions and self.ignored(directory)


def read(context: str) -> Ignore:
    """The .dockerignore at the top of ``context``, if there is one."""
    path = os.path.join(context, ".dockerignore")
    return read_file(path) if os.path.lexists(path) else Ignore()


def read_file(path: str) -> Ignore:
    """The patterns of one ignore file."""
    text = bounded.read(path, ".dockerignore", bounded.MiB, BuildError)
    try:
        lines = text.decode().removeprefix("\ufeff").splitlines()
    except UnicodeDecodeError:
        raise BuildError(f"{path}: not UTF-8 text") from None
    patterns = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and line != "!":
            patterns.append(line)
    return Ignore(patterns)


def _clean(pattern: str) -> str:
    if not pattern:
        return pattern
    pattern = posixpath.normpath(pattern)
    return pattern[1:] if len(pattern) > 1 and pattern.startswith("/") else pattern


def _compile(pattern: str):
    """A pattern as a regular expression over whole relative paths."""
    regex, i, in_class = ["^"], 0, False
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "\\":
            regex.append(re.escape(pattern[i]) if i < len(pattern) else "\\\\")
            i += 1
        elif in_class or ch in "[]":  # a class is copied as it is: [a-z], [^/]
            regex.append(ch)
            in_class = (in_class or ch == "[") and ch != "]"
        elif ch == "*" and pattern.startswith("*", i):
            i += 1
            if pattern.startswith("/", i):  # **/ is **
                i += 1
            regex.append(".*" if i == len(pattern) else "(.*/)?")
        elif ch == "*":
            regex.append("[^/]*")
        elif ch == "?":
            regex.append("[^/]")
        else:
            regex.append(re.escape(ch))
    try:
        return re.compile("".join(regex) + "$", re.S)
    except re.error as e:
        raise BuildError(f".dockerignore: bad pattern {pattern!r}: {e}") from None
