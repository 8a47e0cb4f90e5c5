"""An OCI bundle's config.json -> a ContainerSpec.

Lecture idea: a container runtime's contract with the engines above it is a
directory, the *bundle*: a root filesystem, ready to run from, and
config.json (the OCI runtime spec, 1.x) that says everything else -- the
process, its user and privileges, the namespaces, the mounts, the cgroup and
its limits.  docker, podman, containerd and buildah all write one and hand it to
runc; here it becomes minirt's one description of a container,
``ContainerSpec``, plus what only a bundle says (its mount list, masked paths,
rlimits ...), kept as plain JSON in ``spec.oci`` for ``runtime/rootfs.py`` and
``init.py``.

Everything is checked here, before anything exists: a field minirt cannot
honour is refused with a one-line error naming it, never silently ignored.
"""

import os

from minirt import lightjson
from minirt.errors import SpecError
from minirt.runtime import hooks as hooks_run
from minirt.spec import ContainerSpec

# config.json's namespace types -> minirt's names (spec.NAMESPACES)
NAMESPACES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "user": "user",
              "cgroup": "cgroup"}
# A namespace given by path is entered with setns: by PID 1, and a pid namespace
# (which only children enter) by its parent, just for the clone that makes PID 1;
# a user namespace by the helper that clones PID 1 (whose new namespaces it then
# owns), a mount namespace by PID 1 instead of making one (container.py, init.py).
JOINABLE = ("net", "ipc", "uts", "pid", "mnt", "user")
MOUNT_TYPES = ("proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "bind", "none", "")
RLIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
           "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS",
           "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK")
SECCOMP = "config.json's linux.seccomp"   # spec.seccomp: where the profile (spec.oci["seccomp"]) came from
PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")

# Fields read below; any other is refused (those that only matter on other
# platforms, or that an LSM the host lacks would apply, are accepted as runc does).
_TOP = {"ociVersion", "process", "root", "hostname", "domainname", "mounts", "hooks", "annotations", "linux"}
_PROCESS = {"terminal", "consoleSize", "user", "args", "env", "cwd", "capabilities", "rlimits",
            "noNewPrivileges", "oomScoreAdj", "apparmorProfile", "selinuxLabel"}
_LINUX = {"namespaces", "uidMappings", "gidMappings", "devices", "cgroupsPath", "resources", "seccomp",
          "maskedPaths", "readonlyPaths", "sysctl", "rootfsPropagation", "mountLabel"}
_RESOURCES = {"memory", "cpu", "pids", "devices", "blockIO", "hugepageLimits", "unified", "network", "rdma"}


def load(bundle, cid):
    """The ContainerSpec of the bundle directory ``bundle`` for container ``cid``."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            config = lightjson.loads(f.read())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file (is {bundle} a bundle?)") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    return from_config(config, bundle, cid)


def from_config(config, bundle, cid):
    if not isinstance(config, dict):
        raise SpecError("config.json: the top level must be an object")
    _known(config, _TOP, "")
    hooks = _hooks(config.get("hooks") or {})
    process = _object(config, "process", "")
    _known(process, _PROCESS, "process.")
    linux = _object(config, "linux", "")
    _known(linux, _LINUX, "linux.")
    args = process.get("args")
    if not args or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise SpecError("config.json: process.args must be a non-empty list of strings")
    cwd = process.get("cwd") or "/"
    if not os.path.isabs(cwd):
        raise SpecError(f"config.json: process.cwd {cwd!r} must be an absolute path")
    user = _object(process, "user", "process.")
    uid, gid = _uint(user.get("uid", 0), "process.user.uid"), _uint(user.get("gid", 0), "process.user.gid")
    groups = [str(_uint(g, "process.user.additionalGids")) for g in user.get("additionalGids") or ()]

    root = _object(config, "root", "")
    rootfs = root.get("path")
    if not isinstance(rootfs, str) or not rootfs:
        raise SpecError("config.json: root.path is missing")
    rootfs = os.path.join(bundle, rootfs)
    if not os.path.isdir(rootfs):
        raise SpecError(f"config.json: root.path {rootfs}: not a directory")

    namespaces, joins = _namespaces(linux.get("namespaces") or [])
    uid_map = _id_map(linux.get("uidMappings"), "uidMappings")
    gid_map = _id_map(linux.get("gidMappings"), "gidMappings")
    # (joined by path, the mappings say how that namespace maps, as runc 1.1 wants them)
    if ("user" in namespaces or "user" in joins) != bool(uid_map and gid_map):
        raise SpecError("config.json: a user namespace needs linux.uidMappings and gidMappings (and they need it)")
    caps = _capabilities(process.get("capabilities") or {}, uid)
    propagation = linux.get("rootfsPropagation") or ""
    if propagation not in PROPAGATIONS:
        raise SpecError(f"config.json: linux.rootfsPropagation {propagation!r} is not one of {', '.join(PROPAGATIONS[1:])}")
    seccomp = linux.get("seccomp")
    listener = None
    if seccomp is not None:
        seccomp, listener = _seccomp(seccomp)
    env = process.get("env") or []
    if not all(isinstance(e, str) and "=" in e for e in env):
        raise SpecError("config.json: process.env must be a list of KEY=VALUE strings")

    oci = {
        "bundle": bundle,
        "hooks": hooks,                       # {stage: [{path, args, env, timeout}]}: runtime/hooks.py
        "annotations": _strings(config.get("annotations") or {}, "annotations"),
        "mounts": [_mount(m, bundle, i) for i, m in enumerate(config.get("mounts") or [])],
        "masked_paths": _paths(linux.get("maskedPaths") or [], "linux.maskedPaths"),
        "readonly_paths": _paths(linux.get("readonlyPaths") or [], "linux.readonlyPaths"),
        "sysctl": _strings(linux.get("sysctl") or {}, "linux.sysctl"),
        "rlimits": [_rlimit(r) for r in process.get("rlimits") or []],
        "oom_score_adj": process.get("oomScoreAdj"),
        "umask": user.get("umask"),
        "devices": [_device(d, i) for i, d in enumerate(linux.get("devices") or [])],
        "joins": joins,                       # {namespace: path} entered with setns
        "propagation": propagation,
        "console_size": _console_size(process.get("consoleSize")),
        "cgroups_path": cgroups_path(linux.get("cgroupsPath") or "", cid),
        "device_rules": None,                 # None: every device (no rule list given)
        "seccomp": seccomp,                   # the profile (OCI's format), or None for none
        "seccomp_listener": listener,         # {path, metadata}: its agent (runtime/seccomp_agent.py), or None
    }
    resources, oci["device_rules"] = _resources(linux.get("resources") or {}, limits_only=False)
    return ContainerSpec(
        args, env, cwd=cwd, user=f"{uid}:{gid}", group_add=groups, id=cid,
        hostname=config.get("hostname") or "", namespaces=namespaces, uid_map=uid_map, gid_map=gid_map,
        resources=resources, cap_add=sorted(caps), cap_drop=["ALL"], seccomp=SECCOMP if seccomp else "unconfined",
        no_new_privileges=bool(process.get("noNewPrivileges")), read_only=bool(root.get("readonly")),
        tty=bool(process.get("terminal")), interactive=True, network="none", rootfs=rootfs, oci=oci,
        cgroup_parent="",
    )


def cgroups_path(path, cid):
    """linux.cgroupsPath as runc's cgroupfs driver reads it: an absolute path is
    the cgroup's path in every tree; a relative one is under the cgroup of
    whoever creates the container; none at all is ``ID``, so relative too."""
    if not isinstance(path, str):
        raise SpecError("config.json: linux.cgroupsPath must be a string")
    if ":" in path and not path.startswith("/"):
        raise SpecError(f"config.json: linux.cgroupsPath {path!r} is systemd's slice:prefix:name form;"
                        " minirt drives cgroupfs only")
    path = path or cid
    if path.startswith("/"):
        return os.path.normpath(path)
    return os.path.normpath(os.path.join(_own_cgroup(), path))


def _own_cgroup():
    """This process's cgroup: the memory controller's (v1), else cgroup2's."""
    from minirt.kernel import cgroups

    paths = cgroups.own_paths()
    return paths.get("memory") or paths.get("") or "/"


def _known(obj, fields, where):
    unknown = sorted(set(obj) - fields)
    if unknown:
        raise SpecError(f"config.json: {where}{unknown[0]} is not supported")


def _object(obj, key, where):
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"config.json: {where}{key} must be an object")
    return value


def _uint(value, what, bits=32):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise SpecError(f"config.json: {what} must be an integer from 0 to {(1 << bits) - 1}, not {value!r}")
    return value


def _strings(obj, what):
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        raise SpecError(f"config.json: {what} must map strings to strings")
    return dict(obj)


def _paths(paths, what):
    if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise SpecError(f"config.json: {what} must be a list of absolute paths")
    return list(paths)


def _namespaces(entries):
    names, joins = [], {}
    for entry in entries:
        kind = entry.get("type") if isinstance(entry, dict) else None
        if kind not in NAMESPACES:
            raise SpecError(f"config.json: linux.namespaces: unknown namespace type {kind!r}")
        name = NAMESPACES[kind]
        if name in names or name in joins:
            raise SpecError(f"config.json: linux.namespaces: {kind} is given twice")
        if entry.get("path"):
            if name not in JOINABLE:
                raise SpecError(f"config.json: linux.namespaces: joining a {kind} namespace by path is not supported")
            if not os.path.lexists(entry["path"]):  # (/proc/PID/ns/* are links to nowhere)
                raise SpecError(f"config.json: linux.namespaces: {entry['path']}: no such file")
            joins[name] = entry["path"]
        else:
            names.append(name)
    if "mnt" not in names and "mnt" not in joins:
        raise SpecError("config.json: linux.namespaces: a container needs a mount namespace of its own or given")
    return tuple(names), joins


def _id_map(entries, what):
    out = []
    for m in entries or []:
        if not isinstance(m, dict):
            raise SpecError(f"config.json: linux.{what} entries must be objects")
        out.append((_uint(m.get("containerID"), f"linux.{what}.containerID"),
                    _uint(m.get("hostID"), f"linux.{what}.hostID"), _uint(m.get("size"), f"linux.{what}.size")))
    return out


def _capabilities(sets, uid):
    """The one set minirt gives root in the container: the bounding set (the
    engines pass the same list as bounding, effective and permitted; a
    non-root user starts with empty sets, as minirt's own containers do).
    An ambient set changes nothing for root, whose sets the bounding set
    fills at execve anyway (buildah passes one): for another user it would."""
    from minirt.kernel import capabilities

    if not isinstance(sets, dict):
        raise SpecError("config.json: process.capabilities must be an object")
    for key in sets:
        if key not in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            raise SpecError(f"config.json: process.capabilities.{key} is not supported")
    bounding = sets.get("bounding") or []
    if sets.get("ambient") and uid != 0:
        raise SpecError("config.json: process.capabilities.ambient is not supported for a user other than root")
    for key in ("effective", "permitted", "ambient"):
        if set(sets.get(key) or []) - set(bounding):
            raise SpecError(f"config.json: process.capabilities.{key} holds a capability the bounding set lacks")
    known = capabilities.known()
    for name in bounding:
        if not isinstance(name, str) or name.upper() not in known:
            raise SpecError(f"config.json: process.capabilities: unknown capability {name!r}")
    return {name.upper() for name in bounding}


def _seccomp(profile):
    """OCI's seccomp object is docker's profile format: the compiler checks it
    at create (``security.seccomp_program``).  (The profile, its agent's
    {path, metadata} if a rule notifies one, else None: without SCMP_ACT_NOTIFY
    the spec says listenerPath is ignored.)"""
    if not isinstance(profile, dict):
        raise SpecError("config.json: linux.seccomp must be an object")
    path, metadata = profile.get("listenerPath") or "", profile.get("listenerMetadata") or ""
    for key, value in (("listenerPath", path), ("listenerMetadata", metadata)):
        if not isinstance(value, str):
            raise SpecError(f"config.json: linux.seccomp.{key} must be a string")
    rules = profile.get("syscalls")
    if not (isinstance(rules, list) and any(isinstance(r, dict) and r.get("action") == "SCMP_ACT_NOTIFY"
                                            for r in rules)):
        return profile, None
    if not path:
        raise SpecError("config.json: linux.seccomp.listenerPath is not set (SCMP_ACT_NOTIFY needs a seccomp agent)")
    if not path.startswith("/"):  # (an abstract socket, "@name", would be the network namespace's)
        raise SpecError(f"config.json: linux.seccomp.listenerPath must be an absolute path, not {path!r}")
    return profile, {"path": path, "metadata": metadata}


def _mount(m, bundle, i):
    where = f"mounts[{i}]"
    if not isinstance(m, dict):
        raise SpecError(f"config.json: {where} must be an object")
    destination, kind = m.get("destination"), m.get("type") or ""
    source, options = m.get("source") or "", m.get("options") or []
    if not isinstance(destination, str) or not destination.startswith("/"):
        raise SpecError(f"config.json: {where}.destination must be an absolute path, not {destination!r}")
    if kind not in MOUNT_TYPES:
        raise SpecError(f"config.json: {where} ({destination}): mount type {kind!r} is not supported")
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise SpecError(f"config.json: {where}.options must be a list of strings")
    is_bind = kind == "bind" or "bind" in options or "rbind" in options
    if is_bind:
        if "bind" not in options and "rbind" not in options:
            options = [*options, "rbind"]
        source = os.path.join(bundle, source)  # (an absolute source stays as it is)
        if not os.path.exists(source):
            raise SpecError(f"config.json: {where} ({destination}): source {source}: no such file or directory")
        from minirt.kernel import mounts

        data = mounts.parse_options(mounts.recursive_options(options)[0])[2]
        if data:
            raise SpecError(f"config.json: {where} ({destination}): bind mount option {data.split(',')[0]!r}"
                            " is not supported")
    elif kind in ("", "none"):
        raise SpecError(f"config.json: {where} ({destination}): a mount needs a type or the bind option")
    return {"destination": os.path.normpath(destination), "type": "bind" if is_bind else kind,
            "source": source, "options": list(options)}


def _hooks(hooks):
    if not isinstance(hooks, dict):
        raise SpecError("config.json: hooks must be an object")
    out = {}
    for stage, entries in hooks.items():
        if stage not in hooks_run.STAGES:
            if entries:
                raise SpecError(f"config.json: hooks.{stage} is not a hook of the OCI runtime spec")
            continue
        if not isinstance(entries, list):
            raise SpecError(f"config.json: hooks.{stage} must be a list")
        out[stage] = []
        for i, hook in enumerate(entries):
            where = f"hooks.{stage}[{i}]"
            if not isinstance(hook, dict) or not isinstance(hook.get("path"), str) or not hook["path"].startswith("/"):
                raise SpecError(f"config.json: {where}.path must be an absolute path")
            args, env = hook.get("args") or [hook["path"]], hook.get("env") or []
            if not all(isinstance(a, str) for a in args) or not all(isinstance(e, str) for e in env):
                raise SpecError(f"config.json: {where}: args and env must be lists of strings")
            timeout = hook.get("timeout")
            if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
                raise SpecError(f"config.json: {where}.timeout must be a positive number of seconds")
            out[stage].append({"path": hook["path"], "args": args, "env": env, "timeout": timeout})
    return out


def _rlimit(r):
    if not isinstance(r, dict) or r.get("type") not in RLIMITS:
        raise SpecError(f"config.json: process.rlimits: unknown type {r.get('type') if isinstance(r, dict) else r!r}")
    hard, soft = _uint(r.get("hard"), f"{r['type']}.hard", 64), _uint(r.get("soft"), f"{r['type']}.soft", 64)
    if soft > hard:
        raise SpecError(f"config.json: process.rlimits: {r['type']}: soft {soft} is above hard {hard}")
    return [r["type"], soft, hard]


def _device(d, i):
    where = f"linux.devices[{i}]"
    if not isinstance(d, dict) or d.get("type") not in ("c", "b", "u", "p"):
        raise SpecError(f"config.json: {where}: type must be c, b, u or p")
    path = d.get("path")
    if not isinstance(path, str) or not path.startswith("/dev/"):
        raise SpecError(f"config.json: {where}: path must be under /dev, not {path!r}")
    return {"path": os.path.normpath(path), "type": d["type"],
            "major": _uint(d.get("major", 0), f"{where}.major"), "minor": _uint(d.get("minor", 0), f"{where}.minor"),
            "mode": _uint(d.get("fileMode", 0o666), f"{where}.fileMode"),
            "uid": _uint(d.get("uid", 0), f"{where}.uid"), "gid": _uint(d.get("gid", 0), f"{where}.gid")}


def _console_size(size):
    if size is None:
        return None
    if not isinstance(size, dict):
        raise SpecError("config.json: process.consoleSize must be an object")
    return [_uint(size.get("height", 0), "consoleSize.height", 16), _uint(size.get("width", 0), "consoleSize.width", 16)]


def resources(res):
    """``update --resources``: the limits it sets (its device list is ignored, as runc's)."""
    return _resources(res, limits_only=True)


# linux.resources' objects and the fields minirt sets (the others must be
# absent, zero or empty); Go reads JSON keys whatever their case, and so do we.
_LIMITS = {
    "memory": ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness", "disableOOMKiller",
               "useHierarchy", "checkBeforeUpdate"),
    "cpu": ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle", "burst"),
    "pids": ("limit",),
    "blockIO": ("weight", "leafWeight", "weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"),
}
_SET = {"memory": ("limit", "reservation", "swap"), "pids": ("limit",), "blockIO": ("weight", "weightDevice"),
        "cpu": ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems")}
_INT64 = (1 << 63) - 1
# The numbers: cgroups.Resources' name, where in linux.resources, the range.
_NUMBERS = (
    ("memory", "memory", "limit", -1, _INT64), ("memory_swap", "memory", "swap", -1, _INT64),
    ("memory_reservation", "memory", "reservation", -1, _INT64), ("pids_limit", "pids", "limit", -1, _INT64),
    ("cpu_shares", "cpu", "shares", 2, 262144), ("cpu_quota", "cpu", "quota", -1, _INT64),
    ("cpu_period", "cpu", "period", 1000, 1000000), ("cpu_rt_runtime", "cpu", "realtimeRuntime", -1, _INT64),
    ("cpu_rt_period", "cpu", "realtimePeriod", 1, _INT64), ("blkio_weight", "blockIO", "weight", 10, 1000),
)


def _resources(res, limits_only):
    """linux.resources -> (cgroups.Resources fields, device allow list or None).
    A zero or empty value means "not set", as the engines write them, and as
    ``update`` reads them: "leave as it is"."""
    if not isinstance(res, dict):
        raise SpecError("config.json: linux.resources must be an object")
    res = _fold(res, _RESOURCES, "linux.resources.")
    parts = {key: _fold(_object(res, key, "linux.resources."), fields, f"linux.resources.{key}.")
             for key, fields in _LIMITS.items()}
    for key, fields in _LIMITS.items():
        for field in fields:
            if parts[key].get(field) and field not in _SET[key]:
                raise SpecError(f"config.json: linux.resources.{key}.{field} is not supported")
    cpu, blkio = parts["cpu"], parts["blockIO"]
    where = "config.json: linux.resources."
    out = {}
    for name, key, field, low, high in _NUMBERS:
        value = parts[key].get(field)
        if value:  # (-1, where allowed: unlimited)
            out[name] = _int(value, f"{where}{key}.{field}", low, high)
    if out.get("memory") and "memory_swap" not in out:
        out["memory_swap"] = 0  # (unlike docker's, runc's default leaves swap as it is)
    if out.get("memory_swap", 0) > 0 and out.get("memory", 0) > out["memory_swap"]:
        raise SpecError(f"{where}memory: memory+swap limit should be >= memory limit")
    if 0 < out.get("cpu_quota", -1) < 1000:
        raise SpecError(f"{where}cpu.quota must be -1 (unlimited) or at least 1000 (µs), not {out['cpu_quota']}")
    for name, field in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
        if cpu.get(field):
            out[name] = _cpuset(cpu[field], f"{where}cpu.{field}")
    devices = []
    for i, device in enumerate(blkio.get("weightDevice") or ()):
        what = f"linux.resources.blockIO.weightDevice[{i}]"
        if not isinstance(device, dict):
            raise SpecError(f"config.json: {what} must be an object")
        device = _fold(device, ("major", "minor", "weight", "leafWeight"), what + ".")
        if device.get("leafWeight"):
            raise SpecError(f"config.json: {what}.leafWeight is not supported")
        if device.get("weight"):
            devices.append((_uint(device.get("major"), what + ".major"), _uint(device.get("minor"), what + ".minor"),
                            _int(device["weight"], f"config.json: {what}.weight", 10, 1000)))
    if devices:
        out["blkio_weight_device"] = tuple(devices)
    if res.get("unified"):
        from minirt.kernel import cgroups

        if cgroups.detect() == "v1":  # (runc's words: such a bundle is wrong here, not merely unsupported)
            raise SpecError("config.json: invalid configuration: linux.resources.unified needs cgroup v2,"
                            " and this host's controllers are on cgroup v1")
        out["unified"] = _strings(res["unified"], "linux.resources.unified")
        for name in out["unified"]:
            if "/" in name or "." not in name.strip("."):
                raise SpecError(f"config.json: unified resource {name!r} must be a file name of the form"
                                " CONTROLLER.PARAMETER")
    for key in ("hugepageLimits", "network", "rdma"):
        if res.get(key):
            raise SpecError(f"config.json: linux.resources.{key} is not supported")
    return out, None if limits_only else _device_rules(res.get("devices"))


def _fold(obj, fields, where):
    """``obj`` with its keys spelt as in ``fields`` whatever their case (Go's
    JSON decoding); refuses other keys, unless zero or empty (unset)."""
    canonical = {field.lower(): field for field in fields}
    out = {}
    for key, value in obj.items():
        field = key if key in fields else canonical.get(key.lower())
        if field is None and value:
            raise SpecError(f"config.json: {where}{key} is not supported")
        if field is not None:
            out[field] = value
    return out


def _int(value, what, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{what} must be an integer from {low} to {high}, not {value!r}")
    return value


def _cpuset(value, what):
    """A list of CPUs or memory nodes, "0-1,3" (the kernel says which exist)."""
    from minirt.spec import is_decimal

    ranges = [part.partition("-") for part in value.split(",")] if isinstance(value, str) else [("",) * 3]
    if not all(is_decimal(lo) and (not dash or is_decimal(hi) and int(lo) <= int(hi)) for lo, dash, hi in ranges):
        raise SpecError(f"{what} must be a list such as \"0-1,3\", not {value!r}")
    return value


def _device_rules(rules):
    """The engines' device list, "deny all, then allow these", as the allow
    list ``cgroups.restrict_devices`` takes; None for "allow every device".
    (Creating device nodes, "m", stays allowed for any device, as in minirt's
    own containers: what matters is that none can be opened.)
    The devices every container gets (``cgroups.DEVICE_ALLOW``: /dev/null,
    the pty devices, mknod of any) come first, as runc adds its own."""
    from minirt.kernel import cgroups

    if not rules:
        return None
    allow = list(cgroups.DEVICE_ALLOW)
    for i, rule in enumerate(rules):
        kind = rule.get("type") or "a"
        major = "*" if rule.get("major") in (None, -1) else rule["major"]
        minor = "*" if rule.get("minor") in (None, -1) else rule["minor"]
        access = rule.get("access") or "rwm"
        if i == 0 and not rule.get("allow") and kind == "a":
            continue  # deny everything: the starting point of restrict_devices
        if i == 0 and rule.get("allow") and kind == "a" and len(rules) == 1:
            return None
        if i == 0:
            raise SpecError("config.json: linux.resources.devices: only lists that begin by denying all are supported")
        kinds = ("c", "b") if kind == "a" else (kind,)
        if rule.get("allow"):
            allow += [(k, major, minor, access) for k in kinds]
            continue
        # A deny after the first takes back what was allowed of exactly that
        # device (docker's list ends by denying c 10:229, which it never allowed).
        allow = [a for a in allow if (a[0], a[1], a[2]) not in {(k, major, minor) for k in kinds}]
        for a in allow:
            if a[0] in kinds and a[3] != "m" and a[1] in ("*", major) and a[2] in ("*", minor):
                raise SpecError(f"config.json: linux.resources.devices[{i}]: denying part of an allowed range"
                                " is not supported")
    return allow


def mount_options():
    """Every mount option a bundle's mounts may use (``features``)."""
    from minirt.kernel import mounts

    return [*mounts.FLAG_OPTIONS, *mounts.PROPAGATION, *mounts.RECURSIVE_OPTIONS]


class Process:
    """The process of ``exec --process FILE``: config.json's process object, alone."""

    def __init__(self, args, env, cwd, user, groups, terminal, console_size):
        self.args, self.env, self.cwd, self.user, self.groups = args, env, cwd, user, groups
        self.terminal, self.console_size = terminal, console_size


def load_process(path):
    try:
        with open(path, "rb") as f:
            process = lightjson.loads(f.read())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(process, dict):
        raise SpecError(f"{path}: the top level must be an object")
    return parse_process(process, path)


def parse_process(process, where="process"):
    _known(process, _PROCESS, f"{where}: ")
    args = process.get("args")
    if not args or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise SpecError(f"{where}: args must be a non-empty list of strings")
    env = process.get("env") or []
    if not all(isinstance(e, str) and "=" in e for e in env):
        raise SpecError(f"{where}: env must be a list of KEY=VALUE strings")
    cwd = process.get("cwd") or "/"
    if not os.path.isabs(cwd):
        raise SpecError(f"{where}: cwd {cwd!r} must be an absolute path")
    user = _object(process, "user", f"{where}: ")
    uid, gid = _uint(user.get("uid", 0), "user.uid"), _uint(user.get("gid", 0), "user.gid")
    groups = [str(_uint(g, "user.additionalGids")) for g in user.get("additionalGids") or ()]
    return Process(args, env, cwd, f"{uid}:{gid}", groups, bool(process.get("terminal")),
                   _console_size(process.get("consoleSize")))
