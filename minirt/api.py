"""minirt from Python: run containers in tests and scripts without a shell.

    import minirt
    result = minirt.run("images/busybox.tar", ["sh", "-c", "echo hi; hostname"])
    assert result.exit_code == 0 and result.stdout.startswith(b"hi")

``run`` is the whole of ``minirt run`` (image, spec, container, cleanup) with
the output captured instead of printed.  Errors are the ``minirt.errors``
classes, never a bare OSError.
"""

import os

from minirt import spec as specs
from minirt.errors import ImageError
from minirt.image import Store, open_image
from minirt.image.store import release
from minirt.runtime import state
from minirt.runtime.capture import Result, captured
from minirt.runtime.container import Container
from minirt.runtime.userns import host_root, maps_for as userns_maps


def prepare(image, cmd=None, *, root=None, userns="", **options):
    """Unpack ``image`` (a path) into the store and build the ContainerSpec.

    Unprivileged callers always get a user namespace (rootless); root gets one
    with ``userns="remap"``.
    """
    # The container's id names the lease on its layers (image/store.py), which
    # its creation gives back once config.json records them.
    options["id"] = specs.check_id(options.get("id") or os.urandom(32).hex())
    maps = userns_maps(userns)
    remapped = host_root(*maps) if maps else None  # --userns=remap: its root must reach the store
    root = state.private_root(root or state.default_root(), remapped[1] if remapped else None)
    if maps:
        options.update(uid_map=maps[0], gid_map=maps[1], namespaces=specs.NAMESPACES + ("user",))
    # Root with --userns=remap gets layers whose owners are shifted into the
    # container's id range, so that its root owns its files (image/store.py).
    store = Store(root, id_map=maps) if maps and os.geteuid() == 0 else Store(root, rootless=bool(maps))
    try:
        if not os.path.exists(image):
            return _prepare_loaded(image, store, cmd, root, options)
        with open_image(image) as img:
            store.lease(options["id"], [layer.diff_id for layer in img.layers])
            layers = store.unpack(img)
            config = (img.config or {}).get("config") or {}
        return specs.build(config, cmd=cmd, layers=[str(d) for d in layers], image=str(image), **options)
    except BaseException:
        release(options["id"])
        raise


def _prepare_loaded(ref, store, cmd, root, options):
    """An image named by tag or id, loaded before with ``minirt load``."""
    from minirt.runtime.catalog import Catalog

    catalog = Catalog(root)
    entry = catalog.lookup(ref) or _pull_missing(ref, catalog, store)
    store.lease(options["id"], entry["layers"])
    layers = [store.layer_dir(d) for d in entry["layers"]]
    if not all(os.path.isdir(d) for d in layers):
        # Loaded into another store (root vs rootless vs id-shifted): unpack again from the source.
        if os.path.exists(entry.get("source", "")):
            with open_image(entry["source"]) as img:
                layers = store.unpack(img)
        elif entry.get("repo_digests"):
            layers = _pull_again(ref, entry, store)
        else:
            raise ImageError(f"{ref}: layers missing from the store; pull or load the image again")
    config = (entry.get("config") or {}).get("config") or {}
    return specs.build(config, cmd=cmd, layers=[str(d) for d in layers], image=ref, **options)


def _pull_missing(ref, catalog, store):
    """The catalog entry of ``ref``, a name neither on disk nor loaded: pulled
    now, as ``docker run`` does (quietly: the CLI shows its progress itself)."""
    from minirt.image.reference import parse_optional

    pulled = parse_optional(ref) if not ref.endswith(".tar") else None
    if pulled is None:
        raise ImageError(f"{ref}: no such image file or loaded image")
    catalog.pull(pulled, store)
    return catalog.lookup(ref)


def _pull_again(ref, entry, store):
    """The layers of a pulled image, fetched again (by its digest) into ``store``."""
    from minirt.image.pull import config_platform, connect, open_remote
    from minirt.image.reference import parse

    pinned = parse(entry["repo_digests"][0])
    with open_remote(pinned, connect(pinned), config_platform(entry["config"])) as img:
        if img.id != entry["id"]:
            raise ImageError(f"{ref}: {pinned} is now image {img.id[:19]}..., not the one pulled; pull it again")
        return store.unpack(img, workers=4)


def run(image, cmd=None, *, root=None, input=None, remove=True, userns="", **options):
    """Run a container to completion and return its exit code and output.

    ``cmd`` overrides the image's Cmd as on the command line; ``input`` (bytes)
    is fed to the container's stdin.  The container is removed afterwards
    unless ``remove=False``.  ``userns="remap"`` is ``--userns=remap``; other
    keyword arguments are ContainerSpec fields (``env``, ``workdir``, ``user``,
    ``hostname``, ``volumes``, ``entrypoint``, ``init``, ``cap_add``,
    ``resources=minirt.spec.resources(memory="64m")``, ...).
    """
    root = root or state.default_root()
    spec = prepare(image, cmd, root=root, userns=userns, remove=remove, interactive=input is not None, **options)
    container = Container(spec, root)
    container.create()
    try:
        _, out, err = captured(container.start, input)
        return Result(container.wait(), out, err, spec.id)
    finally:
        container.delete()


def start(image, cmd=None, *, root=None, userns="", **options):
    """Start a detached container (``run -d``) and return its Container.

    Use it as a context manager to be sure it is removed::

        with minirt.start("busybox.tar", ["sleep", "60"], name="web") as c:
            print(c.exec(["hostname"]).stdout)
    """
    root = root or state.default_root()
    return start_detached(Container(prepare(image, cmd, root=root, userns=userns, **options), root))


def start_detached(container):
    """Create and start ``container`` in the background (``run -d``); if that
    fails half-way, remove whatever it made."""
    container.create()
    try:
        container.start(detach=True)
    except BaseException:
        container.remove(force=True)
        raise
    return container
