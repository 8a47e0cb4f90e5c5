"""The layer store: each layer unpacked once, found again by its content.

Lecture idea: containers start fast and images are cheap because layers are
*shared*.  Ten images built on the same Debian base keep one copy of it, and
the second run of an image unpacks nothing.  The trick is content addressing:
a layer's directory is named by the sha256 of its uncompressed tar (its
``diff_id``), so "is it here?" is one stat, and two images that share a
layer find the same directory without knowing of each other.

Layout under the state root::

    layers/sha256/<hex>/        one unpacked layer (an overlay lowerdir)
    layers/tmp/<hex>-<pid>-<n>/ a layer being unpacked

A layer is unpacked into ``tmp`` and renamed into place only when it is
complete and verified.  rename(2) is atomic, so a crash never leaves half a
layer under its real name, and two processes unpacking the same layer both
succeed: the loser of the rename race finds the winner's copy and throws its
own away.

Rootless stores (``rootless=True``) write overlay's ``user.overlay.*``
xattrs instead of ``trusted.overlay.*`` and keep no owners, so they live in
``layers/rootless/sha256/`` and never mix with root's.

Read ``Store.unpack`` first.
"""

from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path

from minirt.errors import ImageError
from minirt.image.formats import DIGEST_RE, Image, Layer

_counter = itertools.count()


class Store:
    def __init__(self, root: str | os.PathLike, rootless: bool | None = None):
        self.root = Path(root)
        self.rootless = os.geteuid() != 0 if rootless is None else rootless
        base = self.root / "layers"
        self.layers = base / "rootless" / "sha256" if self.rootless else base / "sha256"
        self.tmp = base / ("rootless-tmp" if self.rootless else "tmp")

    def layer_dir(self, diff_id: str) -> Path:
        if not DIGEST_RE.match(diff_id):
            raise ImageError(f"invalid diff_id {diff_id!r}")
        return self.layers / diff_id[7:]

    def has(self, diff_id: str) -> bool:
        return self.layer_dir(diff_id).is_dir()

    def unpack(self, img: Image) -> list[Path]:
        """The layer directories of ``img``, bottom first; unpack what is missing.

        A layer already in the store is neither read nor hashed: its name is
        its diff_id, which the (verified) config vouches for.
        """
        dirs = []
        for layer in img.layers:
            path = self.layer_dir(layer.diff_id)
            if not path.is_dir():
                self._unpack_layer(img, layer, path)
            dirs.append(path)
        return dirs

    def _unpack_layer(self, img: Image, layer: Layer, final: Path) -> None:
        # Imported here: a run whose layers are all unpacked never needs them.
        from minirt.image.layers import apply_layer
        from minirt.image.stream import LayerStream

        what = f"{img.source}: layer {(layer.digest or layer.diff_id)[:19]}..."
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.layers.mkdir(parents=True, exist_ok=True)
        self._sweep()
        tmp = self.tmp / f"{final.name[:16]}-{os.getpid()}-{next(_counter)}"
        os.mkdir(tmp)
        os.chmod(tmp, 0o755)  # the layer's root, unless the layer says otherwise
        try:
            with img.open_layer(layer) as blob:
                stream = LayerStream(blob, digest=layer.digest, size=layer.size,
                                     diff_id=layer.diff_id, what=what)
                try:
                    apply_layer(stream, str(tmp), rootless=self.rootless, what=what)
                    stream.finish()
                finally:
                    stream.close()
            try:
                os.rename(tmp, final)
            except OSError as e:
                # Someone else finished the same layer first: theirs is as good.
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                    raise
                _remove(tmp)
        except BaseException:
            _remove(tmp)
            raise

    def _sweep(self) -> None:
        """Remove temporary layers left by processes that died half way."""
        for entry in os.scandir(self.tmp):
            try:
                pid = int(entry.name.split("-")[1])
                os.kill(pid, 0)
            except ProcessLookupError:
                _remove(Path(entry.path))
            except (ValueError, IndexError, PermissionError):
                pass


def _remove(path: Path) -> None:
    import shutil

    # A layer may hold read-only directories; rmtree copes as root, and
    # rootless we own every directory and can make it writable first.
    def retry(func, p, exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)
