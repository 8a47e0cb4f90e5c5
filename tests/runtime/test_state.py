"""The state directory's helpers that need no container."""

import os

from minirt.runtime import state


def test_remove_tree_removes_everything_and_follows_no_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host file")
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "file").write_text("x")
    os.symlink(outside, tree / "link-to-dir")
    os.symlink(outside / "keep", tree / "a" / "link-to-file")
    os.symlink("/nonexistent", tree / "dangling")
    os.mkfifo(tree / "fifo")

    state.remove_tree(str(tree))

    assert not os.path.lexists(tree)
    assert (outside / "keep").read_text() == "host file"


def test_remove_tree_of_a_symlink_removes_the_link_only(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "file").write_text("x")
    os.symlink(target, tmp_path / "link")
    state.remove_tree(str(tmp_path / "link"))
    assert not os.path.lexists(tmp_path / "link")
    assert (target / "file").exists()


def test_remove_tree_of_nothing_is_fine(tmp_path):
    state.remove_tree(str(tmp_path / "missing"))
