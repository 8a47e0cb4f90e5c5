"""Build the example images: ``make images`` runs ``python images/build.py images/``.

images/busybox.tar      a ``docker save`` archive (docker load reads it)
images/busybox-oci.tar  its OCI archive twin (podman/skopeo oci-archive form)

Both come from Debian's busybox-static, through minirt's own image writer
(minirt/image/busybox.py); no docker is needed.

images/toyos.img        emu's guest OS on a bootable disk (`emu run images/toyos.img`),
                        assembled and laid out by emu/mkfs.py; see build_toyos below.
"""

import sys
from pathlib import Path

from minirt.image.busybox import build_busybox_image


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "images")
    out.mkdir(parents=True, exist_ok=True)
    for name, form in (("busybox.tar", "docker"), ("busybox-oci.tar", "oci-archive")):
        path = build_busybox_image(out / name, form)
        print(f"{path}: {form}, {path.stat().st_size // 1024} KiB")
    build_toyos(out)
    return 0


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
