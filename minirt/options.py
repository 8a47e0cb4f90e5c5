"""The ``minirt`` command line's flags: one argparse parser.

Flags follow docker's, so that ``minirt run --rm -it -e K=V IMAGE sh`` means
what a docker user expects.  The handlers are in ``cli.py``; this module is
imported only once ``cli.command`` has started (argparse and the parser cost
some 10 ms of a command that must start a container in about 30).
"""

import argparse
import os
import sys

from minirt.errors import SpecError


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, told the width of the terminal.  Left to
    itself it asks shutil, and importing shutil (with zlib, bz2 and lzma)
    costs every command ~2.5 ms, help or not."""

    def __init__(self, prog):
        try:
            columns = int(os.environ.get("COLUMNS") or os.get_terminal_size(sys.__stdout__.fileno()).columns)
        except (AttributeError, OSError, ValueError):
            columns = 80
        super().__init__(prog, width=columns - 2)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=_Formatter, **kwargs)

    def error(self, message):
        raise SpecError(message)


def parser(command=None):
    """The argument parser, whole, or with ``command`` given, with only that
    command's options: each sub-parser costs argparse a fraction of a
    millisecond (it looks up translations), and ``minirt run`` needs one."""
    p = _Parser(prog="minirt", description="A container runtime built from first principles.")
    p.add_argument("--root", help="state directory (default /var/lib/minirt, or $MINIRT_ROOT)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    names = []

    def add(name, **kwargs):
        names.append(name)
        return sub.add_parser(name, **kwargs) if command in (None, name) else None

    r = add("run", add_help=False, help="run a command in a new container",
            usage="minirt run [OPTIONS] IMAGE [COMMAND [ARG...]]")
    if r:
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
        net = r.add_argument_group("network")
        net.add_argument("--network", "--net", metavar="MODE",
                         help="none, host, bridge (default as root), container:NAME or a network's name")
        net.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CTR[/PROTO]",
                         help="publish a container port on the host")
        r.add_argument("-d", "--detach", action="store_true", help="run in the background and print the id")
        r.add_argument("image", metavar="IMAGE", help="image archive (docker save / OCI) or OCI layout dir")
        r.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND", help="command and arguments")

    c = add("ps", help="list containers")
    if c:
        c.add_argument("-a", "--all", action="store_true", help="also stopped containers")
        c.add_argument("-q", "--quiet", action="store_true", help="only ids")

    c = add("inspect", help="container details as JSON")
    if c:
        c.add_argument("containers", nargs="+", metavar="CONTAINER")

    c = add("logs", help="output of a detached container")
    if c:
        c.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
        c.add_argument("--tail", metavar="N", help="only the last N lines")
        c.add_argument("container", metavar="CONTAINER")

    c = add("exec", help="run a command in a running container")
    if c:
        c.add_argument("-i", "--interactive", action="store_true")
        c.add_argument("-t", "--tty", action="store_true")
        c.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
        c.add_argument("-w", "--workdir", metavar="DIR")
        c.add_argument("-u", "--user", metavar="UID[:GID]")
        c.add_argument("container", metavar="CONTAINER")
        c.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND")

    c = add("stop", help="SIGTERM, then SIGKILL after a grace period")
    if c:
        c.add_argument("-t", "--time", type=float, default=10, metavar="SECS")
        c.add_argument("containers", nargs="+", metavar="CONTAINER")

    c = add("kill", help="send a signal to a container")
    if c:
        c.add_argument("-s", "--signal", default="KILL", metavar="SIG")
        c.add_argument("containers", nargs="+", metavar="CONTAINER")

    c = add("wait", help="wait for containers to exit, print their exit codes")
    if c:
        c.add_argument("containers", nargs="+", metavar="CONTAINER")

    c = add("rm", help="remove containers")
    if c:
        c.add_argument("-f", "--force", action="store_true", help="kill a running container first")
        c.add_argument("containers", nargs="+", metavar="CONTAINER")

    c = add("start", help="start stopped containers again (detached)")
    if c:
        c.add_argument("containers", nargs="+", metavar="CONTAINER")

    add("images", help="list loaded images")

    c = add("rmi", help="remove loaded images")
    if c:
        c.add_argument("images", nargs="+", metavar="IMAGE")

    c = add("load", help="load an image archive into the store under its tags")
    if c:
        c.add_argument("-i", "--input", required=True, metavar="FILE")
        c.add_argument("-t", "--tag", action="append", default=[], help="name it (instead of its own tags)")

    c = add("network", help="user-defined networks (create, ls, rm)")
    if c:
        nsub = c.add_subparsers(dest="network_command", metavar="ACTION", parser_class=_Parser)
        nsub.required = True
        n = nsub.add_parser("create", help="create a bridge network")
        n.add_argument("--subnet", metavar="CIDR", help="e.g. 10.90.1.0/24 (default: a free one)")
        n.add_argument("name", metavar="NAME")
        nsub.add_parser("ls", help="list networks")
        n = nsub.add_parser("rm", help="remove networks")
        n.add_argument("names", nargs="+", metavar="NAME")

    c = add("system", help="system-wide commands")
    if c:
        c.add_argument("action", choices=["prune"])
    if command is not None and command not in names:
        return parser()  # not a command: the whole parser, to say which ones there are
    return p
