"""A service's sandbox, tested with pytest-minirt (``minirt/testing/``).

The service: busybox's httpd, serving a page, deployed with the options
below -- a read-only root with a tmpfs for scratch, every capability
dropped, an unprivileged user, no network but loopback, docker's default
seccomp profile, and limits on memory and processes.  Each test states one
property of that sandbox as a sentence and asks the kernel from inside: if
a change to the deployment weakens it, a test says which property and how.

Run by ``make test`` (the plugin is on through pyproject's addopts; installed
elsewhere, its pytest11 entry point loads it).  The image is the example
busybox image (``make images``).
"""

import pytest

from minirt.testing.assertions import (assert_capabilities_absent, assert_memory_limit_kills_at,
                                       assert_not_writable, assert_only_processes, assert_syscall_refused,
                                       assert_unreachable)

SANDBOX = dict(read_only=True, tmpfs=["/tmp"], cap_drop=["ALL"], user="65534:65534", network="none",
               memory="48m", memory_swap="48m", pids_limit=32)
SERVICE = ["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc"]  # /etc/hostname is the page

pytestmark = pytest.mark.minirt(image="images/busybox.tar", **SANDBOX)


@pytest.fixture
def service(container):
    return container.start(*SERVICE)


def test_the_service_serves_inside_its_sandbox(service):
    page = service.exec("wget", "-q", "-O", "-", "http://127.0.0.1:8080/hostname")
    assert page.stdout.strip() == service.id[:12].encode()
    assert service.exec("id", "-u").stdout == b"65534\n"


def test_only_the_service_is_visible(service):
    assert_only_processes(service, "httpd")


def test_the_root_is_read_only_and_only_tmp_is_writable(service):
    assert_not_writable(service, "/", "/etc", "/bin/busybox", "/var")
    assert service.exec("touch", "/tmp/scratch").exit_code == 0


def test_no_capability_is_left(service):
    assert_capabilities_absent(service, "NET_RAW", "NET_BIND_SERVICE", "CHOWN", "SETUID", "SYS_ADMIN",
                               "DAC_OVERRIDE")


def test_seccomp_refuses_what_a_web_server_never_needs(service):
    assert_syscall_refused(service, "unshare", 0x10000000)   # a user namespace: a way to regain capabilities
    assert_syscall_refused(service, "keyctl")                # the kernel's keyring
    assert_syscall_refused(service, "bpf")                   # loading BPF programs
    assert_syscall_refused(service, "mount")


def test_no_host_is_reachable(service, container, minirt_network):
    peer = container.start("httpd", "-f", "-p", "8080", network=minirt_network)  # a server the test made
    address = peer.exec("hostname", "-i").stdout.decode().split()[0]
    assert_unreachable(service, f"{address}:8080", "127.0.0.1:80")


def test_the_memory_limit_kills_at_48_mb(service):
    assert_memory_limit_kills_at(service, 48)


def test_a_fork_bomb_stops_at_the_pids_limit(container):
    r = container("sh", "-c", "for i in $(seq 40); do sleep 5 & done; wait", pids_limit=32)
    assert r.exit_code != 0 and b"can't fork" in r.stderr
