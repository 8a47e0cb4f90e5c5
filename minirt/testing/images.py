"""The images tests run: a tarball as it is, a Dockerfile built or a reference
pulled once for every test and worker, kept between sessions.

Lecture idea: an image is a read-only template, the same for every container
made from it -- so a test suite needs each image once, however many tests
and workers use it.  Built and pulled images go into one shared state root
(``BASE/images/root``, whose build cache makes a rebuild of an unchanged
Dockerfile a row of cache hits) under a file lock, and out again as a
docker archive named by the image's id: a plain file every worker's own
store unpacks from, without sharing any state root between processes.
"""

import fcntl
import os

from minirt.api import build, images
from minirt.errors import ImageError


def is_dockerfile(path):
    """A build context (a directory with a Dockerfile) or a Dockerfile (``Dockerfile``,
    ``Dockerfile.test``, ``web.Dockerfile``)."""
    name = os.path.basename(path)
    return os.path.isdir(path) or name.startswith("Dockerfile") or name.endswith(".Dockerfile")


class Images:
    """What ``source`` names, as a file ``minirt.run`` takes; each resolved once per process."""

    def __init__(self, base, rootdir):
        self.cache = os.path.join(base, "images")
        self.rootdir = str(rootdir)
        self.resolved = {}

    def get(self, source):
        """The image archive for ``source``: a tarball or OCI layout (relative
        to pytest's rootdir), a Dockerfile or a build context, or a reference."""
        if source not in self.resolved:
            self.resolved[source] = self._resolve(str(source))
        return self.resolved[source]

    def _resolve(self, source):
        path = os.path.join(self.rootdir, source)
        if is_dockerfile(path):
            context, file = (path, None) if os.path.isdir(path) else (os.path.dirname(path), path)
            if not os.path.exists(file or os.path.join(context, "Dockerfile")):
                raise ImageError(f"{source}: no Dockerfile there")
            return self._shared(lambda root: build.build(root, context, file))
        if os.path.exists(path):
            return path
        if source.endswith((".tar", ".tar.gz", ".tgz")) or source.startswith(("/", "./", "../")):
            raise ImageError(f"{source}: no such image file (relative paths start at {self.rootdir})")
        ref = images.reference(source)  # an invalid name says so

        def pull(root):
            images.pull(root, ref)
            return images.lookup(root, source)["id"]
        return self._shared(pull)

    def _shared(self, make):
        """``make(root)``'s image (its id) in the shared root, saved once as BASE/images/ID.tar."""
        os.makedirs(self.cache, exist_ok=True)
        lock = os.open(self.cache, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others then hit its cache
            root = os.path.join(self.cache, "root")
            image_id = make(root)
            archive = os.path.join(self.cache, image_id.split(":")[-1] + ".tar")
            if not os.path.exists(archive):
                with open(archive + ".part", "wb") as out:
                    images.save(root, [image_id], out)
                os.rename(archive + ".part", archive)
            return archive
        finally:
            os.close(lock)
