"""Build the example images: ``make images`` runs ``python images/build.py images/``.

images/busybox.tar      a ``docker save`` archive (docker load reads it)
images/busybox-oci.tar  its OCI archive twin (podman/skopeo oci-archive form)

Both come from Debian's busybox-static, through minirt's own image writer
(minirt/image/busybox.py); no docker is needed.
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
