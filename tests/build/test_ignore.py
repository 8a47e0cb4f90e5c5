""".dockerignore with docker's rules: the examples of docker's documentation,
directories, exceptions, escapes and cleaning."""

import pytest

from minirt.build import ignore
from minirt.errors import BuildError


def ignored(patterns, paths):
    rules = ignore.Ignore(patterns)
    return [p for p in paths if rules.ignored(p)]


@pytest.mark.parametrize("patterns, paths, want", [
    (["*/temp*"], ["somedir/temporary.txt", "somedir/temp", "temp", "a/b/temp"],
     ["somedir/temporary.txt", "somedir/temp"]),
    (["*/*/temp*"], ["somedir/subdir/temporary.txt", "somedir/temp"], ["somedir/subdir/temporary.txt"]),
    (["temp?"], ["tempa", "tempb", "temp", "tempab", "d/tempa"], ["tempa", "tempb"]),
    (["**/*.go"], ["a.go", "x/y/b.go", "c.gop"], ["a.go", "x/y/b.go"]),
    (["*.md", "!README.md"], ["a.md", "README.md", "d/a.md"], ["a.md"]),
    (["*.md", "!README*.md", "README-secret.md"], ["x.md", "README.md", "README-secret.md"],
     ["x.md", "README-secret.md"]),
    (["node_modules"], ["node_modules", "node_modules/a/b.js", "src/node_modules"], ["node_modules", "node_modules/a/b.js"]),
    (["/build/", "./dist//x"], ["build/out", "dist/x", "dist/y"], ["build/out", "dist/x"]),
    (["**"], ["a", "b/c"], ["a", "b/c"]),
    (["a/**"], ["a", "a/b", "a/b/c", "ab"], ["a/b", "a/b/c"]),
    (["a/**/z"], ["a/z", "a/b/z", "a/b/c/z", "a/zz"], ["a/z", "a/b/z", "a/b/c/z"]),
    (["\\*star", "[ab]c", "[x-z]?", "[^a-y]"], ["*star", "xstar", "ac", "bc", "cc", "y.", "z"], ["*star", "ac", "bc", "y.", "z"]),
    (["dir", "!dir/keep"], ["dir/drop", "dir/keep", "dir/keep/sub"], ["dir/drop"]),
    (["x.txt"], ["x_txt", "x.txt"], ["x.txt"]),  # a dot is a dot
])
def test_docker_s_rules(patterns, paths, want):
    assert ignored(patterns, paths) == want


def test_read_skips_comments_blanks_and_a_bom(tmp_path):
    (tmp_path / ".dockerignore").write_text("\ufeff# comment\n\n  *.log  \n!keep.log\n!\n")
    rules = ignore.read(str(tmp_path))
    assert rules.ignored("a.log") and not rules.ignored("keep.log") and not rules.ignored("# comment")
    assert not ignore.read(str(tmp_path / "none")).ignored("a.log")


def test_a_walk_may_prune_only_without_exceptions():
    assert ignore.Ignore(["dir"]).prunes("dir")
    assert not ignore.Ignore(["dir", "!dir/keep"]).prunes("dir")


def test_bad_files_and_patterns_are_one_line(tmp_path):
    (tmp_path / ".dockerignore").write_bytes(b"\xff\xfe")
    with pytest.raises(BuildError, match="not UTF-8 text"):
        ignore.read(str(tmp_path))
    with pytest.raises(BuildError, match=r"bad pattern '\[z-a\]'"):
        ignore.Ignore(["[z-a]"])
