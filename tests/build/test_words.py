"""Word expansion against BuildKit's own vectors (../shared/conformance/dockerfile:
``shell-expansion-cases`` for one word, ``shell-words-cases`` for splitting), and
the pattern operators BuildKit has beyond them, checked against bash."""

import os
import subprocess

import pytest

from minirt.build.words import ExpansionError, expand, expand_words

# the environment BuildKit's vectors assume
ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def cases(conformance, name):
    with open(os.path.join(conformance, "dockerfile", name), encoding="utf-8") as f:
        for number, line in enumerate(f.read().split("\n"), 1):
            if line.strip() and not line.startswith("#"):
                yield number, line


def test_one_word_as_buildkit_expands_it(conformance):
    checked, wrong = 0, []
    for number, line in cases(conformance, "shell-expansion-cases"):
        platform, source, expected = (field.strip() for field in line.split("|"))
        if platform == "W":
            continue
        try:
            got = expand(source, ENV)
        except ExpansionError:
            got = "error"
        if got.strip() != expected:
            wrong.append(f"line {number}: {source!r} gave {got!r}, BuildKit {expected!r}")
        checked += 1
    assert checked > 200 and not wrong, "\n".join(wrong)


def test_words_split_as_buildkit_splits_them(conformance):
    env, checked, wrong = {}, 0, []
    for number, line in cases(conformance, "shell-words-cases"):
        if line.startswith("ENV "):
            name, _, value = line[4:].lstrip(" ").partition("=")
            env[name] = value
            continue
        source, expected = line.split("|")
        try:
            got = expand_words(source.strip(), env)
        except ExpansionError:
            got = ["error"]
        if got != expected.lstrip(" ").split(","):
            wrong.append(f"line {number}: {source.strip()!r} gave {got!r}, BuildKit {expected!r}")
        checked += 1
    assert checked > 20 and not wrong, "\n".join(wrong)


@pytest.mark.parametrize("word", [
    "${V#*/}", "${V##*/}", "${V%/*}", "${V%%/*}", "${V#x}", "${V%x}", "${V#}",
    "${V/o/0}", "${V//o/0}", "${V/o*/X}", "${V//[ot]/_}", "${V/nothing/X}", "${V/o}",
    "${E#a}", "${E//a/b}", "${U%%*}",
])
def test_patterns_as_bash(word):
    env = {"V": "/opt/tools/bin", "E": ""}
    bash = subprocess.run(["bash", "-c", f'V={env["V"]}; E=; unset U; printf %s "{word}"'],
                          capture_output=True, text=True, check=True).stdout
    assert expand(word, env) == bash


@pytest.mark.parametrize("word, message", [
    ("${A", "missing '}'"), ("${}", "bad substitution"), ("${A:x}", "unsupported modifier (x)"),
    ("${A!}", "missing ':' in substitution"), ("${A:?must be set}", "A: must be set"),
    ("'open", "matching single-quote"), ('"open', "matching double-quote"),
])
def test_bad_words_say_what(word, message):
    with pytest.raises(ExpansionError) as e:
        expand(word, {})
    assert str(e.value) == f"failed to process {word!r}: {message}" or message in str(e.value)


def test_the_escape_character_can_be_a_backtick():
    assert expand("a`$b`\\c", {"b": "B"}, escape="`") == "a$b\\c"
