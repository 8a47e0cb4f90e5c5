"""The command line's parser: built per command, the same answers as whole."""

import os
import subprocess
import sys

import pytest

from minirt.cli import _command_word
from minirt.errors import SpecError
from minirt.options import parser


@pytest.mark.parametrize("argv, word", [
    (["run", "--rm", "img", "ps"], "run"),
    (["--root", "/tmp/x", "ps", "-a"], "ps"),
    (["--root=/tmp/x", "rm", "-f", "c"], "rm"),
    (["--root"], None),
    ([], None),
    (["-h"], None),
])
def test_command_word(argv, word):
    assert _command_word(argv) == word


@pytest.mark.parametrize("argv", [
    ["run", "--rm", "-it", "-e", "A=1", "--network", "none", "img", "sh", "-c", "echo -e"],
    ["--root", "/tmp/x", "ps", "-aq"],
    ["exec", "-u", "1000", "web", "ls", "-l"],
    ["network", "create", "--subnet", "10.90.1.0/24", "net1"],
    ["stop", "-t", "3", "a", "b"],
])
def test_the_partial_parser_agrees_with_the_whole_one(argv):
    assert vars(parser(_command_word(argv)).parse_args(argv)) == vars(parser().parse_args(argv))


def test_an_unknown_command_names_the_known_ones():
    with pytest.raises(SpecError, match=r"invalid choice: 'frob' \(choose from 'run', 'ps'"):
        parser("frob").parse_args(["frob"])


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
