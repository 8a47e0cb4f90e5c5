"""minirt as an OCI runtime: runc's command line (``minirt-runc``).

Lecture idea: the engines (docker, podman, containerd, buildah) do not make
containers themselves; they write an OCI bundle and call a runtime's command
line -- create, start, state, kill, delete -- the interface runc defined.
This package speaks it on top of the same runtime that ``minirt run`` uses:

    cli.py       runc's commands and global flags; errors in runc's log format
    bundle.py    config.json -> ContainerSpec
    commands.py  create / start / state / kill / delete / pause / ... on a state root
    defaults.py  what `spec` writes and `features` says
"""
