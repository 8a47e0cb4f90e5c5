"""The ``minirt`` command line: argv in, a ContainerSpec out, nothing more.

Flags follow docker's, so that ``minirt run --rm -it -e K=V IMAGE sh`` means
what a docker user expects.  Errors print one line, ``minirt: <what>``, and
exit 125 (minirt failed), 126 (cannot execute), 127 (not found) or with the
container's own status.
"""

import argparse
import signal
import sys

from minirt.errors import MinirtError, SpecError

# Signals minirt passes on to the container instead of dying from them.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SpecError(message)


def _parser():
    p = _Parser(prog="minirt", description="A container runtime built from first principles.")
    p.add_argument("--root", help="state directory (default /var/lib/minirt, or $MINIRT_ROOT)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("run", add_help=False, help="run a command in a new container",
                       usage="minirt run [OPTIONS] IMAGE [COMMAND [ARG...]]")
    r.add_argument("--help", action="help", help="show this help and exit")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits")
    r.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    r.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    r.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                   help="set an environment variable (K alone: copy it from here)")
    r.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    r.add_argument("-h", "--hostname", metavar="NAME", help="container host name")
    r.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                   help="bind-mount a host path")
    r.add_argument("-u", "--user", metavar="UID[:GID]", help="user (name or uid) and group")
    r.add_argument("--entrypoint", metavar="CMD", help="override the image's entrypoint")
    r.add_argument("--init", action="store_true", help="run a reaper as PID 1")
    r.add_argument("--name", default="", help="a name for the container")
    r.add_argument("--cgroup-parent", metavar="PATH",
                   help="parent cgroup of the container's cgroup (default minirt, or $MINIRT_CGROUP_PARENT)")
    limits = r.add_argument_group("resource limits (cgroups)")
    limits.add_argument("-m", "--memory", metavar="BYTES", help="memory limit, e.g. 512m")
    limits.add_argument("--memory-swap", metavar="BYTES", help="memory plus swap limit; -1 unlimited")
    limits.add_argument("--pids-limit", metavar="N", help="maximum number of processes; <= 0 unlimited")
    limits.add_argument("--cpus", metavar="N", help="CPU quota in cores, e.g. 1.5")
    limits.add_argument("-c", "--cpu-shares", metavar="N", help="relative CPU weight (default 1024)")
    limits.add_argument("--cpuset-cpus", metavar="LIST", help="CPUs allowed, e.g. 0-1,3")
    sec = r.add_argument_group("security")
    sec.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a capability (or ALL)")
    sec.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a capability (or ALL)")
    sec.add_argument("--privileged", action="store_true",
                     help="all capabilities, no seccomp, no masked paths, writable /sys")
    sec.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                     help="seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false]")
    sec.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    sec.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTS]", help="mount a tmpfs")
    sec.add_argument("--group-add", action="append", default=[], metavar="GROUP", help="add a supplementary group")
    sec.add_argument("--userns", default="", metavar="MODE",
                     help="remap: root inside is an unprivileged range outside (root only)")
    r.add_argument("image", metavar="IMAGE", help="image archive (docker save / OCI) or OCI layout dir")
    r.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND", help="command and arguments")
    return p


def main(argv=None):
    try:
        args = _parser().parse_args(argv)
        return {"run": cmd_run}[args.command](args)
    except MinirtError as e:
        print(f"minirt: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def cmd_run(args):
    from minirt.api import prepare
    from minirt.runtime import state, tty
    from minirt.runtime.container import Container

    from minirt import spec as specs

    root = args.root or state.default_root()
    resources = specs.resources(memory=args.memory, memory_swap=args.memory_swap,
                                pids_limit=args.pids_limit, cpus=args.cpus,
                                cpu_shares=args.cpu_shares, cpuset_cpus=args.cpuset_cpus)
    spec = prepare(args.image, args.args or None, root=root, env=args.env, workdir=args.workdir,
                   user=args.user, hostname=args.hostname, volumes=args.volume,
                   entrypoint=args.entrypoint, init=args.init, remove=args.rm, name=args.name,
                   tty=args.tty, interactive=args.interactive, resources=resources,
                   cap_add=args.cap_add, cap_drop=args.cap_drop, privileged=args.privileged,
                   read_only=args.read_only, tmpfs=args.tmpfs, group_add=args.group_add,
                   userns=args.userns, **_security_opts(args.security_opt),
                   **({"cgroup_parent": args.cgroup_parent} if args.cgroup_parent else {}))
    container = Container(spec, root)
    # From here on a signal to minirt is a signal to the container: forward it,
    # so Ctrl-C or `kill` never leaves the container behind without its parent.
    for s in FORWARDED:
        signal.signal(s, lambda signum, _frame: container.signal(signum))
    container.create()
    try:
        container.start()
        if spec.tty:
            tty.relay(container.console, spec.interactive)
        code = container.wait()
        if container.oom_killed:
            print(f"minirt: container {spec.id[:12]} was killed by the OOM killer"
                  f" (memory limit {args.memory})", file=sys.stderr)
        return code
    finally:
        container.delete()


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


