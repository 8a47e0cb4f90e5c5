"""``python -m minirt.oci``: the same as the ``minirt-runc`` command."""

import sys

from minirt.oci.cli import main

sys.exit(main())
