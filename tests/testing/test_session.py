"""A run's directory in RAM (minirt/testing/session.py): made for it, and the
only place its link is ever followed to, to remove it."""

import os

from minirt.testing import session


def test_a_runs_link_is_followed_only_to_its_own_directory_in_ram(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept").write_text("x")
    memory = session.memory_dir("s1-gw1")
    assert memory is not None and memory.startswith("/dev/shm/minirt-pytest-s1-gw1-")  # (24 GiB here)
    for name, target in (("s1-gw0", str(elsewhere)), ("s1-gw1", memory), ("s1-gw2", memory)):
        run = tmp_path / "runs" / name
        (run / "root").mkdir(parents=True)
        (run / "root" / "containers").symlink_to(target)
    session.remove(str(tmp_path / "runs" / "s1-gw2"), "s1-gw2")  # (another run's name: not its directory)
    session.remove(str(tmp_path / "runs" / "s1-gw0"), "s1-gw0")
    assert (elsewhere / "kept").exists() and os.path.isdir(memory)
    session.remove(str(tmp_path / "runs" / "s1-gw1"), "s1-gw1")
    assert not os.path.exists(memory) and os.listdir(tmp_path / "runs") == []
