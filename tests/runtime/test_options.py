"""The command line's parser: docker's flag conventions, and one clear line for
every mistake."""

import os
import subprocess
import sys

import pytest

from minirt.errors import SpecError
from minirt.options import HelpRequested, parse


def test_docker_style_flags():
    a = parse(["--root", "/tmp/x", "run", "--rm", "-it", "-eA=1", "--env=B=2", "-e", "C=3",
               "--net", "none", "-v", "/a:/b", "--pids-limit", "-1", "img", "sh", "-c", "echo -e"])
    assert (a.root, a.command, a.rm, a.interactive, a.tty) == ("/tmp/x", "run", True, True, True)
    assert a.env == ["A=1", "B=2", "C=3"] and a.volume == ["/a:/b"]
    assert (a.network, a.pids_limit, a.image, a.args) == (["none"], "-1", "img", ["sh", "-c", "echo -e"])
    assert (a.detach, a.memory, a.name, a.userns, a.cap_add) == (False, None, "", "", [])


def test_after_the_image_everything_is_the_command():
    a = parse(["run", "img", "--rm", "-it", "--", "x"])
    assert (a.rm, a.tty, a.args) == (False, False, ["--rm", "-it", "--", "x"])
    a = parse(["exec", "-u", "1000", "web", "ls", "-l"])
    assert (a.user, a.container, a.args) == ("1000", "web", ["ls", "-l"])


@pytest.mark.parametrize("argv, expected", [
    (["--root=/tmp/x", "rm", "a", "-f", "b"], {"root": "/tmp/x", "force": True, "containers": ["a", "b"]}),
    (["ps", "-aq"], {"all": True, "quiet": True}),
    (["stop", "-t", "3", "a"], {"time": 3.0, "containers": ["a"]}),
    (["stop", "a"], {"time": 10.0}),
    (["kill", "a"], {"signal": "KILL"}),
    (["run", "--rm=false", "--detach=true", "img"], {"rm": False, "detach": True}),
    (["load", "-i", "x.tar", "-t", "a", "-t", "b"], {"input": "x.tar", "tag": ["a", "b"]}),
    (["network", "create", "--subnet", "10.90.1.0/24", "net1"],
     {"network_command": "create", "subnet": "10.90.1.0/24", "name": "net1"}),
    (["network", "rm", "a", "b"], {"network_command": "rm", "names": ["a", "b"]}),
    (["system", "prune"], {"system_command": "prune", "force": False}),
    (["system", "prune", "-f"], {"system_command": "prune", "force": True}),  # docker's flag
    (["system", "prune", "--force"], {"force": True}),
    (["network", "ls", "-q", "--no-trunc"], {"network_command": "ls", "quiet": True, "no_trunc": True}),
    (["stop", "-t", "-1", "a"], {"time": -1.0}),
    (["run", "--", "img", "true"], {"image": "img", "args": ["true"]}),
])
def test_flags_and_arguments(argv, expected):
    a = vars(parse(argv))
    assert {k: a[k] for k in expected} == expected


@pytest.mark.parametrize("argv, message", [
    ([], "a command is required"),
    (["frob"], "unknown command 'frob' (one of: run, ps, "),
    (["run"], "run: IMAGE is required"),
    (["run", "--bogus-flag", "img"], "run: unknown flag: --bogus-flag"),
    (["run", "-Z", "img"], "run: unknown flag: -Z"),
    (["run", "img", "--cpus"], None),  # after the image: the command's, not ours
    (["run", "--cpus"], "run: flag --cpus needs a value (N)"),
    (["run", "--rm=yes", "img"], "run: flag --rm takes no value, or true or false"),
    (["stop", "-t", "soon", "a"], "stop: flag -t: not a number: 'soon'"),
    (["rm"], "rm: CONTAINER is required"),
    (["ps", "extra"], "ps: unexpected argument 'extra'"),
    (["load"], "load: flag --input is required"),
    (["system", "frob"], "system: unknown action 'frob' (one of: prune)"),
    (["network", "ls", "-x"], "network ls: unknown flag: -x"),
    (["network", "create"], "network create: NAME is required (usage: minirt network create [OPTIONS] NAME)"),
    (["stop", "-t", "nan", "a"], "stop: flag -t: not a number: 'nan'"),
    (["stop", "-t", "inf", "a"], "stop: flag -t: not a number: 'inf'"),
    (["stop", "-t", "1e400", "a"], "stop: flag -t: not a number: '1e400'"),
    (["run", "--name", "a\0b", "img"], "an argument contains a NUL byte"),
    (["run", "img", "echo", "a\0b"], "an argument contains a NUL byte"),
    (["network"], "network: an action is required: create, ls, inspect, connect, disconnect, rm, prune"),
    (["network", "frob"], "network: unknown action 'frob'"),
    (["--root"], "flag --root needs a value (DIR)"),
    (["-x", "ps"], "unknown flag: -x"),
])
def test_mistakes_are_one_clear_line(argv, message):
    if message is None:
        parse(argv)
        return
    with pytest.raises(SpecError) as e:
        parse(argv)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("argv, shows", [
    (["--help"], "commands:"),
    (["-h"], "commands:"),
    (["run", "--help"], "-m, --memory BYTES"),
    (["run", "--rm", "--help", "img"], "usage: minirt run [OPTIONS] IMAGE [COMMAND [ARG...]]"),
    (["network", "--help"], "    create "),
    (["network", "create", "--help"], "--subnet CIDR"),
])
def test_help(argv, shows):
    with pytest.raises(HelpRequested) as e:
        parse(argv)
    assert shows in e.value.args[0]


def _listed(help_text, section):
    """The names a help text lists under ``section:`` ("commands", "actions")."""
    lines = help_text.split(section + ":\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [line.split()[0] for line in lines]


def _help(argv):
    with pytest.raises(HelpRequested) as e:
        parse(argv)
    return e.value.args[0]


def test_every_help_names_its_real_command_path():
    paths = []
    for command in _listed(_help(["--help"]), "commands"):
        text = _help([command, "--help"])
        paths.append([command])
        if "actions:" in text:
            paths += [[command, action] for action in _listed(text, "actions")]
    assert ["network", "ls"] in paths and ["system", "prune"] in paths
    for path in paths:
        assert _help(path + ["--help"]).startswith(f"usage: minirt {' '.join(path)}"), path


def test_run_h_is_the_hostname_as_in_docker():
    assert parse(["run", "-h", "box", "img"]).hostname == "box"


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "minirt", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in ("run", "ps", "exec", "logs", "rm", "network", "system"):
        assert f"    {name} " in out.stdout


def test_output_to_a_closed_pipe_is_not_a_traceback(tmp_path):
    # `minirt ps | head -0`: the reader is gone before minirt writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "minirt", "--root", str(tmp_path), "ps"], stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert r.returncode == 141 and r.stderr == ""  # 128 + SIGPIPE, as a C program killed by it
