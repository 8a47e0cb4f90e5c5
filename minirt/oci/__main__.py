"""``python -m minirt.oci``: the same as the ``minirt-runc`` command."""

from minirt.oci.cli import command

command()
