"""Seccomp user notification (minirt/runtime/seccomp_agent.py): a bundle's
filter sends its SCMP_ACT_NOTIFY calls to an agent at linux.seccomp.listenerPath,
which gets the container process state and the filter's descriptor from
create (or exec), and answers the calls instead of the kernel."""

import errno
import fcntl
import importlib.util
import json
import os
import select
import shutil
import socket
import tempfile
import threading

import pytest

from minirt.errors import SpecError
from minirt.runtime import seccomp_agent

pytestmark = pytest.mark.privileged

_spec = importlib.util.spec_from_file_location(  # the conformance suite's agent: its ioctls
    "seccompagent", os.path.join(os.path.dirname(os.path.dirname(__file__)), "conformance", "seccompagent.py"))
seccompagent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seccompagent)

MKDIR = 83


class Agent:
    """A seccomp agent of the test's own, at ``path``: keeps each state it is
    sent (``received(n)`` waits for the n-th) and answers each notified call ``nr`` with
    ``answers[nr]``, an errno (0: success, without doing anything); any other
    call continues.  ``close`` stops it, and lets go of every descriptor."""

    def __init__(self, path, answers):
        self.path, self.answers, self.states, self.threads = path, answers, [], []
        self.arrived = threading.Condition()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        self.stop_r, self.stop_w = os.pipe()
        self._run(self._serve)

    def _run(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(t)
        t.start()

    def _serve(self):
        while select.select([self.server, self.stop_r], [], [])[0] == [self.server]:
            conn, _ = self.server.accept()
            with conn:
                data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            self._run(self._answer, fds[0])
            with self.arrived:
                self.states.append(json.loads(data))
                self.arrived.notify_all()

    def received(self, n):
        """The states sent so far, once there are ``n`` (the runtime's send
        returns before we have read it)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.states) >= n, timeout=10)
            return list(self.states)

    def _answer(self, listener):
        buf = bytearray(seccompagent.NOTIF.size)
        poll = select.poll()
        poll.register(listener, select.POLLIN)
        poll.register(self.stop_r, select.POLLIN)
        try:
            while True:
                events = dict(poll.poll())
                if self.stop_r in events or events.get(listener, 0) & select.POLLHUP:
                    return  # stopped, or the filter has no process left
                buf[:] = bytes(len(buf))
                try:
                    fcntl.ioctl(listener, seccompagent.IOCTL_RECV, buf, True)
                except OSError:
                    continue  # (the caller went away meanwhile)
                nid, _pid, _flags, nr, *_ = seccompagent.NOTIF.unpack(buf)
                if nr in self.answers:
                    err = self.answers[nr]
                    response = seccompagent.RESP.pack(nid, -1 if err else 0, -err, 0)
                else:
                    response = seccompagent.RESP.pack(nid, 0, 0, seccompagent.FLAG_CONTINUE)
                try:
                    fcntl.ioctl(listener, seccompagent.IOCTL_SEND, bytearray(response), True)
                except OSError:
                    pass
        finally:
            os.close(listener)

    def close(self):
        if self.server is None:
            return
        os.write(self.stop_w, b"x")
        for t in self.threads:
            t.join(10)
        self.server.close()
        os.close(self.stop_r)
        os.close(self.stop_w)
        self.server = None


@pytest.fixture
def agent(tmp_path):
    made = []

    def start(answers):
        made.append(Agent(str(tmp_path / f"agent{len(made)}.sock"), answers))
        return made[-1]

    yield start
    for a in made:
        a.close()


def notify(path, names=("mkdir",), metadata="bar"):
    return {"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path, "listenerMetadata": metadata,
                               "syscalls": [{"names": list(names), "action": "SCMP_ACT_NOTIFY"}]}}


def test_the_agent_answers_a_notified_call_and_gets_the_state(oci, bundle, agent, tmp_path):
    a = agent({MKDIR: errno.ENOMEDIUM})
    b = bundle(["sh", "-c", "mkdir /tmp/x; echo $? > /tmp/rc; [ ! -e /tmp/x ]"], **notify(a.path))
    r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "n1")
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "pid").read_text())
    [state] = a.received(1)  # sent by create, before start
    assert state["fds"] == ["seccompFd"] and state["pid"] == pid and state["metadata"] == "bar"
    assert state["ociVersion"] and state["state"]["id"] == "n1" and state["state"]["status"] == "creating"
    assert state["state"]["pid"] == pid and state["state"]["bundle"] == b
    assert oci("start", "n1").returncode == 0
    assert os.WEXITSTATUS(oci.reap(pid)) == 0  # mkdir failed, as the agent said, and made nothing
    assert (tmp_path / "bundle0" / "rootfs" / "tmp" / "rc").read_text() == "1\n"
    assert oci("delete", "n1").returncode == 0


@pytest.mark.parametrize("nnp", [False, True])
def test_a_call_the_agent_says_succeeded_did_nothing(oci, bundle, agent, nnp):
    a = agent({MKDIR: 0})
    b = bundle(["sh", "-c", "mkdir /tmp/x && [ ! -e /tmp/x ]"], process__noNewPrivileges=nnp, **notify(a.path))
    r = oci("run", "--bundle", b, "n2")
    assert (r.returncode, r.stderr) == (0, "")
    assert len(a.received(1)) == 1 and oci.ids() == []


def test_calls_the_runtime_itself_makes_may_be_notified(oci, bundle, agent):
    a = agent({})  # all of them continue
    b = bundle(["true"], **notify(a.path, names=("execve", "openat", "read", "close", "rt_sigaction")))
    r = oci("run", "--bundle", b, "n3")
    assert (r.returncode, r.stderr) == (0, "")


def test_in_a_user_namespace_too(oci, bundle, agent):
    a = agent({MKDIR: errno.ENOMEDIUM})
    b = bundle(["sh", "-c", "mkdir /tmp/x 2>&1; id -u"],
               linux__namespaces=[{"type": t} for t in ("pid", "mount", "ipc", "uts", "network", "user")],
               linux__uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
               linux__gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}], **notify(a.path))
    reachable = tempfile.mkdtemp(prefix="minirt-oci-userns-")  # (the container's root must reach the rootfs)
    try:
        os.chmod(reachable, 0o711)
        r = oci("run", "--bundle", shutil.move(b, reachable), "n8")
    finally:
        shutil.rmtree(reachable)
    assert r.returncode == 0, r.stderr
    assert "No medium found" in r.stdout and r.stdout.endswith("\n0\n")
    [state] = a.received(1)
    assert state["pid"] > 1  # (the host's pid, not 1)


def test_exec_sends_its_own_process_to_the_agent(oci, bundle, agent, tmp_path):
    a = agent({MKDIR: errno.EROFS})
    b = bundle(["sleep", "100"], **notify(a.path))
    r = oci("run", "--detach", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "n4")
    assert r.returncode == 0, r.stderr
    pid1 = int((tmp_path / "pid").read_text())
    r = oci("exec", "--detach", "--pid-file", str(tmp_path / "exec-pid"), "n4", "sh", "-c",
            "mkdir /tmp/y 2> /tmp/err; sleep 1")
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "exec-pid").read_text())
    _, state = a.received(2)
    assert state["pid"] == pid and state["state"]["pid"] == pid1 and state["state"]["status"] == "running"
    oci.reap(pid)
    assert "Read-only file system" in (tmp_path / "bundle0" / "rootfs" / "tmp" / "err").read_text()
    r = oci("exec", "n4", "sh", "-c", "mkdir /tmp/z")
    assert r.returncode == 1 and len(a.received(3)) == 3
    a.close()  # no agent: exec fails, and leaves no process behind
    r = oci("exec", "n4", "sh", "-c", "touch /tmp/ran")
    assert r.returncode == 255 and "failed to connect with seccomp agent" in r.stderr  # (runc's exec failure)
    assert r.stderr.count("\n") == 1
    assert oci("exec", "n4", "true").returncode == 255
    assert not (tmp_path / "bundle0" / "rootfs" / "tmp" / "ran").exists()
    assert json.loads(oci("ps", "--format", "json", "n4").stdout) == [pid1]
    assert oci("delete", "--force", "n4").returncode == 0
    oci.reap(pid1)


def test_without_its_agent_a_notified_call_fails_with_enosys(oci, bundle, agent, tmp_path):
    a = agent({})
    b = bundle(["sh", "-c", "read x < /fifo; mkdir /tmp/x"], **notify(a.path))
    os.mkfifo(tmp_path / "bundle0" / "rootfs" / "fifo")
    r = oci("create", "--bundle", b, "--pid-file", str(tmp_path / "pid"), "n5")
    assert r.returncode == 0, r.stderr
    a.close()
    assert oci("start", "n5").returncode == 0
    with open(tmp_path / "bundle0" / "rootfs" / "fifo", "w") as f:
        f.write("go\n")
    assert os.WEXITSTATUS(oci.reap(int((tmp_path / "pid").read_text()))) == 1


def test_no_agent_listening_fails_create_and_leaves_nothing(oci, bundle, tmp_path):
    b = bundle(["true"], **notify(str(tmp_path / "nobody.sock")))
    r = oci("run", "--bundle", b, "n6")
    assert r.returncode == 1
    assert r.stderr == ("minirt-runc: failed to connect with seccomp agent specified in the seccomp profile: "
                        f"{tmp_path / 'nobody.sock'}: No such file or directory\n")
    assert oci.ids() == []


def test_a_listener_without_notify_is_ignored(oci, bundle, tmp_path):
    b = bundle(["true"], linux__seccomp={"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "relative.sock"})
    assert oci("run", "--bundle", b, "n7").returncode == 0


def test_features_lists_the_action(oci):
    r = oci("features")
    assert "SCMP_ACT_NOTIFY" in json.loads(r.stdout)["linux"]["seccomp"]["actions"]


def test_a_kernel_without_user_notification_is_refused(tmp_path):
    older = tmp_path / "actions_avail"  # what 4.19's /proc/sys/kernel/seccomp/actions_avail says
    older.write_text("kill_process kill_thread trap errno trace log allow\n")
    with pytest.raises(SpecError, match="this kernel has no seccomp user notification"):
        seccomp_agent.check_kernel(str(older))
    seccomp_agent.check_kernel()  # (this one has it)
