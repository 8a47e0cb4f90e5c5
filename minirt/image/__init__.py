"""OCI images: reading image archives and unpacking their layers. No privileges needed.

Lecture idea: "Docker Images" -- an image is a config plus a stack of layers,
each a tarball, all named by checksums.  Reading order:

- ``formats.py``  docker archives, OCI archives, OCI layouts -> config + layers
- ``tarindex.py`` tar headers, every field checked: an archive's member table,
                  a layer's members
- ``stream.py``   a layer blob, decompressed and checked against its digests
- ``layers.py``   one layer applied safely to a directory (whiteouts, links)
- ``store.py``    the content-addressed store: each layer unpacked once
                  (as root, rootless, or id-shifted for ``--userns=remap``)
- ``write.py``    the other direction: a directory tree becomes an image
- ``reference.py`` image names as docker normalises them
- ``registry.py`` HTTP to a registry (auth, retries, redirects); ``pull.py`` an
                  image from it, layers streamed into the store; ``credentials.py`` logins
- ``busybox.py``  the example image, built from Debian's busybox-static

Usage::

    with open_image("busybox.tar") as img:
        dirs = Store("/var/lib/minirt").unpack(img)   # overlay lowerdirs (str), bottom first
"""

from minirt.image.formats import Image, Layer, open_image
from minirt.image.store import Store

__all__ = ["Image", "Layer", "Store", "open_image"]
