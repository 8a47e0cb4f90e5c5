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


def test_removals_deferred_wait_for_the_end_of_the_block_even_an_exception(tmp_path):
    trees = [tmp_path / ".removing-a", tmp_path / ".removing-b"]
    for tree in trees:
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "file").write_text("x")
    state.remove_renamed(str(tmp_path / "nothing-there"))  # (outside a block: at once)
    try:
        with state.removals_deferred():
            state.remove_renamed(str(trees[0]))
            with state.removals_deferred():  # an inner block removes its own trees
                state.remove_renamed(str(trees[1]))
                assert trees[1].exists()
            assert not trees[1].exists() and trees[0].exists()
            raise KeyError("a failure in the block")
    except KeyError:
        pass
    assert not trees[0].exists()
    state.remove_renamed(str(tmp_path))  # after the block: at once again
    assert not tmp_path.exists()
