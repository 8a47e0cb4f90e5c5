"""The Dockerfile parser against BuildKit's own test files
(../shared/conformance/dockerfile: every parser case gives BuildKit's instruction
list, every negative case is refused with its line), and what those files do not
cover: heredocs, directives, line numbers."""

import os

import pytest

from minirt.build.dockerfile import parse
from minirt.errors import BuildError


def folders(conformance, kind):
    root = os.path.join(conformance, "dockerfile", kind)
    return [os.path.join(root, name) for name in sorted(os.listdir(root))]


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_every_parser_case_gives_buildkit_s_instructions(conformance):
    cases = folders(conformance, "parser-cases")
    wrong = []
    for case in cases:
        got = [i.dump() for i in parse(read(os.path.join(case, "Dockerfile"))).instructions]
        want = read(os.path.join(case, "result")).splitlines()
        if got != want:
            wrong.append(f"{os.path.basename(case)}:\n  got  {got}\n  want {want}")
    assert len(cases) >= 30 and not wrong, "\n".join(wrong)


def test_every_negative_case_is_refused_with_its_line(conformance):
    cases = folders(conformance, "parser-negative-cases")
    assert len(cases) >= 4
    for case in cases:
        text = read(os.path.join(case, "Dockerfile"))
        with pytest.raises(BuildError) as e:
            parse(text)
        name, line, message = str(e.value).split(":", 2)
        assert name == "Dockerfile" and 1 <= int(line) <= max(1, text.count("\n")) and message, (case, e.value)


def test_heredocs_take_the_lines_after_their_instruction():
    text = ("FROM a\n"
            "RUN <<EOF bash\n  echo $x\n\nEOF\n"
            "COPY <<-'X' 3<<\"Y\" /f\n\t\thi\n\tX\n$y\nY\n"
            "RUN [\"echo\", \"<<EOF\"]\n"
            "RUN ok\n")
    run, copy, exec_form, last = parse(text).instructions[1:]
    assert (run.line, run.end, run.args) == (2, 5, ["<<EOF bash"])
    assert [(d.name, d.content, d.expand, d.chomp) for d in run.heredocs] == [("EOF", "  echo $x\n\n", True, False)]
    assert [(d.name, d.content, d.expand, d.chomp, d.fd) for d in copy.heredocs] == [
        ("X", "hi\n", False, True, 0), ("Y", "$y\n", False, False, 3)]
    assert (copy.line, copy.end) == (6, 10)
    assert exec_form.heredocs == [] and exec_form.json  # the exec form has none
    assert last.line == 12


@pytest.mark.parametrize("text, message", [
    ("FROM a\nRUN <<EOF\nnever ends\n", "Dockerfile:2: unterminated heredoc EOF"),
    ("# escape=`\n# escape=\\\nFROM a\n", "Dockerfile:2: only one escape parser directive can be used"),
    ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\"),
    ("FROM a\n\n# c\nLABEL a=b c\n", "Dockerfile:4: Syntax error - can't find = in 'c'"),
    ("FROM a\nENV\n", "Dockerfile:2: ENV must have two arguments"),
    ("FROM a\nCMD [1, 2]\n", "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"),
])
def test_bad_dockerfiles_name_the_line(text, message):
    with pytest.raises(BuildError) as e:
        parse(text)
    assert str(e.value).startswith(message)


def test_directives_only_come_first():
    d = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN x `\n  y\n")
    assert d.directives == {"syntax": "docker/dockerfile:1", "escape": "`"} and d.escape == "`"
    assert [i.dump() for i in d.instructions] == ['(from "a")', '(run "x   y")']
    late = parse("FROM a\n# escape=`\nRUN x `\n")
    assert late.escape == "\\" and late.instructions[1].args == ["x `"]


def test_keywords_keep_their_spelling_and_lines_their_numbers():
    d = parse("\ufefffrom a AS b\n\n  # comment\nrun echo \\\n  hi \\\n\n  there\nbogus x\n")
    assert [(i.keyword, i.command, i.line, i.end) for i in d.instructions] == [
        ("from", "from", 1, 1), ("run", "run", 4, 7), ("bogus", "bogus", 8, 8)]
    assert d.instructions[1].args == ["echo   hi   there"]
    assert d.warnings == ["Dockerfile:4: empty continuation line"]
