"""The start-up handshake's channels and messages (runtime/channel.py), between
real processes: each side forks, as the runtime's do."""

import os

import pytest

from minirt.errors import CommandNotFound, RuntimeFailure
from minirt.runtime import channel


def _child(body):
    """Fork; run ``body()`` in the child, which then exits (0 if it returned,
    1 if it raised); return its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def _reap(pid):
    """Wait for the child; it must have done its part without an error."""
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_a_message_arrives_and_closes_the_channel():
    ch = channel.Channel(down=True)
    pid = _child(lambda: (ch.child_side(), ch.expect(channel.PLACED), ch.reader is None or os._exit(3)))
    ch.parent_side()
    assert ch.send(channel.PLACED)
    _reap(pid)
    ch.close()


def test_a_dead_peer_is_reported_with_the_channels_own_error():
    ch = channel.Channel(down=False, gone="the helper went away")
    pid = _child(ch.child_side)  # exits without a word
    ch.parent_side()
    _reap(pid)
    with pytest.raises(RuntimeFailure, match="^the helper went away$"):
        ch.expect(channel.CREATED)


def test_a_wrong_message_is_named():
    ch = channel.Channel(down=False, gone="no word")
    pid = _child(lambda: (ch.child_side(), ch.send(channel.IDS_WRITTEN)))
    ch.parent_side()
    _reap(pid)
    with pytest.raises(RuntimeFailure, match=r"no word \(said b'i', not b'p'\)"):
        ch.expect(channel.PLACED)


def test_sending_to_a_dead_peer_says_so_instead_of_raising():
    ch = channel.Channel(down=True)
    pid = _child(ch.child_side)
    ch.parent_side()
    _reap(pid)
    assert not ch.send(channel.PLACED)
    ch.close()


def test_born_and_pid_carry_their_numbers():
    born, adopted = channel.Channel(down=False), channel.Channel(down=False)

    def child():
        born.child_side(), adopted.child_side()
        born.send_born(1234, True, os.getpid())
        adopted.send_pid(5678)

    pid = _child(child)
    born.parent_side(), adopted.parent_side()
    assert born.receive_born() == (1234, True, pid)
    assert adopted.receive_pid() == 5678
    _reap(pid)
    assert born.receive_born() is None and adopted.receive_pid() is None  # said once, then end-of-file
    born.close(), adopted.close()


def test_end_of_file_on_the_failure_channel_means_the_command_runs():
    """Both ends are close-on-exec: a child that executes keeps none of them."""
    ch = channel.Channel(down=False)
    pid = os.fork()
    if pid == 0:
        ch.child_side()
        os.execv("/bin/sleep", ["sleep", "5"])  # the channel closes here, while sleep runs
    ch.parent_side()
    try:
        assert ch.outcome() == b""
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        ch.close()


def test_a_failure_report_comes_back_as_the_error_it_was():
    ch = channel.Channel(down=False)
    pid = _child(lambda: (ch.child_side(), ch.send_failure(CommandNotFound('exec: "nope": not found'))))
    ch.parent_side()
    _reap(pid)
    report = ch.outcome()
    ch.close()
    assert report == b'127 exec: "nope": not found'
    with pytest.raises(CommandNotFound, match='^exec: "nope": not found$'):
        channel.raise_failure(report, "nope")


def test_an_oserror_report_names_the_step_and_the_file():
    assert channel.encode_failure(FileNotFoundError(2, "No such file or directory", "/x"), "pivot_root") == \
        b"125 pivot_root: No such file or directory: /x"


def test_exec_fifo_lets_pid1_go_once_start_opens_it(tmp_path):
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo, 0o600)
    held = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    pid = _child(lambda: channel.wait_for_start(held))  # blocks until let_start opens the fifo
    os.close(held)
    assert channel.let_start(str(fifo), lambda: True)
    _reap(pid)


def test_start_sees_a_dead_pid1_and_a_missing_fifo(tmp_path):
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo, 0o600)
    assert channel.let_start(str(fifo), lambda: False) is False  # nobody will ever write
    with pytest.raises(FileNotFoundError):
        channel.let_start(str(tmp_path / "gone"), lambda: True)
