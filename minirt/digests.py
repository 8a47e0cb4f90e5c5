"""sha256 for small things, without OpenSSL; what a digest looks like.

Python's ``hashlib`` loads OpenSSL, some 2 ms at start-up; the builtin module
it falls back on is as exact and, for the few kilobytes hashed on a
container's start-up path (image manifests and configs, the seccomp cache
key), as fast.  Layers, hundreds of megabytes, are hashed with hashlib
(``image/stream.py``).
"""

try:
    from _sha256 import sha256  # noqa: F401  (Python 3.11)
except ImportError:
    try:
        from _sha2 import sha256  # noqa: F401  (Python 3.12 and later)
    except ImportError:
        from hashlib import sha256  # noqa: F401  (a build without the builtin hashes)


_HEX = frozenset("0123456789abcdef")


def is_hex_digest(text):
    """64 lower-case hex digits: a sha256 as OCI writes it."""
    return len(text) == 64 and _HEX.issuperset(text)


def is_digest(text):
    """``sha256:<64 lower-case hex digits>``, the only digest minirt accepts."""
    return isinstance(text, str) and text.startswith("sha256:") and is_hex_digest(text[7:])
