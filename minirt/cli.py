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

    root = args.root or state.default_root()
    spec = prepare(args.image, args.args or None, root=root, env=args.env, workdir=args.workdir,
                   user=args.user, hostname=args.hostname, volumes=args.volume,
                   entrypoint=args.entrypoint, init=args.init, remove=args.rm, name=args.name,
                   tty=args.tty, interactive=args.interactive,
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
        return container.wait()
    finally:
        container.delete()


