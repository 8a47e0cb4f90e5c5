"""Compose files -> one Project: its services, networks and volumes, each in one shape.

Lecture idea: a system is several containers that work together; the file
says so in whatever spelling is shortest to write (``ports: ["8080:80"]``,
``environment: [A=1]`` or ``{A: 1}``, ``depends_on: [db]``).  This module
reads every spelling into one: after it, a service is a dict whose every
field has one form (the long one), so the rest of compose -- the plan, the
config hash, ``compose config`` -- never looks at short forms again.

The order is docker compose's: each file is read (``yamlfile.py``),
interpolated (``interpolate.py``) and checked against the schema
(``schema.py``); several ``-f`` files are merged, the later overriding;
``extends`` pulls in another service's definition; then each service is
normalised, and the references between them checked (an unknown service or
volume, a cycle of depends_on).  An error names the file, the path in it and
what is wrong.
"""

import os
import re
import shlex

from minirt import bounded
from minirt import spec as specs
from minirt.compose import interpolate, schema, yamlfile
from minirt.errors import SpecError

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
FILE_MAX = 4 << 20

# What minirt compose does with a service's fields.  The schema admits many
# more (secrets, devices, sysctls, ...): those are refused by name rather than
# silently ignored, so that a file never runs differently from what it says.
SERVICE_FIELDS = frozenset({
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "expose", "volumes",
    "tmpfs", "networks", "network_mode", "depends_on", "healthcheck", "restart", "working_dir", "user",
    "hostname", "cap_add", "cap_drop", "read_only", "init", "privileged", "mem_limit", "memswap_limit",
    "cpus", "cpu_shares", "cpuset", "pids_limit", "deploy", "labels", "profiles", "extends", "container_name",
    "scale", "stop_grace_period", "tty", "pull_policy",
})
DEPLOY_FIELDS = frozenset({"resources", "replicas", "restart_policy", "labels", "mode"})
# Lists that a later file or an extending service replaces rather than extends.
REPLACED = frozenset({"command", "entrypoint", "test", "profiles"})
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class Project:
    """A loaded project: ``name``, ``dir``, ``services`` ({name: normalised
    dict}), ``networks``, ``volumes`` (top-level, normalised), ``files``."""

    def __init__(self, name, directory, services, networks, volumes, files, profiles):
        self.name, self.dir, self.services = name, directory, services
        self.networks, self.volumes, self.files, self.profiles = networks, volumes, files, profiles

    def enabled(self, named=()):
        """The services that take part, with what they depend on: those
        ``named`` on the command line, else those without profiles and those
        of an active profile."""
        for name in named:
            if name not in self.services:
                raise SpecError(f"no such service: {name}")
        on = set(named) or {n for n, s in self.services.items()
                            if not s.get("profiles") or set(s["profiles"]) & set(self.profiles)}
        todo = list(on)
        while todo:
            for dep in self.services[todo.pop()]["depends_on"]:
                if dep not in on:
                    on.add(dep)
                    todo.append(dep)
        return [n for n in self.services if n in on]

    def to_dict(self):
        """The resolved model, as ``compose config`` prints it."""
        out = {"name": self.name, "services": self.services}
        if self.networks:
            out["networks"] = self.networks
        if self.volumes:
            out["volumes"] = self.volumes
        return out


def find_files(directory):
    """The default compose file of ``directory`` (compose.yaml, ...)."""
    for name in DEFAULT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return [path]
    raise SpecError(f"no configuration file provided: none of {', '.join(DEFAULT_FILES)} in {directory}")


def load(files=(), *, project_name=None, project_dir=None, env_files=(), profiles=None, environ=None):
    """The Project the compose ``files`` describe (default: the one in the
    current directory), with docker compose's rules for its name, its
    variables (``.env`` or ``env_files``, then the environment) and profiles."""
    files = list(files) or find_files(os.path.abspath(project_dir or "."))
    try:
        return _load(files, project_name, project_dir, env_files, profiles, environ)
    except (AttributeError, TypeError, KeyError, ValueError) as e:
        if schema.location() is not None:
            raise  # the schema let it through: minirt's own mistake, to be reported as such
        # Without the schema, a value of the wrong shape can reach code that
        # expects the right one: say so, and where the schema would tell more.
        raise SpecError(f"{_short(files[0])}: not a compose file minirt can read ({type(e).__name__}: {e});"
                        " set MINIRT_COMPOSE_SCHEMA to the Compose Specification's schema for where") from None


def _load(files, project_name, project_dir, env_files, profiles, environ):
    environ = dict(os.environ if environ is None else environ)
    directory = os.path.abspath(project_dir or os.path.dirname(os.path.abspath(files[0])))
    variables = interpolate.variables(directory, env_files, environ)
    warn = interpolate.Unset()
    merged, origin = {}, {}
    for path in files:
        data = read_file(path, variables, warn)
        data["services"] = {n: _shape(s) for n, s in (data.get("services") or {}).items()}
        origin.update((name, path) for name in data["services"])
        merged = merge(merged, data)
    services = merged.get("services") or {}
    if not services:
        raise SpecError(f"{_short(files[0])}: no service is defined")
    name = project_name or variables.get("COMPOSE_PROJECT_NAME") or merged.get("name") \
        or _normalise_name(os.path.basename(directory))
    if not PROJECT_NAME.match(name):
        raise SpecError(f"invalid project name {name!r}: it must contain only lower-case letters, digits,"
                        " dashes and underscores, and start with a letter or digit")
    if profiles is None:
        profiles = [p for p in variables.get("COMPOSE_PROFILES", "").split(",") if p]
    volumes = {k: _top_level(k, v, name, "volume") for k, v in (merged.get("volumes") or {}).items()}
    networks = {k: _top_level(k, v, name, "network") for k, v in (merged.get("networks") or {}).items()}
    resolved = {}
    for sname in services:
        resolved[sname] = _extended(sname, services, origin[sname], variables, warn, ())
    out = {}
    for sname, raw in resolved.items():
        where = _short(origin[sname])
        out[sname] = normalise(sname, raw, directory, variables, where)
        _check_references(sname, out[sname], services, volumes, networks, where)
    networks.setdefault("default", _top_level("default", None, name, "network"))
    _check_cycles(out, _short(files[0]))
    return Project(name, directory, out, networks, volumes, [os.path.abspath(f) for f in files], profiles)


def read_file(path, variables, warn=None):
    """One compose file: read, interpolated, checked against the schema."""
    name = _short(path)
    data = bounded.read(path, "a compose file", FILE_MAX)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{name}: not UTF-8") from None
    doc = interpolate.interpolate(yamlfile.load(text, name), variables, name, warn)
    schema.validate(doc, name)
    return doc


def _short(path):
    """A file as messages name it: relative to the current directory when under it."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def _normalise_name(text):
    """A directory's name made a project name, as docker compose does."""
    return re.sub(r"[^a-z0-9_-]", "", text.lower()).lstrip("_-") or "default"


def _top_level(key, value, project, kind):
    """A top-level network or volume: its real name (``<project>_<key>`` unless
    ``name:`` or ``external``), its labels and whether it is external."""
    value = dict(value or {})
    external = value.get("external")
    if isinstance(external, dict):  # (the old spelling: external: {name: x})
        value.setdefault("name", external.get("name"))
        external = True
    return {"name": value.get("name") or (key if external else f"{project}_{key}"), "external": bool(external),
            "labels": _labels(value.get("labels"))}


# -- merging files and extends ------------------------------------------------------

def merge(base, override, key=None):
    """``override`` over ``base``, as docker compose merges files: mappings key
    by key, ``volumes`` of a service by target, other lists appended (without
    repeats), scalars and REPLACED lists replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED:
        if key == "volumes":
            targets = {_volume_target(v) for v in override}
            return [v for v in base if _volume_target(v) not in targets] + override
        return base + [v for v in override if v not in base]
    return override


def _shape(service):
    """The fields that come in a list or a mapping, as a mapping (so that they merge key by key)."""
    s = dict(service)
    for field in ("environment", "labels"):
        if isinstance(s.get(field), list):
            s[field] = dict(_pair(item) for item in s[field])
    if isinstance(s.get("depends_on"), list):
        s["depends_on"] = {d: {"condition": "service_started"} for d in s["depends_on"]}
    if isinstance(s.get("networks"), list):
        s["networks"] = {n: None for n in s["networks"]}
    if isinstance(s.get("build"), str):
        s["build"] = {"context": s["build"]}
    if isinstance(s.get("env_file"), str):
        s["env_file"] = [s["env_file"]]
    return s


def _pair(item):
    key, eq, value = item.partition("=")
    return key, value if eq else None


def _volume_target(v):
    if isinstance(v, dict):
        return v.get("target")
    parts = v.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _extended(name, services, path, variables, warn, seen):
    """Service ``name`` of the file ``path`` with what it ``extends`` merged under it."""
    service = _shape(services[name])
    base_ref = service.pop("extends", None)
    if base_ref is None:
        return service
    if isinstance(base_ref, str):
        base_ref = {"service": base_ref}
    key = (path, name)
    if key in seen:
        raise SpecError(f"{_short(path)}: services.{name}.extends: circular reference")
    base_path, base_services = path, services
    if base_ref.get("file"):
        base_path = os.path.join(os.path.dirname(path), base_ref["file"])
        base_services = read_file(base_path, variables, warn).get("services") or {}
    if base_ref["service"] not in base_services:
        raise SpecError(f"{_short(path)}: services.{name}.extends: no service {base_ref['service']!r}"
                        f" in {_short(base_path)}")
    base = _extended(base_ref["service"], base_services, base_path, variables, warn, seen + (key,))
    if base_path != path:
        base.pop("depends_on", None)  # (it names services of the other file, not ours)
        _rebase(base, os.path.dirname(base_path))
    return merge(base, service)


def _rebase(service, directory):
    """The paths of a service read from another file, relative to that file's
    ``directory``, made so (as docker compose does): the build context, env
    files and the sources of bind mounts."""
    def there(p):  # (a bind's source; a volume's name, without . or /, is no path)
        return os.path.join(directory, p) if p.startswith(".") else p

    if isinstance(service.get("build"), dict) and "context" in service["build"]:
        service["build"] = dict(service["build"], context=os.path.join(directory, service["build"]["context"]))
    if service.get("env_file"):
        service["env_file"] = [dict(e, path=os.path.join(directory, e["path"])) if isinstance(e, dict)
                               else os.path.join(directory, e) for e in service["env_file"]]
    volumes = []
    for v in service.get("volumes") or ():
        if isinstance(v, dict) and isinstance(v.get("source"), str):
            v = dict(v, source=there(v["source"]))
        elif isinstance(v, str) and ":" in v:
            source, _, rest = v.partition(":")
            v = f"{there(source)}:{rest}"
        volumes.append(v)
    if volumes:
        service["volumes"] = volumes


# -- one service -------------------------------------------------------------------

def normalise(name, raw, directory, variables, where):
    """A service's every field in its one form (see the module's docstring)."""
    def fail(field, what):
        raise SpecError(f"{where}: services.{name}{'.' + field if field else ''}: {what}")

    s = _shape(raw)
    for field in s:
        if field not in SERVICE_FIELDS and not field.startswith("x-"):
            fail(field, "not supported by minirt compose")
    deploy = s.get("deploy") or {}
    for field in deploy:
        if field not in DEPLOY_FIELDS and not field.startswith("x-"):
            fail(f"deploy.{field}", "not supported by minirt compose")
    out = {"image": s.get("image")}
    if "build" in s:
        b = s["build"]
        context = os.path.normpath(os.path.join(directory, os.path.expanduser(b.get("context", "."))))
        out["build"] = {"context": context, "dockerfile": b.get("dockerfile", "Dockerfile"),
                        "args": {k: _text(v) for k, v in _mapping(b.get("args")).items() if v is not None},
                        **({"target": b["target"]} if b.get("target") else {})}
    elif not s.get("image"):
        fail("", "has neither an image nor a build context specified")
    for field in ("command", "entrypoint"):
        if s.get(field) is not None:
            out[field] = _words(s[field], lambda what, f=field: fail(f, what))
    out["environment"] = _environment(s, directory, variables, fail)
    out["ports"] = [p for i, item in enumerate(s.get("ports") or [])
                    for p in _ports(item, lambda what, i=i: fail(f"ports[{i}]", what))]
    out["expose"] = [str(p) for p in s.get("expose") or []]
    out["volumes"] = [_volume(v, directory, lambda what, i=i: fail(f"volumes[{i}]", what))
                      for i, v in enumerate(s.get("volumes") or [])]
    tmpfs = s.get("tmpfs") or []
    out["tmpfs"] = [tmpfs] if isinstance(tmpfs, str) else list(tmpfs)
    mode = s.get("network_mode")
    if mode is not None:
        if "networks" in s:
            fail("network_mode", "cannot be combined with networks")
        if not (mode in ("none", "host", "bridge") or mode.startswith(("service:", "container:"))):
            fail("network_mode", f"{mode!r}: expected none, host, bridge, service:NAME or container:NAME")
        out["network_mode"] = mode
    else:
        networks = s.get("networks") or {"default": None}  # (the first one's interface is eth0)
        out["networks"] = {n: {"aliases": list((v or {}).get("aliases") or [])} for n, v in networks.items()}
    out["depends_on"] = {d: {"condition": (c or {}).get("condition", "service_started"),
                             "required": (c or {}).get("required", True), "restart": (c or {}).get("restart", False)}
                         for d, c in (s.get("depends_on") or {}).items()}
    if s.get("healthcheck") is not None:
        out["healthcheck"] = _healthcheck(s["healthcheck"], lambda what: fail("healthcheck", what))
    out["restart"] = _restart(s, deploy, fail)
    for field in ("working_dir", "hostname", "container_name", "pull_policy"):
        if s.get(field) is not None:
            out[field] = str(s[field])
    if out.get("pull_policy", "missing") not in ("always", "never", "missing", "if_not_present", "build"):
        fail("pull_policy", f"{out['pull_policy']!r}: minirt knows always, never, missing and build")
    if s.get("user") is not None:
        out["user"] = str(s["user"])
    for field in ("cap_add", "cap_drop", "profiles"):
        out[field] = list(s.get(field) or [])
    for field in ("read_only", "init", "privileged", "tty"):
        out[field] = boolean(s.get(field, False), lambda what, f=field: fail(f, what))
    out["resources"] = _resources(s, deploy, fail)
    out["labels"] = {**_labels(deploy.get("labels")), **_labels(s.get("labels"))}
    replicas = integer(deploy.get("replicas", s.get("scale", 1)), lambda what: fail("deploy.replicas", what))
    if replicas > 1 and out.get("container_name"):
        fail("container_name", "a service with a container_name cannot have more than one replica")
    out["replicas"] = replicas
    out["stop_grace_period"] = duration(s.get("stop_grace_period", "10s"), lambda what: fail("stop_grace_period", what))
    if out.get("working_dir") and not out["working_dir"].startswith("/"):
        fail("working_dir", f"{out['working_dir']!r} is not an absolute path")
    return out


def integer(value, fail):
    """A whole number of the file, given as one or (interpolated) as its digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    fail(f"{value!r} is not a whole number")


def boolean(value, fail):
    """A yes or no of the file: a boolean, or (interpolated) its spellings, as docker compose reads them."""
    if isinstance(value, bool):
        return value
    word = str(value).lower()
    if word in ("true", "yes", "y", "on", "1"):
        return True
    if word in ("false", "no", "n", "off", "0", ""):
        return False
    fail(f"{value!r} is not true or false")


def _mapping(value):
    if isinstance(value, list):
        return dict(_pair(item) for item in value)
    return dict(value or {})


def _text(value):
    """A scalar of the file as the container sees it: true/false in lower case, as compose writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _words(value, fail):
    if isinstance(value, list):
        return [str(w) for w in value]
    try:
        return shlex.split(value)
    except ValueError as e:
        fail(f"{value!r}: {e}")


def _environment(s, directory, variables, fail):
    """env_file first (in order), then environment; KEY alone: from the shell."""
    env = {}
    for i, item in enumerate(s.get("env_file") or []):
        path, required = (item, True) if isinstance(item, str) else (item["path"], item.get("required", True))
        path = os.path.join(directory, path)
        if not required and not os.path.exists(path):
            continue
        env.update(interpolate.read_env_file(path, variables, "an env_file"))
    for key, value in (s.get("environment") or {}).items():
        if value is None:
            value = variables.get(key)
            if value is None:
                env.pop(key, None)
                continue
        env[key] = _text(value)
    return [f"{k}={v}" for k, v in env.items()]


def _ports(item, fail):
    """One entry of ``ports`` -> [{host_ip, host_port, container_port, proto}] (a range is several)."""
    if isinstance(item, dict):
        target, published = item.get("target"), item.get("published")
        if target is None:
            fail("target is required")
        text = f"{item.get('host_ip', '')}:{'' if published is None else published}:{target}"
        text += f"/{item.get('protocol', 'tcp')}"
    else:
        text = str(item)
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        fail(f"{text!r}: the protocol must be tcp or udp")
    parts = spec.rsplit(":", 2)
    host_ip, host, container = [""] * (3 - len(parts)) + parts
    containers = _port_range(container, text, fail)
    hosts = _port_range(host, text, fail) if host else [0] * len(containers)  # 0: the kernel picks one
    if len(hosts) != len(containers):
        fail(f"{text!r}: the host and container ranges differ in length")
    try:  # each mapping in the grammar of -p (spec.py), which checks the address too
        return [specs.parse_port(f"{host_ip}:{h}:{c}/{proto}") for h, c in zip(hosts, containers)]
    except SpecError as e:
        fail(f"{text!r}: {str(e).split(': ', 1)[1]}")  # (what the file says, not our rewriting of it)


def _port_range(text, whole, fail):
    lo, dash, hi = text.partition("-")
    hi = hi if dash else lo
    if not (lo.isascii() and lo.isdigit() and hi.isascii() and hi.isdigit()) \
            or not 1 <= int(lo) <= int(hi) <= 65535:
        fail(f"{whole!r}: {text!r} is not a port number or range (1-65535)")
    return list(range(int(lo), int(hi) + 1))


def _volume(item, directory, fail):
    """One entry of ``volumes`` -> {type, source, target, read_only} (tmpfs: {type, target, size})."""
    if isinstance(item, dict):
        kind, source, target = item.get("type"), item.get("source") or "", item.get("target")
        if not target:
            fail("target is required")
        if kind == "tmpfs":
            size = (item.get("tmpfs") or {}).get("size")
            return {"type": "tmpfs", "target": target, **({"size": str(size)} if size is not None else {})}
        if kind not in ("volume", "bind"):
            fail(f"type {kind!r} is not supported (volume, bind or tmpfs)")
        read_only = bool(item.get("read_only"))
        create = kind == "volume" or (item.get("bind") or {}).get("create_host_path", True)
    else:
        parts = item.split(":")
        if len(parts) > 3 or not all(parts):
            fail(f"{item!r}: expected SOURCE:TARGET[:MODE] or TARGET")
        mode = parts[2] if len(parts) == 3 else "rw"
        for option in mode.split(","):
            if option not in ("ro", "rw", "z", "Z"):
                fail(f"{item!r}: unknown mode {option!r} (ro or rw)")
        source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
        read_only = "ro" in mode.split(",")
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        create = True
    if not target.startswith("/"):
        fail(f"the target {target!r} is not an absolute path")
    if kind == "bind":
        source = os.path.normpath(os.path.join(directory, os.path.expanduser(source)))
        return {"type": "bind", "source": source, "target": target, "read_only": read_only,
                "create_host_path": bool(create)}
    return {"type": "volume", "source": source, "target": target, "read_only": read_only}


def duration(value, fail):
    """A duration of the file ("1m30s", "500ms"; a bare number: seconds) -> nanoseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 10**9)
    try:
        ns = specs.parse_duration(str(value))
    except ValueError:
        ns = -1
    if ns < 0:
        fail(f"{value!r} is not a duration (such as 30s, 1m30s or 500ms)")
    return ns


def _healthcheck(h, fail):
    """docker's Config.Healthcheck: Test, Interval, Timeout, StartPeriod (ns), Retries."""
    if h.get("disable"):
        return {"Test": ["NONE"]}
    test = h.get("test")
    out = {}
    if test is not None:
        test = ["CMD-SHELL", test] if isinstance(test, str) else [str(t) for t in test]
        if not test or test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            fail("test: a list must begin with NONE, CMD or CMD-SHELL")
        out["Test"] = test
    for field, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                       ("start_interval", "StartInterval")):
        if h.get(field) is not None:
            out[key] = duration(h[field], fail)
    if h.get("retries") is not None:
        out["Retries"] = integer(h["retries"], lambda what: fail(f"retries: {what}"))
    try:
        return specs.check_healthcheck(out)
    except SpecError as e:
        fail(str(e))


def _restart(s, deploy, fail):
    """``restart`` (or deploy.restart_policy) -> docker's {"Name", "MaximumRetryCount"}."""
    policy = deploy.get("restart_policy")
    if s.get("restart") is None and policy:
        name = {"none": "no", "any": "always", "on-failure": "on-failure"}.get(policy.get("condition", "any"))
        if name is None:
            fail("deploy.restart_policy.condition", f"{policy['condition']!r}: none, on-failure or any")
        return {"Name": name, "MaximumRetryCount": int(policy.get("max_attempts") or 0) if name == "on-failure"
                else 0}
    try:
        return specs.parse_restart(str(s.get("restart") or "no"))
    except SpecError as e:
        fail("restart", str(e).removeprefix("invalid restart policy: "))


def _resources(s, deploy, fail):
    """mem_limit, cpus, pids_limit (or deploy.resources.limits) -> the fields of minirt.spec.resources."""
    limits = (deploy.get("resources") or {}).get("limits") or {}
    out = {}
    for field, key, value in (("memory", "mem_limit", s.get("mem_limit", limits.get("memory"))),
                              ("memory_swap", "memswap_limit", s.get("memswap_limit")),
                              ("cpus", "cpus", s.get("cpus", limits.get("cpus"))),
                              ("cpu_shares", "cpu_shares", s.get("cpu_shares")),
                              ("cpuset_cpus", "cpuset", s.get("cpuset")),
                              ("pids_limit", "pids_limit", s.get("pids_limit", limits.get("pids")))):
        if value is not None:
            out[field] = str(value)
    try:
        specs.resources(**out)
    except SpecError as e:
        fail("", str(e))
    return out


def _labels(value):
    return {k: _text(v) if v is not None else "" for k, v in _mapping(value).items()}


# -- references between services ------------------------------------------------------

def _check_references(name, service, services, volumes, networks, where):
    for dep in service["depends_on"]:
        if dep not in services:
            raise SpecError(f"{where}: services.{name}.depends_on: service {dep!r} is not defined")
        if dep == name:
            raise SpecError(f"{where}: services.{name}.depends_on: a service cannot depend on itself")
    for v in service["volumes"]:
        if v["type"] == "volume" and v["source"] and v["source"] not in volumes:
            raise SpecError(f"{where}: services.{name}.volumes: service {name!r} refers to undefined volume"
                            f" {v['source']!r} (declare it under the top-level volumes)")
    for net in service.get("networks", {}):
        if net != "default" and net not in networks:
            raise SpecError(f"{where}: services.{name}.networks: service {name!r} refers to undefined network"
                            f" {net!r}")
    mode = service.get("network_mode", "")
    if mode.startswith("service:") and mode[len("service:"):] not in services:
        raise SpecError(f"{where}: services.{name}.network_mode: service {mode[8:]!r} is not defined")


def _check_cycles(services, where):
    """depends_on must be a DAG: a cycle is named, service by service."""
    done, path = set(), []

    def visit(name):
        if name in path:
            cycle = path[path.index(name):] + [name]
            raise SpecError(f"{where}: dependency cycle: {' -> '.join(cycle)}")
        if name in done:
            return
        path.append(name)
        for dep in services[name]["depends_on"]:
            visit(dep)
        path.pop()
        done.add(name)

    for name in services:
        visit(name)
