"""minirt from Python: the one door to the runtime, for programs and for minirt's own CLI.

    import minirt
    result = minirt.run("images/busybox.tar", ["sh", "-c", "echo hi; hostname"])
    assert result.exit_code == 0 and result.stdout.startswith(b"hi")

Lecture idea: docker is a client (the ``docker`` command) in front of an
engine; so is minirt, without the daemon.  Everything the ``minirt`` command
does goes through these modules, which a test or a script may call the same
way (``tests/test_layering.py`` checks that the CLI reaches nothing else):

    containers.py  run, start, prepare; find, list, inspect, exec, logs
    images.py      load, pull, push, tag, rmi, save, inspect, history, prune
    build.py       build an image from a Dockerfile
    network.py     networks: create, ls, rm; the check and head start ``run`` needs
    volumes.py     volumes: create, ls, inspect, rm, prune
    host.py        the state root, version, info, system prune

Errors are the ``minirt.errors`` classes, never a bare OSError.  Each module is
imported on first use (``minirt.api.run`` imports ``containers`` only), so
that ``minirt run`` pays for none of the others.
"""

_EXPORTS = {"run": "containers", "start": "containers", "prepare": "containers",
            "start_detached": "containers", "Result": "containers", "Container": "containers"}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f"minirt.api.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'minirt.api' has no attribute {name!r}")
