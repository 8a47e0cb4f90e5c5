"""The ``minirt`` command line: docker's commands, each a call into ``minirt.api``.

The CLI is a client of the Python API and of nothing below it (what it reads
and prints is its own; what it does is the API's), so that a script can do
whatever the command line can.

The flags (docker's) are declared in ``options.py``; here is what each command
does with them.  Errors print one line, ``minirt: <what>``, and exit 125
(minirt failed), 126 (cannot execute), 127 (not found) or with the
container's own status.
"""

import gc
import os
# The C half of `signal`, under its usual name: the Python half builds enums of
# every signal, 0.7 ms of each `minirt run` for names nobody prints.
import _signal as signal
import sys

from minirt.errors import Interrupted, MinirtError, SpecError, exit_status

# Signals minirt passes on to the container instead of dying from them.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)


def command():
    """The ``minirt`` program: argv in, exit status out.

    Two things are done for speed.  The cycle collector is off while minirt
    starts: it would run dozens of times while the modules import and find
    nothing to free (1 ms); ``run`` and ``exec`` turn it on again once their
    command runs, for however long that is (``_waiting``).  And it ends with
    ``os._exit``: a normal interpreter exit tears everything down first
    (modules, objects, garbage collection), 5-8 ms after running a container,
    for memory the kernel is about to free anyway.  Only the output buffers
    need flushing.
    """
    gc.disable()
    try:
        code = main(sys.argv[1:])
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `minirt ps | head -1`: the reader has gone
        code = 128 + signal.SIGPIPE
    os._exit(code or 0)


def main(argv=None):
    """Run the command in ``argv``; return its exit status."""
    from minirt import options

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = options.parse(argv)
        handler = globals()["cmd_" + args.command]
        return handler(args)
    except options.HelpRequested as e:
        print(e.args[0], end="")
        return 0
    except MinirtError as e:
        print(f"minirt: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def _waiting():
    """The command runs now, maybe for days: the cycle collector may run again."""
    gc.enable()


def cmd_run(args):
    from minirt import spec as specs
    from minirt.api import host, network

    container = None

    def on_signal(signum, _frame):
        if container is None or container.pid is None:  # nothing runs yet to pass it to: stop
            for s in FORWARDED:  # and let nothing interrupt the cleanup on the way out
                signal.signal(s, signal.SIG_IGN)
            raise Interrupted(signum)
        container.signal(signum)

    root = args.root or host.default_root()
    options = _run_options(args)  # every flag checked before anything is read or made
    # Until the container runs, a signal stops minirt (a profile read from a
    # FIFO may block); from then on it is the container's, so that Ctrl-C or
    # `kill` never leaves the container behind without its parent.
    for s in FORWARDED:
        signal.signal(s, on_signal)
    if "ports" in options:  # checked before the image is unpacked
        network.check(root, options.get("network") or specs.default_network(), options["ports"],
                      [n["name"] for n in options.get("more_networks", ())])
    # A bridge's veth pair needs pyroute2: a helper imports it while we import the rest.
    network.head_start(options.get("network") or specs.default_network())
    from minirt.api.containers import Container, prepare, start_detached

    if not os.path.exists(args.image):
        _pull_missing(args)
    spec = prepare(args.image, args.args or None, root=root, **options)
    container = Container(spec, root)
    if args.detach:
        start_detached(container)
        for s in FORWARDED:  # it runs on its own now: a signal to minirt is not for it
            signal.signal(s, signal.SIG_DFL)
        print(spec.id)
        return 0
    return _foreground(container, args.memory)


def _foreground(container, memory=None):
    """Create, start and wait for ``container`` with our stdio (``run``
    without -d); its exit code.  The container is deleted at the end.
    ``memory``: its memory limit as the user wrote it, for the OOM message."""
    spec = container.spec
    container.create()
    try:
        container.start()
        _waiting()
        if spec.tty:
            from minirt.api.containers import attach

            attach(container.console, spec.interactive)
        code = container.wait()
        if container.oom_killed:
            print(f"minirt: container {spec.id[:12]} was killed by the OOM killer"
                  f" (memory limit {memory})", file=sys.stderr)
        return code
    finally:
        container.delete()


def _run_options(args):
    """``run``'s flags, checked, as keyword arguments of ``api.prepare``."""
    from minirt import spec as specs

    options = dict(
        env=args.env, workdir=args.workdir, user=specs.check_user(args.user),
        hostname=args.hostname and specs.check_hostname(args.hostname), volumes=args.volume,
        entrypoint=args.entrypoint, init=args.init, remove=args.rm, name=specs.check_name(args.name),
        tty=args.tty, interactive=args.interactive, cap_add=args.cap_add, cap_drop=args.cap_drop,
        privileged=args.privileged, read_only=args.read_only, tmpfs=args.tmpfs,
        group_add=[specs.check_group(g) for g in args.group_add], userns=args.userns,
        labels=specs.parse_labels(args.label), aliases=[specs.check_hostname(a) for a in args.network_alias],
        resources=specs.resources(memory=args.memory, memory_swap=args.memory_swap, pids_limit=args.pids_limit,
                                  cpus=args.cpus, cpu_shares=args.cpu_shares, cpuset_cpus=args.cpuset_cpus),
        **_security_opts(args.security_opt))
    if args.cgroup_parent:
        options["cgroup_parent"] = specs.check_cgroup_parent(args.cgroup_parent)
    options["healthcheck"] = specs.healthcheck_flags(
        args.health_cmd, args.health_interval, args.health_timeout, args.health_start_period,
        args.health_start_interval, args.health_retries, none=args.no_healthcheck)
    options["restart_policy"] = specs.check_restart_policy(specs.parse_restart(args.restart), remove=args.rm,
                                                           detach=args.detach)
    if args.network or args.publish:
        options["ports"] = [specs.parse_port(p) for p in args.publish]
    if args.network:  # the first network is eth0's, with the default route
        first, *more = specs.parse_networks(args.network, options["aliases"])
        options.update(network=first["name"], aliases=first["aliases"], more_networks=more)
    return options


def _security_opts(options):
    """``--security-opt`` values, in docker's spellings (``=`` or ``:``)."""
    out = {}
    for opt in options:
        key, sep, value = opt.replace(":", "=", 1).partition("=") if opt.startswith("no-new") else opt.partition("=")
        if key == "seccomp" and value:
            out["seccomp"] = value
        elif key == "no-new-privileges" and value in ("", "true", "false"):
            out["no_new_privileges"] = value != "false"
        else:
            raise SpecError(f"invalid --security-opt {opt!r}: expected seccomp=unconfined|PROFILE"
                            " or no-new-privileges[=true|false]")
    return out




# -- the lifecycle commands ------------------------------------------------------------

def _root(args):
    from minirt.api import host
    return host.state_root(args.root, create=False)  # (repaired on first use)


def _each(refs, action):
    """Apply ``action`` to every ref; an error is reported on its own line and
    the others still go ahead, as docker does.  1 if any failed."""
    code = 0
    for ref in refs:
        try:
            action(ref)
        except MinirtError as e:
            print(f"minirt: {e}", file=sys.stderr)
            code = 1
    return code


def _inspect_each(names, describe):
    """docker's ``inspect`` of named things: a JSON list of what was found, an
    error line for each of the others (then 1)."""
    import json

    out = []
    code = _each(names, lambda name: out.append(describe(name)))
    print(json.dumps(out, indent=4))
    return code


def _each_container(args, refs, action):
    """``_each`` for container commands: ``action(container, ref)``."""
    from minirt.api import containers

    root = _root(args)
    return _each(refs, lambda ref: action(containers.load(root, ref), ref))


def cmd_ps(args):
    from minirt.api import containers

    rows = containers.listing(_root(args), all=args.all, filters=args.filter or ())
    width = 64 if args.no_trunc else 12
    if args.quiet:
        for info, _, _ in rows:
            print(info["id"][:width])
        return 0
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
             + (("SIZE",) if args.size else ())]
    for info, config, directory in rows:
        command = " ".join(config.get("args") or [])
        size = (_human(_du(f"{directory}/upper")),) if args.size else ()
        table.append((info["id"][:width], config.get("image", ""), '"' + command + '"' if args.no_trunc
                      else _clip(command, 24), _ago(info.get("created_at")) + " ago", _status(info, config),
                      _ports(info) if containers.is_up(info) else "", info.get("name") or "") + size)
    _print_table(table)
    return 0


def _ports(info):
    """docker ps's PORTS: ``0.0.0.0:8080->80/tcp, ...``, each published port."""
    return ", ".join(f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p['proto']}"
                     for p in info.get("ports") or ())


def _print_table(table):
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _du(path):
    """Bytes of the files under ``path`` (a hard-linked file once)."""
    total, seen = 0, set()
    for top, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _human(n):
    """docker's sizes: 3 significant digits, units of 1000 (4.26MB, 0B)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}"
        n /= 1000


def _clip(text, n):
    return '"' + (text if len(text) <= n else text[:n - 3] + "...") + '"'


def _ago(t):
    import time
    if t is None:
        return "?"
    s = int(time.time() - t)
    for unit, size in (("years", 365 * 86400), ("months", 30 * 86400), ("weeks", 7 * 86400),
                       ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= size:
            return f"{s // size} {unit}"
    return f"{s} seconds"


def _status(info, config):
    from minirt.api import containers

    if info.get("status") == containers.PAUSED:
        return "Up " + _ago(info.get("started_at")) + " (Paused)"
    if info.get("status") == containers.RUNNING:
        checked = containers.health(info, config.get("healthcheck"))
        health = "" if checked is None else {"starting": " (health: starting)"}.get(checked["Status"],
                                                                                   f" ({checked['Status']})")
        return "Up " + _ago(info.get("started_at")) + health
    if info.get("status") == containers.RESTARTING:
        return f"Restarting ({info.get('exit_code')}) {_ago(info.get('finished_at'))} ago"
    if info.get("status") == containers.EXITED:
        oom = " (OOM killed)" if info.get("oom_killed") else ""
        return f"Exited ({info.get('exit_code')}){oom} {_ago(info.get('finished_at'))} ago"
    return "Created"


def cmd_inspect(args):
    import json

    from minirt.api import containers

    out = []
    code = _each_container(args, args.containers, lambda c, _ref: out.append(containers.inspect(c)))
    print(json.dumps(out, indent=2))
    return code


def cmd_port(args):
    from minirt.api import containers, network

    for line in network.port_lines(containers.load(_root(args), args.container), args.port):
        print(line)
    return 0


def cmd_logs(args):
    from minirt.api import containers

    c = containers.load(_root(args), args.container)
    tail = None
    if args.tail is not None and args.tail != "all":
        from minirt.spec import is_decimal
        if not is_decimal(args.tail):
            raise SpecError(f"invalid --tail {args.tail!r}: expected a number or all")
        tail = int(args.tail)
    containers.show_logs(c, tail=tail, follow=args.follow)
    return 0


def cmd_exec(args):
    from minirt import spec as specs
    from minirt.api import containers

    if not args.args:
        raise SpecError("exec: no command given")
    specs.check_user(args.user)
    if args.workdir:
        specs.check_workdir(args.workdir)
    c = containers.load(_root(args), args.container)
    master, slave = containers.open_tty() if args.tty else (None, None)

    def forward(pid):
        for s in FORWARDED:
            signal.signal(s, lambda signum, _frame: _signal_quietly(pid, signum))

    try:
        pid = containers.exec_start(c, args.args, env=args.env, workdir=args.workdir, user=args.user,
                                    tty_fd=slave, interactive=args.interactive, started=forward)
    finally:
        if slave is not None:
            os.close(slave)
    _waiting()
    if master is not None:
        containers.attach(master, args.interactive)
        os.close(master)
    return exit_status(os.waitpid(pid, 0)[1])


def _signal_quietly(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def cmd_stop(args):
    timeout = None if args.time < 0 else args.time  # docker's -1: no SIGKILL, wait for ever
    return _each_container(args, args.containers, lambda c, ref: (c.stop(timeout=timeout), print(ref)))


def cmd_kill(args):
    from minirt.api import containers

    signum = _signal_number(args.signal)

    def kill(c, ref):
        if not containers.is_running(c.state()):
            raise MinirtError(f"container {ref} is not running")
        c.kill(signum)
        print(ref)

    return _each_container(args, args.containers, kill)


def _signal_number(text):
    """``kill -s``: a number, a name (KILL, SIGKILL) or RTMIN+N / RTMAX-N, as docker."""
    from _signal import SIGRTMAX, SIGRTMIN, valid_signals

    from minirt.spec import is_decimal, signal_by_name

    name = text.upper().removeprefix("SIG")
    base, sign, offset = name.partition("+") if "+" in name else name.partition("-")
    if is_decimal(name):
        signum = int(name)
    elif base in ("RTMIN", "RTMAX") and (not sign or is_decimal(offset)):
        signum = {"RTMIN": SIGRTMIN, "RTMAX": SIGRTMAX}[base] + int(sign + (offset or "0"))
    else:
        signum = signal_by_name(name) or 0
    if signum not in valid_signals():
        raise SpecError(f"invalid signal {text!r}: expected a name such as TERM or a number from 1 to {SIGRTMAX}")
    return signum


def cmd_wait(args):
    return _each_container(args, args.containers, lambda c, ref: print(c.wait()))


def cmd_rm(args):
    return _each_container(args, args.containers,
                           lambda c, ref: (c.remove(force=args.force, volumes=args.volumes), print(ref)))


def cmd_start(args):
    from minirt.api import containers

    def start(c, ref):
        if containers.is_running(c.state()):
            raise MinirtError(f"container {ref} is already running")
        c.restart()
        print(ref)

    if args.all_restartable:  # (at boot: what docker's daemon would start as it comes up)
        if args.containers:
            raise SpecError("start: --all-restartable takes no CONTAINER")
        return _each_container(args, containers.restartable(_root(args)), start)
    if not args.containers:
        raise SpecError("start: CONTAINER is required (or --all-restartable)")
    return _each_container(args, args.containers, start)


# -- the image commands ------------------------------------------------------------

def cmd_images(args):
    from minirt.api import images

    if args.format is not None:  # checked even when there is nothing to list
        _template(args.format, dict.fromkeys(IMAGE_FIELDS, ""))
    rows = []
    for tags, entry in images.listing(_root(args)):
        image_id = entry["id"] if args.no_trunc else entry["id"][7:19]
        fields = {"ID": image_id, "CreatedSince": _created_ago(entry), "CreatedAt": _config_time(entry),
                  "Size": _human(images.size(entry))}
        digests = dict(d.split("@") for d in images.repo_digests(entry))  # as docker: one a repository
        names = [tag.rpartition(":")[::2] for tag in tags]
        names += [(repo, "<none>") for repo in digests if repo not in dict(names)]  # pulled by digest
        for repository, version in names or [("<none>", "<none>")]:
            rows.append(dict(fields, Repository=repository, Tag=version, Digest=digests.get(repository, "<none>")))
    if args.quiet:
        for image_id in dict.fromkeys(row["ID"] for row in rows):
            print(image_id)
        return 0
    if args.format is not None:
        for row in rows:
            print(_template(args.format, row))
        return 0
    columns = ["Repository", "Tag"] + (["Digest"] if args.digests else []) + ["ID", "CreatedSince", "Size"]
    headers = {"ID": "IMAGE ID", "CreatedSince": "CREATED"}
    _print_table([tuple(headers.get(c, c.upper()) for c in columns)]
                 + [tuple(row[c] for c in columns) for row in rows])
    return 0


IMAGE_FIELDS = ("Repository", "Tag", "Digest", "ID", "CreatedSince", "CreatedAt", "Size")


def _config_time(entry):
    """The image's creation time (its config's ``created``) as seconds, or None."""
    from datetime import datetime

    created = entry["config"].get("created")
    if not isinstance(created, str):
        return None
    head, dot, rest = created.partition(".")  # Go writes nanoseconds; Python reads microseconds
    if dot:
        zone = rest.lstrip("0123456789")
        created = f"{head}.{rest[:len(rest) - len(zone)][:6]}{zone}"
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _created_ago(entry):
    t = _config_time(entry)
    return "N/A" if t is None else _ago(t) + " ago"


def _template(text, fields):
    """A Go template of docker's ``--format``, the simple kind: ``{{.Field}}``,
    ``{{json .Field}}``, ``{{json .}}``; ``\\t`` is a tab."""
    import json

    out, rest = [], text.replace("\\t", "\t")
    while "{{" in rest:
        head, _, rest = rest.partition("{{")
        action, closed, rest = rest.partition("}}")
        words = action.split()
        as_json = words[:1] == ["json"]
        if not closed or len(words) != 1 + as_json or not words[-1].startswith("."):
            raise SpecError(f"template: unsupported action {{{{{action}}}}}: minirt reads {{{{.Field}}}}"
                            " and {{json .Field}}")
        name = words[-1][1:]
        if name and name not in fields:
            raise SpecError(f"template: no field {name!r} (fields: {', '.join(sorted(fields))})")
        value = fields if not name else fields[name]
        if as_json:
            value = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, list):
            value = "[" + " ".join(map(str, value)) + "]"
        elif value is None:
            value = "<no value>"
        out += [head, str(value).lower() if isinstance(value, bool) else str(value)]
    return "".join(out) + rest


def cmd_rmi(args):
    from minirt.api import images

    remove_image = images.remover(_root(args), force=args.force)

    def remove(ref):
        for line in remove_image(ref):
            print(line)

    return _each(args.images, remove)


def cmd_tag(args):
    from minirt.api import images

    images.tag(_root(args), args.source, args.target)
    return 0


def cmd_build(args):
    from minirt.api import build, images

    if args.progress not in ("auto", "plain", "quiet"):
        raise SpecError(f"invalid --progress {args.progress!r} (want auto, plain or quiet)")
    tags = [images.check_name(t) for t in args.tag]
    build_args = {}
    for item in args.build_arg:
        key, eq, value = item.partition("=")
        if not key:
            raise SpecError(f"invalid --build-arg {item!r} (want KEY=VALUE)")
        if eq or key in os.environ:  # --build-arg KEY takes the value from the environment, as docker
            build_args[key] = value if eq else os.environ[key]
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and not epoch.isdigit():
        raise SpecError(f"invalid SOURCE_DATE_EPOCH {epoch!r} (want seconds since 1970)")
    quiet = args.quiet or args.progress == "quiet"
    shown = None if quiet else "plain" if args.progress == "plain" or not sys.stderr.isatty() else "tty"
    image_id = build.build(_root(args), args.context, args.file, sys.stdin.buffer, tags=tags,
                           build_args=build_args, target=args.target, no_cache=args.no_cache,
                           network=args.network, progress=shown, out=sys.stderr,
                           epoch=int(epoch) if epoch is not None else None)
    if args.iidfile:
        with open(args.iidfile, "w") as f:
            f.write(image_id)
    if quiet:
        print(image_id)
    return 0


def cmd_save(args):
    from minirt.api import images

    if args.format not in ("docker-archive", "oci-archive"):
        raise SpecError(f"invalid --format {args.format!r}: expected docker-archive or oci-archive")
    if args.output is None and sys.stdout.isatty():
        raise MinirtError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    # The archive is written next to its place and renamed into it: never half an
    # archive under its name, and a device or a directory is not replaced.
    target = args.output and os.path.realpath(args.output)
    if target and os.path.exists(target) and not os.path.isfile(target):
        raise MinirtError(f"{args.output}: {'is a directory' if os.path.isdir(target) else 'not a regular file'};"
                          " -o takes the archive's file name")
    root = _root(args)
    if target is None:
        sys.stdout.flush()
        with os.fdopen(os.dup(sys.stdout.fileno()), "wb") as out:
            images.save(root, args.images, out, args.format)
        return 0
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "xb") as out:
            images.save(root, args.images, out, args.format)
        os.rename(tmp, target)
    except OSError as e:
        raise MinirtError(f"{args.output}: cannot write: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


def cmd_image_inspect(args):
    import json

    from minirt.api import images

    root, out = _root(args), []
    code = _each(args.images, lambda ref: out.append(images.inspect(root, ref)))
    print(json.dumps(out, indent=4))
    return code


def cmd_image_history(args):
    from minirt.api import images

    entry = images.lookup(_root(args), args.image)
    sizes = [b["size"] for b in entry.get("blobs") or ()]
    rows = []
    for step in entry["config"].get("history") or [{} for _ in entry["layers"]]:
        step = step if isinstance(step, dict) else {}
        size = 0 if step.get("empty_layer") or not sizes else sizes.pop(0)
        created = _config_time({"config": {"created": step.get("created")}})
        rows.append(["<missing>", "N/A" if created is None else _ago(created) + " ago",
                     str(step.get("created_by", "")), _human(size), str(step.get("comment", ""))])
    rows.reverse()  # newest first
    if rows:
        rows[0][0] = entry["id"] if args.no_trunc else entry["id"][7:19]
    if args.quiet:
        for row in rows:
            print(row[0])
        return 0
    for row in rows:
        if not args.no_trunc and len(row[2]) > 45:
            row[2] = row[2][:44] + "…"
    _print_table([("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")] + [tuple(r) for r in rows])
    return 0


def cmd_builder_prune(args):
    from minirt.api import images

    done, freed = images.prune_build_cache(_root(args))
    for line in done:
        print(line)
    print(f"Total reclaimed space: {_human(freed)}")
    return 0


def cmd_image_prune(args):
    from minirt.api import images

    return _pruned("Deleted Images:", *images.prune(_root(args), everything=args.all))


def _pruned(title, done, freed):
    """docker's report of a prune: what went, under ``title``, and the bytes freed."""
    if done:
        print(title)
        print("\n".join(done))
        print()
    print(f"Total reclaimed space: {_human(freed)}")
    return 0


def cmd_load(args):
    from minirt.api import images

    image_id, tags = images.load(_root(args), args.input, tags=args.tag)
    for tag in tags:
        print(f"Loaded image: {tag}")
    if not tags:
        print(f"Loaded image ID: {image_id}")
    return 0


def cmd_pull(args):
    from minirt.api import images

    _pull(args, images.reference(args.ref), sys.stdout)
    return 0


def _pull_missing(args):
    """``run REF`` of an image neither on disk nor loaded: pull it first, as docker does."""
    from minirt.api import images

    ref = images.missing(_root(args), args.image)
    if ref is None:
        return  # a file's name, or loaded: prepare finds it (or says what is wrong)
    print(f"Unable to find image '{ref.familiar}' locally", file=sys.stderr)
    args.quiet = False
    _pull(args, ref, sys.stderr)


def _pull(args, ref, out):
    from minirt.api import images

    show = _LayerProgress(out) if not args.quiet else None
    if show:
        show.line(f"{ref.digest or ref.tag}: Pulling from {ref.path}")
    img, new = images.pull(_root(args), ref, platform=args.platform, insecure=args.insecure_registry,
                           report=show and show.layer, on_bytes=show and show.bytes)
    if show:
        show.done()
        show.line(f"Digest: {img.digest}")
        show.line(f"Status: {'Downloaded newer image' if new else 'Image is up to date'} for {ref.familiar}")
    if out is sys.stdout:
        print(str(ref))


def cmd_push(args):
    from minirt.api import images

    show = None if args.quiet else _LayerProgress(sys.stdout, "Pushing")

    def announce(ref, names):
        if show:
            show.names.update(names)
            show.line(f"The push refers to repository [{ref.repository}]")

    try:
        ref, digest, manifest = images.push(_root(args), args.ref, insecure=args.insecure_registry,
                                            announce=announce, status=show and show.status,
                                            on_bytes=show and show.bytes)
    finally:
        if show:
            show.done()
    print(str(ref) if args.quiet else f"{ref.tag}: digest: {digest} size: {len(manifest)}")
    return 0


class _LayerProgress:
    """docker pull's and push's lines: one per layer; on a terminal, redrawn
    as the bytes go (``verb``: Downloading, Pushing).  ``names``: how a
    blob's digest is shown (default: its first 12 hex)."""

    def __init__(self, out, verb="Downloading", names=None):
        import threading
        import time

        self.out, self.verb, self.names = out, verb, names or {}
        self.clock, self.lock = time.monotonic, threading.Lock()
        self.live = out.isatty()
        self.rows, self.got, self.start, self.drawn, self.shown = {}, {}, self.clock(), 0, 0

    def line(self, text):
        print(text, file=self.out, flush=True)

    def bytes(self, digest, n, size):
        with self.lock:
            got = self.got[digest] = self.got.get(digest, 0) + n
            if self.live:
                rate = _size(got / max(self.clock() - self.start, 1e-3))
                self.rows[digest] = f"{self.verb} {_size(got)}{'/' + _size(size) if size else ''} ({rate}/s)"
                if self.clock() - self.drawn > 0.1:
                    self._draw()

    def layer(self, layer, status):
        self.status(layer.digest or layer.diff_id, status)

    def status(self, digest, status):
        with self.lock:
            self.rows[digest] = status
            if self.live:
                self._draw()
            else:
                self.line(f"{self.name(digest)}: {status}")

    def name(self, digest):
        return self.names.get(digest) or digest[7:19]

    def _draw(self):
        if self.shown:  # back to the first layer's line, to draw them all again
            self.out.write(f"\x1b[{self.shown}A")
        for digest, status in self.rows.items():
            self.out.write(f"\x1b[2K{self.name(digest)}: {status}\n")
        self.shown, self.drawn = len(self.rows), self.clock()
        self.out.flush()

    def done(self):
        if self.live:
            with self.lock:
                self._draw()


def _size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000


def cmd_login(args):
    from minirt.api import images

    registry = images.registry(args.registry)
    user, password = args.username, args.password
    if args.password_stdin:
        if password is not None:
            raise SpecError("--password and --password-stdin are exclusive")
        if not user:
            raise SpecError("--password-stdin needs -u USER")
        password = sys.stdin.readline().rstrip("\n")
    elif not user or password is None:
        user, password = _ask_login(user, password, images.known_login(registry))
    path = images.login(registry, user, password, args.insecure_registry)  # checked with the registry first
    print(f"Login Succeeded (saved in {path})")
    return 0


def _ask_login(user, password, known):
    """User and password asked at the terminal, as docker does: the known user
    offered as the default, the password not echoed."""
    import getpass

    if not sys.stdin.isatty():
        raise SpecError("login needs -u USER and a password (--password-stdin), or a terminal to ask at")
    if not user:
        default = known[0] if known else ""
        user = input(f"Username ({default}): " if default else "Username: ").strip() or default
        if not user:
            raise SpecError("login: a user name is needed")
    if password is None:
        password = getpass.getpass("Password: ")
        if not password:
            raise SpecError("login: a password is needed")
    return user, password


def cmd_logout(args):
    from minirt.api import images

    registry = images.registry(args.registry)
    if images.logout(registry):
        print(f"Removing login credentials for {images.login_key(registry)}")
    else:
        print(f"Not logged in to {images.login_key(registry)}")
    return 0



# -- the host -------------------------------------------------------------------------

def cmd_version_line(_args):
    import minirt
    from minirt.api import host

    print(f"minirt version {minirt.__version__}, build {host.build()}")
    return 0


def cmd_version(_args):
    import platform

    import minirt
    from minirt.api import host

    print("Client: minirt")
    print(f" Version:           {minirt.__version__}")
    print(f" Python version:    {platform.python_version()} ({platform.python_implementation()})")
    print(f" Git commit:        {host.build()}")
    print(f" OS/Arch:           {host.platform()}")
    print()
    print("Runtime: minirt (no daemon: each command is the runtime)")
    print(f" Kernel version:    {os.uname().release}")
    print(" Kernel features:")
    for name, there in host.features().items():
        print(f"  {name + ':':32} {'yes' if there else 'no'}")
    return 0


def cmd_info(args):
    from minirt.api import host

    facts = host.info(_root(args))
    if args.format is not None:
        print(_template(args.format, facts))
        return 0
    f = facts
    lines = ["Client: minirt", f" Version:    {f['ServerVersion']}", "",
             "Server: (none: minirt has no daemon; this host, as minirt uses it)",
             f" Containers: {f['Containers']}", f"  Running: {f['ContainersRunning']}",
             f"  Paused: {f['ContainersPaused']}", f"  Stopped: {f['ContainersStopped']}",
             f" Images: {f['Images']}", f" Server Version: {f['ServerVersion']}",
             f" Storage Driver: {f['Driver']}", f" Cgroup Driver: {f['CgroupDriver']}",
             f" Cgroup Version: {f['CgroupVersion']}" + (" (hybrid: v1 controllers, a cgroup2 tree beside them)"
                                                         if f["CgroupLayout"] == "hybrid" else ""),
             f" Default Network: {f['DefaultNetwork']}", " Security Options:"]
    lines += [f"  {opt.removeprefix('name=').replace(',profile=', chr(10) + '   Profile: ')}"
              for opt in f["SecurityOptions"]]
    lines += [f" Kernel Version: {f['KernelVersion']}", f" Operating System: {f['OperatingSystem']}",
              f" OSType: {f['OSType']}", f" Architecture: {f['Architecture']}", f" CPUs: {f['NCPU']}",
              f" Total Memory: {_human_binary(f['MemTotal'])}", f" Name: {f['Name']}",
              f" Minirt Root Dir: {f['DockerRootDir']}"]
    print("\n".join(lines))
    return 0


def _human_binary(n):
    """docker's memory sizes: units of 1024, two decimals (15.5GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024


def cmd_system(args):
    from minirt.api import host

    for line in host.prune(_root(args), volumes=args.volumes):
        print(line)
    return 0


def cmd_network(args):
    from minirt import spec as specs
    from minirt.api import network

    root, action = _root(args), args.network_command
    if action == "create":
        print(network.create(root, args.name, subnet=args.subnet, labels=specs.parse_labels(args.label))["id"])
        return 0
    if action == "inspect":
        return _inspect_each(args.names, lambda name: network.inspect(root, name))
    if action in ("connect", "disconnect"):
        from minirt.api import containers

        for alias in args.alias if action == "connect" else ():
            specs.check_hostname(alias)
        c = containers.load(root, args.container)
        if action == "connect":
            network.connect(c, args.name, args.alias)
        else:
            network.disconnect(c, args.name)
        return 0
    if action == "prune":
        gone = network.prune(root)
        if gone:
            print("\n".join(["Deleted Networks:", *gone]))
        return 0
    if args.network_command == "ls":
        width = 64 if args.no_trunc else 12
        if not args.quiet:
            print(f"{'NETWORK ID':{width + 2}} {'NAME':20} {'BRIDGE':16} {'SUBNET':18} CONTAINERS")
        for net, count in network.listing(root):
            if args.quiet:
                print(net["id"][:width])
            else:
                print(f"{net['id'][:width]:{width + 2}} {net['name']:20} {net['bridge']:16} {net['subnet']:18} {count}")
        return 0
    for name in args.names:  # rm: all or the first error, as one line
        network.remove(root, name)
        print(name)
    return 0


def cmd_volume(args):
    from minirt.api import volumes

    root, action = _root(args), args.volume_command
    if action == "create":
        print(volumes.create(root, args.name, labels=args.label, driver=args.driver)["Name"])
        return 0
    if action == "ls":
        found = volumes.listing(root, args.filter)
        if args.quiet:
            for v in found:
                print(v["Name"])
        else:
            _print_table([("DRIVER", "VOLUME NAME")] + [(v["Driver"], v["Name"]) for v in found])
        return 0
    if action == "inspect":
        return _inspect_each(args.names, lambda name: volumes.inspect(root, name))
    if action == "rm":
        return _each(args.names, lambda name: (volumes.remove(root, name, force=args.force), print(name)))
    return _pruned("Deleted Volumes:", *volumes.prune(root, everything=args.all))  # prune


# -- compose -------------------------------------------------------------------------

def cmd_compose(args):
    """``minirt compose VERB``: the files are read and checked before anything is made."""
    from minirt.compose import model

    project = model.load(args.file, project_name=args.project_name, project_dir=args.project_directory,
                         env_files=args.env_file, profiles=args.profile or None)
    if args.compose_command == "config":  # (the project alone: none of the API's imports)
        return _compose_config(project, args)
    from minirt.compose.project import Compose

    return globals()["_compose_" + args.compose_command](Compose(project, _root(args)), args)


def _compose_config(project, args):
    from minirt.compose import yamlfile

    if args.services:
        print("\n".join(project.services))
    elif args.volumes:
        print("\n".join(project.volumes))
    elif not args.quiet:
        print(yamlfile.dump(project.to_dict()), end="")
    return 0


def _compose_up(compose, args):
    from minirt.api import containers
    from minirt.compose import project as verbs

    attached = not (args.detach or args.wait)
    if attached:  # its output from now on, not what the containers it starts again wrote before
        marks = {c.spec.name: containers.log_marks(c) for _, c in compose.containers(args.services)}
    made = compose.up(args.services, build=args.build, force_recreate=args.force_recreate,
                      no_deps=args.no_deps, no_recreate=args.no_recreate, timeout=args.wait_timeout)
    if args.wait:
        for name, made_here in made.items():
            if compose.project.services[name].get("healthcheck"):
                for c in made_here:
                    verbs.wait_healthy(c, args.wait_timeout)
        return 0
    if not attached:
        return 0
    _waiting()
    try:  # attached: their output until they stop; Ctrl-C stops them
        verbs.logs(compose, list(made), follow=True, exits=True, since=marks)
    except KeyboardInterrupt:
        print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr)
        compose.stop(list(made))
    return 0


def _compose_down(compose, args):
    compose.down(volumes=args.volumes, rmi=args.rmi, timeout=args.timeout)
    return 0


def _compose_ps(compose, args):
    from minirt.compose import plan

    compose.selected(args.names, deps=False)  # (unknown names refused)
    rows = [r for r in compose.rows(all=args.all) if not args.names or r[1]["labels"][plan.SERVICE] in args.names]
    if args.services:
        names = {config["labels"][plan.SERVICE] for _, config, _ in rows}
        print("\n".join(n for n in compose.project.services if n in names))
        return 0
    if args.quiet:
        for info, _, _ in rows:
            print(info["id"])
        return 0
    table = [("NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS")]
    for info, config, _ in rows:
        ports = ", ".join(f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p['proto']}"
                          for p in info.get("ports", config.get("ports")) or [])  # (host ports as chosen)
        table.append((info.get("name") or "", config.get("image", ""), _clip(" ".join(config.get("args") or []), 24),
                      config["labels"][plan.SERVICE], _ago(info.get("created_at")) + " ago", _status(info, config), ports))
    _print_table(table)
    return 0


def _compose_logs(compose, args):
    from minirt.compose import project as verbs
    from minirt.spec import is_decimal

    tail = None
    if args.tail is not None and args.tail != "all":
        if not is_decimal(args.tail):
            raise SpecError(f"invalid --tail {args.tail!r}: expected a number or all")
        tail = int(args.tail)
    if args.follow:
        _waiting()
    verbs.logs(compose, args.services, tail=tail, follow=args.follow, prefix=not args.no_log_prefix)
    return 0


def _compose_build(compose, args):
    compose.build(args.services, no_cache=args.no_cache)
    return 0


def _compose_pull(compose, args):
    compose.pull(args.services)
    return 0


def _compose_push(compose, args):
    compose.push(args.services)
    return 0


def _compose_start(compose, args):
    compose.start(args.services)
    return 0


def _compose_stop(compose, args):
    compose.stop(args.services, timeout=args.timeout)
    return 0


def _compose_restart(compose, args):
    compose.restart(args.services, timeout=args.timeout)
    return 0


def _compose_rm(compose, args):
    compose.rm(args.services, stop=args.stop, volumes=args.volumes)
    return 0


def _compose_exec(compose, args):
    if args.detach:
        raise SpecError("compose exec: -d is not supported (use minirt exec -d)")
    args.container = compose.container(args.service, args.index).id
    args.tty = not args.no_TTY and os.isatty(0)
    args.interactive = args.tty
    return cmd_exec(args)


def _compose_run(compose, args):
    if args.workdir:
        from minirt.spec import check_workdir
        check_workdir(args.workdir)
    entrypoint = None if args.entrypoint is None else ([args.entrypoint] if args.entrypoint else [])
    container = compose.run(args.service, args.args or None, deps=not args.no_deps, name_as=args.name,
                            detach=args.detach, remove=args.rm, entrypoint=entrypoint, env=args.env,
                            user=args.user, workdir=args.workdir)
    if args.detach:
        print(container.spec.name)
        return 0
    for s in FORWARDED:
        signal.signal(s, lambda signum, _frame: container.signal(signum))
    return _foreground(container, compose.project.services[args.service]["resources"].get("memory"))


def _compose_images(compose, args):
    from minirt.api import images

    table = [("CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE")]
    for name, image, image_id in compose.images(args.services):
        repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        try:
            size = _human(images.size(images.lookup(compose.root, image)))
        except MinirtError:
            size = ""
        table.append((name, repo, tag, image_id.removeprefix("sha256:")[:12], size))
    _print_table(table)
    return 0


def _compose_port(compose, args):
    from minirt.api import network

    if args.protocol not in ("tcp", "udp"):
        raise SpecError(f"invalid --protocol {args.protocol!r}: expected tcp or udp")
    for line in network.port_lines(compose.container(args.service, args.index), f"{args.port}/{args.protocol}"):
        print(line)
    return 0


def _compose_top(compose, args):
    first = True
    for name, processes in compose.top(args.services):
        print(("" if first else "\n") + name)
        _print_table([("PID", "CMD")] + [(str(pid), command) for pid, command in processes])
        first = False
    return 0
