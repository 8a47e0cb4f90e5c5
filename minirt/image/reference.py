"""Image references: what ``alpine``, ``localhost:5000/app:v2`` and ``x@sha256:...`` mean.

Lecture idea: "Docker maintains a library of images that you can run" -- a
short name such as ``alpine`` is an address in that library.  Docker spells
it out in full as ``docker.io/library/alpine:latest``: a registry (the
*domain*), a repository *path* in it, and a *tag*, or instead of (or beside)
the tag a *digest* that pins the exact manifest.  minirt normalises names
exactly as docker does (distribution's ``reference`` package), so that one
name means one image in both:

- no domain: ``docker.io``; and a one-word path on docker.io gets ``library/``;
- the first component is a domain only if it has a ``.`` or a ``:`` (a port),
  is ``localhost``, or has an upper-case letter;
- no tag and no digest: ``latest``;
- path components are lower case: ``[a-z0-9]+`` joined by ``.``, ``_``,
  ``__`` or runs of ``-``; a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``.

A hand-written scanner rather than ``re``: importing ``re`` costs
milliseconds, and a run by name parses a reference on its start-up path.
"""

from minirt.digests import is_hex_digest
from minirt.errors import ImageError

DEFAULT_DOMAIN = "docker.io"
# The registry that serves docker.io, and the key docker's config.json keeps its credentials under.
DOCKER_HUB = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
MAX_NAME = 255

_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_TAG = _TAG_FIRST | frozenset(".-")
_HOST = _TAG_FIRST - {"_"}


class Reference:
    """A parsed, normalised image reference (``parse`` makes them)."""

    __slots__ = ("domain", "path", "tag", "digest")

    def __init__(self, domain: str, path: str, tag: str | None, digest: str | None):
        self.domain, self.path, self.tag, self.digest = domain, path, tag, digest

    @property
    def repository(self) -> str:
        """``docker.io/library/alpine``: the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """``alpine``, ``user/app``, ``localhost:5000/app``: as docker shows names."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        return self.path.removeprefix("library/") if self.path.count("/") == 1 else self.path

    @property
    def familiar(self) -> str:
        """``alpine:latest``: the name the catalog and ``minirt images`` use."""
        return self.familiar_repository + self._suffix()

    @property
    def registry(self) -> str:
        """The host (and port) to talk to."""
        return DOCKER_HUB if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def object(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if pinned, else the tag."""
        return self.digest or self.tag

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.repository + self._suffix()

    def __repr__(self) -> str:
        return f"Reference({str(self)!r})"

    def __eq__(self, other):
        return isinstance(other, Reference) and str(other) == str(self)

    def __hash__(self):
        return hash(str(self))


def parse(text: str) -> Reference:
    """``text`` normalised as docker does; ImageError with docker's words if malformed."""
    if not isinstance(text, str) or not text:
        raise ImageError("invalid reference format: empty image name")
    name, at, digest = text.partition("@")
    if at:
        _check_digest(text, digest)
    else:
        digest = None
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
        if not tag or tag[0] not in _TAG_FIRST or len(tag) > 128 or not _TAG.issuperset(tag):
            raise ImageError(f"invalid reference format: {text!r}: bad tag {tag!r}")
    slash = name.find("/")
    first = name[:slash]
    if slash < 0 or ("." not in first and ":" not in first and first != "localhost" and first == first.lower()):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, name[slash + 1:]
        _check_domain(text, domain)
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if path != path.lower() and all(_is_component(c) for c in path.lower().split("/")):
        raise ImageError(f"invalid reference format: repository name ({path}) must be lowercase")
    for component in path.split("/"):
        if not _is_component(component):
            raise ImageError(f"invalid reference format: {text!r}: " + (
                f"bad repository name component {component!r}" if component else "empty repository name component"))
    if len(domain) + 1 + len(path) > MAX_NAME:
        raise ImageError(f"invalid reference format: {text!r}: repository name must not be "
                         f"more than {MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain, path, tag, digest)


def parse_registry(text: str) -> str:
    """The registry ``minirt login REGISTRY`` names (``localhost:5000``, ``docker.io``;
    a URL such as ``https://index.docker.io/v1/`` as docker accepts it), checked."""
    host = text.split("://", 1)[-1].split("/", 1)[0]
    if host in ("index.docker.io", DOCKER_HUB):
        host = DEFAULT_DOMAIN
    try:
        _check_domain(text, host)
    except ImageError:
        raise ImageError(f"invalid registry name {text!r} (want HOST[:PORT])") from None
    return host


def parse_optional(text: str) -> Reference | None:
    """The reference ``text`` names, or None if it is not one (a path, say)."""
    try:
        return parse(text)
    except ImageError:
        return None


def _check_digest(text: str, digest: str) -> None:
    algorithm, colon, hexpart = digest.partition(":")
    if not colon or not algorithm or not hexpart:
        raise ImageError(f"invalid reference format: {text!r}: invalid checksum digest format")
    if algorithm != "sha256":
        raise ImageError(f"invalid reference format: {text!r}: unsupported digest algorithm {algorithm!r}")
    if not is_hex_digest(hexpart):
        raise ImageError(f"invalid reference format: {text!r}: invalid checksum digest length "
                         f"(want 64 lower-case hex digits)")


def _check_domain(text: str, domain: str) -> None:
    host, colon, port = domain.partition(":")
    if host.startswith("["):  # an IPv6 address, [::1]:5000
        host, bracket, rest = domain[1:].partition("]")
        ok = bracket and host and set(host) <= set("0123456789abcdefABCDEF:") and rest[:1] in ("", ":")
        port = rest[1:]
        colon = rest[:1]
    else:
        ok = all(c and c[0] != "-" and c[-1] != "-" and _HOST.issuperset(c.replace("-", ""))
                 for c in host.split("."))
    if not ok or (colon and not (port.isdigit() and port.isascii())):
        raise ImageError(f"invalid reference format: {text!r}: bad registry name {domain!r}")


def _is_component(c: str) -> bool:
    """``[a-z0-9]+`` runs joined by one ``.``, one ``_``, ``__`` or any number of ``-``."""
    i, n = 0, len(c)
    while True:
        start = i
        while i < n and c[i] in _LOWER:
            i += 1
        if i == start:
            return False
        if i == n:
            return True
        if c[i] == "-":
            while i < n and c[i] == "-":
                i += 1
        elif c.startswith("__", i):
            i += 2
        elif c[i] in "._":
            i += 1
        else:
            return False
