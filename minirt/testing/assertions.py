"""Assertions about a sandbox, each a sentence, each asked of the kernel from inside.

Lecture idea: isolation is what the kernel refuses a process -- namespaces
hide, capabilities and seccomp refuse, cgroups kill.  Each helper here makes
the container try (a shell loop over /proc, a write, a connect, the system
call itself, an allocation) and compares what happened with what the test
says should: pytest rewrites this module's asserts (``register_assert_rewrite``
in the plugin), so a failure shows the difference, not just "False".

They take a container started with ``container.start`` (a ``Running``) and
need ``sh`` in its image (busybox's ``nc`` and ``head`` for the network and
memory ones).  ``assert_syscall_refused`` and ``assert_memory_limit_kills_at``
run a twin -- a new container made exactly like the one given -- since a
refused call or an OOM kill must not take the container under test with it.
"""

import errno as errnos
import os
import tempfile

from minirt.api import host

# The container's processes by name, leaving out the asking shell itself
# (``read`` and ``[`` are built in: the loop starts no process).
_PROCESSES = ('for d in /proc/[0-9]*; do [ "${d#/proc/}" = "$$" ] || '
              '{ read -r name < "$d/comm" && echo "$name"; }; done')
_WRITE = ('if [ -d "$1" ]; then f="$1/.minirt-write-probe"; : > "$f" && rm -f "$f"; '
          'else : >> "$1"; fi')
_PROBE_DIR = "/.minirt-probe"


def _ran(result, what):
    return f"{what}: exit {result.exit_code}, stderr {result.stderr.decode(errors='replace').strip()!r}"


def visible_processes(c):
    """The names (/proc/PID/comm) of the processes ``c`` sees, sorted."""
    r = c.exec("sh", "-c", _PROCESSES)
    assert r.exit_code == 0, _ran(r, "listing /proc")
    return sorted(r.stdout.decode().split())


def assert_only_processes(c, *names):
    """Only these processes are visible in ``c`` (by name, with repeats: ``"sh", "sleep"``)."""
    assert visible_processes(c) == sorted(names)


def assert_not_writable(c, *paths):
    """These paths (files or directories) are not writable in ``c``."""
    writable = [p for p in paths if c.exec("sh", "-c", _WRITE, "sh", p).exit_code == 0]
    assert writable == [], f"writable in container {c.id[:12]}"


def capabilities(c, which="CapEff", pid="1"):
    """The capability names in ``c``'s process ``pid`` set ``which`` (CapEff, CapPrm, CapBnd...)."""
    r = c.exec("cat", f"/proc/{pid}/status")
    assert r.exit_code == 0, _ran(r, f"reading /proc/{pid}/status")
    fields = dict(line.split(":\t", 1) for line in r.stdout.decode().splitlines() if ":\t" in line)
    return host.capability_names(int(fields[which], 16))


def assert_capabilities_absent(c, *names):
    """These capabilities (``NET_RAW`` or ``CAP_NET_RAW``) are in none of
    ``c``'s main process's effective, permitted and bounding sets."""
    wanted = {n.upper() if n.upper().startswith("CAP_") else "CAP_" + n.upper() for n in names}
    present = {n for which in ("CapEff", "CapPrm", "CapBnd") for n in capabilities(c, which) & wanted}
    assert sorted(present) == []


def syscall_errno(c, call, *args):
    """Make the system call ``call`` (a name or number) with integer ``args`` in a
    twin of ``c``: the errno's name ("EPERM"), or "success"."""
    with tempfile.TemporaryDirectory(prefix="minirt-probe-") as directory:
        os.chmod(directory, 0o755)
        probe = os.path.join(directory, "probe")
        with open(probe, "wb") as f:
            f.write(host.syscall_probe(call, args))
        os.chmod(probe, 0o755)
        r = c.twin(f"{_PROBE_DIR}/probe", volumes=[f"{directory}:{_PROBE_DIR}:ro"],
                   entrypoint="")
    assert r.exit_code < 126, _ran(r, "the syscall probe")  # 126, 127: it did not run
    return "success" if r.exit_code == 0 else errnos.errorcode.get(r.exit_code, str(r.exit_code))


def assert_syscall_refused(c, call, *args, errno=errnos.EPERM):
    """The system call ``call`` (with integer ``args``) fails with ``errno`` in ``c``."""
    assert syscall_errno(c, call, *args) == errnos.errorcode[errno]


def reachable(c, *addresses, timeout=1):
    """Those of ``addresses`` ("HOST:PORT") that ``c`` can open a TCP connection to."""
    found = []
    for address in addresses:
        target, _, port = address.rpartition(":")
        if c.exec("nc", "-w", str(timeout), target.strip("[]"), port, input=b"").exit_code == 0:
            found.append(address)
    return found


def assert_unreachable(c, *addresses, timeout=1):
    """None of ``addresses`` ("HOST:PORT") can be connected to from ``c``."""
    assert reachable(c, *addresses, timeout=timeout) == []


def assert_memory_limit_kills_at(c, megabytes):
    """A process of a twin of ``c`` that holds three quarters of ``megabytes``
    lives; one that holds a quarter more than it is OOM-killed (exit 137).
    ``c`` should have been started with ``memory=`` (and no more swap)."""
    def holding(mb):  # tail keeps its one endless line whole: mb MiB held at once
        return c.twin("sh", "-c", f"head -c {mb}m /dev/zero | tail >/dev/null").exit_code

    assert {"3/4": holding(megabytes * 3 // 4), "5/4": holding(megabytes * 5 // 4)} == {"3/4": 0, "5/4": 137}
