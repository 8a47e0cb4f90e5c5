"""Build the example images: ``make images`` runs ``python images/build.py images/``.

images/busybox.tar      a ``docker save`` archive (docker load reads it)
images/busybox-oci.tar  its OCI archive twin (podman/skopeo oci-archive form)

Both come from Debian's busybox-static, through minirt's own image writer
(minirt/image/busybox.py); no docker is needed.

images/debian.tar       Debian bookworm's minbase (debootstrap, from a Debian mirror;
                        minirt/image/debian.py), a docker archive; made once: an
                        existing one is kept (delete it to make it again).  Without
                        root or debootstrap it is left out, with the reason.

images/toyos.img        emu's guest OS on a bootable disk (`emu run images/toyos.img`),
                        assembled and laid out by emu/mkfs.py; see build_toyos below.
"""

import sys
from pathlib import Path

from minirt.errors import ImageError
from minirt.image.busybox import build_busybox_image
from minirt.image.debian import made_once


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "images")
    out.mkdir(parents=True, exist_ok=True)
    for name, form in (("busybox.tar", "docker"), ("busybox-oci.tar", "oci-archive")):
        path = build_busybox_image(out / name, form)
        print(f"{path}: {form}, {path.stat().st_size // 1024} KiB")
    build_debian(out)
    build_toyos(out)
    return 0


def build_debian(out: Path) -> Path | None:
    """images/debian.tar, unless it is there already (debootstrap downloads 30 MB)."""
    path = out / "debian.tar"
    try:
        made = made_once(path)
    except ImageError as e:
        print(f"{path}: not made: {e}")
        return None
    print(f"{path}: docker, {path.stat().st_size // 1024} KiB{'' if made else ', kept (made earlier)'}")
    return path


# -- emu ------------------------------------------------------------------------

def build_toyos(out: Path) -> Path:
    """images/toyos.img: the same as `python -m emu.mkfs images/toyos.img`."""
    from emu.mkfs import build_toyos as mkfs_toyos

    path = out / "toyos.img"
    entries = mkfs_toyos(str(path))
    print(f"{path}: toyos disk, {path.stat().st_size // 1024} KiB, {len(entries)} files")
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv))
