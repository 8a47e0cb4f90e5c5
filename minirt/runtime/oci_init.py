"""PID 1's steps for a container made from an OCI bundle (``minirt-runc create``).

Lecture idea: the same container, described by someone else.  An engine
(docker, podman, containerd) has already made the root filesystem and lists
every mount itself, /proc and /dev included; PID 1 builds exactly that
(``init.py`` calls these steps in its own order), then waits, as runc's init
does, until the engine says ``start``:

    rootfs     the ready directory bound onto itself (pivot_root needs a mount),
               the bundle's mounts in order, a fresh /dev's device nodes, then
               the createContainer hooks (``hooks.py``)
    finish     after pivot_root: sysctls, read-only and masked paths (runc's
               order), a read-only /dev (once its devices exist), a read-only root
    process    rlimits, OOM score, umask
    stdio      its owner the container's user, as runc makes it: the terminal
               (made on the host's devpts) with the group and mode that the
               bundle's devpts mount gives a terminal (tty, 620), the rest
               keeping their group
    wait       say CREATED to ``create``, then block opening the container's
               exec.fifo for writing until ``start`` opens it for reading
               (``channel.py``: the fifo's path is gone after pivot_root, so
               it is held as an O_PATH descriptor, reopened through /proc/self/fd);
               then remove it (through its directory's O_PATH descriptor, unless
               ``by-runtime`` there says ``start`` does)
    started    once the process is the container's user with its privileges:
               the startContainer hooks, then ``init.py`` executes the command
"""

import errno
import os
import resource
import stat

from minirt.errors import RuntimeFailure
from minirt.kernel import cgroups, libc, masked, mounts
from minirt.runtime import channel, hooks

_PROPAGATION_ROOT = {"": libc.MS_PRIVATE | libc.MS_REC}  # runc's default for the host's mounts


def rootfs(spec, launch):
    """Mount the bundle's root and its mounts under ``launch.rootfs`` (not yet pivoted)."""
    oci = spec.oci
    propagation = mounts.PROPAGATION.get(oci["propagation"]) or _PROPAGATION_ROOT[""]
    libc.mount(None, "/", flags=propagation)
    root = launch.rootfs
    mounts.bind(root, root)   # pivot_root needs the new root to be a mount point
    fresh_dev = False
    for i, m in enumerate(oci["mounts"]):
        if m["type"] in ("cgroup", "cgroup2"):
            _mount_cgroups(root, m, own_namespace="cgroup" in spec.namespaces)
            continue
        if m["type"] in ("proc", "sysfs"):
            _ordinary_directory(root, m)
        options = m["options"]
        if _read_only_dev(m):  # filled first, read-only at the end (finish)
            options = [o for o in options if o != "ro"]
        tree = launch.bind_trees.pop(i, None)  # (in a user namespace: its source, copied by our parent)
        target = mounts.mount_entry(root, m["type"], m["source"], m["destination"], options, tree)
        if tree is not None:
            os.close(tree)
        if m["destination"] == "/dev" and m["type"] == "tmpfs":
            fresh_dev = target
    if fresh_dev:  # the engine's /dev is an empty tmpfs: the runtime fills it (OCI's "default devices")
        mounts.make_devices(fresh_dev, mknod=not (spec.rootless or "user" in oci["joins"]))
        if launch.console_path:
            console = os.path.join(fresh_dev, "console")
            os.close(os.open(console, os.O_CREAT | os.O_WRONLY, 0o600))
            mounts.bind(launch.console_path, console, recursive=False)
    for d in oci["devices"]:
        path = mounts.make_mountpoint(root, os.path.dirname(d["path"]))
        mounts.make_device(os.path.join(path, os.path.basename(d["path"])), d["type"], d["major"], d["minor"],
                           d["mode"], d["uid"], d["gid"])
    hooks.run(oci["hooks"], "createContainer", hooks.state(spec, os.getpid(), "creating"), cwd=root)
    hooks.prepare(oci["hooks"])


def _ordinary_directory(root, m):
    """proc and sysfs go on a directory, never through a symlink the image
    planted there (their contents are the host's way in): as runc refuses it."""
    try:
        st = os.lstat(os.path.join(root, m["destination"].lstrip("/")))
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeFailure(f"{m['destination']}: filesystem {m['type']!r} must be mounted on ordinary directory")


def _read_only_dev(m):
    return m["destination"] == "/dev" and m["type"] == "tmpfs" and mounts.parse_options(m["options"])[0] & libc.MS_RDONLY


def _mount_cgroups(root, m, own_namespace):
    """/sys/fs/cgroup: cgroup2 where it is the only tree; on a v1 or hybrid host a
    tmpfs with each tree under its directory's name, as runc does.

    In a cgroup namespace of its own (entered already: each tree shows its own
    cgroup as "/") PID 1 mounts each tree afresh.  In the host's, it binds its
    own cgroup's directory of each tree instead, as runc does: a fresh cgroup2
    mount there would be the host's, and would reset the host's mount options
    (nsdelegate), waiting ~10 ms for the kernel to do so."""
    flags, _, _ = mounts.parse_options(m["options"])
    flags &= libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
    target = mounts.make_mountpoint(root, m["destination"])
    trees = cgroups.hierarchies()
    own = None if own_namespace else _own_cgroups()

    def mount_tree(tree, where):
        if own is not None and tree is not None:
            mounts.bind(tree.mountpoint + own(tree), where, recursive=False)
            if flags:
                mounts.remount(where, flags)
        elif tree is None or tree.version == "v2":
            libc.mount("cgroup2", where, "cgroup2", flags)
        else:
            libc.mount("cgroup", where, "cgroup", flags, ",".join(sorted(tree.controllers)))

    if cgroups.detect(trees) != "v1":
        mount_tree(next((t for t in trees if t.version == "v2"), None), target)
        return
    libc.mount("tmpfs", target, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC, "mode=755")
    for tree in trees:
        where = os.path.join(target, os.path.basename(tree.mountpoint))
        os.makedirs(where, exist_ok=True)
        mount_tree(tree, where)
    if flags & libc.MS_RDONLY:
        mounts.remount_readonly(target)


def _own_cgroups():
    """This process's cgroup in each tree, as a function of the tree."""
    paths = cgroups.own_paths()

    def own(tree):
        if tree.version == "v2":
            return paths[""].rstrip("/")
        return next(paths[name] for name in tree.controllers if name in paths).rstrip("/")

    return own


def check_id_maps(spec):
    """In a user namespace given by path: it must map ids as linux.uidMappings
    and gidMappings say (the runtime chose the owners of its files by them)."""
    for name, expected in (("uid_map", spec.uid_map), ("gid_map", spec.gid_map)):
        with open(f"/proc/self/{name}") as f:
            actual = sorted(tuple(int(n) for n in line.split()) for line in f if line.strip())
        if actual != sorted(tuple(m) for m in expected):
            kind = name[0]
            raise RuntimeFailure(f"linux.{kind}idMappings {_format_map(expected)} are not those of the user"
                                 f" namespace joined ({_format_map(actual)})")


def _format_map(entries):
    return ", ".join(f"{inside}:{outside}:{count}" for inside, outside, count in entries) or "none"


def finish(spec):
    """After pivot_root: the bundle's sysctls, read-only and masked paths, root."""
    oci = spec.oci
    for key, value in oci["sysctl"].items():  # first: /proc/sys is among the read-only paths
        try:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        except OSError as e:
            raise RuntimeFailure(f"sysctl {key}={value}: {e.strerror}") from None
    for path in oci["readonly_paths"]:
        masked.make_readonly(path)
    for path in oci["masked_paths"]:
        masked.mask(path)
    if any(_read_only_dev(m) for m in oci["mounts"]):
        mounts.remount_readonly("/dev")
    if spec.read_only:
        mounts.remount_readonly("/")


def process(spec):
    """The process's limits: rlimits, OOM score adjustment, umask."""
    oci = spec.oci
    if oci["rlimits"]:
        for name, soft, hard in oci["rlimits"]:
            inf = resource.RLIM_INFINITY
            try:
                resource.setrlimit(getattr(resource, name), (inf if soft >= 1 << 63 else soft,
                                                             inf if hard >= 1 << 63 else hard))
            except (OSError, ValueError) as e:
                raise RuntimeFailure(f"setting {name} to {soft}:{hard}: {e}") from None
    if oci["oom_score_adj"] is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(oci["oom_score_adj"]))
    if oci["umask"] is not None:
        os.umask(oci["umask"])


def own_stdio(spec, uid, tty):
    """Give the container's user its stdin, stdout and stderr (runc's
    fixStdioPermissions), a terminal as though made on the bundle's devpts
    (its ``gid=`` and ``mode=`` options); where the user namespace or a
    read-only /dev does not allow it, they stay as they are, as in runc."""
    null = os.stat("/dev/null").st_rdev
    gid, mode = _devpts_owner(spec.oci["mounts"]) if tty else (-1, None)
    for fd in (0, 1, 2):
        st = os.fstat(fd)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == null:
            continue
        try:
            if tty and os.isatty(fd):
                os.fchown(fd, uid, gid)
                if mode is not None:
                    os.fchmod(fd, mode)
            elif st.st_uid != uid:
                os.fchown(fd, uid, st.st_gid)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
                raise RuntimeFailure(f"giving the container's user its stdio: {e.strerror}") from None


def _devpts_owner(mount_list):
    """(gid, mode) a terminal gets from the bundle's devpts mount (-1, None: none said)."""
    gid, mode = -1, None
    for m in mount_list:
        if m["type"] == "devpts":
            for option in m["options"]:
                key, _, value = option.partition("=")
                if key == "gid" and value.isdigit():
                    gid = int(value)
                elif key == "mode" and value and set(value) <= set("01234567"):
                    mode = int(value, 8)
    return gid, mode


def wait_for_start(launch):
    """Say CREATED to ``create``, then wait for ``start`` on exec.fifo."""
    libc.prctl(libc.PR_SET_PDEATHSIG, 0)   # create exits now: we outlive it (the engine's shim reaps us)
    if not launch.created.send(channel.CREATED):
        raise RuntimeFailure(launch.created.gone)
    launch.created.close()
    channel.wait_for_start(launch.fifo_fd, launch.fifo_dir_fd)


def started(spec):
    """After ``start``, as the container's user: the startContainer hooks."""
    hooks.run(spec.oci["hooks"], "startContainer", hooks.state(spec, os.getpid(), "created"), cwd=os.getcwd())
