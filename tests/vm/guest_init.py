"""Stage 2, PID 1 of the test VM (see boot.py): a pure cgroup v2 machine.

It mounts the cgroup2 hierarchy with every controller enabled for its children
(init.sh mounted proc, sys, dev and the tmpfs), runs the privileged
test suite from the project's tree, writes pytest's exit status to the results
share and powers the machine off.  As PID 1 it also reaps every orphan (a zombie
left in /proc would look alive to the tests' liveness checks).
"""

import os
import signal
import subprocess
import sys
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# From the kernel's command line (boot.py): unknown name=value pairs become
# init's environment.
SUITE = os.environ["vm_tests"].split(",")
TIMEOUT = int(os.environ["vm_timeout"])
GRACE = 30  # seconds pytest gets, once interrupted, to print what failed


def sh(*cmd):
    subprocess.run(cmd, check=True)


def mount_cgroup2():
    sh("mount", "-t", "cgroup2", "-o", "nsdelegate", "cgroup2", "/sys/fs/cgroup")
    sh("mount", "-t", "bpf", "bpf", "/sys/fs/bpf")
    with open("/sys/fs/cgroup/cgroup.controllers") as f:
        controllers = f.read().split()
    with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
        f.write(" ".join("+" + c for c in controllers))
    print("vm: cgroup2 controllers enabled:", " ".join(controllers), flush=True)
    sh("ip", "link", "set", "lo", "up")
    sh("hostname", "minirt-vm")


def run_suite():
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "TERM": "dumb",
           "PYTHONPATH": PROJECT, "MINIRT_REQUIRE_PRIVILEGED": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-m", "privileged", *SUITE]
    print("vm: running", " ".join(cmd), flush=True)
    pytest = subprocess.Popen(cmd, cwd=PROJECT, env=env)
    deadline = time.monotonic() + TIMEOUT
    while True:  # reap everything; pytest's own status is the one that counts
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == pytest.pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            print(f"vm: the suite did not finish within {TIMEOUT} s", flush=True)
            stop(pytest)
            return 124
        if pid == 0:
            time.sleep(0.2)


def stop(pytest):
    """Interrupt pytest as Ctrl-C would, so that it names the tests that failed
    so far; kill it if it has not ended after GRACE seconds."""
    pytest.send_signal(signal.SIGINT)
    try:
        pytest.wait(GRACE)
    except subprocess.TimeoutExpired:
        pytest.kill()


def main():
    status = 125
    try:
        mount_cgroup2()
        status = run_suite()
    finally:
        with open("/vm-results/status", "w") as f:
            f.write(f"{status}\n")
        os.sync()
        # Power off.  (Were that refused, PID 1's exit panics the kernel, and
        # panic=-1 with qemu's -no-reboot ends qemu all the same.)
        with open("/proc/sysrq-trigger", "w") as f:
            f.write("o")
        time.sleep(60)


main()
