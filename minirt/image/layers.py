"""Applying one layer: a tar stream becomes a directory that overlayfs can stack.

Lecture idea: "Docker Images" are built in layers, and a container sees them
merged.  The kernel's overlay filesystem does the merging at run time; this
module prepares one layer directory for it, following the OCI image layer
specification:

- a member ``.wh.NAME`` deletes NAME from the layers below.  overlayfs spells
  that as a *whiteout*: a character device with number 0/0.
- a member ``.wh..wh..opq`` in a directory hides everything the layers below
  have in that directory.  overlayfs spells that as an *opaque* directory: the
  xattr ``trusted.overlay.opaque=y``, or ``user.overlay.opaque=y`` when the
  overlay is mounted inside a user namespace with ``userxattr`` (rootless, or
  root with ``--userns=remap``).
- everything else is kept as it is: owners, modes (setuid too), mtimes,
  xattrs (file capabilities live there), hard links, device nodes, and symlinks
  -- an absolute symlink like ``/bin/sh -> /bin/busybox`` is correct inside the
  container, so it is stored unchanged and never followed here.

With an ``id_map`` (an id-shifted store, see store.py) every owner is moved
through the user namespace's map on the way in: uid 0 becomes 100000.

A layer is untrusted input, and a tar can say "write ../../etc/passwd".  Python's
tarfile extraction filters do not fit a root filesystem (the 'data' filter
drops setuid bits and refuses absolute symlinks), so this module is its own
extractor, over minirt's own tar reader (tarindex.py, which checks every
header field), and its one rule is: *never write through a path we have not made
ourselves*.  Every directory on the way to a member is one this extractor
created or checked with lstat (and remembers, so each member costs no extra
system calls); files are opened with O_NOFOLLOW|O_EXCL; a member whose path goes
through a symlink, a ``..`` or an absolute name, or a hard link to something
outside the layer, stops the whole layer with an ImageError.

Read ``apply_layer`` first.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import stat

from minirt.errors import ImageError
from minirt.image.store import map_id
from minirt.image.tarindex import BLOCK, Member, TarFormatError, iter_members

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def apply_layer(stream, dest: str, *, rootless: bool, what: str, id_map=None) -> None:
    """Extract the uncompressed layer tar read from ``stream`` into ``dest``.

    ``dest`` must be an empty directory.  ``stream`` is a ``LayerStream`` (see
    stream.py): forward-only, with ``copy_to_fd``.  ``what`` prefixes every
    error ("image.tar: layer sha256:ab12...").  ``id_map`` is (uid_map,
    gid_map) of (inside, outside, count) to shift owners by (needs root).
    On error ``dest`` is left half written: the store throws it away.
    """
    ex = _Extractor(dest, rootless, what, id_map)

    def read_at(n: int, pos: int) -> bytes:
        stream.seek(pos)
        return stream.read(n)

    try:
        for m in iter_members(read_at):
            ex.add(m, stream)
    except TarFormatError as e:
        if e.truncated:
            raise ImageError(f"{what}: truncated layer ({e})") from None
        at_start = stream.tell() <= BLOCK
        # A damaged header is most often a damaged blob: if the digests say
        # so, that is the error to report.
        stream.finish()
        if at_start:
            raise ImageError(f"{what}: not a tar archive ({e})") from None
        raise ImageError(f"{what}: corrupt tar ({e})") from None
    ex.finish()


class _Extractor:
    def __init__(self, dest: str, rootless: bool, what: str, id_map=None):
        self.dest = dest.rstrip("/")
        self.rootless = rootless
        self.chown = not rootless and os.geteuid() == 0
        self.id_map = id_map
        if id_map is not None and not self.chown:
            raise ImageError(f"{what}: shifting owners needs root")
        # Mounted inside a user namespace, overlay reads only user.* xattrs.
        in_userns = rootless or id_map is not None
        self.opaque_xattr = "user.overlay.opaque" if in_userns else "trusted.overlay.opaque"
        self.what = what
        # Implicit directories are root's: in a shifted layer, the mapped root's.
        self.root_owner = self.owner(None, 0, 0) if self.chown else None
        if id_map is not None:
            os.chown(self.dest, *self.root_owner)
        # Directories (relative paths) known to be real directories that we
        # made or checked.  The value is the metadata to apply at the end:
        # a directory's mode and mtime must wait until its contents are in
        # (writing a child changes the mtime; a read-only mode would stop us).
        self.dirs: dict[str, tuple[int, int | None, int | None] | None] = {"": None}

    def fail(self, m: Member, problem: str):
        raise ImageError(f"{self.what}: member {m.name!r}: {problem}")

    # --- names ----------------------------------------------------------------

    def relname(self, m: Member, name: str, what: str = "") -> str:
        """The member name as a clean relative path; refuse escapes."""
        prefix = f"{what} {name!r} " if what else ""
        if name.startswith("/"):
            self.fail(m, f"{prefix}is an absolute path" if what else "absolute path")
        parts = [p for p in name.split("/") if p and p != "."]
        if ".." in parts:
            self.fail(m, f"{prefix or 'path '}escapes the layer with '..'")
        return "/".join(parts)

    def ensure_dir(self, m: Member, rel: str) -> None:
        """Make ``rel`` (and its parents) real directories inside the layer."""
        missing = []
        while rel not in self.dirs:
            missing.append(rel)
            rel = rel.rpartition("/")[0]
        for rel in reversed(missing):
            path = self.dest + "/" + rel
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    self.fail(m, f"goes through the symlink {rel!r}")
                if not stat.S_ISDIR(st.st_mode):
                    self.fail(m, f"{rel!r} is not a directory")
            # Implicit parents get what docker gives them: root, 0755 (set
            # at the end, like every directory's mode, so the umask is moot).
            if self.id_map is not None:
                os.chown(path, *self.root_owner, follow_symlinks=False)
            self.dirs[rel] = (0o755, None, None)

    def remove(self, rel: str) -> None:
        """Delete what an earlier member put at ``rel`` (a later one wins)."""
        path = self.dest + "/" + rel
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
            # Forget it and everything below it: the name may now become a symlink.
            for k in [k for k in self.dirs if k == rel or k.startswith(rel + "/")]:
                del self.dirs[k]
        else:
            os.unlink(path)

    def make(self, rel: str, create):
        """Run ``create(path)``; if the name is taken, clear it and try once more."""
        path = self.dest + "/" + rel
        try:
            return create(path)
        except FileExistsError:
            self.remove(rel)
            return create(path)

    # --- members --------------------------------------------------------------

    def add(self, m: Member, stream) -> None:
        rel = self.relname(m, m.name)
        parent, _, base = rel.rpartition("/")
        # A mode field may carry the file type's bits too; chmod wants only these.
        m.mode &= 0o7777
        try:
            if base.startswith(WHITEOUT):
                self.whiteout(m, parent, base)
                return
            self.ensure_dir(m, parent)
            if rel == "":
                if m.type != "dir":
                    self.fail(m, "the layer's root is not a directory")
                self.dirs[""] = (m.mode, *self.times(m))
                self.owner_xattrs(m, self.dest, follow=True)
            elif m.type == "dir":
                self.directory(m, rel)
            elif m.type == "file":
                self.regular(m, rel, stream)
            elif m.type == "symlink":
                self.make(rel, lambda p: os.symlink(m.linkname, p))
                self.metadata(m, self.dest + "/" + rel, chmod=False)
            elif m.type == "hardlink":
                self.hardlink(m, rel)
            elif m.type in ("chardev", "blockdev"):
                self.device(m, rel)
            elif m.type == "fifo":
                self.make(rel, lambda p: os.mkfifo(p, 0o600))
                self.metadata(m, self.dest + "/" + rel)
            else:
                self.fail(m, f"unsupported member type {m.flag!r}")
        except OSError as e:
            self.fail(m, e.strerror or str(e))

    def whiteout(self, m: Member, parent: str, base: str) -> None:
        self.ensure_dir(m, parent)
        pdir = self.dest + "/" + parent if parent else self.dest
        if base == OPAQUE:
            try:
                os.setxattr(pdir, self.opaque_xattr, b"y", follow_symlinks=False)
            except OSError as e:
                if e.errno != errno.EOPNOTSUPP:
                    raise
                self.fail(m, f"the store's filesystem cannot mark an opaque directory (no {self.opaque_xattr.split('.')[0]}.* "
                             "extended attributes; tmpfs has user.* ones from Linux 6.6): use a state root elsewhere")
        elif base.startswith(WHITEOUT + WHITEOUT):
            pass  # other ".wh..wh." names are aufs bookkeeping, meaningless here
        else:
            name = base[len(WHITEOUT):]
            if name in ("", ".", ".."):
                self.fail(m, "whiteout of an invalid name")
            rel = parent + "/" + name if parent else name
            # Unprivileged mknod of a 0/0 character device is allowed (Linux
            # >= 5.8) exactly because it is overlayfs's whiteout.
            self.make(rel, lambda p: os.mknod(p, stat.S_IFCHR, os.makedev(0, 0)))
            if self.chown:  # the .wh. member's owner, as docker gives it
                os.chown(self.dest + "/" + rel, *self.owner(m, m.uid, m.gid), follow_symlinks=False)

    def directory(self, m: Member, rel: str) -> None:
        path = self.dest + "/" + rel
        if rel not in self.dirs:
            self.make(rel, lambda p: os.mkdir(p, 0o700))
        self.dirs[rel] = (m.mode, *self.times(m))
        self.owner_xattrs(m, path, follow=True)

    def regular(self, m: Member, rel: str, stream) -> None:
        fd = self.make(rel, lambda p: os.open(p, _CREATE, 0o600))
        try:
            if m.size:
                stream.seek(m.offset)
                stream.copy_to_fd(fd, m.size)
            # chown first: it clears setuid bits and file capabilities.
            if self.chown:
                os.fchown(fd, *self.owner(m, m.uid, m.gid))
            os.fchmod(fd, m.mode)
            self.xattrs(m, fd, follow=True)
            os.utime(fd, ns=self.times(m))
        finally:
            os.close(fd)

    def hardlink(self, m: Member, rel: str) -> None:
        target = self.relname(m, m.linkname, "hard link target")
        # The target must be something this layer already made, reached only
        # through directories we made: that keeps the link inside the layer.
        tparent = target.rpartition("/")[0]
        if tparent not in self.dirs:
            self.check_no_symlink(m, tparent)
            self.fail(m, f"hard link to missing target {m.linkname!r}")
        tpath = self.dest + "/" + target
        try:
            st = os.lstat(tpath)
        except FileNotFoundError:
            self.fail(m, f"hard link to missing target {m.linkname!r}")
        if stat.S_ISDIR(st.st_mode):
            self.fail(m, f"hard link to a directory {m.linkname!r}")
        if target == rel:
            self.fail(m, "hard link to itself")
        self.make(rel, lambda p: os.link(tpath, p, follow_symlinks=False))

    def check_no_symlink(self, m: Member, rel: str) -> None:
        """Fail naming the first symlink on the way to ``rel``, if there is one."""
        path = self.dest
        for part in rel.split("/"):
            path += "/" + part
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    self.fail(m, f"hard link target {m.linkname!r} goes through the symlink "
                                 f"{os.path.relpath(path, self.dest)!r}")
            except FileNotFoundError:
                return

    def device(self, m: Member, rel: str) -> None:
        kind = stat.S_IFCHR if m.type == "chardev" else stat.S_IFBLK
        if m.devmajor > 0xfff or m.devminor > 0xfffff:  # Linux's 12 and 20 bits
            self.fail(m, f"device number {m.devmajor}:{m.devminor} out of range")
        try:
            self.make(rel, lambda p: os.mknod(p, kind | 0o600, os.makedev(m.devmajor, m.devminor)))
        except PermissionError:
            self.fail(m, f"cannot make device node {m.devmajor}:{m.devminor} (not permitted here)")
        self.metadata(m, self.dest + "/" + rel)

    # --- metadata ---------------------------------------------------------------

    @staticmethod
    def times(m: Member) -> tuple[int, int]:
        return m.atime, m.mtime

    def metadata(self, m: Member, path: str, chmod: bool = True) -> None:
        """Owner, mode, xattrs, times of a symlink, device or fifo we just made."""
        self.owner_xattrs(m, path, follow=False)
        if chmod:  # path is the node we made, not a symlink: chmod cannot escape
            os.chmod(path, m.mode)
        os.utime(path, ns=self.times(m), follow_symlinks=False)

    def owner_xattrs(self, m: Member, path: str, follow: bool) -> None:
        if self.chown:
            os.chown(path, *self.owner(m, m.uid, m.gid), follow_symlinks=follow)
        self.xattrs(m, path, follow)

    def owner(self, m: Member | None, uid: int, gid: int) -> tuple[int, int]:
        """The owner to give a file: the member's, shifted through the id map."""
        if self.id_map is None:
            return uid, gid
        host_uid, host_gid = map_id(self.id_map[0], uid), map_id(self.id_map[1], gid)
        if host_uid is None or host_gid is None:
            bad = f"uid {uid}" if host_uid is None else f"gid {gid}"
            problem = f"owner {bad} is outside the user namespace's id map"
            if m is None:
                raise ImageError(f"{self.what}: {problem}")
            self.fail(m, problem)
        return host_uid, host_gid

    def xattrs(self, m: Member, target, follow: bool = False) -> None:
        for name, value in _xattrs(m):
            # overlayfs keeps its own state in these; a layer must not forge it.
            if name.startswith(("trusted.overlay.", "user.overlay.")):
                continue
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as e:
                # Rootless, trusted.* and security.* are out of reach; that
                # loses nothing a rootless container could have used.
                if self.rootless and e.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EACCES):
                    continue
                self.fail(m, f"cannot set xattr {name}: {e.strerror}")

    def finish(self) -> None:
        # Deepest first, so that a read-only parent does not lock us out.
        for rel in sorted(self.dirs, key=lambda r: -r.count("/") - (r != "")):
            meta = self.dirs[rel]
            if meta is None:
                continue
            mode, atime, mtime = meta
            fd = os.open(self.dest + "/" + rel if rel else self.dest, _OPEN_DIR)
            try:
                os.fchmod(fd, mode)
                if mtime is not None:
                    os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)


def _xattrs(m: Member):
    for key, value in m.pax.items():
        if key.startswith("SCHILY.xattr."):
            # The reader decoded the raw bytes with surrogateescape; undo that.
            yield key[13:], value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):  # bsdtar's spelling
            import urllib.parse
            yield urllib.parse.unquote(key[17:]), base64.b64decode(value + "==")
