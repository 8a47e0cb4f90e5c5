"""ContainerSpec: the one description of a container.

Lecture idea: an image is a template, a container an instance of it.  The image
says what to run by default (its config's Env, Entrypoint, Cmd, WorkingDir,
User); the person running it overrides some of that.  ``build`` merges the two
with docker's rules, once, and the result is passed along unchanged to the code
that creates the container: nothing later re-derives it.

The fields follow the OCI runtime spec's config.json (process.args, process.env,
process.cwd, hostname, mounts, ...), so the runtime command line can fill the
same structure from a bundle.
"""

import os

from minirt.digests import is_hex_digest
from minirt.errors import SpecError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCI_VERSION = "1.0.2"   # the OCI runtime spec whose config.json and state minirt-runc speak
NAMESPACES = ("mnt", "pid", "uts", "ipc", "net", "cgroup")   # "user" is added for rootless runs

# Plain classes, not dataclasses or namedtuples: importing `dataclasses` (it pulls
# in `inspect`) costs ~10 ms, `collections` 2 ms, of the 30 ms `minirt run` may
# add to Python's own start-up.


class Mount:
    """What ``-v`` makes visible inside the container: a host path
    (``-v /SRC:DST[:ro]``), a named volume (``-v NAME:DST[:ro]``) or an
    anonymous one (``-v DST``).  A volume's ``source`` is its directory in the
    state root, filled in when the container is created (runtime/volumes.py)."""

    __slots__ = ("source", "destination", "readonly", "volume", "anonymous")

    def __init__(self, source, destination, readonly=False, volume="", anonymous=False):
        self.source, self.destination, self.readonly = source, destination, readonly
        self.volume, self.anonymous = volume, anonymous

    def to_json(self):
        d = {"source": self.source, "destination": self.destination, "readonly": self.readonly}
        if self.volume:
            d.update(volume=self.volume, anonymous=self.anonymous)
        return d

    def __eq__(self, other):
        return type(other) is type(self) and other.to_json() == self.to_json()

    def __repr__(self):
        return (f"Mount({self.source!r}, {self.destination!r}, readonly={self.readonly}"
                + (f", volume={self.volume!r})" if self.volume else ")"))

    @classmethod
    def parse(cls, text):
        parts = text.split(":")
        if len(parts) == 1 and os.path.isabs(text):  # -v /data: a new anonymous volume
            return cls("", os.path.normpath(text), volume=os.urandom(32).hex(), anonymous=True)
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise SpecError(f"invalid volume {text!r}: expected SRC:DST[:ro|rw], NAME:DST[:ro|rw] or DST")
        source, destination = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            raise SpecError(f"invalid volume {text!r}: mode must be ro or rw, not {mode!r}")
        if not os.path.isabs(destination):
            raise SpecError(f"invalid volume {text!r}: destination must be an absolute path")
        if not os.path.isabs(source):
            check_volume_name(source, f"invalid volume {text!r}")
            return cls("", os.path.normpath(destination), mode == "ro", volume=source)
        if not os.path.exists(source):
            raise SpecError(f"invalid volume {text!r}: {source}: no such file or directory")
        return cls(os.path.realpath(source), os.path.normpath(destination), mode == "ro")


def check_volume_name(text, what="invalid volume name"):
    """docker's rule for a local volume's name: two or more of [a-zA-Z0-9_.-],
    a letter or digit first, at most NAME_MAX (it names a directory of the state root)."""
    if not (_is_name(text, NAME_MAX) and len(text) > 1):
        raise SpecError(f"{what}: {text!r} includes invalid characters for a local volume name,"
                        " only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed."
                        " If you intended to pass a host directory, use absolute path")
    return text


class ContainerSpec:
    """Everything about one container, as plain data (saved as its config.json)."""

    def __init__(self, args, env, *, cwd="/", user="", hostname="", id=None, name="", image="",
                 layers=(), mounts=(), namespaces=NAMESPACES, uid_map=(), gid_map=(), resources=None,
                 cap_add=(), cap_drop=(), privileged=False, seccomp=None, no_new_privileges=True,
                 read_only=False, tmpfs=(), group_add=(), tty=False, interactive=False, init=False,
                 remove=False, cgroup_parent=None, network=None, ports=(), aliases=(), more_networks=(), labels=None,
                 rootfs=None, oci=None, healthcheck=None, restart_policy=None, shell=()):
        self.args = list(args)              # the process to run, argv[0] first
        self.env = list(env)                # "KEY=VALUE" strings
        self.cwd = cwd
        self.user = user                    # "", "UID[:GID]" or "NAME[:GROUP]", resolved inside
        self.hostname = hostname
        self.id = id or os.urandom(32).hex()
        self.name = name
        self.image = image                  # where the image came from, for messages
        self.layers = list(layers)          # layer dirs, bottom first
        self.mounts = list(mounts)          # [Mount]
        self.namespaces = tuple(namespaces)
        self.uid_map = list(uid_map)        # [(inside, outside, count)] with "user"
        self.gid_map = list(gid_map)
        self.resources = dict(resources or {})  # cgroups.Resources fields
        # Hardening (docker's defaults): see minirt/kernel/security.py and masked.py.
        self.cap_add = list(cap_add)
        self.cap_drop = list(cap_drop)
        self.privileged = privileged
        self.seccomp = seccomp              # None (default profile), "unconfined" or a JSON file
        self.no_new_privileges = no_new_privileges
        self.read_only = read_only          # --read-only: the root filesystem is not writable
        self.tmpfs = list(tmpfs)            # "DST[:OPTIONS]"
        self.group_add = list(group_add)    # extra groups, names or gids
        self.tty = tty                      # -t: a pseudo-terminal
        self.interactive = interactive      # -i: keep stdin attached
        self.init = init                    # --init: a reaper runs as PID 1
        self.remove = remove                # --rm: delete the container when it exits
        self.cgroup_parent = cgroup_parent or os.environ.get("MINIRT_CGROUP_PARENT", "minirt")
        # Networking (minirt/runtime/network.py): none, host, bridge, container:NAME or a
        # network's name; root defaults to bridge, rootless to none (as podman without slirp).
        self.network = network or default_network()
        self.ports = list(ports)            # -p: {host_ip, host_port, container_port, proto}
        self.aliases = list(aliases)        # --network-alias: more names for it in peers' /etc/hosts
        # The networks after the first (--network a --network b): [{"name", "aliases"}], eth1 on.
        self.more_networks = [dict(n) for n in more_networks]
        self.labels = dict(labels or {})    # --label KEY=VALUE (what minirt compose finds its containers by)
        # From an OCI bundle (minirt/oci/bundle.py): a root filesystem that is ready
        # (instead of layers), and what only a bundle says (its mounts, masked paths,
        # rlimits, ...: see bundle.py), as plain JSON.
        self.rootfs = rootfs
        self.oci = oci
        # Looked after by the monitor of a detached container (runtime/health.py,
        # runtime/restarts.py), in docker's shapes: Config.Healthcheck ({"Test": [...],
        # "Interval": ns, ...}; the image's merged with run's flags) and
        # HostConfig.RestartPolicy ({"Name": ..., "MaximumRetryCount": N}).
        self.healthcheck = healthcheck
        self.restart_policy = restart_policy
        self.shell = list(shell)            # the image's SHELL: what runs a CMD-SHELL probe

    @property
    def rootless(self):
        """In a user namespace: no mknod, overlay with userxattr, a store of its own."""
        return "user" in self.namespaces

    def to_json(self):
        d = dict(vars(self))
        d["mounts"] = [m.to_json() for m in self.mounts]
        return d

    @classmethod
    def from_json(cls, d):
        d = dict(d)
        d["mounts"] = [Mount(**m) for m in d.get("mounts", [])]
        d["uid_map"] = [tuple(m) for m in d.get("uid_map", [])]
        d["gid_map"] = [tuple(m) for m in d.get("gid_map", [])]
        return cls(**d)

    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)

    def __repr__(self):
        return f"ContainerSpec(id={self.id[:12]!r}, image={self.image!r}, args={self.args!r})"


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_INT64_MAX = (1 << 63) - 1   # docker keeps sizes and counts in an int64
PID_MAX_LIMIT = 1 << 22      # the kernel's most pids (64-bit): pids.max refuses more


def parse_bytes(text, flag):
    """docker's sizes: "512m", "1g", "1.5G", "1024", "64mb" (binary units)."""
    t = str(text).strip().lower()
    if t.endswith("b") and len(t) > 1 and t[-2] in "kmgt":
        t = t[:-1]
    unit = t[-1] if t and t[-1] in "bkmgt" else ""
    number = t[:-1] if unit else t
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = None
    if value is not None and value < 0:
        raise SpecError(f"invalid {flag} {text!r}: must not be negative")
    if value is None or not value <= _INT64_MAX:  # also nan and inf, which compare false
        raise SpecError(f"invalid {flag} {text!r}: expected a size such as 512m or 1g (at most 8e18 bytes)")
    return int(value)


def resources(memory=None, memory_swap=None, pids_limit=None, cpus=None, cpu_shares=None, cpuset_cpus=None):
    """Command-line limits (strings or numbers) -> the fields of cgroups.Resources."""
    res = {}
    if memory is not None:
        res["memory"] = parse_bytes(memory, "--memory")
        if res["memory"] < 6 << 20:
            raise SpecError("invalid --memory: the minimum allowed is 6m")
    if memory_swap is not None:
        if "memory" not in res:
            raise SpecError("--memory-swap needs --memory as well")
        swap = -1 if str(memory_swap).strip() == "-1" else parse_bytes(memory_swap, "--memory-swap")
        if swap != -1 and swap < res["memory"]:
            raise SpecError("invalid --memory-swap: must be at least --memory (it counts memory plus swap)")
        res["memory_swap"] = swap
    if pids_limit is not None:
        res["pids_limit"] = _number(pids_limit, int, "--pids-limit")
        if res["pids_limit"] > PID_MAX_LIMIT:
            raise SpecError(f"invalid --pids-limit {pids_limit!r}: at most {PID_MAX_LIMIT} (<= 0: unlimited)")
    if cpus is not None:
        res["cpus"] = _number(cpus, float, "--cpus")
        # 0.01: the kernel's smallest CFS quota is 1 ms of a 100 ms period.
        if not 0.01 <= res["cpus"] <= (os.cpu_count() or 1):
            raise SpecError(f"invalid --cpus {cpus!r}: must be between 0.01 and {os.cpu_count()}")
    if cpu_shares is not None:
        res["cpu_shares"] = _number(cpu_shares, int, "--cpu-shares")
        if not 2 <= res["cpu_shares"] <= 262144:
            raise SpecError(f"invalid --cpu-shares {cpu_shares!r}: must be between 2 and 262144")
    if cpuset_cpus is not None:
        res["cpuset_cpus"] = parse_cpuset(cpuset_cpus)
    return res


def parse_cpuset(text):
    """``--cpuset-cpus``: "0-1,3", only CPUs this host has (as docker checks)."""
    text = str(text)
    count = os.cpu_count() or 1
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        hi = hi if dash else lo
        if not (is_decimal(lo) and is_decimal(hi)) or int(lo) > int(hi):
            raise SpecError(f"invalid --cpuset-cpus {text!r}: expected a list such as 0-1,3")
        if int(hi) >= count:
            raise SpecError(f"invalid --cpuset-cpus {text!r}: this host has CPUs 0-{count - 1}")
    return text


def is_decimal(text):
    """ASCII digits only: str.isdigit also takes '²', which int() refuses."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


def signal_by_name(name):
    """The number of the signal ``name`` ("KILL", "SIGKILL", in any case), or
    None.  From the C half of ``signal``: its Python half builds enums of every
    signal, 3 ms of a command that only needs one number."""
    import _signal

    name = name.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    number = getattr(_signal, name, None)
    return number if isinstance(number, int) and not name.startswith("SIG_") else None


def _number(text, kind, flag):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise SpecError(f"invalid {flag} {text!r}: not a number") from None


def _env_key(item):
    return item.split("=", 1)[0]


def merge_env(image_env, overrides, host_env=os.environ):
    """Image Env, then ``-e`` in order; ``-e KEY`` alone copies the host's value."""
    env = {}
    for item in list(image_env or []):
        env[_env_key(item)] = item
    for item in overrides:
        key = _env_key(item)
        if not key:
            raise SpecError(f"invalid environment variable {item!r}")
        if "=" in item:
            env[key] = item
        elif key in host_env:
            env[key] = f"{key}={host_env[key]}"
        else:
            env.pop(key, None)
    env.setdefault("PATH", f"PATH={DEFAULT_PATH}")
    return list(env.values())


def command(image_config, cmd=None, entrypoint=None):
    """docker's rule: ENTRYPOINT + CMD, where ``--entrypoint`` also drops the image's CMD.
    ``entrypoint``: a word (the command line's) or a list of them (compose's exec form)."""
    if entrypoint is not None:
        ep = list(entrypoint) if isinstance(entrypoint, (list, tuple)) else [entrypoint] if entrypoint else []
        default_cmd = []
    else:
        ep = list(image_config.get("Entrypoint") or [])
        default_cmd = list(image_config.get("Cmd") or [])
    args = ep + (list(cmd) if cmd else default_cmd)
    if not args:
        raise SpecError("no command specified: the image has no Entrypoint or Cmd and none was given")
    return args


def build(image_config, *, cmd=None, entrypoint=None, env=(), workdir=None, user=None,
          hostname=None, volumes=(), tmpfs=(), ports=(), healthcheck=None, restart_policy=None, **options):
    """A ContainerSpec from an image's config (its ``config`` section) and overrides.
    ``healthcheck`` and ``restart_policy`` are docker's Config.Healthcheck and
    HostConfig.RestartPolicy (``healthcheck_flags``, ``parse_restart``)."""
    c = image_config or {}
    policy = check_restart_policy(restart_policy or {"Name": "no"}, remove=options.get("remove", False))
    spec = ContainerSpec(
        args=command(c, cmd, entrypoint),
        env=merge_env(c.get("Env"), env),
        cwd=workdir or c.get("WorkingDir") or "/",
        user=user if user is not None else (c.get("User") or ""),
        mounts=[v if isinstance(v, Mount) else Mount.parse(v) for v in volumes],
        tmpfs=[_check_tmpfs(t) for t in tmpfs],
        ports=[p if isinstance(p, dict) else parse_port(p) for p in ports],
        healthcheck=merge_healthcheck(c.get("Healthcheck"), healthcheck),
        restart_policy=policy,
        shell=c.get("Shell") or (),
        **options,
    )
    check_id(spec.id)
    check_workdir(spec.cwd)
    parse_network(spec.network)
    for n in spec.more_networks:
        parse_network(n["name"])
    check_name(spec.name)
    for alias in spec.aliases + [a for n in spec.more_networks for a in n["aliases"]]:
        check_hostname(alias)
    if spec.network == "host":  # the host's network namespace: no new one
        spec.namespaces = tuple(n for n in spec.namespaces if n != "net")
    spec.hostname = check_hostname(hostname or spec.id[:12])
    if not any(_env_key(e) == "HOSTNAME" for e in spec.env):
        spec.env.append(f"HOSTNAME={spec.hostname}")
    return spec


def check_id(text):
    """A container's id (an API caller may choose it): it names its directories."""
    if not (isinstance(text, str) and is_hex_digest(text)):
        raise SpecError(f"invalid container id {text!r}: must be 64 lower-case hex digits")
    return text


def check_workdir(text):
    """``-w``: the working directory, an absolute path inside the container."""
    if not os.path.isabs(text):
        raise SpecError(f"invalid working directory {text!r}: must be an absolute path")
    return text


def _check_tmpfs(text):
    destination = text.split(":", 1)[0]
    if not os.path.isabs(destination):
        raise SpecError(f"invalid --tmpfs {text!r}: the destination must be an absolute path")
    return text


def parse_port(text):
    """``[[IP:][HOSTPORT]:]CTRPORT[/tcp|udp]`` -> {"host_ip", "host_port",
    "container_port", "proto"}; host_port 0 when none is given (``-p 80``,
    ``-p 127.0.0.1::80``): the kernel picks one when it is published."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise SpecError(f"invalid port {text!r}: protocol must be tcp or udp")
    parts = spec.rsplit(":", 2)
    parts = [""] * (3 - len(parts)) + parts
    host_ip, host_port, ctr_port = parts
    if host_ip:
        import ipaddress
        try:
            if ipaddress.ip_address(host_ip).version != 4:
                raise ValueError
        except ValueError:
            raise SpecError(f"invalid port {text!r}: {host_ip!r} is not an IPv4 address") from None
    numbers = []
    for n, lowest in ((host_port or "0", 0), (ctr_port, 1)):  # (host port 0: the kernel's choice)
        if not is_decimal(n) or not lowest <= int(n) <= 65535:
            raise SpecError(f"invalid port {text!r}: {n!r} is not a port number (1-65535)")
        numbers.append(int(n))
    return {"host_ip": host_ip, "host_port": numbers[0], "container_port": numbers[1], "proto": proto}


def default_network():
    """bridge for root.  Rootless runs cannot make host links: they get
    user-mode networking (slirp4netns, as rootless podman does) where it is
    installed and may open /dev/net/tun, and none where not."""
    if os.geteuid() == 0:
        return "bridge"
    return "slirp4netns" if on_path("slirp4netns") and os.access("/dev/net/tun", os.R_OK | os.W_OK) else "none"


def on_path(command):
    """Whether ``command`` is an executable in one of $PATH's directories."""
    return any(os.access(os.path.join(d, command), os.X_OK)
               for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d)


_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")
# A container's name becomes a file name (names/NAME, and a temporary
# .NAME.PID beside it), and file names end at 255 bytes: 128 leaves room.
NAME_MAX = 128


def _is_name(text, limit):
    """docker's rule: a letter or digit, then letters, digits, '_', '.' or '-'."""
    return 0 < len(text) <= limit and text[0] in _ALNUM and _NAME_CHARS.issuperset(text)


def is_network_name(text):
    """A network's name: docker's rule, at most 64 characters."""
    return _is_name(text, 64)


def check_hostname(text):
    """``--hostname``: at most 64 characters (the kernel's limit), and, as it
    becomes a line of /etc/hosts, docker's name characters only."""
    if not _is_name(text, 64):
        raise SpecError(f"invalid hostname {text!r}: expected at most 64 of [a-zA-Z0-9_.-],"
                        " starting with a letter or digit")
    return text


def parse_labels(items):
    """``--label KEY=VALUE`` (or ``KEY`` alone: an empty value) -> {KEY: VALUE}."""
    labels = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not key.isprintable():
            raise SpecError(f"invalid label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def labels_match(labels, wanted):
    """A ``label=`` filter's test (docker's ps, volume ls): ``wanted`` KEY is
    among ``labels``, KEY=VALUE is, with that value."""
    key, eq, value = wanted.partition("=")
    return key in labels and (not eq or labels[key] == value)


def check_user(text):
    """``--user``: "", NAME or UID, each optionally with :GROUP or :GID."""
    if text:
        name, sep, group = text.partition(":")
        for part in (name, group) if sep else (name,):
            _check_id(part, text, "--user")
    return text


def check_group(text):
    """``--group-add``: a group's name or GID."""
    return _check_id(text, text, "--group-add")


NO_ID = 0xFFFFFFFF  # (uid_t)-1: "leave unchanged" to setuid(2), so never an id


def is_id(text):
    """A number the kernel takes as a uid or gid: below NO_ID."""
    return is_decimal(text) and int(text) < NO_ID


def _check_id(part, text, flag):
    """A user or group: a name, or a number the kernel takes as an id."""
    if not part or ":" in part or not part.isprintable() or (part.isdigit() and not is_id(part)):
        raise SpecError(f"invalid {flag} {text!r}: expected a name or a number below {NO_ID}")
    return part


def check_cgroup_parent(text):
    """``--cgroup-parent``: a path in the cgroup tree that stays in it (no "..")."""
    if not text or any(part in (".", "..") for part in text.split("/")) or not text.isprintable():
        raise SpecError(f"invalid --cgroup-parent {text!r}: expected a path such as minirt or /ci/jobs,"
                        " without . or ..")
    return text


def check_name(text):
    """``--name``: docker's rule, at most NAME_MAX characters ("" is no name)."""
    if text and not _is_name(text, NAME_MAX):
        raise SpecError(f"invalid container name {text!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-]*"
                        f" are allowed, at most {NAME_MAX} characters")
    return text


def parse_networks(values, aliases=()):
    """Repeated ``--network`` (docker's short ``NAME`` and long
    ``name=NAME,alias=A,...`` forms) and ``--network-alias`` (for each
    network given) -> [{"name", "aliases"}], the first network first."""
    out = []
    for text in values:
        if not text.startswith("name="):
            out.append({"name": parse_network(text), "aliases": list(aliases)})
            continue
        fields = {"alias": []}
        for item in text.split(","):
            key, sep, value = item.partition("=")
            if not sep or not value or key not in ("name", "alias") or (key == "name" and "name" in fields):
                raise SpecError(f"invalid --network {text!r}: expected name=NETWORK[,alias=NAME]...")
            if key == "alias":
                fields["alias"].append(check_hostname(value))
            else:
                fields["name"] = parse_network(value)
        out.append({"name": fields["name"], "aliases": fields["alias"] + list(aliases)})
    return out


def parse_network(text):
    """Check the form of ``--network`` (whether the network exists is checked later)."""
    if text in ("none", "host", "bridge") or is_network_name(text):
        return text
    if text.startswith("container:") and text[len("container:"):]:
        return text
    raise SpecError(f"invalid --network {text!r}: expected none, host, bridge, container:NAME or a network name")


# -- durations, healthchecks and restart policies (docker's flags and shapes) ------------

_DURATION_UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6, "s": 10**9,
                   "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text):
    """Go's time.ParseDuration ("1m30s", "1.5s", "500ms", "-2s", "0") in
    nanoseconds, as docker reads its duration flags; ValueError if it is none."""
    sign, rest = (-1, text[1:]) if text.startswith("-") else (1, text[1:] if text.startswith("+") else text)
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(text)
    total = 0
    while rest:
        i = len(rest) - len(rest.lstrip("0123456789."))
        j = i + len(rest[i:]) - len(rest[i:].lstrip("abcdefghijklmnopqrstuvwxyz\u00b5\u03bc"))
        number, unit = rest[:i], rest[i:j]
        whole, _, fraction = number.partition(".")
        if number in ("", ".") or "." in fraction or unit not in _DURATION_UNITS:
            raise ValueError(text)
        size = _DURATION_UNITS[unit]
        total += int(whole or 0) * size + int(fraction or 0) * size // 10 ** len(fraction)
        rest = rest[j:]
    if total > _INT64_MAX:
        raise ValueError(text)
    return sign * total


def format_duration(ns):
    """Go's Duration.String(): 30s, 1m30s, 1.5s, 500ms (docker's messages print them so)."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)

    def decimal(n, size):
        whole, part = divmod(n, size)
        digits = str(part).rjust(len(str(size)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if ns < 10**9:
        unit, size = next((u, s) for u, s in (("ms", 10**6), ("\u00b5s", 10**3), ("ns", 1)) if ns >= s)
        return sign + decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    return sign + (f"{hours}h{minutes}m" if hours else f"{minutes}m" if minutes else "") + decimal(rest, 10**9) + "s"


# docker's HealthConfig: its durations (ns) with the flags that set them, and the defaults
HEALTH_DURATIONS = {"Interval": "--health-interval", "Timeout": "--health-timeout",
                    "StartPeriod": "--health-start-period", "StartInterval": "--health-start-interval"}
HEALTH_DEFAULTS = {"Interval": 30 * 10**9, "Timeout": 30 * 10**9, "StartPeriod": 0, "StartInterval": 5 * 10**9,
                   "Retries": 3}
_MIN_DURATION = 10**6  # docker's containertypes.MinimumDuration: 1ms


def healthcheck_flags(cmd=None, interval=None, timeout=None, start_period=None, start_interval=None, retries=None,
                      none=False):
    """``run``'s --health-* flags (text, None when not given) and --no-healthcheck
    -> docker's HealthConfig, or None if they say nothing (the image's stays)."""
    check = {}
    for field, text in zip(HEALTH_DURATIONS, (interval, timeout, start_period, start_interval)):
        if text is None:
            continue
        try:
            ns = parse_duration(text)
        except ValueError:
            raise SpecError(f"invalid {HEALTH_DURATIONS[field]} {text!r}: not a duration (e.g. 30s, 1m30s, 500ms)"
                            ) from None
        if ns < 0:
            raise SpecError(f"{HEALTH_DURATIONS[field]} cannot be negative")
        if ns:
            check[field] = ns
    if retries is not None:
        if not is_decimal(retries.removeprefix("-")) or len(retries) > 10:
            raise SpecError(f"invalid --health-retries {retries!r}: not a whole number")
        if int(retries) < 0:
            raise SpecError("--health-retries cannot be negative")
        if int(retries):
            check["Retries"] = int(retries)
    if none:
        if cmd or check:
            raise SpecError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if cmd:
        check["Test"] = ["CMD-SHELL", cmd]
    return check_healthcheck(check) if check else None


def check_healthcheck(check, what="healthcheck"):
    """A HealthConfig in docker's shape, checked as docker's daemon checks it."""
    if not isinstance(check, dict):
        raise SpecError(f"invalid {what}: expected an object like {{\"Test\": [\"CMD\", ...]}}")
    for key, value in check.items():
        if key not in ("Test", "Retries", *HEALTH_DURATIONS):
            raise SpecError(f"invalid {what}: unknown field {key!r}")
        if key == "Test":
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(f"invalid {what}: {key} must be a whole number{' of nanoseconds' * (key != 'Retries')}")
        if key == "Retries" and value < 0:
            raise SpecError("Retries in Healthcheck cannot be negative")
        if key != "Retries" and value != 0 and value < _MIN_DURATION:
            raise SpecError(f"{key} in Healthcheck cannot be less than 1ms")
    test = check.get("Test") or []
    if not (isinstance(test, list) and all(isinstance(word, str) for word in test)):
        raise SpecError(f"invalid {what}: Test must be a list of strings")
    if test and not ((test[0] == "NONE" and len(test) == 1) or (test[0] == "CMD" and len(test) > 1)
                     or (test[0] == "CMD-SHELL" and len(test) == 2)):
        raise SpecError(f"invalid {what}: Test must be [\"NONE\"], [\"CMD\", ARG...] or [\"CMD-SHELL\", COMMAND],"
                        f" not {test!r}")
    return dict(check)


def merge_healthcheck(image, given):
    """docker's merge of the image's HEALTHCHECK and run's: what run leaves
    unset (an empty Test, a zero duration) comes from the image."""
    if not given:
        return check_healthcheck(image, "image healthcheck") if image else None
    merged = dict(check_healthcheck(image, "image healthcheck") if image else {})
    merged.update((k, v) for k, v in check_healthcheck(given).items() if v)
    return merged


def health_enabled(check):
    """Whether ``check`` (a HealthConfig or None) has probes to run."""
    return bool(check and check.get("Test") and check["Test"][0] != "NONE")


RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def parse_restart(text):
    """``--restart no|always|on-failure[:N]|unless-stopped`` -> docker's RestartPolicy."""
    name, colon, count = text.partition(":")
    if colon and not name:
        raise SpecError(f"invalid --restart {text!r}: no policy provided before colon")
    if colon and not (is_decimal(count.lstrip("+-")) and len(count) <= 10):
        raise SpecError(f"invalid --restart {text!r}: maximum retry count must be an integer")
    return check_restart_policy({"Name": name, "MaximumRetryCount": int(count) if colon else 0})


def check_restart_policy(policy, remove=False, detach=True):
    """A RestartPolicy in docker's shape, checked as docker's daemon checks it
    (an empty Name is "no"); ``remove`` (--rm) and a policy exclude each other,
    and a container in the foreground (not ``detach``) has no monitor to restart it."""
    if not isinstance(policy, dict) or set(policy) - {"Name", "MaximumRetryCount"}:
        raise SpecError('invalid restart policy: expected {"Name": ..., "MaximumRetryCount": N}')
    name, count = policy.get("Name") or "no", policy.get("MaximumRetryCount", 0)
    if name not in RESTART_POLICIES:
        raise SpecError(f"invalid restart policy: unknown policy {name!r};"
                        " use one of 'no', 'always', 'on-failure', or 'unless-stopped'")
    if not isinstance(count, int) or isinstance(count, bool):
        raise SpecError("invalid restart policy: maximum retry count must be an integer")
    if count and name != "on-failure":
        raise SpecError("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if count < 0:
        raise SpecError("invalid restart policy: maximum retry count cannot be negative")
    if remove and name != "no":
        raise SpecError("conflicting options: cannot specify both --restart and --rm")
    if not detach and name != "no":
        raise SpecError("a restart policy needs a detached container (run -d, minirt.start):"
                        " without a daemon, its monitor restarts it")
    return {"Name": name, "MaximumRetryCount": count}
