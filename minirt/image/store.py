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
    layers/leases/<key>         layers a run or load uses before it records them
    layers/blobs/sha256/<hex>   a loaded image's config and layer blobs, as they
                                came (``minirt save`` writes them out again)

These directories are 0700: a layer may hold setuid-root binaries and device
nodes, which must be out of reach of every other user of the host.

A layer is unpacked into ``tmp`` and renamed into place only when it is
complete and verified.  rename(2) is atomic, so a crash never leaves half a
layer under its real name, and two processes unpacking the same layer both
succeed: the loser of the rename race finds the winner's copy and throws its
own away.

The same layer is unpacked differently for three kinds of container, so each
kind has a store of its own, side by side, that never mixes with the others:

- **root** (``layers/sha256/``): owners as the layer says them, overlay's
  ``trusted.overlay.*`` xattrs for opaque directories.
- **rootless** (``rootless=True``, ``layers/rootless/sha256/``): an
  unprivileged user cannot chown, so no owners; overlay is mounted inside a
  user namespace with ``userxattr``, which reads ``user.overlay.*`` xattrs.
- **id-shifted** (``id_map=(uid_map, gid_map)``, ``layers/shift-.../sha256/``):
  root running a container in a user namespace (``--userns=remap``) that maps
  container uid 0 to host uid 100000.  Files owned by host root would look
  like "nobody" inside, and overlay could not copy them up; so, as docker's
  userns-remap does, every owner is shifted through the map when the layer is
  unpacked (uid 0 -> 100000, 33 -> 100033).  The overlay is mounted inside the
  user namespace too, so opaque directories get ``user.overlay.opaque``.  An
  owner that the map does not cover is an error, not "nobody": such a file
  could never be used as the image meant.  The map is spelled out in the
  directory's name, because a layer shifted for one map is wrong for any other.

A layer in use is one that a loaded image (the catalog) or a container
(its config.json) names, or that a *lease* holds: a run unpacks its layers
before its container records them, ``minirt load`` before the catalog does,
and ``system prune`` must not delete them in between.  See ``lease``.

Paths are returned as ``str``: pathlib costs milliseconds to import, and this
module is on every ``minirt run``'s path.

Read ``Store.unpack`` first.
"""

import errno
import fcntl
import io
import itertools
import os

from minirt.digests import is_digest
from minirt.errors import ImageError
from minirt.image.formats import DOCKER_LAYER, Image, Layer

_counter = itertools.count()

# Each layer is one lower directory of the container's overlay mount, and
# overlayfs stacks at most 500 (OVL_MAX_STACK; docker stops at 125).
MAX_LAYERS = 500

# An image may have no layers at all (``FROM scratch`` with only a CMD).  docker
# runs it on an empty root filesystem; so does minirt, from the empty layer: a
# tar of nothing (two zero blocks), whose diff_id docker uses for empty layers too.
EMPTY_TAR = bytes(1024)
EMPTY_LAYER = Layer(None, DOCKER_LAYER, None,
                    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")


class Store:
    def __init__(self, root: str | os.PathLike, rootless: bool | None = None,
                 id_map: tuple[list, list] | None = None):
        """The store under the state directory ``root``.

        ``rootless`` defaults to "not running as root".  ``id_map`` is a user
        namespace's (uid_map, gid_map), each a list of (inside, outside, count)
        as in /proc/PID/uid_map; it asks for an id-shifted store, which only
        root can write.
        """
        self.root = os.fspath(root)
        self.id_map = _check_id_map(id_map) if id_map is not None else None
        if self.id_map is not None and rootless:
            raise ValueError("a store is either rootless or id-shifted, not both")
        self.rootless = os.geteuid() != 0 if rootless is None and id_map is None else bool(rootless)
        base = os.path.join(self.root, "layers")
        if self.id_map is not None:
            shifted = os.path.join(base, "shift-" + _map_name(self.id_map))
            self.layers = os.path.join(shifted, "sha256")
            self.tmp = os.path.join(shifted, "tmp")
        elif self.rootless:
            self.layers = os.path.join(base, "rootless", "sha256")
            self.tmp = os.path.join(base, "rootless-tmp")
        else:
            self.layers = os.path.join(base, "sha256")
            self.tmp = os.path.join(base, "tmp")

    def layer_dir(self, diff_id: str) -> str:
        if not is_digest(diff_id):
            raise ImageError(f"invalid diff_id {diff_id!r}")
        return os.path.join(self.layers, diff_id[7:])

    def has(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_dir(diff_id))

    def unpack(self, img: Image, workers: int = 1, report=None, keep_blobs: bool = False) -> list[str]:
        """The layer directories of ``img``, bottom first; unpack what is missing.
        An image without layers gets the empty layer.

        A layer already in the store is neither read nor hashed: its name is
        its diff_id, which the (verified) config vouches for.  ``workers``
        layers are unpacked at once (a pull: each waits on the network);
        ``report(layer, "Already exists" | "Pull complete")`` hears of each.
        ``keep_blobs``: each blob read is kept too, as it came (``keep_blob``).
        """
        if len(img.layers) > MAX_LAYERS:
            raise ImageError(f"{img.source}: {len(img.layers)} layers, but overlayfs stacks "
                             f"at most {MAX_LAYERS}")
        dirs, missing = [], {}
        for layer in img.layers or [EMPTY_LAYER]:
            path = self.layer_dir(layer.diff_id)
            if os.path.isdir(path):
                if report:
                    report(layer, "Already exists")
            else:
                missing.setdefault(path, layer)
            dirs.append(path)

        def unpack(path):
            self._unpack_layer(img, missing[path], path, keep_blobs)
            if report:
                report(missing[path], "Pull complete")

        if workers > 1 and len(missing) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(workers, len(missing))) as pool:
                futures = [pool.submit(unpack, path) for path in missing]
                try:
                    for f in futures:
                        f.result()
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # the others' temporary layers go too
                    raise
        else:
            for path in missing:
                unpack(path)
        if self.id_map is not None:
            self._check_reachable()
        return dirs

    def lease(self, key: str, diff_ids: list[str]) -> None:
        """Keep the layers ``diff_ids`` (an image's; none: the empty layer) from
        ``remove_unused`` until ``release(key)`` or until this process ends.
        Taken before the layers are looked for, given back once something
        records them (the container's config.json, the catalog entry)."""
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"a lease's key names a file: {key!r}")
        layers = os.path.join(self.root, "layers")
        leases = os.path.join(layers, "leases")
        _private_dirs(self.root, leases)
        names = "".join(d.split(":")[-1] + "\n" for d in diff_ids or [EMPTY_LAYER.diff_id])
        path = os.path.join(leases, key)
        store = os.open(layers, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(store, fcntl.LOCK_SH)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, names.encode())
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
        finally:
            os.close(store)
        _leases[key] = (fd, path)

    def _unpack_layer(self, img: Image, layer: Layer, final: str, keep: bool = False) -> None:
        # Imported here: a run whose layers are all unpacked never needs them.
        from minirt.image.layers import apply_layer
        from minirt.image.stream import LayerStream

        what = f"{img.source}: layer {(layer.digest or layer.diff_id)[:19]}..."
        self._make_dirs()
        self._sweep()
        tmp = os.path.join(self.tmp, f"{os.path.basename(final)[:16]}-{os.getpid()}-{next(_counter)}")
        os.mkdir(tmp)
        os.chmod(tmp, 0o755)  # the layer's root, unless the layer says otherwise
        blob = None
        try:
            with self._open_blob(img, layer, keep) as blob:
                stream = LayerStream(blob, digest=layer.digest, size=layer.size,
                                     diff_id=layer.diff_id, what=what)
                try:
                    apply_layer(stream, tmp, rootless=self.rootless, id_map=self.id_map, what=what)
                    stream.finish()
                finally:
                    stream.close()
                if isinstance(blob, _BlobCopy):
                    blob.keep(layer.digest)
            try:
                os.rename(tmp, final)
            except OSError as e:
                # Someone else finished the same layer first: theirs is as good.
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not os.path.isdir(final):
                    raise
                _remove(tmp)
        except ImageError:
            _remove(tmp)
            if not isinstance(blob, _Partial) or not blob.offset or blob.broken:
                raise
            # What an earlier pull left does not add up to the digest (it is
            # deleted now): the layer is downloaded whole.
            self._unpack_layer(img, layer, final, keep)
        except BaseException:
            _remove(tmp)
            raise

    def _open_blob(self, img: Image, layer: Layer, keep: bool):
        """The layer's blob, to be read once.  The copy this state root keeps, if
        it has one: another of its stores (root, rootless, id-shifted) pulled or
        loaded the layer, and nothing is downloaded twice.  Else the image's,
        copied on the way through if ``keep`` (the stream checks the digest
        before the copy is named): a download into a partial file that a later
        pull continues (``_Partial``)."""
        if layer is EMPTY_LAYER:
            return io.BytesIO(EMPTY_TAR)
        if layer.digest and os.path.isfile(blob_path(self.root, layer.digest)):
            return open(blob_path(self.root, layer.digest), "rb")
        if not keep or not layer.digest:
            return img.open_layer(layer)
        if getattr(img, "remote", False):  # (a build's own layers are no Image)
            try:
                return _Partial(self.root, layer, lambda offset: img.open_layer(layer, offset))
            except BlockingIOError:  # another pull of the same blob is writing it: a copy of our own
                pass
        return _BlobCopy(self.root, img.open_layer(layer))

    def _make_dirs(self) -> None:
        """The store's directories, private to their owner: a layer's setuid
        binaries and device nodes must be nobody else's to reach."""
        for d in (self.tmp, self.layers):
            _private_dirs(self.root, d)
        if self.id_map is not None:
            # The container's root (an ordinary uid on the host) mounts the
            # layers from inside its user namespace: its group may pass
            # through to this store, and only to it.
            gid = map_id(self.id_map[1], 0)
            for d in (os.path.dirname(os.path.dirname(self.layers)), os.path.dirname(self.layers), self.layers):
                os.chown(d, -1, gid)
                os.chmod(d, 0o710)

    def _check_reachable(self) -> None:
        """Fail clearly if the shifted root could not reach the layers.

        A state root made with mkdtemp (0700) would otherwise surface as a bare
        "Permission denied" from inside the container, at mount time.
        """
        uid, gid = map_id(self.id_map[0], 0), map_id(self.id_map[1], 0)
        path = os.path.abspath(self.layers)
        while True:
            st = os.stat(path)
            bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == gid else 0o001
            if not st.st_mode & bit:
                raise ImageError(f"{path}: not searchable by uid {uid}, the container's root as the "
                                 f"host sees it (id-shifted layer store); allow it with chmod o+x")
            parent = os.path.dirname(path)
            if parent == path:
                return
            path = parent

    def _sweep(self) -> None:
        _sweep(self.tmp)


# -- blobs: what ``save`` needs to give an image back with its digests ---------
#
# An unpacked layer cannot be tarred again into the same bytes (member order,
# pax records, padding), and an image's config digest is its id: so ``minirt
# load`` and ``pull`` keep each blob as it came, named by its digest, next to
# the layers (containerd's content store does the same); a pulled layer's blob
# is written as it streams in, so nothing is downloaded twice.  Leases and
# remove_unused treat blobs as they treat layers.

def blob_path(root: str, digest: str) -> str:
    if not is_digest(digest):
        raise ImageError(f"invalid digest {digest!r}")
    return os.path.join(root, "layers", "blobs", "sha256", digest[7:])


def keep_blob(root: str, blob, digest: str | None, what: str) -> tuple[str, int]:
    """Store the bytes the file object ``blob`` reads, checked against
    ``digest`` (None: named by what they hash to).  Returns (digest, size).
    A blob already kept is not read again: its name vouches for it."""
    import hashlib  # OpenSSL's: a layer may be hundreds of megabytes

    if digest is not None and os.path.isfile(blob_path(root, digest)):
        return digest, os.path.getsize(blob_path(root, digest))
    h, size = hashlib.sha256(), 0
    copy = _BlobCopy(root, blob)
    try:
        while chunk := copy.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
        got = "sha256:" + h.hexdigest()
        if digest is not None and got != digest:
            raise ImageError(f"{what}: digest is {got}, not {digest}")
        copy.keep(got)
    finally:
        copy.close()
    return got, size


class _BlobCopy:
    """A blob read through, its bytes written to a temporary file as they pass;
    ``keep(digest)`` names the file once the reader has checked the digest."""

    def __init__(self, root: str, blob):
        tmp_dir = os.path.join(root, "layers", "blobs", "tmp")
        _private_dirs(root, tmp_dir)
        self.root, self.blob = root, blob
        self.tmp = os.path.join(tmp_dir, f"blob-{os.getpid()}-{next(_counter)}")
        self.out = open(self.tmp, "wb")

    def read(self, n: int = -1) -> bytes:
        data = self.blob.read(n)
        self.out.write(data)
        return data

    def keep(self, digest: str) -> None:
        self.out.flush()
        final = blob_path(self.root, digest)
        _private_dirs(self.root, os.path.dirname(final))
        os.rename(self.tmp, final)  # before the file is closed: a partial's lock holds until then
        self.out.close()

    def close(self) -> None:
        """Forget the copy, unless kept."""
        self.out.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
        self.blob.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Partial(_BlobCopy):
    """A download that outlives its pull: ``layers/blobs/tmp/partial-<hex>``,
    flocked while a pull writes it.  A pull that breaks off, or is killed,
    leaves what arrived; the next pull of the blob reads that first and asks
    the registry only for the rest (``open_rest(offset)``: a Range request).
    Those bytes are trusted no more than the network's: the stream hashes
    every byte, old and new, and a partial that does not add up to the digest
    is deleted, never named.  ``image prune`` deletes the ones nobody writes."""

    def __init__(self, root: str, layer: Layer, open_rest):
        tmp_dir = os.path.join(root, "layers", "blobs", "tmp")
        _private_dirs(root, tmp_dir)
        self.root, self.blob, self.open_rest, self.broken = root, None, open_rest, False
        self.tmp = os.path.join(tmp_dir, "partial-" + layer.digest[7:])
        fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        # Unbuffered: whatever arrived is in the file should the pull be killed.
        self.out = open(fd, "r+b", buffering=0)
        self.offset = os.fstat(fd).st_size
        if layer.size is not None and self.offset > layer.size:  # not a beginning of this blob
            os.ftruncate(fd, 0)
            self.offset = 0
        self.left = self.offset

    def read(self, n: int = -1) -> bytes:
        if self.left:  # what an earlier pull downloaded, from the file
            data = self.out.read(min(self.left, n if n and n > 0 else 1 << 20))
            if not data:
                raise ImageError(f"{self.tmp}: partial download cut short")
            self.left -= len(data)
            return data
        if self.blob is None:
            self.blob = self.open_rest(self.offset)
        try:
            data = self.blob.read(n)
        except BaseException:
            self.broken = True  # the network's fault: what arrived stays for the next pull
            raise
        self.out.write(data)
        return data

    def __exit__(self, kind, value, tb):
        if kind is not None and not issubclass(kind, ImageError):
            self.broken = True  # Ctrl-C, a full disk: nothing wrong with what arrived
        self.close()

    def close(self) -> None:
        if not self.broken and os.path.exists(self.tmp) and not self.out.closed:
            os.unlink(self.tmp)  # before the file is closed: no other pull has it open yet
        self.out.close()
        if self.blob is not None:
            self.blob.close()


# -- leases: layers in use before anything records them -----------------------
#
# A lease (``Store.lease``) is a file layers/leases/<key> naming the layers
# (a hex digest a line), flocked by its holder for as long as it lives.  It is
# made under a
# shared flock of layers/, which remove_unused holds exclusively while it
# decides what is unused and deletes it: a lease made before that is seen, a
# run that comes after waits and then finds (or unpacks) its layers.  A lease
# whose holder died is unlocked, and remove_unused removes it.

_leases = {}  # key -> (descriptor, path), this process's own


def release(key: str) -> None:
    """Give back the lease ``key`` (if this process holds it)."""
    held = _leases.pop(key, None)
    if held is not None:
        fd, path = held
        try:
            os.unlink(path)
        finally:
            os.close(fd)


def remove_unused(root: str, in_use) -> list[str]:
    """Delete the layers of ``root``'s stores (root and rootless), and the
    blobs, that no lease holds and ``in_use()`` does not name (a set of hex
    digests: what the catalog and the containers record, asked while no new
    lease can be taken).  Returns the digests deleted."""
    layers = os.path.join(root, "layers")
    try:
        store = os.open(layers, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        fcntl.flock(store, fcntl.LOCK_EX)
        used = _leased(os.path.join(layers, "leases")) | set(in_use())
        _sweep(os.path.join(layers, "blobs", "tmp"))
        _sweep_partials(os.path.join(layers, "blobs", "tmp"))
        deleted = []
        for sub in ("sha256", os.path.join("rootless", "sha256"), os.path.join("blobs", "sha256")):
            base = os.path.join(layers, sub)
            for name in _listdir(base):
                if name not in used:
                    _remove(os.path.join(base, name))
                    deleted.append("sha256:" + name)
        return deleted
    finally:
        os.close(store)


def _sweep(tmp: str) -> None:
    """Remove what processes that died half way left in ``tmp`` (names ``<what>-<pid>-<n>``)."""
    for name in _listdir(tmp):
        try:
            os.kill(int(name.split("-")[1]), 0)
        except ProcessLookupError:
            _remove(os.path.join(tmp, name))
        except (ValueError, IndexError, PermissionError):
            pass


def _sweep_partials(tmp: str) -> None:
    """Remove the partial downloads (``_Partial``) no pull is writing."""
    for name in _listdir(tmp):
        if name.startswith("partial-"):
            try:
                fd = os.open(os.path.join(tmp, name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(os.path.join(tmp, name))
            except BlockingIOError:
                pass
            finally:
                os.close(fd)


def _leased(leases: str) -> set[str]:
    """The layers that live leases hold; leases whose holder died go."""
    used = set()
    for name in _listdir(leases):
        path = os.path.join(leases, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # given back meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: its layers are in use
                used.update(os.read(fd, 1 << 20).decode(errors="replace").split())
            else:
                os.unlink(path)
        finally:
            os.close(fd)
    return used


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def map_id(ranges: list, id: int) -> int | None:
    """The outside id of inside ``id`` under ``ranges`` [(inside, outside, count)], or None."""
    for inside, outside, count in ranges:
        if inside <= id < inside + count:
            return outside + id - inside
    return None


def _check_id_map(id_map) -> tuple[tuple, tuple]:
    try:
        uid_map, gid_map = id_map
        maps = tuple(tuple((int(a), int(b), int(c)) for a, b, c in m) for m in (uid_map, gid_map))
    except (TypeError, ValueError):
        raise ValueError(f"id_map must be (uid_map, gid_map) of (inside, outside, count): {id_map!r}") from None
    for m in maps:
        if not m or any(a < 0 or b < 0 or c <= 0 for a, b, c in m):
            raise ValueError(f"bad id map {list(m)!r}")
    if os.geteuid() != 0:
        raise ImageError("an id-shifted layer store needs root (only root can give files other owners)")
    return maps


def _map_name(id_map) -> str:
    # "u0.100000.65536-g0.100000.65536": every range of both maps, so that two
    # different maps never share a directory.  No ":" or ",": overlay's
    # mount options use them as separators.
    return "-".join(kind + "_".join(f"{a}.{b}.{c}" for a, b, c in m) for kind, m in zip("ug", id_map))


def _private_dirs(base: str, path: str) -> None:
    """``os.makedirs(path)``, each new directory from ``base`` down 0700 whatever the umask."""
    if not os.path.isdir(path):
        if path == base:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        else:
            _private_dirs(base, os.path.dirname(path))
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass


def _remove(path: str) -> None:
    import shutil

    if not os.path.isdir(path) or os.path.islink(path):  # a blob
        os.unlink(path)
        return
    # A layer may hold read-only directories; rmtree copes as root, and
    # rootless we own every directory and can make it writable first.
    def retry(func, p, exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)
