"""The one table of a container's states (minirt/runtime/lifecycle.py)."""

import pytest

from minirt.runtime import lifecycle, state
from minirt.runtime.lifecycle import CREATED, EXITED, PAUSED, RUNNING

MOVES = [(None, CREATED), (CREATED, RUNNING), (CREATED, EXITED), (RUNNING, PAUSED), (PAUSED, RUNNING),
         (RUNNING, EXITED), (PAUSED, EXITED), (EXITED, RUNNING)]


@pytest.mark.parametrize("old, new", MOVES)
def test_allowed_moves(old, new):
    lifecycle.check(old, new)


@pytest.mark.parametrize("old, new", [(old, new) for old in (None, CREATED, RUNNING, PAUSED, EXITED)
                                      for new in (CREATED, RUNNING, PAUSED, EXITED)
                                      if (old, new) not in MOVES])
def test_every_other_move_is_refused(old, new):
    with pytest.raises(lifecycle.InvalidTransition, match=f"cannot become {new}"):
        lifecycle.check(old, new, "abc")


def test_move_records_under_the_lock_and_refuses_without_writing(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # (whose flock is the container's lock)
    lifecycle.move(str(tmp_path), CREATED, id="c1", pid=None)
    lifecycle.move(str(tmp_path), RUNNING, pid=42)
    before = (tmp_path / "state.json").read_bytes()
    with pytest.raises(lifecycle.InvalidTransition, match="container c1 is running: it cannot become created"):
        lifecycle.move(str(tmp_path), CREATED)
    assert (tmp_path / "state.json").read_bytes() == before
    assert state.read_json(str(tmp_path / "state.json"))["pid"] == 42


def test_oci_names_each_state():
    assert lifecycle.OCI_NAMES == {CREATED: "created", RUNNING: "running", PAUSED: "paused", EXITED: "stopped"}
    assert lifecycle.is_running({"status": PAUSED}) and not lifecycle.is_running({"status": CREATED})
