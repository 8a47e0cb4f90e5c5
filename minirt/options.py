"""The ``minirt`` command line's flags, and the small parser that reads them.

Flags follow docker's, so that ``minirt run --rm -it -e K=V IMAGE sh`` means
what a docker user expects: short flags combine (``-it``, ``-aq``), a value
follows its flag or is glued to it (``-e K=V``, ``-eK=V``, ``--env K=V``,
``--env=K=V``), a repeated flag collects its values, flags and arguments mix
(``rm web -f``), a switch may say ``--rm=false``, ``--`` ends the flags, and
for ``run`` and ``exec`` everything after the image or container is the
command, untouched (``run img ls -l``).

Why not argparse: importing it, building the parser and parsing cost some
3.5 ms, and ``minirt run`` must start a container within 30 ms of Python's
own start-up.  What docker-style flags need is the table below and ~100 lines.
The handlers are in ``cli.py``.
"""

from types import SimpleNamespace

from minirt.errors import SpecError


class HelpRequested(Exception):
    """``--help``: the text to print (to stdout, exit status 0)."""


class Flag:
    """One flag: its names (``-e``, ``--env``), its kind and its help.

    ``kind`` is "switch" (True if given), "value" (the last value given wins)
    or "list" (every value given, in order)."""

    def __init__(self, *names, kind="switch", metavar=None, help="", default=None, type=str, required=False):
        self.names, self.kind, self.metavar, self.help = names, kind, metavar, help
        long_name = next((n for n in names if n.startswith("--")), names[0])  # --network, not --net
        self.dest = long_name.lstrip("-").replace("-", "_")
        self.default = [] if kind == "list" else (False if kind == "switch" else default)
        self.type, self.required = type, required

    def label(self):
        text = ", ".join(self.names)
        return f"{text} {self.metavar or self.dest.upper()}" if self.kind != "switch" else text


def switch(*names, help=""):
    return Flag(*names, kind="switch", help=help)


def value(*names, metavar=None, help="", default=None, type=str, required=False):
    return Flag(*names, kind="value", metavar=metavar, help=help, default=default, type=type, required=required)


def repeated(*names, metavar=None, help=""):
    return Flag(*names, kind="list", metavar=metavar, help=help)


class Command:
    """A command: its flags (in help sections), its arguments and its help.

    ``args`` are (dest, METAVAR, how many) with "one", "some" (one or
    more, only last), "any" (none or more, only last) or "maybe" (none or
    one, only last: None if none); the flags of a command with ``actions``
    come before the action's name (``compose -f F up``);
    ``rest``, if set, is where every word after them goes, unparsed
    (the container's command).  ``actions`` are sub-commands
    (``network create``), chosen by the first argument.
    """

    HELP = switch("--help", help="show this help and exit")

    def __init__(self, name, help, flags=(), sections=(), args=(), rest=None, actions=(), usage=None,
                 target=None):
        self.name, self.help, self.target = name, help, target
        self.path = name  # how it is called after "minirt": "network ls" for an action
        self.sections = [("options", [self.HELP, *flags])] + list(sections)
        self.args, self.rest, self.actions, self._usage = list(args), rest, actions, usage
        for action in actions:
            action.path = f"{name} {action.name}"
            if action._usage:
                action._usage = action._usage.replace(f"minirt {action.name} ", f"minirt {action.path} ", 1)
        self.by_name = {n: f for _, fs in self.sections for f in fs for n in f.names}

    def alias(self, name, help=None):
        """The same command under another name (``container ls`` for ``ps``)."""
        usage = self._usage and self._usage.replace(f"minirt {self.name} ", f"minirt {name} ", 1)
        return Command(name, help or self.help, flags=self.sections[0][1][1:], sections=self.sections[1:],
                       args=self.args, rest=self.rest, usage=usage, target=self.target or self.name)

    @property
    def usage(self):
        return self._usage or " ".join(
            [f"minirt {self.path}"] + (["[OPTIONS]"] if len(self.by_name) > 1 else [])
            + ([actions_metavar(self.actions)] if self.actions else [])
            + [{"one": meta, "maybe": f"[{meta}]", "any": f"[{meta}...]"}.get(n, f"{meta} [{meta}...]")
               for _, meta, n in self.args]
            + ([f"[{self.rest[1]}...]"] if self.rest else []))

    def parse(self, words, ns):
        """Read ``words`` (after the command's name) into the namespace ``ns``."""
        for _, flags in self.sections:
            for f in flags:
                setattr(ns, f.dest, f.default if f.kind != "list" else [])
        if self.actions:
            return self._parse_action(words, ns)
        given, positional = set(), []
        words = list(words)
        while words:
            word = words.pop(0)
            if word == "--":
                positional += words
                break
            if word.startswith("-") and word != "-":
                given.update(self._flag(word, words, ns))
            else:
                positional.append(word)
                if self.rest and self._args_full(positional):
                    positional += words  # the container's command: not ours to parse
                    break
        if "help" in given:
            raise HelpRequested(self.help_text())
        self._assign(positional, ns)
        for _, flags in self.sections:
            for f in flags:
                if f.required and f.dest not in given:
                    raise SpecError(f"{self.path}: flag {f.names[-1]} is required")

    def _args_full(self, positional):
        return len(positional) >= len(self.args)

    def _flag(self, word, words, ns):
        """One flag word (``--env=A=1``, ``-it``, ``-eA=1``); take its value from
        ``words`` if it needs one.  Returns the dests of the flags it set."""
        if word.startswith("--"):
            name, eq, glued = word.partition("=")
            pairs = [(name, glued if eq else None)]
        else:  # a cluster of short flags; the first that takes a value takes the rest
            pairs, letters = [], word[1:]
            for i, letter in enumerate(letters):
                f = self.by_name.get("-" + letter)
                if f is not None and f.kind != "switch":
                    pairs.append(("-" + letter, letters[i + 1:] or None))
                    break
                pairs.append(("-" + letter, None))
        dests = []
        for name, glued in pairs:
            f = self.by_name.get(name)
            if f is None:
                raise SpecError(f"{self.path}: unknown flag: {name}")
            if f.kind == "switch":  # --rm, or docker's --rm=true / --rm=false
                if glued not in (None, "true", "false"):
                    raise SpecError(f"{self.path}: flag {name} takes no value, or true or false")
                setattr(ns, f.dest, glued != "false")
                dests.append(f.dest)
                continue
            if glued is None:
                if not words:
                    raise SpecError(f"{self.path}: flag {name} needs a value ({f.metavar or f.dest.upper()})")
                glued = words.pop(0)
            try:
                v = f.type(glued)
            except ValueError:
                raise SpecError(f"{self.path}: flag {name}: not a number: {glued!r}") from None
            if f.kind == "list":
                getattr(ns, f.dest).append(v)
            else:
                setattr(ns, f.dest, v)
            dests.append(f.dest)
        return dests

    def _assign(self, positional, ns):
        """Hand out the arguments: "one" takes one, "some" and "any" (always the last) the rest."""
        for dest, meta, n in self.args:
            if n == "maybe" and not positional:
                setattr(ns, dest, None)
                continue
            if not positional and n != "any":
                raise SpecError(f"{self.path}: {meta} is required (usage: {self.usage})")
            if n in ("some", "any"):
                setattr(ns, dest, positional[:])
                del positional[:]
                continue
            setattr(ns, dest, positional.pop(0))
        if self.rest:
            setattr(ns, self.rest[0], positional)
        elif positional:
            raise SpecError(f"{self.path}: unexpected argument {positional[0]!r} (usage: {self.usage})")

    def _parse_action(self, words, ns):
        words = list(words)
        while words and words[0].startswith("-") and words[0] != "--help":  # the group's own flags
            self._flag(words.pop(0), words, ns)
        if words and words[0] == "--help":
            raise HelpRequested(self.help_text())
        if not words:
            raise SpecError(f"{self.path}: an action is required: {', '.join(a.name for a in self.actions)}")
        for action in self.actions:
            if action.name == words[0]:
                setattr(ns, f"{self.name}_command", action.name)
                ns.command = action.target or ns.command
                return action.parse(words[1:], ns)
        raise SpecError(f"{self.path}: unknown action {words[0]!r}"
                        f" (one of: {', '.join(a.name for a in self.actions)})")

    def help_text(self):
        lines = [f"usage: {self.usage}", "", self.help]
        if self.actions:
            lines += ["", "actions:"] + [f"    {a.name:10} {a.help}" for a in self.actions]
        width = min(max(len(f.label()) for _, fs in self.sections for f in fs), 24) + 2
        for title, flags in self.sections:
            lines += ["", f"{title}:"]
            for f in flags:  # a label too long for the column puts its help on the next line
                label = f.label() if len(f.label()) < width else f.label() + "\n" + " " * (width + 2)
                lines.append(f"  {label:{width}}{f.help}".rstrip())
        return "\n".join(lines) + "\n"


def seconds(text):
    """A number of seconds: finite (``float`` also reads nan and inf)."""
    value = float(text)
    if not -1e9 < value < 1e9:  # also nan
        raise ValueError(text)
    return value


def insecure_registry():
    return repeated("--insecure-registry", metavar="HOST[:PORT]", help="accept any certificate, or plain HTTP, from this registry")


def actions_metavar(actions):
    return "{" + ",".join(a.name for a in actions) + "}"


def _commands():
    """Every command, in the order ``minirt --help`` lists them."""
    return _lifecycle() + _images() + _managing() + _compose()


def _managing():
    """docker's management commands (``container``, ``image``), the host's, networks, prune."""
    lifecycle, images = _lifecycle(), _images()
    return [
        Command("container", "manage containers (docker's spelling of the commands above)",
                actions=[lifecycle[1].alias("ls")] + [c.alias(c.name) for c in lifecycle if c.name != "ps"]),
        Command("image", "manage images", actions=[
            images[0].alias("ls"), images[1].alias("rm"), *(c.alias(c.name) for c in images[2:]),
            Command("inspect", "image details as JSON", args=[("images", "IMAGE", "some")],
                    target="image_inspect"),
            Command("history", "the steps that made an image, newest first", args=[("image", "IMAGE", "one")],
                    target="image_history", flags=[
                        switch("--no-trunc", help="full ids and commands"),
                        switch("-q", "--quiet", help="only ids")]),
            Command("prune", "remove unused images (untagged ones; with -a, all no container uses)",
                    target="image_prune", flags=[
                        switch("-a", "--all", help="every image no container uses, not only untagged ones"),
                        switch("-f", "--force", help="accepted as docker's; minirt's prune never asks")]),
        ]),
        Command("version", "the version of minirt, Python and the kernel; what the host offers"),
        Command("info", "system-wide information: containers, images, storage, cgroups, security",
                flags=[value("-f", "--format", metavar="TEMPLATE",
                             help="fields as a Go template: {{.Images}}, {{json .}}")]),
        Command("login", "log in to a registry (kept in ~/.config/minirt/config.json)",
                args=[("registry", "REGISTRY", "one")], flags=[
                    value("-u", "--username", metavar="USER", help="the user name"),
                    value("-p", "--password", metavar="PASSWORD", help="the password (better: --password-stdin)"),
                    switch("--password-stdin", help="read the password from stdin"),
                    insecure_registry(),
                ]),
        Command("logout", "forget a registry's login", args=[("registry", "REGISTRY", "one")]),
        Command("network", "user-defined networks (create, ls, inspect, connect, disconnect, rm, prune)", actions=[
            Command("create", "create a bridge network", args=[("name", "NAME", "one")], flags=[
                value("--subnet", metavar="CIDR", help="e.g. 10.90.1.0/24 (default: a free one)"),
                repeated("--label", metavar="KEY=VALUE", help="a label on the network")]),
            Command("ls", "list networks", flags=[
                switch("-q", "--quiet", help="only ids"),
                switch("--no-trunc", help="full ids")]),
            Command("inspect", "network details as JSON", args=[("names", "NAME", "some")]),
            Command("connect", "connect a container to a network (a running one at once)",
                    args=[("name", "NETWORK", "one"), ("container", "CONTAINER", "one")], flags=[
                        repeated("--alias", metavar="NAME", help="another name for it on this network")]),
            Command("disconnect", "disconnect a container from a network",
                    args=[("name", "NETWORK", "one"), ("container", "CONTAINER", "one")]),
            Command("rm", "remove networks", args=[("names", "NAME", "some")]),
            Command("prune", "remove the user-defined networks no container is on", flags=[
                switch("-f", "--force", help="(no prompt is ever shown)")]),
        ]),
        Command("volume", "volumes: data kept apart from containers (create, ls, inspect, rm, prune)", actions=[
            Command("create", "create a volume (a random name without NAME)",
                    args=[("name", "NAME", "maybe")], flags=[
                        value("-d", "--driver", metavar="DRIVER", default="local", help="only local, docker's own"),
                        repeated("--label", metavar="KEY=VALUE", help="a label on the volume")]),
            Command("ls", "list volumes", flags=[
                switch("-q", "--quiet", help="only names"),
                repeated("-f", "--filter", metavar="KEY=VALUE",
                         help="dangling=true|false, name=PART, label=KEY[=VALUE]")]),
            Command("inspect", "volume details as JSON", args=[("names", "VOLUME", "some")]),
            Command("rm", "remove volumes no container uses",
                    args=[("names", "VOLUME", "some")],
                    flags=[switch("-f", "--force", help="no error for a volume that does not exist")]),
            Command("prune", "remove unused anonymous volumes (docker 23's rule; -a: every unused one)",
                    flags=[
                        switch("-a", "--all", help="named volumes too"),
                        switch("-f", "--force", help="accepted as docker's; minirt's prune never asks")]),
        ]),
        Command("builder", "the build cache (prune)", actions=[
            Command("prune", "forget every cached build step and empty the cache mounts",
                    target="builder_prune", flags=[
                        switch("-a", "--all", help="accepted as docker's: minirt's prune takes all of it"),
                        switch("-f", "--force", help="accepted as docker's; minirt's prune never asks")]),
        ]),
        Command("system", "system-wide commands (prune)", actions=[
            Command("prune", "remove stopped containers, unused networks and unused layers", flags=[
                switch("--volumes", help="unused anonymous volumes too (named ones always stay)"),
                switch("-f", "--force", help="accepted as docker's; minirt's prune never asks")]),
        ]),
    ]


def _compose():
    """``minirt compose``: docker compose's verbs over a compose file."""
    services = ("services", "SERVICE", "any")
    timeout = value("-t", "--timeout", metavar="SECONDS", type=seconds,
                    help="seconds to wait for a container to stop before SIGKILL")
    one_off = [repeated("-e", "--env", metavar="K=V", help="set an environment variable"),
               value("-u", "--user", metavar="USER", help="run as this user"),
               value("-w", "--workdir", metavar="DIR", help="working directory inside the container"),
               switch("-T", "--no-TTY", help="no pseudo-terminal (the default when stdin is not one)"),
               switch("-d", "--detach", help="run in the background")]
    return [Command("compose", "multi-container systems from a compose file (docker compose's verbs)", flags=[
        repeated("-f", "--file", metavar="FILE", help="compose file (default compose.yaml; several are merged)"),
        value("-p", "--project-name", metavar="NAME", help="project name (default: the file's name: or directory)"),
        value("--project-directory", metavar="DIR", help="where relative paths start (default: the first file's)"),
        repeated("--env-file", metavar="FILE", help="variables for interpolation (default: the project's .env)"),
        repeated("--profile", metavar="NAME", help="enable the services of this profile"),
    ], actions=[
        Command("up", "create and start the project's containers (only what changed)", args=[services], flags=[
            switch("-d", "--detach", help="in the background (else: follow their logs, Ctrl-C stops them)"),
            switch("--build", help="build images before starting"),
            switch("--force-recreate", help="recreate containers even if their configuration is unchanged"),
            switch("--no-recreate", help="keep existing containers even if their configuration changed"),
            switch("--no-deps", help="do not start the services the named ones depend on"),
            switch("--wait", help="wait for the services to be running and healthy (implies -d)"),
            value("--wait-timeout", metavar="SECONDS", type=seconds, help="how long --wait and depends_on wait"),
        ]),
        Command("down", "stop and remove the project's containers and networks", flags=[
            switch("-v", "--volumes", help="remove the named volumes of the file and anonymous ones"),
            value("--rmi", metavar="local|all", help="remove images too: the built ones (local) or all"),
            switch("--remove-orphans", help="(always done: every container of the project is removed)"),
            timeout,
        ]),
        Command("ps", "list the project's containers", args=[("names", "SERVICE", "any")], flags=[
            switch("-a", "--all", help="stopped ones too"),
            switch("-q", "--quiet", help="ids only"),
            switch("--services", help="the services' names only"),
        ]),
        Command("logs", "the output of the project's containers", args=[services], flags=[
            switch("-f", "--follow", help="follow the output"),
            value("-n", "--tail", metavar="N", help="the last N lines of each (or all)"),
            switch("--no-log-prefix", help="without the container's name before each line"),
        ]),
        Command("build", "build the images of services with a build section", args=[services], flags=[
            switch("--no-cache", help="do not use the build cache"),
        ]),
        Command("pull", "pull the images of the services", args=[services]),
        Command("push", "push the images of built services that name one", args=[services]),
        Command("exec", "run a command in a service's running container", args=[("service", "SERVICE", "one")],
                rest=("args", "COMMAND"), flags=one_off + [
                    value("--index", metavar="N", type=int, default=1, help="which container of the service"),
                ]),
        Command("run", "run a one-off command in a new container of a service",
                args=[("service", "SERVICE", "one")], rest=("args", "COMMAND"), flags=one_off + [
                    switch("--rm", help="remove the container when it exits"),
                    value("--name", metavar="NAME", help="a name for the container"),
                    value("--entrypoint", metavar="CMD", help="override the entrypoint"),
                    switch("--no-deps", help="do not start the services it depends on"),
                ]),
        Command("start", "start the project's stopped containers", args=[services]),
        Command("stop", "stop the project's containers", args=[services], flags=[timeout]),
        Command("restart", "restart the project's containers", args=[services], flags=[timeout]),
        Command("rm", "remove the project's stopped containers", args=[services], flags=[
            switch("-f", "--force", help="(no question is asked anyway)"),
            switch("-s", "--stop", help="stop running containers first"),
            switch("-v", "--volumes", help="remove their anonymous volumes too"),
        ]),
        Command("config", "check the files and print the resolved project", flags=[
            switch("-q", "--quiet", help="only check"),
            switch("--services", help="the services' names only"),
            switch("--volumes", help="the volumes' names only"),
        ]),
        Command("images", "the images the project's containers use", args=[services]),
        Command("top", "the processes of the project's running containers", args=[services]),
        Command("port", "the host address a service's port is published on",
                args=[("service", "SERVICE", "one"), ("port", "PORT", "one")], flags=[
                    value("--index", metavar="N", type=int, default=1, help="which container of the service"),
                    value("--protocol", metavar="tcp|udp", default="tcp", help="the port's protocol (default tcp)"),
                ]),
    ])]


def _images():
    """The image commands; ``image ls``, ``image rm`` ... are the same."""
    return [
        Command("images", "list loaded images", flags=[
            switch("-a", "--all", help="accepted as docker's: minirt has no intermediate images to hide"),
            switch("-q", "--quiet", help="only ids"),
            switch("--no-trunc", help="full ids"),
            switch("--digests", help="show digests"),
            value("--format", metavar="TEMPLATE", help="each image as a Go template: {{.Repository}}:{{.Tag}}"),
        ]),
        Command("rmi", "remove loaded images (untag; delete once no name is left)",
                args=[("images", "IMAGE", "some")],
                flags=[switch("-f", "--force", help="untag every name of an image given by id")]),
        Command("load", "load an image archive into the store under its tags", flags=[
            value("-i", "--input", metavar="FILE", required=True, help="the image archive"),
            repeated("-t", "--tag", metavar="NAME", help="name it (instead of its own tags)"),
        ]),
        Command("tag", "give an image another name", usage="minirt tag SOURCE_IMAGE TARGET_IMAGE",
                args=[("source", "SOURCE_IMAGE", "one"), ("target", "TARGET_IMAGE", "one")]),
        Command("save", "write images to a tar archive (to stdout unless -o)",
                args=[("images", "IMAGE", "some")], flags=[
                    value("-o", "--output", metavar="FILE", help="write to FILE, not to stdout"),
                    value("--format", metavar="FORMAT", default="docker-archive",
                          help="docker-archive (default) or oci-archive"),
                ]),
        Command("build", "build an image from a Dockerfile", usage="minirt build [OPTIONS] PATH | -",
                args=[("context", "PATH", "one")], flags=[
                    repeated("-t", "--tag", metavar="NAME", help="name the image (NAME[:TAG]); may repeat"),
                    value("-f", "--file", metavar="FILE", help="the Dockerfile (default PATH/Dockerfile; - for stdin)"),
                    repeated("--build-arg", metavar="KEY=VALUE", help="set a build-time ARG"),
                    value("--target", metavar="STAGE", help="the stage to build (default the last)"),
                    switch("--no-cache", help="do not use the build cache"),
                    value("--network", metavar="MODE", help="RUN's network: none (default), host, bridge"),
                    value("--progress", metavar="MODE", default="auto", help="auto, plain or quiet"),
                    switch("-q", "--quiet", help="print only the image id"),
                    value("--iidfile", metavar="FILE", help="write the image id to FILE"),
                ]),
        Command("pull", "download an image from a registry", args=[("ref", "NAME[:TAG|@DIGEST]", "one")], flags=[
            value("--platform", metavar="OS/ARCH[/VARIANT]", help="the platform to pull (default this host's)"),
            switch("-q", "--quiet", help="print only the image's name"),
            insecure_registry(),
        ]),
        Command("push", "upload an image to a registry", args=[("ref", "NAME[:TAG]", "one")], flags=[
            switch("-q", "--quiet", help="print only the image's name"),
            insecure_registry(),
        ]),
    ]


def _lifecycle():
    """The container commands; ``container ls``, ``container rm`` ... are the same."""
    return [
        Command("run", "run a command in a new container",
                usage="minirt run [OPTIONS] IMAGE [COMMAND [ARG...]]", args=[("image", "IMAGE", "one")],
                rest=("args", "COMMAND"), flags=[
                    switch("--rm", help="remove the container when it exits"),
                    switch("-i", "--interactive", help="keep stdin attached"),
                    switch("-t", "--tty", help="allocate a pseudo-terminal"),
                    switch("-d", "--detach", help="run in the background and print the id"),
                    repeated("-e", "--env", metavar="K=V",
                             help="set an environment variable (K alone: copy it from here)"),
                    value("-w", "--workdir", metavar="DIR", help="working directory inside the container"),
                    value("-h", "--hostname", metavar="NAME", help="container host name"),
                    repeated("-v", "--volume", metavar="SRC:DST[:ro]",
                             help="bind-mount a host path; NAME:DST a named volume, DST alone an anonymous one"),
                    value("-u", "--user", metavar="UID[:GID]", help="user (name or uid) and group"),
                    value("--entrypoint", metavar="CMD", help="override the image's entrypoint"),
                    switch("--init", help="run a reaper as PID 1"),
                    value("--name", metavar="NAME", default="", help="a name for the container"),
                    repeated("-l", "--label", metavar="KEY=VALUE", help="a label on the container"),
                    value("--platform", metavar="OS/ARCH[/VARIANT]", help="the platform to pull if missing"),
                    insecure_registry(),
                    value("--cgroup-parent", metavar="PATH",
                          help="parent cgroup of the container's cgroup (default minirt, or $MINIRT_CGROUP_PARENT)"),
                ], sections=[
                    ("resource limits (cgroups)", [
                        value("-m", "--memory", metavar="BYTES", help="memory limit, e.g. 512m"),
                        value("--memory-swap", metavar="BYTES", help="memory plus swap limit; -1 unlimited"),
                        value("--pids-limit", metavar="N", help="maximum number of processes; <= 0 unlimited"),
                        value("--cpus", metavar="N", help="CPU quota in cores, e.g. 1.5"),
                        value("-c", "--cpu-shares", metavar="N", help="relative CPU weight (default 1024)"),
                        value("--cpuset-cpus", metavar="LIST", help="CPUs allowed, e.g. 0-1,3"),
                    ]),
                    ("security", [
                        repeated("--cap-add", metavar="CAP", help="add a capability (or ALL)"),
                        repeated("--cap-drop", metavar="CAP", help="drop a capability (or ALL)"),
                        switch("--privileged", help="all capabilities, no seccomp, no masked paths, writable /sys"),
                        repeated("--security-opt", metavar="OPT",
                                 help="seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false]"),
                        switch("--read-only", help="mount the root filesystem read-only"),
                        repeated("--tmpfs", metavar="DST[:OPTS]", help="mount a tmpfs"),
                        repeated("--group-add", metavar="GROUP", help="add a supplementary group"),
                        value("--userns", metavar="MODE", default="",
                              help="remap: root inside is an unprivileged range outside (root only)"),
                    ]),
                    ("healthchecks and restarts (looked after by the monitor of run -d)", [
                        value("--health-cmd", metavar="COMMAND", help="the probe, run by /bin/sh -c in the container"),
                        value("--health-interval", metavar="DURATION", help="between probes (default 30s)"),
                        value("--health-timeout", metavar="DURATION", help="a probe longer than this fails (default 30s)"),
                        value("--health-retries", metavar="N", help="failures in a row that make it unhealthy (default 3)"),
                        value("--health-start-period", metavar="DURATION",
                              help="failures in this time after start do not count (default 0s)"),
                        value("--health-start-interval", metavar="DURATION",
                              help="between probes during the start period (default 5s)"),
                        switch("--no-healthcheck", help="ignore the image's HEALTHCHECK"),
                        value("--restart", metavar="POLICY", default="no",
                              help="no, always, on-failure[:N] or unless-stopped (with -d)"),
                    ]),
                    ("network", [
                        repeated("--network", "--net", metavar="MODE",
                                 help="none, host, bridge (default as root), container:NAME or a network's name"
                                      " (name=NET,alias=A: with aliases); repeated: eth0, eth1, ... in order"),
                        repeated("-p", "--publish", metavar="[IP:][HOST:]CTR[/PROTO]",
                                 help="publish a container port on the host (no HOST: one the kernel picks)"),
                        repeated("--network-alias", metavar="NAME",
                                 help="another name for the container on the user-defined networks given"),
                    ]),
                ]),
        Command("ps", "list containers", flags=[
            switch("-a", "--all", help="also stopped containers"),
            switch("-q", "--quiet", help="only ids"),
            switch("--no-trunc", help="full ids and commands"),
            switch("-s", "--size", help="the size of each container's writable layer"),
            repeated("-f", "--filter", metavar="KEY=VALUE",
                     help="id, name, label=KEY[=VALUE], ancestor, network, status, exited, health"),
        ]),
        Command("inspect", "container details as JSON", args=[("containers", "CONTAINER", "some")]),
        Command("port", "a container's published ports, with their host ports",
                args=[("container", "CONTAINER", "one"), ("port", "PORT[/PROTO]", "maybe")]),
        Command("logs", "output of a detached container", args=[("container", "CONTAINER", "one")], flags=[
            switch("-f", "--follow", help="keep printing new output"),
            value("--tail", metavar="N", help="only the last N lines"),
        ]),
        Command("exec", "run a command in a running container", args=[("container", "CONTAINER", "one")],
                rest=("args", "COMMAND"), usage="minirt exec [OPTIONS] CONTAINER COMMAND [ARG...]", flags=[
                    switch("-i", "--interactive", help="keep stdin attached"),
                    switch("-t", "--tty", help="allocate a pseudo-terminal"),
                    repeated("-e", "--env", metavar="K=V", help="set an environment variable"),
                    value("-w", "--workdir", metavar="DIR", help="working directory inside the container"),
                    value("-u", "--user", metavar="UID[:GID]", help="user (name or uid) and group"),
                ]),
        Command("stop", "SIGTERM, then SIGKILL after a grace period", args=[("containers", "CONTAINER", "some")],
                flags=[value("-t", "--time", metavar="SECS", type=seconds, default=10.0,
                             help="seconds to wait before SIGKILL (default 10; -1: for ever)")]),
        Command("kill", "send a signal to a container", args=[("containers", "CONTAINER", "some")],
                flags=[value("-s", "--signal", metavar="SIG", default="KILL", help="the signal (default KILL)")]),
        Command("wait", "wait for containers to exit, print their exit codes",
                args=[("containers", "CONTAINER", "some")]),
        Command("rm", "remove containers", args=[("containers", "CONTAINER", "some")],
                flags=[switch("-f", "--force", help="kill a running container first"),
                       switch("-v", "--volumes", help="its anonymous volumes too")]),
        Command("start", "start stopped containers again (detached)", args=[("containers", "CONTAINER", "any")],
                usage="minirt start CONTAINER [CONTAINER...] | --all-restartable", flags=[
                    switch("--all-restartable",
                           help="every stopped container its restart policy would bring back (at boot)")]),
    ]


ROOT = value("--root", metavar="DIR", help="state directory (default /var/lib/minirt, or $MINIRT_ROOT)")


def parse(argv):
    """``argv`` (without the program name) -> a namespace: ``root``,
    ``command`` and the command's flags and arguments.  Raises SpecError on
    a bad command line and HelpRequested for ``--help``."""
    if any("\0" in word for word in argv):  # (from the Python API: execve cannot pass one)
        raise SpecError("an argument contains a NUL byte")
    ns = SimpleNamespace(root=None, command=None)
    words = list(argv)
    while words and words[0].startswith("-"):
        word = words.pop(0)
        if word in ("-h", "--help"):
            raise HelpRequested(help_text())
        if word in ("-v", "--version"):
            ns.command = "version_line"
            return ns
        name, eq, glued = word.partition("=")
        if name != "--root":
            raise SpecError(f"unknown flag: {name} (minirt's own flags: --root, --help)")
        if not eq and not words:
            raise SpecError("flag --root needs a value (DIR)")
        ns.root = glued if eq else words.pop(0)
    if not words:
        raise SpecError("a command is required (minirt --help lists them)")
    for group in (_lifecycle, _images, _managing, _compose):  # `run` builds only its own group's tables
        for c in group():
            if c.name == words[0]:
                ns.command = c.name
                c.parse(words[1:], ns)
                return ns
    raise SpecError(f"unknown command {words[0]!r} (one of: {', '.join(c.name for c in _commands())})")


def help_text():
    """``minirt --help``."""
    lines = ["usage: minirt [--root DIR] COMMAND [OPTIONS] [ARG...]", "",
             "A container runtime built from first principles.", "", "commands:"]
    lines += [f"    {c.name:10} {c.help}" for c in _commands()]
    lines += ["", "options:", f"  {ROOT.label():16}{ROOT.help}", f"  {'-h, --help':16}show this help and exit",
              f"  {'-v, --version':16}print the version and exit",
              "", "minirt COMMAND --help tells more about a command."]
    return "\n".join(lines) + "\n"
