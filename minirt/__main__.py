"""``python -m minirt``: the same as the ``minirt`` command."""

from minirt.cli import command

command()
