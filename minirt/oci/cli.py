"""``minirt-runc``: runc's command line, as the engines call it.

Lecture idea: an interface is a contract.  containerd's shim, docker,
podman's conmon and buildah each call ``runc`` with the same words
(../shared/conformance/engine-argv.txt lists what they were seen to send):

    minirt-runc [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                [--systemd-cgroup] COMMAND [OPTIONS] ID ...

Global flags come before the command, the command's own after it and before
its arguments; each takes ``--name VALUE``, ``--name=VALUE`` or a single dash,
as Go's flag package does.  An error is one line on stderr and, with
``--log``, one line in the log, in runc's shape
(``{"level":"error","msg":"...","time":"..."}`` with ``--log-format json``):
the shims read it from there to tell the user why.
"""

import gc
import os
import sys
import time

import minirt
from minirt import lightjson
from minirt.errors import MinirtError

DEFAULT_ROOT = "/run/minirt-runc"
USAGE = "usage: minirt-runc [global options] COMMAND [options] CONTAINER-ID"

GLOBAL = {"root": True, "log": True, "log-format": True, "debug": False, "systemd-cgroup": False,
          "criu": True, "rootless": True, "help": False, "h": False, "version": False, "v": False}
# Each command's flags: name -> takes a value ("*": may be given again, each value kept).  Accepted flags whose
# behaviour is minirt's anyway: --no-pivot (minirt always pivots, as runc
# without it), --no-new-keyring (minirt makes no session keyring).
COMMANDS = {
    "create": {"bundle": True, "b": True, "pid-file": True, "console-socket": True, "no-pivot": False,
               "no-new-keyring": False, "preserve-fds": True},
    "run": {"bundle": True, "b": True, "pid-file": True, "console-socket": True, "no-pivot": False,
            "no-new-keyring": False, "preserve-fds": True, "detach": False, "d": False, "keep": False},
    "start": {}, "pause": {}, "resume": {},
    "state": {},
    "kill": {"all": False, "a": False},
    "delete": {"force": False, "f": False},
    "list": {"format": True, "f": True, "quiet": False, "q": False},
    "ps": {"format": True, "f": True},
    "spec": {"bundle": True, "b": True, "rootless": False},
    "features": {},
    "events": {"stats": False, "interval": True},
    "update": {"resources": True, "r": True, "memory": True, "memory-swap": True, "memory-reservation": True,
               "kernel-memory": True, "kernel-memory-tcp": True, "pids-limit": True, "cpu-quota": True,
               "cpu-period": True, "cpu-share": True, "cpu-rt-period": True, "cpu-rt-runtime": True,
               "cpuset-cpus": True, "cpuset-mems": True, "blkio-weight": True, "l3-cache-schema": True,
               "mem-bw-schema": True},
    "exec": {"process": True, "p": True, "detach": False, "d": False, "pid-file": True, "tty": False, "t": False,
             "console-socket": True, "cwd": True, "env": "*", "e": "*", "user": True, "u": True,
             "additional-gids": "*", "g": "*", "no-new-privs": False, "preserve-fds": True, "ignore-paused": False,
             "cgroup": "*"},
}


# What ``-h`` says of each command (runc's words, for the scripts that read them);
# checkpoint and restore are listed, as runc lists them, and refused when run.
SUMMARIES = {
    "checkpoint": "checkpoint a running container", "create": "create a container",
    "delete": "delete any resources held by the container often used with detached container",
    "events": "display container events such as OOM notifications, cpu, memory, and IO usage statistics",
    "exec": "execute new process inside the container", "features": "show the enabled features",
    "kill": "kill sends the specified signal (default: SIGTERM) to the container's init process",
    "list": "lists containers started by runc with the given root", "pause": "pause suspends all processes inside the container",
    "ps": "ps displays the processes running inside a container", "restore": "restore a container from a previous checkpoint",
    "resume": "resumes all processes that have been previously paused", "run": "create and run a container",
    "spec": "create a new specification file", "start": "executes the user defined process in a created container",
    "state": "output the state of a container", "update": "update container resource constraints",
}


class Usage(MinirtError):
    pass


class NoTopic(Usage):
    """An unknown command: runc's exit status 3."""


def command():
    """The ``minirt-runc`` program.  An engine runs it four or five times per
    container (create, start, kill, delete ...), so each run is kept short as
    ``minirt``'s own (``minirt.cli.command``): no cycle collector (nothing
    here lives long enough to need it) and ``os._exit``, without the
    interpreter's teardown.  Only the output buffers need flushing."""
    gc.disable()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    log, command = LOG, None
    try:
        options, rest = parse(argv, GLOBAL, stop_at_positional=True)
        log.open(options.get("log"), options.get("log-format", "text"), "debug" in options)
        log.debug(f"argv: {argv}")
        if "version" in options or "v" in options:
            print(f"minirt-runc version {minirt.__version__}\ncommit: minirt {minirt.__version__}\n"
                  f"spec: {_oci_version()}")
            return 0
        if not rest or "help" in options or "h" in options:
            print(help_text(None))
            return 0
        if "systemd-cgroup" in options:
            why = "this host has no systemd" if not os.path.isdir("/run/systemd/system") else \
                "minirt drives cgroupfs only"
            raise Usage(f"--systemd-cgroup is not supported: {why}")
        if options.get("log-format", "text") not in ("text", "json"):
            raise Usage(f"--log-format must be text or json, not {options['log-format']!r}")
        command, rest = rest[0], rest[1:]
        if command not in SUMMARIES:
            raise NoTopic(f"No help topic for {command!r}")
        # (exec's and ps's arguments are a command line of their own: their flags come first)
        flags, args = parse(rest, {**COMMANDS.get(command, {}), "help": False, "h": False},
                            stop_at_positional=command in ("exec", "ps"))
        if "help" in flags or "h" in flags:
            print(help_text(command))
            return 0
        if command not in COMMANDS:
            raise Usage(f"{command} is not supported by minirt")
        root = os.path.abspath(options.get("root") or DEFAULT_ROOT)
        return globals()["cmd_" + command](root, flags, args) or 0
    except MinirtError as e:
        log.error(str(e))
        return 3 if isinstance(e, NoTopic) else failed(command)
    except OSError as e:  # the host refused something (a cgroup file, a socket): said as runc says it
        log.error(f"{e.filename}: {e.strerror}" if e.filename else str(e.strerror or e))
        return failed(command)
    except KeyboardInterrupt:
        return 130
    finally:
        log.close()


def failed(command):
    """The exit status of a command that failed: 255 for exec (whose own status
    is its process's), 1 for the others, as runc's."""
    return 255 if command == "exec" else 1


def help_text(command):
    """``runc -h`` or ``runc COMMAND -h``: the name line first, as in runc's."""
    if command is None:
        return ("NAME:\n   runc - Open Container Initiative runtime (minirt-runc, minirt's implementation)\n\n"
                f"USAGE:\n   {USAGE.partition(': ')[2]}\n\nCOMMANDS:\n"
                + "".join(f"   {name:<11} {text}\n" for name, text in SUMMARIES.items() if name in COMMANDS))
    flags = " ".join(f"--{name}" for name in COMMANDS.get(command, ()) if len(name) > 1)
    return (f"NAME:\n   runc {command} - {SUMMARIES[command]}\n\n"
            f"USAGE:\n   minirt-runc {command} [command options] <container-id>\n\nOPTIONS:\n   {flags or '(none)'}")


def parse(argv, table, stop_at_positional):
    """Go-style flags from ``argv`` -> ({name: value or True}, the rest).
    Without ``stop_at_positional``, flags may also follow the arguments (runc's
    command line reorders them so: ``update ID --memory 1g``)."""
    options, positional, i = {}, [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return options, positional + argv[i + 1:]
        if not word.startswith("-") or word == "-":
            if stop_at_positional:
                return options, argv[i:]
            positional.append(word)
            i += 1
            continue
        name, eq, value = word.lstrip("-").partition("=")
        if positional and name not in table:  # (after an argument, an unknown -x is one too: "-1")
            positional.append(word)
            i += 1
            continue
        if name not in table:
            raise Usage(f"flag provided but not defined: -{name}")
        if table[name] and not eq:
            i += 1
            if i == len(argv):
                raise Usage(f"flag needs an argument: -{name}")
            value = argv[i]
        if table[name] == "*":
            options.setdefault(name, []).append(value)
            i += 1
            continue
        elif not table[name]:
            if eq and value not in ("true", "false"):
                raise Usage(f"invalid boolean value {value!r} for -{name}")
            if value == "false":
                i += 1
                continue
            value = True
        options[name] = value
        i += 1
    return options, positional


def _one_id(args, command, extra=0):
    if not args or len(args) > 1 + extra:
        raise Usage(f'"{command}" requires a container id' + (" and at most one signal" if extra else ""))
    return args[0]


def _flag(flags, *names):
    for name in names:
        if name in flags:
            return flags[name]
    return None


# -- the commands -------------------------------------------------------------------


def cmd_create(root, flags, args):
    from minirt.oci import commands

    preserve = _preserve_fds(flags)
    commands.create(root, _one_id(args, "create"), _flag(flags, "bundle", "b") or ".",
                    flags.get("pid-file"), flags.get("console-socket"), preserve_fds=preserve, debug=LOG.debug)


def cmd_run(root, flags, args):
    from minirt.oci import commands

    preserve = _preserve_fds(flags)
    cid = _one_id(args, "run")
    if flags.get("console-socket") and not _flag(flags, "detach", "d"):
        raise Usage("--console-socket needs --detach (run in the foreground relays the terminal itself)")
    container = commands.create(root, cid, _flag(flags, "bundle", "b") or ".", flags.get("pid-file"),
                                flags.get("console-socket"), relay=not _flag(flags, "detach", "d"),
                                preserve_fds=preserve, debug=LOG.debug)
    try:
        commands.start(container, debug=LOG.debug)
        if _flag(flags, "detach", "d"):
            return 0
        code = commands.run_foreground(container)
    except BaseException:
        commands.delete(container, force=True)
        raise
    if not flags.get("keep"):
        commands.delete(container, force=True)
    return code


def _preserve_fds(flags):
    """--preserve-fds N: how many of our descriptors from 3 on the process gets
    as they are; each must be one our caller gave us (open, inheritable)."""
    text = flags.get("preserve-fds") or "0"
    if not text.isdigit():
        raise Usage(f"--preserve-fds takes a number, not {text!r}")
    count = int(text)
    for fd in range(3, 3 + count):
        try:
            given = os.get_inheritable(fd)
        except OSError:
            given = False
        if not given:
            raise Usage(f"--preserve-fds {count}: file descriptor {fd} was not passed to minirt-runc")
    return count


def cmd_exec(root, flags, args):
    from minirt.oci import bundle, commands

    preserve = _preserve_fds(flags)
    if not args:
        raise Usage('"exec" requires a container id')
    path = _flag(flags, "process", "p")
    if path:
        if len(args) > 1:
            raise Usage("exec: give either --process or a command, not both")
        process = bundle.load_process(path)
        container = commands.load(root, args[0])
    else:
        if len(args) < 2:
            raise Usage("exec: give --process FILE or a command")
        container = commands.load(root, args[0])
        # As runc's: the container's process, but for what the flags say
        # (its env and additional groups with the flags' added).
        spec = container.spec
        uid, _, gid = (_flag(flags, "user", "u") or spec.user).partition(":")
        gid = gid or spec.user.partition(":")[2]   # (--user UID keeps the process's group)
        process = bundle.parse_process({
            "args": args[1:], "env": _flag(flags, "env", "e") or [], "cwd": flags.get("cwd") or spec.cwd,
            "terminal": bool(_flag(flags, "tty", "t")),
            "user": {"uid": _number(uid, "--user"), "gid": _number(gid, "--user"),
                     "additionalGids": [int(g) for g in spec.group_add] + [
                         _number(g, "--additional-gids") for g in _flag(flags, "additional-gids", "g") or []]},
        }, "exec")
    return commands.exec_process(container, process, flags.get("pid-file"),
                                 flags.get("console-socket"), detach=bool(_flag(flags, "detach", "d")),
                                 preserve_fds=preserve, ignore_paused=bool(flags.get("ignore-paused")),
                                  sub_cgroups=_sub_cgroups(flags.get("cgroup") or ()), debug=LOG.debug)


def _sub_cgroups(values):
    """exec --cgroup [CONTROLLER[,CONTROLLER...]:]PATH, given once per tree
    (or once, without a controller, for all) -> {controller or "": path}."""
    subs = {}
    for value in values:
        parts = value.split(":")
        if len(parts) > 2:
            raise Usage(f"invalid --cgroup argument: {value}")
        if len(parts) == 1:
            if len(values) != 1:
                raise Usage(f"invalid --cgroup argument: {value} (missing <controller>: prefix)")
            subs[""] = value
        else:
            subs.update((controller, parts[1]) for controller in parts[0].split(","))
    return subs


def _number(text, flag):
    if not text.isdigit():
        raise Usage(f"{flag} takes numeric ids (UID[:GID]), not {text!r}")
    return int(text)


def cmd_update(root, flags, args):
    """New limits for a container's cgroup: --resources FILE (- for stdin: what
    docker sends), OCI's linux.resources object, or runc's flags.  What is not
    given (or zero) stays as it is."""
    from minirt.oci import bundle, commands

    cid = _one_id(args, "update")
    source = _flag(flags, "resources", "r")
    if source:
        try:
            text = sys.stdin.read() if source == "-" else open(source).read()
            resources = lightjson.loads(text)
        except (OSError, ValueError) as e:
            raise Usage(f"--resources {source}: {getattr(e, 'strerror', None) or e}") from None
    else:
        resources = _update_flags(flags)
    limits, _ = bundle.resources(resources)
    commands.update(commands.load(root, cid), limits)


# runc update's flags: where each goes in linux.resources, and how it is read.
_UPDATE_FLAGS = (
    ("memory", "memory", "limit", "bytes"), ("memory-swap", "memory", "swap", "bytes"),
    ("memory-reservation", "memory", "reservation", "bytes"), ("pids-limit", "pids", "limit", "int"),
    ("cpu-quota", "cpu", "quota", "int"), ("cpu-period", "cpu", "period", "uint"),
    ("cpu-share", "cpu", "shares", "uint"), ("cpu-rt-runtime", "cpu", "realtimeRuntime", "int"),
    ("cpu-rt-period", "cpu", "realtimePeriod", "uint"), ("cpuset-cpus", "cpu", "cpus", "text"),
    ("cpuset-mems", "cpu", "mems", "text"), ("blkio-weight", "blockIO", "weight", "uint"),
)


def _update_flags(flags):
    """runc update's flags -> a linux.resources object (sizes: 512m, 1g, -1)."""
    from minirt.spec import is_decimal, parse_bytes

    for flag, what in (("l3-cache-schema", "Intel RDT/CAT: l3 cache schema"),
                       ("mem-bw-schema", "Intel RDT/MBA: memory bandwidth schema")):
        if flags.get(flag):
            raise Usage(f"{what} is not enabled")
    if flags.get("kernel-memory") or flags.get("kernel-memory-tcp"):
        print("minirt-runc: warning: kernel memory settings are ignored and will be removed", file=sys.stderr)
    resources = {}
    for flag, key, field, kind in _UPDATE_FLAGS:
        text = flags.get(flag)
        if not text:
            continue
        if kind == "text":
            value = text
        elif kind == "bytes":
            value = -1 if text == "-1" else parse_bytes(text, "--" + flag)
        elif is_decimal(text.removeprefix("-") if kind == "int" else text):
            value = int(text)
        else:
            raise Usage(f"invalid value for {flag}: {text!r} is not {'a whole' if kind == 'int' else 'an unsigned'}"
                        " number")
        resources.setdefault(key, {})[field] = value
    return resources


def cmd_events(root, flags, args):
    """The container's stats (runc's JSON, one object a line): once with
    --stats, else every --interval (Go's duration: 5s, 500ms, 1m30s) until it
    stops, with an "oom" event when the OOM killer strikes in it."""
    from minirt.oci import commands

    interval = _duration(flags.get("interval") or "5s")
    container = commands.load(root, _one_id(args, "events"))
    for event in commands.events(container, interval, once=bool(flags.get("stats"))):
        print(_dumps(event), flush=True)


def _duration(text):
    """Go's time.ParseDuration, positive: "5s", "1.5s", "1m30s" -> seconds."""
    from minirt.spec import parse_duration

    try:
        ns = parse_duration(text)
    except ValueError:
        ns = 0
    if ns <= 0:
        raise Usage(f"invalid value {text!r} for --interval: a positive duration such as 5s or 500ms")
    return ns / 1e9


def cmd_start(root, flags, args):
    from minirt.oci import commands

    commands.start(commands.load(root, _one_id(args, "start")), debug=LOG.debug)


def cmd_state(root, flags, args):
    from minirt.oci import commands

    _print_json(commands.oci_state(commands.load(root, _one_id(args, "state"))), indent=True)


def cmd_kill(root, flags, args):
    from minirt.oci import commands

    cid = _one_id(args, "kill", extra=1)
    signum = signal_number(args[1] if len(args) > 1 else "TERM")
    commands.kill(commands.load(root, cid), signum, all_processes=bool(_flag(flags, "all", "a")))


def signal_number(text):
    """"9", "KILL", "SIGKILL", "sigkill" -> 9."""
    from _signal import valid_signals

    from minirt.spec import is_decimal, signal_by_name

    if is_decimal(text):
        number = int(text)
        if number and number not in valid_signals():  # (0: is it there? as kill(2))
            raise Usage(f"invalid signal {text!r}")
        return number
    number = signal_by_name(text)
    if number is None:
        raise Usage(f"invalid signal {text!r}")
    return number


def cmd_delete(root, flags, args):
    from minirt.runtime import state

    cid = _one_id(args, "delete")
    force = bool(_flag(flags, "force", "f"))
    if force and not os.path.isdir(os.path.join(state.containers_dir(root), cid)):
        return 0  # (containerd's shim ends each container so, after its delete: this much, not the runtime, is loaded)
    from minirt.oci import commands

    try:
        container = commands.load(root, cid)
    except commands.OciError:
        if force:
            return 0  # runc: deleting what is not there, by force, succeeds
        raise
    except (OSError, ValueError):
        if not force:
            raise
        # Its directory without its files (a delete cut short): by force, gone too, as runc's
        state.remove_tree(os.path.join(state.containers_dir(root), cid))
        return 0
    commands.delete(container, force=force)


def cmd_pause(root, flags, args):
    from minirt.oci import commands

    commands.pause(commands.load(root, _one_id(args, "pause")))


def cmd_resume(root, flags, args):
    from minirt.oci import commands

    commands.resume(commands.load(root, _one_id(args, "resume")))


def cmd_ps(root, flags, args):
    from minirt.oci import commands

    """The container's processes: their pids (--format json), or as runc
    shows them, the lines of the host's ``ps`` (``-ef``, or the options given
    after the id) that are theirs."""
    import subprocess

    if not args:
        raise Usage('"ps" requires a container id')
    pids = commands.processes(commands.load(root, args[0]))
    fmt = _flag(flags, "format", "f") or "table"
    if fmt == "json":
        _print_json(pids)
    elif fmt == "table":
        try:
            listing = subprocess.run(["ps", *(args[1:] or ["-ef"])], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            why = (getattr(e, "stderr", None) or str(e)).strip().splitlines()[0]
            raise Usage(f"ps {' '.join(args[1:] or ['-ef'])}: {why}") from None
        header, *lines = listing.stdout.splitlines()
        if "PID" not in header.split():
            raise Usage(f"ps {' '.join(args[1:])}: its output has no PID column")
        column = header.split().index("PID")
        print(header)
        for line in lines:
            words = line.split()
            if len(words) > column and words[column].isdigit() and int(words[column]) in pids:
                print(line)
    else:
        raise Usage(f"--format must be table or json, not {fmt!r}")


def cmd_list(root, flags, args):
    from minirt.oci import commands

    states = [commands.oci_state(c) for c in commands.containers(root) if c.spec.oci]
    fmt = _flag(flags, "format", "f") or "table"
    if _flag(flags, "quiet", "q"):
        for s in states:
            print(s["id"])
    elif fmt == "json":
        _print_json(states)
    elif fmt == "table":
        print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<32}OWNER")
        for s in states:
            print(f"{s['id']:<20}{s['pid']:<10}{s['status']:<10}{s['bundle']:<40}{s['created']:<32}{s['owner']}")
    else:
        raise Usage(f"--format must be table or json, not {fmt!r}")


def cmd_spec(root, flags, args):
    from minirt.oci import defaults

    if args:
        raise Usage('"spec" takes no arguments')
    path = os.path.join(_flag(flags, "bundle", "b") or ".", "config.json")
    if os.path.lexists(path):
        raise Usage(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        f.write(_dumps(defaults.config(), indent=True) + "\n")


def cmd_features(root, flags, args):
    from minirt.oci import defaults

    _print_json(defaults.features(), indent=True)


def _oci_version():
    from minirt.spec import OCI_VERSION

    return OCI_VERSION


def _dumps(value, indent=False):
    if indent:  # (state, spec, features: runc's indented output; without importing json, 5 ms of each `state`)
        return lightjson.dumps(value, indent=2)
    return lightjson.dumps(value, compact=True)  # (as runc's Go prints it: scripts match it byte for byte)


def _print_json(value, indent=False):
    print(_dumps(value, indent))


class Log:
    """Where errors and debug lines go: stderr, and the --log file in runc's format.
    With --debug, runc's debug lines (``level=debug``) go to the log, else to stderr."""

    def __init__(self):
        self.fd, self.json, self.debugging = None, False, False

    def open(self, path, fmt, debug):
        self.json, self.debugging = fmt == "json", debug
        if path:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise Usage(f"--log {path}: {e.strerror}") from None

    def error(self, message):
        print(f"minirt-runc: {message}", file=sys.stderr)
        self._write("error", message)

    def debug(self, message):
        if self.debugging:
            if self.fd is None:
                print(self._line("debug", message, as_json=False), file=sys.stderr, flush=True)
            self._write("debug", message)

    def _write(self, level, message):
        if self.fd is not None:
            os.write(self.fd, (self._line(level, message, self.json) + "\n").encode())

    @staticmethod
    def _line(level, message, as_json):
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"
        if as_json:
            return lightjson.dumps({"level": level, "msg": message, "time": stamp}, compact=True)
        return f'time="{stamp}" level={level} msg={lightjson.dumps(message)}'

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


LOG = Log()   # (one per run of minirt-runc: main opens it, the commands write debug lines to it)
