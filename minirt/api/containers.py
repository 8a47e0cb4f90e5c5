"""Containers: run one to completion, start one in the background, and find,
list, inspect, exec into and read the logs of those that exist.

Lecture idea: "run just like a pre-canned image" -- a container is an image
made into a process, created, started, waited for and removed; and the same
container can be reached again later by its id or name, as docker's commands do.
``run`` is the whole of ``minirt run`` (image, spec, container, cleanup) with
the output captured instead of printed; ``start`` is ``run -d`` and gives back
the Container (``stop``, ``wait``, ``exec``, ``remove`` are its methods).
"""

import os
import stat

from minirt import lightjson, spec as specs
from minirt.errors import ImageError, MinirtError
from minirt.image import Store, open_image
from minirt.image.store import release
from minirt.runtime import state
from minirt.runtime.lifecycle import EXITED, PAUSED, RESTARTING, RUNNING, is_running, is_up  # noqa: F401 (the CLI asks these too)
from minirt.runtime.capture import Result, captured
from minirt.runtime.container import Container
from minirt.runtime.userns import host_root, maps_for as userns_maps

__all__ = ["run", "start", "prepare", "start_detached", "Result", "Container",
           "load", "listing", "inspect", "health", "restartable", "exec_start", "show_logs", "log_marks", "processes",
           "open_tty", "attach"]


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
        layers, config = _known_file(image, store, options["id"]) or _unpacked(image, store, options["id"])
        return specs.build(config, cmd=cmd, layers=[str(d) for d in layers], image=str(image), **options)
    except BaseException:
        release(options["id"])
        raise


# What an image file held: {(path, device, inode, size, mtime): (diff ids, config as JSON)}.
# A program that runs many containers from one file (a test suite) reads its
# table of contents once, not 0.2 ms of it for every container.
_files = {}


def _unpacked(image, store, lease):
    """(layer directories, config) of the image file ``image``, leased as ``lease``."""
    identity = _identity(image)  # (before reading: a file changed meanwhile is read again next time)
    with open_image(image) as img:
        diff_ids = [layer.diff_id for layer in img.layers]
        store.lease(lease, diff_ids)
        layers = store.unpack(img)
        config = (img.config or {}).get("config") or {}
    if identity is not None and diff_ids:
        _files[identity] = (diff_ids, lightjson.dumps(config))  # (each spec gets a config of its own)
    return layers, config


def _known_file(image, store, lease):
    """The same for a file read before, unchanged, whose layers are all in
    ``store``; else None (and no lease taken)."""
    known = _files.get(_identity(image))
    if known is None:
        return None
    diff_ids, config = known
    store.lease(lease, diff_ids)
    layers = [store.layer_dir(d) for d in diff_ids]
    if not all(os.path.isdir(d) for d in layers):  # pruned meanwhile, or another store
        release(lease)
        return None
    return layers, lightjson.loads(config)


def _identity(image):
    """An archive's identity, None for a directory (an OCI layout's files
    change without its own times changing)."""
    st = os.stat(image)
    if not stat.S_ISREG(st.st_mode):
        return None
    return os.path.abspath(image), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


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
    from minirt.image.formats import config_platform
    from minirt.image.pull import connect, open_remote
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
    ``resources=minirt.spec.resources(memory="64m")``, ...).  (A healthcheck or
    restart policy needs ``start``: its monitor runs the probes and restarts.)
    """
    root = root or state.default_root()
    specs.check_restart_policy(options.get("restart_policy") or {}, detach=False)
    spec = prepare(image, cmd, root=root, userns=userns, remove=remove, interactive=input is not None, **options)
    container = Container(spec, root)
    container.create()
    try:
        _, out, err = captured(container.start, input)
        return Result(container.wait(), out, err, spec.id)
    finally:
        container.delete()


def removals_deferred():
    """A context manager: the containers removed within the block are gone at
    once (their names, cgroups, networks and state directories, renamed out
    of the state root's sight), but the unlinking of their files waits for
    the end of the block.  The test session's runner answers its test first,
    then cleans up while the test goes on."""
    return state.removals_deferred()


def start(image, cmd=None, *, root=None, userns="", **options):
    """Start a detached container (``run -d``) and return its Container.

    Besides ``run``'s options: ``healthcheck={"Test": ["CMD-SHELL", "..."],
    "Interval": ns, "Timeout": ns, "StartPeriod": ns, "StartInterval": ns,
    "Retries": n}`` (docker's Config.Healthcheck, merged with the image's) and
    ``restart_policy={"Name": "no|always|on-failure|unless-stopped",
    "MaximumRetryCount": n}`` (docker's HostConfig.RestartPolicy).

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
        container.remove(force=True, volumes=True)
        raise
    return container


# -- containers that exist ---------------------------------------------------------------

def load(root, ref):
    """The container ``ref`` names (an id, a unique id prefix, or a name) in ``root``."""
    return Container.load(root, ref)


def listing(root, all=False, filters=()):
    """(state, config, state directory) of each container, newest first;
    running ones only unless ``all`` (or a ``status=`` or ``exited=`` filter);
    those that pass ``filters``, docker ps's ``KEY=VALUE``: several of one key
    are alternatives, different keys must all hold."""
    wanted = {}
    for text in filters:
        key, value = _ps_filter(text)
        wanted.setdefault(key, []).append(value)
    all = all or "status" in wanted or "exited" in wanted
    rows = []
    for cid in state.container_ids(root):
        directory = f"{state.containers_dir(root)}/{cid}"
        try:
            info = state.load(root, cid)
            config = state.read_json(f"{directory}/config.json")
        except (MinirtError, OSError, ValueError):
            continue  # removed meanwhile, or not yet written
        if (all or is_up(info)) and _wanted(info, config, wanted):
            rows.append((info, config, directory))
    rows.sort(key=lambda row: row[0].get("created_at") or 0, reverse=True)
    return rows

PS_FILTERS = {"id": None, "name": None, "label": None, "ancestor": None, "network": None,
              "status": ("created", "restarting", "running", "paused", "exited"), "exited": None,
              "health": ("starting", "healthy", "unhealthy", "none")}


def _ps_filter(text):
    key, eq, value = text.partition("=")
    if not eq or key not in PS_FILTERS:
        raise MinirtError(f"invalid filter {text!r} (ps filters: {', '.join(PS_FILTERS)})")
    if PS_FILTERS[key] and value not in PS_FILTERS[key]:
        raise MinirtError(f"invalid filter '{key}={value}': expected one of {', '.join(PS_FILTERS[key])}")
    if key == "exited" and not (value.lstrip("-").isdecimal() and value.isascii()):
        raise MinirtError(f"invalid filter 'exited={value}': expected an exit code")
    return key, value


def _wanted(info, config, wanted):
    """Whether a container passes ``wanted`` ({key: [values]}): for each key, one of its values."""
    return all(any(_passes(info, config, key, v) for v in values) for key, values in wanted.items())


def _passes(info, config, key, value):
    if key == "id":
        return info["id"].startswith(value)
    if key == "name":
        return value in (info.get("name") or "")
    if key == "label":
        return specs.labels_match(config.get("labels") or {}, value)
    if key == "ancestor":
        return config.get("image") == value
    if key == "network":
        return any(value in (e.get("name"), e.get("network_id")) for e in info.get("networks") or ())
    if key == "status":
        return info.get("status", "created") == value
    if key == "exited":
        return info.get("status") == EXITED and info.get("exit_code") == int(value)
    checked = health(info, config.get("healthcheck")) if info.get("status") == RUNNING else None
    return (checked["Status"] if checked else "none") == value


def inspect(container):
    """docker's ``inspect`` record of ``container``."""
    from minirt.api import network

    info, spec = container.state(), container.spec
    running = is_running(info)
    checked = health(info, spec.healthcheck)
    return {"Id": container.id, "Name": spec.name, "Created": info.get("created_at"),
            "Image": spec.image, "Path": spec.args[0], "Args": spec.args[1:],
            "State": {"Status": info.get("status"), "Running": is_up(info),  # (docker's: restarting too)
                      "Paused": info.get("status") == PAUSED, "Restarting": info.get("status") == RESTARTING,
                      "Pid": info.get("pid") if running else 0,
                      "MonitorPid": info.get("monitor_pid"), "ExitCode": info.get("exit_code"),
                      "OOMKilled": bool(info.get("oom_killed")), "Error": info.get("error") or "",
                      "StartedAt": info.get("started_at"), "FinishedAt": info.get("finished_at"),
                      **({"Health": checked} if checked else {})},
            "RestartCount": info.get("restart_count", 0),
            "HostConfig": {"RestartPolicy": spec.restart_policy or {"Name": "no", "MaximumRetryCount": 0}},
            "Config": spec.to_json(), "Cgroup": info.get("cgroup"),
            "NetworkSettings": {"Networks": network.endpoints(container), "Ports": network.ports(container)},
            "Mounts": [{"Type": "volume" if m.volume else "bind", **({"Name": m.volume, "Driver": "local"}
                                                                      if m.volume else {}),
                        "Source": m.source, "Destination": m.destination, "RW": not m.readonly}
                       for m in spec.mounts],
            "StateDir": container.dir}


def health(info, healthcheck):
    """docker's State.Health ({"Status", "FailingStreak", "Log"}) of a container
    with the state ``info`` and the HealthConfig ``healthcheck``; None if it has
    no probes (or ran in the foreground, with no monitor to probe it)."""
    from minirt.runtime.health import report

    return report(healthcheck, info.get("health")) if info.get("detached", True) else None


def restartable(root):
    """The ids of the stopped containers that their restart policies would
    start when the host comes up (``minirt start --all-restartable``, at boot)."""
    from minirt.runtime.restarts import wanted_at_boot

    return [info["id"] for info, config, _ in listing(root, all=True)
            if wanted_at_boot(config.get("restart_policy"), info)]


def exec_start(container, args, *, env=(), workdir=None, user=None, tty_fd=None, interactive=False,
               started=None):
    """Start ``args`` in the running ``container`` with our stdio (or the pty
    slave ``tty_fd``); return its pid once it runs.  Raises what kept it from
    running (not found, not executable) as ``minirt run`` would.  ``started(pid)``
    is called as soon as the process exists (to forward signals to it)."""
    from minirt.runtime import exec as execution

    pid, err = execution.start(container, args, env=env, workdir=workdir, user=user,
                               tty_fd=tty_fd, interactive=interactive)
    if started:
        started(pid)
    report = execution.wait_for_exec(err)
    if report:
        os.waitpid(pid, 0)
        execution.raise_report(report, args[0])
    return pid


def show_logs(container, tail=None, follow=False, out=None, err=None, since=(0, 0)):
    """``minirt logs``: the container's stdout and stderr so far (the last
    ``tail`` lines), then, with ``follow``, as they come; to the binary files
    ``out`` and ``err`` (default: ours).  ``since``: from ``log_marks``' marks on."""
    from minirt.runtime import logs

    logs.show(container, tail=tail, follow=follow, out=out, err=err, since=since)


def log_marks(container):
    """Where the container's logs end now (for ``show_logs(since=...)``)."""
    from minirt.runtime import logs

    return logs.marks(container)


def processes(container):
    """(pid, command line) of each process of a running ``container`` (``top``), by pid."""
    out = []
    for pid in container.cgroup.pids() if container.cgroup is not None else ():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                words = f.read().rstrip(b"\0").split(b"\0")
        except OSError:
            continue  # gone meanwhile
        out.append((pid, " ".join(w.decode(errors="replace") for w in words)))
    return out


def open_tty():
    """A pseudo-terminal (master, slave) the size of ours, for ``exec -t``."""
    from minirt.runtime import tty

    master, slave = os.openpty()
    tty.copy_winsize(0, master)
    return master, slave


def attach(master, interactive):
    """Relay our terminal to a container's pty ``master`` until it closes."""
    from minirt.runtime import tty

    tty.relay(master, interactive)
