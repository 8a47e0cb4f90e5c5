"""``minirt system prune``, ``image prune``: remove what minirt made that is no longer in use.

This is also the recovery path after a crash.  Because every container records
what it owns before creating it, a container whose minirt or monitor was killed
can always be cleaned up: stopped containers and their state directories,
cgroups whose container is gone (and the cgroup parent, once empty),
half-removed directories, addresses, published ports and veth links of
containers that are gone, networks no container uses (as docker's prune), and
layers that no loaded image, no container and no run or load under way (its
lease, image/store.py) uses any more.
A container that another minirt is creating or starting right now is held
(``state.hold``): not prune's to take, though it may not have its config yet.
"""

import os

from minirt.errors import MinirtError
from minirt.image import store
from minirt.kernel import cgroups
from minirt.runtime import lifecycle, network, state
from minirt.runtime import volumes as volume_store  # (`volumes` is prune's flag)
from minirt.runtime.container import Container


def prune(root, volumes=False, cgroup_parents=()):
    """Stopped containers, leftovers, unused networks and layers; with
    ``volumes`` (``--volumes``), the volumes ``prune_volumes`` takes.  The
    cgroup parents of the containers found, ``$MINIRT_CGROUP_PARENT`` and
    ``cgroup_parents`` go too once empty."""
    done = []
    containers = state.containers_dir(root)
    parents = {os.environ.get("MINIRT_CGROUP_PARENT", "minirt"), *cgroup_parents}
    running = set()
    for cid in state.container_ids(root):
        busy = _hold(os.path.join(containers, cid))
        if busy is None:  # being created or started: its veth and address are about to be used
            running.add(cid)
            continue
        try:
            try:
                c = Container.load(root, cid)
            except (MinirtError, OSError, ValueError):
                state.remove_tree(os.path.join(containers, cid))
                done.append(f"Deleted broken container {cid[:12]}")
                continue
            parents.add(c.spec.cgroup_parent)
            if lifecycle.is_up(c.state()):
                running.add(cid)
                continue
            c.remove(force=True)
            done.append(f"Deleted container {cid[:12]}")
        finally:
            os.close(busy)
    making = _hold(containers, wait=True)  # no creator between its mkdir and its hold
    try:
        for name in _listdir(containers):  # creations that died before their directory got its name
            if name.startswith(".new-") and (busy := _hold(os.path.join(containers, name))) is not None:
                state.remove_tree(os.path.join(containers, name))
                os.close(busy)
    finally:
        if making is not None:
            os.close(making)
    half_removed = [name for name in _listdir(containers) if name.startswith(".removing-")]
    done += _orphan_cgroups([name[len(".removing-"):] for name in half_removed], parents)
    for parent in sorted(parents):
        if cgroups.remove_empty_parent(parent):
            done.append(f"Deleted cgroup /{parent.strip('/')}")
    for name in half_removed:
        state.remove_tree(os.path.join(containers, name))
    done += _build_leftovers(root)
    done += network.prune(root, running)  # addresses, ports, links; unused networks
    done += [f"Deleted layer {d[:19]}" for d in store.remove_unused(root, lambda: _layers_in_use(root))]
    if volumes:
        done += [f"Deleted volume {name}" for name in prune_volumes(root)[0]]
    else:
        _volume_leftovers(volume_store.volumes_dir(root))
    return done


def _volume_leftovers(top):
    """What a killed ``volume create`` (.new-PID-NAME) or ``volume rm`` (.removing-NAME) left."""
    for name in _listdir(top):
        pid = name.split("-")[1] if name.startswith(".new-") else ""
        if name.startswith(".removing-") or (pid.isdigit() and not os.path.exists(f"/proc/{pid}")):
            state.remove_tree(os.path.join(top, name))


def prune_volumes(root, everything=False):
    """``minirt volume prune``, with docker 23's rule: the anonymous volumes no
    container uses, or with ``everything`` every unused one; and what a killed
    ``volume create`` or ``rm`` left half done.  Returns (names, bytes freed)."""
    top = volume_store.volumes_dir(root)
    _volume_leftovers(top)
    used = volume_store.users(root)
    done, freed = [], 0
    for record in volume_store.listing(root):
        name = record["Name"]
        if name in used or not (everything or volume_store.ANONYMOUS in (record.get("Labels") or {})):
            continue
        size = _size(volume_store.data_dir(root, name))
        try:
            volume_store.remove(root, name)
        except MinirtError:  # used, or removed, meanwhile
            continue
        done.append(name)
        freed += size
    return done, freed


def prune_images(root, everything=False):
    """``minirt image prune``: delete the images no name points to (dangling:
    a tag moved away, or loaded by id alone), or with ``everything`` every image
    no container uses; then the layers and blobs nothing uses any more.
    Returns (docker's lines, bytes of blobs freed)."""
    from minirt.runtime.catalog import Catalog, users

    catalog = Catalog(root)
    running_on = users(root, catalog)
    done, sizes = [], {}
    for tags, entry in catalog.list():
        if entry["id"] in running_on or (tags and not everything):
            continue
        try:
            lines = catalog.remove(entry["id"], running_on, force=True)
        except MinirtError:  # removed, or used, meanwhile
            continue
        done += [line[0].lower() + line[1:] for line in lines]
        sizes.update({b["digest"]: b["size"] for b in entry.get("blobs") or ()})
        sizes[entry["id"]] = entry.get("config_size") or 0
    deleted = store.remove_unused(root, lambda: _layers_in_use(root))
    return done, sum(size for digest, size in sizes.items() if digest in deleted)


def prune_build_cache(root):
    """``minirt builder prune``: forget every cached build step and empty the
    cache mounts (RUN --mount=type=cache); the layers only the cache used go
    with the next image or system prune.  Returns (lines, bytes freed)."""
    cache = os.path.join(root, "build-cache")
    freed, steps = 0, 0
    for name in _listdir(cache):
        path = os.path.join(cache, name)
        if name.endswith(".json"):
            freed += os.path.getsize(path)
            os.unlink(path)
            steps += 1
        elif name.endswith(".times"):  # (a built image's times: the step's, not a step)
            freed += os.path.getsize(path)
            os.unlink(path)
    done = [f"Deleted {steps} cached build steps"] if steps else []
    mounts = os.path.join(cache, "mounts")
    for name in _listdir(mounts):
        freed += _size(os.path.join(mounts, name))
        state.remove_tree(os.path.join(mounts, name))
        done.append(f"Deleted cache mount {name[:12]}")
    return done + _build_leftovers(root), freed


def _build_leftovers(root):
    """Working directories of builds that died (a live build holds its own)."""
    done, tmp = [], os.path.join(root, "build-tmp")
    for name in _listdir(tmp):
        busy = _hold(os.path.join(tmp, name))
        if busy is not None:
            state.remove_tree(os.path.join(tmp, name))
            os.close(busy)
            done.append(f"Deleted build leftovers {name}")
    return done


def _size(path):
    total = 0
    for top, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(top, f)).st_size
            except OSError:
                pass
    return total


def _hold(directory, wait=False):
    """``state.hold`` (by default without waiting); None also when the directory is gone."""
    try:
        return state.hold(directory, wait=wait)
    except FileNotFoundError:
        return None


def _orphan_cgroups(ids, parents):
    """Cgroups of containers whose removal was interrupted.

    Only ids this state root knows about: the cgroup parent may be shared with
    other state roots, whose containers are none of our business.
    """
    done = []
    for cid in ids:
        for parent in parents:
            cg = cgroups.for_container(cid, parent)
            if cg.exists():
                try:
                    cg.remove()
                    done.append(f"Deleted cgroup {cg.path}")
                except OSError:
                    pass
    return done


def _layers_in_use(root):
    """What the catalog (layers, blobs) and every container, whatever its state, record."""
    from minirt.runtime.catalog import Catalog

    used = Catalog(root).in_use()
    containers = state.containers_dir(root)
    for name in _listdir(containers):
        try:
            config = state.read_json(os.path.join(containers, name, "config.json"))
            used.update(os.path.basename(layer) for layer in config.get("layers", ()))
        except (OSError, ValueError, AttributeError, TypeError):
            pass  # no config yet: its lease holds its layers
    return used


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
