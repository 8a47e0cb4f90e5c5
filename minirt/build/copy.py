"""COPY and ADD: files from the build context or another stage, made into a layer.

Lecture idea: a layer is only the files an instruction changed.  COPY's layer
is written directly, without running anything: the chosen files are copied
into an empty directory at their destination path, and that directory is the
layer (``write.tar_tree`` makes it a tar).

Docker's rules, in order:

- a source may be a glob (``*.py``, ``src/[ab]*``), matched one path component
  at a time; a source that matches nothing is an error;
- a directory's *contents* are copied, not the directory itself;
- several sources need a destination directory written with a final ``/``;
  otherwise a destination ending in ``/``, or a directory that exists in the
  image, receives the source by its name, and anything else *is* the new name;
- a relative destination is under WORKDIR; symlinks in the destination path
  are followed inside the image (``/bin -> usr/bin`` images);
- new files belong to 0:0 unless ``--chown`` (names from the image's
  /etc/passwd and /etc/group) says otherwise; ``--chmod`` sets their mode;
  modes, times, hard links and xattrs come with them.  Owners are not set on
  the disk (a build without root could not): ``write`` returns them, and the
  layer's tar takes them from there;
- directories created on the way take the image's owner and mode when the
  image already has them.

The cache key of a COPY is :func:`content_key`: names, modes and bytes of what
it copies, never times, so touching a file does not invalidate the cache.
"""

import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat

from minirt.build.context import Context
from minirt.build.ignore import Ignore
from minirt.errors import BuildError, MinirtError

_SKIP_XATTRS = ("trusted.overlay.", "user.overlay.")


def select(tree, pattern: str, where: str) -> list:
    """The paths in ``tree`` (``context.Context`` or ``view.View``) that the
    COPY source ``pattern`` names: clean absolute paths, symlinks resolved."""
    if not any(c in pattern for c in "*?["):
        rel = tree.resolve(pattern)
        if tree.find(rel) is None:
            raise BuildError(f"{where}: {pattern}: no such file or directory")
        return [rel]
    found = ["/"]
    for part in [p for p in pattern.split("/") if p and p != "."]:
        glob = part.replace("[^", "[!")  # Go's negated class, in fnmatch's spelling
        step = []
        for base in found:
            if "*" in part or "?" in part or "[" in part:
                base_path = tree.find(base)
                if base_path is None or not os.path.isdir(base_path):
                    continue
                step += [tree.resolve(posixpath.join(base, name)) for name in tree.listdir(base)
                         if fnmatch.fnmatchcase(name, glob)]
            else:
                step.append(tree.resolve(posixpath.join(base, part)))
        found = [p for p in step if tree.find(p) is not None]
    if not found:
        raise BuildError(f"{where}: {pattern}: no source files were specified (the pattern matches nothing)")
    return sorted(set(found))


def content_key(sources: list) -> str:
    """A digest of what copying ``sources`` ((tree, path) pairs) writes: names,
    types, modes, link targets and file bytes (never times or inode numbers)."""
    h = hashlib.sha256()
    for tree, source in sources:
        for rel, path, st in _walk(tree, source):
            h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            h.update(b"\n")
    return "sha256:" + h.hexdigest()


def write(out: str, sources: list, dest: str, *, base, workdir: str, owner=None, mode=None,
          where: str, keyword: str = "COPY", unpack=None) -> dict:
    """Copy ``sources`` ((tree, path) pairs) to ``dest`` into the layer
    directory ``out``; ``base`` is the image's ``view.View`` before this instruction.
    ``unpack(host path) -> directory or None``: ADD's local archives, whose
    contents are copied instead (owners as the archive says).  Returns each
    written path's (uid, gid)."""
    as_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith(("/.", "/.."))
    dest = posixpath.join(workdir or "/", dest)
    if len(sources) > 1 and not as_dir:
        raise BuildError(f"{where}: {keyword} with more than one source needs a destination "
                         f"directory ending in /, not {dest}")
    target = base.resolve(dest)
    existing = base.lstat(target)
    as_dir = as_dir or (existing is not None and stat.S_ISDIR(existing.st_mode))
    copier = _Copier(out, base, owner, mode)
    for tree, source in sources:
        path = tree.find(source)
        st = os.lstat(path)
        unpacked = unpack(path) if unpack and stat.S_ISREG(st.st_mode) else None
        if unpacked is not None:
            copier.parents(target)
            copier.keep_owner = owner is None
            copier.directory_contents(Context(unpacked, rules=Ignore()), "/", target)
            copier.keep_owner = False
        elif stat.S_ISDIR(st.st_mode):
            copier.parents(target)
            copier.directory_contents(tree, source, target)
        else:
            name = posixpath.join(target, posixpath.basename(source)) if as_dir else target
            copier.parents(posixpath.dirname(name))
            copier.entry(path, st, name)
    copier.finish()
    return copier.owners


def _walk(tree, source):
    """(path relative to ``source``'s parent, host path, lstat) of ``source``
    and, for a directory, everything under it; sorted."""
    todo = [source]
    while todo:
        rel = todo.pop()
        path = tree.find(rel)
        if path is None:
            continue
        st = os.lstat(path)
        yield posixpath.relpath(rel, posixpath.dirname(source)), path, st
        if stat.S_ISDIR(st.st_mode):
            todo += [posixpath.join(rel, n) for n in reversed(tree.listdir(rel))]


class _Copier:
    def __init__(self, out, base, owner, mode):
        self.out, self.base, self.owner, self.mode = out, base, owner, mode
        self.keep_owner = False  # an archive's files keep the owners it gives them
        self.owners = {}       # host path -> (uid, gid) in the layer
        self.links = {}        # (dev, inode) -> the first copy's host path: hard links stay links
        self.dir_times = []    # set last: writing into a directory changes its mtime

    def host(self, rel: str) -> str:
        return os.path.join(self.out, rel.lstrip("/"))

    def parents(self, rel: str) -> None:
        """Directories down to ``rel``, as the image has them (or 0755 root)."""
        done = "/"
        for part in [p for p in rel.split("/") if p]:
            done = posixpath.join(done, part)
            host = self.host(done)
            if os.path.isdir(host):
                continue
            old = self.base.lstat(done)
            if old is not None and not stat.S_ISDIR(old.st_mode):
                raise BuildError(f"cannot copy to {rel}: {done} is not a directory in the image")
            os.mkdir(host)
            if old is None:
                os.chmod(host, 0o755)
                self.owners[host] = self.owner or (0, 0)
            else:
                os.chmod(host, stat.S_IMODE(old.st_mode))
                self.owners[host] = self.base.owner(old)
                self.dir_times.append((host, old))

    def directory_contents(self, tree, source: str, target: str) -> None:
        for name in tree.listdir(source):
            rel = posixpath.join(source, name)
            path = tree.find(rel)
            if path is None:
                continue
            st = os.lstat(path)
            into = posixpath.join(target, name)
            self.entry(path, st, into)
            if stat.S_ISDIR(st.st_mode):
                self.directory_contents(tree, rel, into)

    def entry(self, path: str, st, rel: str) -> None:
        host = self.host(rel)
        kind = stat.S_IFMT(st.st_mode)
        if os.path.lexists(host) and not (kind == stat.S_IFDIR and os.path.isdir(host)):
            _remove(host)  # a later source wins, as it would on a disk
        key = (st.st_dev, st.st_ino)
        if kind == stat.S_IFREG and st.st_nlink > 1 and key in self.links:
            os.link(self.links[key], host)
            return
        if kind == stat.S_IFDIR:
            if not os.path.isdir(host):
                os.mkdir(host)
            self.dir_times.append((host, st))
        elif kind == stat.S_IFREG:
            shutil.copyfile(path, host, follow_symlinks=False)
            self.links[key] = host
        elif kind == stat.S_IFLNK:
            os.symlink(os.readlink(path), host)
        elif kind in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK):
            os.mknod(host, st.st_mode, st.st_rdev)
        else:
            return  # a socket: nothing a layer can hold
        kept = (st.st_uid, st.st_gid) if os.geteuid() == 0 else (0, 0)  # (rootless, the unpacker could not chown)
        self.owners[host] = self.owner or (kept if self.keep_owner else (0, 0))
        if kind != stat.S_IFLNK:
            os.chmod(host, self.mode if self.mode is not None else stat.S_IMODE(st.st_mode))
            _copy_xattrs(path, host)
            if kind != stat.S_IFDIR:
                os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def finish(self):
        for host, st in reversed(self.dir_times):
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))


def unpack_archive(path: str, into: str, what: str):
    """Unpack ``path`` into the empty directory ``into`` if it is a tar
    (plain, gzip, bzip2, xz or zstd), as ADD does; None if it is no archive.
    The project's layer extractor does it: no member lands outside ``into``."""
    import bz2
    import lzma

    from minirt.image.layers import apply_layer
    from minirt.image.stream import LayerStream

    with open(path, "rb") as f:
        head = f.read(512)
    opener = bz2.open if head.startswith(b"BZh") else lzma.open if head.startswith(b"\xfd7zXZ\x00") else None
    is_tar = head[257:262] == b"ustar" or head.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd"))
    if opener is None and not is_tar:
        return None
    try:
        with (opener or open)(path, "rb") as blob:
            stream = LayerStream(blob, digest=None, size=None, diff_id=None, what=what, threaded=False)
            try:
                apply_layer(stream, into, rootless=os.geteuid() != 0, what=what)
                stream.finish()
            finally:
                stream.close()
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise BuildError(f"{what}: cannot unpack: {e}") from None
    except MinirtError as e:
        raise BuildError(str(e)) from None
    return into


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if not name.startswith(_SKIP_XATTRS):
            try:
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
            except OSError:
                pass  # e.g. security.* that this filesystem will not take: the file still copies


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def parse_chmod(text: str, where: str) -> int:
    """--chmod=OCTAL."""
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise BuildError(f"{where}: invalid --chmod={text} (want an octal mode such as 755)")
    return mode


def parse_chown(text: str, image, where: str) -> tuple:
    """--chown=USER[:GROUP] as (uid, gid), names looked up in the image's
    /etc/passwd and /etc/group (a ``view.View``)."""
    user, _, group = text.partition(":")
    passwd = _table(image.read("/etc/passwd"))
    if user.isdigit():
        uid, primary = int(user), int(user)
    elif user in passwd:
        uid, primary = int(passwd[user][1]), int(passwd[user][2])
    else:
        raise BuildError(f"{where}: --chown={text}: no user {user!r} in the image's /etc/passwd")
    if not group:
        return uid, primary
    if group.isdigit():
        return uid, int(group)
    groups = _table(image.read("/etc/group"))
    if group not in groups:
        raise BuildError(f"{where}: --chown={text}: no group {group!r} in the image's /etc/group")
    return uid, int(groups[group][1])


def _table(data: bytes) -> dict:
    """name -> its other fields, from /etc/passwd or /etc/group text."""
    rows = {}
    for line in data.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] and fields[2].isdigit():
            rows.setdefault(fields[0], fields[1:])
    return rows
