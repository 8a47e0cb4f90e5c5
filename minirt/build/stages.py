"""A build's plan: the Dockerfile's stages, the ARGs before them, the flags each
instruction may carry, and which stages a target needs.

Lecture idea: a multi-stage build ("build the app in one image, ship it in a
small one") is a small graph.  Every ``FROM`` starts a stage; a stage needs the
one it starts from when its ``FROM`` names an earlier stage, and those ``COPY
--from=`` (or ``RUN --mount=from=``) name.  ``--target`` picks the last stage to
build (default: the last one); stages it does not need are never built, as
BuildKit skips them.

``ARG`` lines before the first ``FROM`` are the build's global arguments: they
may be used in ``FROM`` lines, and inside a stage only after ``ARG NAME`` brings
them into its scope.  ``--build-arg`` overrides a default.
"""

from minirt.build.dockerfile import Instruction
from minirt.build.words import expand
from minirt.errors import BuildError

# Each instruction's flags (BuildKit's): name -> "str", "bool" or "list".
FLAGS = {
    "from": {"platform": "str"},
    "copy": {"from": "str", "chown": "str", "chmod": "str", "link": "bool"},
    "add": {"chown": "str", "chmod": "str", "link": "bool", "checksum": "str", "keep-git-dir": "bool"},
    "run": {"mount": "list", "network": "str", "security": "str"},
    "healthcheck": {"interval": "str", "timeout": "str", "start-period": "str", "start-interval": "str",
                    "retries": "str"},
}
KEYWORDS = ("from", "run", "cmd", "entrypoint", "label", "maintainer", "expose", "env", "arg", "add",
            "copy", "volume", "user", "workdir", "onbuild", "stopsignal", "healthcheck", "shell")


class Stage:
    """One ``FROM`` and the instructions after it."""

    def __init__(self, index, name, base, platform, instruction, body):
        self.index, self.name = index, name      # name: the AS name (lower case), or None
        self.base, self.platform = base, platform  # the FROM word and --platform, ARGs expanded
        self.instruction = instruction           # the FROM itself, for its line
        self.body = body                         # the instructions after it
        self.needs = set()                       # indices of earlier stages it uses

    def __repr__(self):
        return f"Stage({self.index}, {self.name!r}, {self.base!r}, needs={sorted(self.needs)})"


class Plan:
    """The stages to build, in order, and the global ARGs."""

    def __init__(self, stages, target, global_args, unused_build_args):
        self.stages = stages                     # all of them, in Dockerfile order
        self.target = target                     # the Stage the image comes from
        self.global_args = global_args           # name -> value (None: declared without value)
        self.unused_build_args = unused_build_args  # --build-arg names no ARG declared

    def needed(self) -> list:
        """The stages the target needs (itself included), in Dockerfile order."""
        wanted, todo = set(), [self.target.index]
        while todo:
            i = todo.pop()
            if i not in wanted:
                wanted.add(i)
                todo += self.stages[i].needs
        return [s for s in self.stages if s.index in wanted]


def plan(dockerfile, build_args=None, target=None, platform=("linux", "amd64", ""),
         name="Dockerfile") -> Plan:
    """The Plan of a parsed ``dockerfile`` (``dockerfile.parse``), built on and
    for ``platform`` (os, arch, variant)."""
    build_args = dict(build_args or {})
    global_args, stages, declared = platform_args(platform), [], set()
    body = None
    for ins in dockerfile.instructions:
        where = f"{name}:{ins.line}"
        if ins.command not in KEYWORDS:
            raise BuildError(f"{where}: unknown instruction: {ins.keyword}")
        flags(ins, where)  # checked once here, for every instruction
        if ins.command == "from":
            body = []
            stages.append(_stage(ins, len(stages), body, stages, global_args, dockerfile.escape, where))
        elif body is None:
            if ins.command != "arg":
                raise BuildError(f"{where}: {ins.keyword.upper()} before the first FROM (only ARG may come first)")
            for arg_name, default in arg_pairs(ins, where):
                declared.add(arg_name)
                if arg_name in build_args:  # given literally, never expanded
                    global_args[arg_name] = build_args[arg_name]
                elif default is not None:
                    global_args[arg_name] = expand(default, _known(global_args), dockerfile.escape)
                else:
                    global_args.setdefault(arg_name, None)
        else:
            if ins.command == "arg":
                declared.update(n for n, _ in arg_pairs(ins, where))
            body.append(ins)
    if not stages:
        raise BuildError(f"{name}: no FROM instruction (a build needs at least one stage)")
    for stage in stages:
        stage.needs |= _copy_sources(stage, stages, global_args, build_args, dockerfile.escape, name)
    chosen = stages[-1]
    if target is not None:
        chosen = next((s for s in stages if s.name == target.lower()), None)
        if chosen is None:
            raise BuildError(f"target stage {target!r} could not be found")
    unused = sorted(set(build_args) - declared - set(PREDEFINED_ARGS))
    return Plan(stages, chosen, global_args, unused)


# ARGs every build knows without declaring them (docker's proxy variables);
# they reach RUN only, never the image.
PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                   "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


def platform_args(platform) -> dict:
    """BuildKit's automatic global ARGs: TARGETPLATFORM, TARGETOS, ... and the
    same for BUILD (one machine here: the two are the same)."""
    os_, arch, variant = platform
    values = {"PLATFORM": "/".join(p for p in platform if p), "OS": os_, "ARCH": arch, "VARIANT": variant}
    return {f"{kind}{key}": value for kind in ("TARGET", "BUILD") for key, value in values.items()}


def _known(args):
    return {k: v for k, v in args.items() if v is not None}


def _stage(ins, index, body, stages, global_args, escape, where):
    values = flags(ins, where)
    words = ins.args
    if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
        raise BuildError(f"{where}: FROM requires either one or three arguments (FROM IMAGE [AS NAME])")
    scope = _known(global_args)
    base = expand(words[0], scope, escape)
    if not base:
        raise BuildError(f"{where}: FROM {words[0]}: the image name is empty once ARGs are expanded")
    name = None
    if len(words) == 3:
        name = words[2].lower()
        if not (name[0].isalpha() and all(c.isalnum() or c in "-_." for c in name) and name.isascii()):
            raise BuildError(f"{where}: invalid name for build stage: {words[2]!r}, "
                             "name can't start with a number or contain symbols")
        if any(s.name == name for s in stages):
            raise BuildError(f"{where}: duplicate stage name {name!r}")
    platform = expand(values["platform"], scope, escape) if values.get("platform") else None
    stage = Stage(index, name, base, platform, ins, body)
    parent = _stage_named(base, stages)
    if parent is not None:
        stage.needs.add(parent.index)
    return stage


def _stage_named(word, stages):
    """The earlier stage ``word`` names (by AS name, or by index), or None."""
    if word.isdigit():
        return stages[int(word)] if int(word) < len(stages) else None
    return next((s for s in stages if s.name == word.lower()), None)


def _copy_sources(stage, stages, global_args, build_args, escape, name):
    needs = set()
    scope = {**_known(global_args), **build_args}
    for ins in stage.body:
        where = f"{name}:{ins.line}"
        values = flags(ins, where)
        sources = [values["from"]] if values.get("from") else []
        for mount in values.get("mount", ()):
            sources += [kv[5:] for kv in mount.split(",") if kv.startswith("from=")]
        for source in sources:
            word = expand(source, scope, escape)
            if word.isdigit() and int(word) >= stage.index:
                raise BuildError(f"{where}: --from={word}: a stage can only use an earlier stage")
            earlier = _stage_named(word, stages[:stage.index])
            if earlier is None and _stage_named(word, stages) is not None:
                raise BuildError(f"{where}: --from={word}: a stage can only use an earlier stage")
            if earlier is not None:
                needs.add(earlier.index)
    return needs


def flags(ins: Instruction, where: str) -> dict:
    """``ins``'s flags by name, checked against what its keyword takes."""
    allowed = FLAGS.get(ins.command, {})
    values = {}
    for flag in ins.flags:
        body = flag[2:]
        key, eq, value = body.partition("=")
        kind = allowed.get(key)
        if kind is None:
            raise BuildError(f"{where}: unknown flag: --{key} (for {ins.keyword.upper()})")
        if kind == "bool":
            if eq and value.lower() not in ("true", "false"):
                raise BuildError(f"{where}: --{key} takes true or false, not {value!r}")
            values[key] = not eq or value.lower() == "true"
        elif not eq:
            raise BuildError(f"{where}: missing a value on flag: --{key}")
        elif kind == "list":
            values.setdefault(key, []).append(value)
        elif key in values:
            raise BuildError(f"{where}: duplicate flag specified: --{key}")
        else:
            values[key] = value
    return values


def arg_pairs(ins: Instruction, where: str) -> list:
    """``ARG a b=2`` as [("a", None), ("b", "2")] (values unexpanded)."""
    if not ins.args:
        raise BuildError(f"{where}: ARG requires at least one argument")
    pairs = []
    for word in ins.args:
        arg_name, eq, value = word.partition("=")
        if not arg_name:
            raise BuildError(f"{where}: ARG names can not be blank")
        pairs.append((arg_name, value if eq else None))
    return pairs
