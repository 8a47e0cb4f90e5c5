"""runc's own integration tests (bats) against any runtime with runc's command
line: runc itself, and minirt's OCI runtime, on the same host, side by side.

Lecture idea: "the OCI runtime specification" -- a runtime is defined by what
it does for a bundle and a command line, so the reference runtime's test suite
is a conformance test for every other one.

    make conformance
    .venv/bin/python tests/conformance/runc_suite.py [--runtime NAME=PATH ...] [FILE.bats ...]

What it does, each step done once and kept in .cache/conformance:

1. its tools: bats, jq and gawk (and dpkg-source), installed with apt-get when missing;
2. the suite: Debian's source package of runc (the version installed here when
   there is one), fetched with ``apt-get source`` under an apt configuration of
   our own (a temporary directory whose sources.list has the deb-src twins of
   the host's Debian entries); never the host's apt configuration, never
   committed;
3. its images: runc's tests download a busybox and a Debian root filesystem
   (get-images.sh, with Go and curl); here both are images/busybox.tar's root
   filesystem, flattened by minirt's own image code, and get-images.sh is
   replaced by one that names it.  recvtty and seccompagent (Go programs in
   runc's tree) are tests/conformance/recvtty.py and seccompagent.py;
4. the runs: tests/integration/*.bats, one bats per file, with RUNC=PATH for
   each runtime (default: /usr/sbin/runc, and minirt's .venv/bin/minirt-runc
   once it exists); each file's TAP output goes to .cache/conformance/results/.

Then it prints each runtime's passed/failed/skipped counts and its time, and
every test that runc passes and another runtime fails or skips, with the reason
from tests/conformance/skips.txt where that skip is intended.  The exit status
is 1 when such a test has no reason listed.
"""

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(PROJECT, ".cache", "conformance")
IMAGE = os.path.join(PROJECT, "images", "busybox.tar")
SKIPS = os.path.join(HERE, "skips.txt")
MINIRT_RUNC = os.path.join(os.path.dirname(sys.executable), "minirt-runc")  # beside the venv's python
TOOLS = {"bats": "bats", "jq": "jq", "gawk": "gawk", "dpkg-source": "dpkg-dev"}  # command -> Debian package
TEST_TIMEOUT = 60  # seconds without a test ending, then the runtime's processes are killed
FILE_TIMEOUT = 1800  # seconds for one .bats file, then its whole process tree is killed


# -- 2. the suite ------------------------------------------------------------------

def source_lines(codename):
    """deb-src twins of the host's Debian entries (those for ``codename`` and its
    -updates/-security suites), from sources.list and the deb822 .sources files."""
    lines = []
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    words = line.split("#", 1)[0].split()
                    if words[:1] == ["deb"]:
                        options = [w for w in words[1:] if w.startswith("[")]
                        uri, suite, *components = [w for w in words[1:] if not w.startswith("[")]
                        lines.append((options, uri, suite, components))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for paragraph in f.read().split("\n\n"):
                fields = dict(re.findall(r"^([\w-]+):\s*(.*)$", paragraph, re.M))
                if "deb" not in fields.get("Types", "").split() or fields.get("Enabled", "yes") == "no":
                    continue
                options = [f"[signed-by={fields['Signed-By']}]"] if "Signed-By" in fields else []
                for uri in fields.get("URIs", "").split():
                    for suite in fields.get("Suites", "").split():
                        lines.append((options, uri, suite, fields.get("Components", "").split()))
    return sorted({" ".join(["deb-src", *options, uri, suite, *components])
                   for options, uri, suite, components in lines
                   if suite == codename or suite.startswith(codename + "-")})


def installed_source_version(package):
    """The source version of ``package`` as installed here, or None."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${source:Version}", package], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def fetch_suite(cache):
    """The unpacked runc source tree (fetched and unpacked on first use)."""
    version = installed_source_version("runc")
    tree = os.path.join(cache, f"runc-{version or 'candidate'}")
    if os.path.exists(os.path.join(tree, ".complete")):
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    with open("/etc/os-release") as f:
        codename = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', f.read(), re.M)).get("VERSION_CODENAME")
    entries = source_lines(codename)
    if not entries:
        sys.exit(f"runc_suite: no Debian {codename} entry in the host's apt sources to take deb-src lines from")
    with tempfile.TemporaryDirectory(prefix="minirt-apt-") as apt:
        for d in ("sources.list.d", "lists/partial", "archives/partial", "download"):
            os.makedirs(os.path.join(apt, d))
        with open(os.path.join(apt, "sources.list"), "w") as f:
            f.write("\n".join(entries) + "\n")
        with open(os.path.join(apt, "apt.conf"), "w") as f:
            f.write(f'Dir::Etc::sourcelist "{apt}/sources.list";\n'
                    f'Dir::Etc::sourceparts "{apt}/sources.list.d";\n'
                    f'Dir::State "{apt}";\nDir::State::status "/var/lib/dpkg/status";\n'
                    f'Dir::Cache "{apt}";\nAPT::Sandbox::User "root";\n')
        env = dict(os.environ, APT_CONFIG=os.path.join(apt, "apt.conf"))
        print(f"runc_suite: fetching runc's source package ({version or 'candidate'})", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        spec = f"runc={version}" if version else "runc"
        subprocess.run(["apt-get", "source", "-qq", "--download-only", spec], env=env, check=True,
                       cwd=os.path.join(apt, "download"))
        dsc, = glob.glob(os.path.join(apt, "download", "*.dsc"))
        unpack = subprocess.run(["dpkg-source", "-q", "-x", dsc, tree], capture_output=True, text=True)
        if unpack.returncode != 0:  # (its usual noise: gpgv has no Debian developer keys here)
            sys.exit(f"runc_suite: dpkg-source -x {dsc}: {unpack.stderr.strip()}")
    open(os.path.join(tree, ".complete"), "w").close()
    return tree


# -- 1. tools, 3. images -----------------------------------------------------------

def install_tools():
    missing = [package for command, package in TOOLS.items() if not shutil.which(command)]
    if missing:
        print(f"runc_suite: installing {' '.join(missing)}", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def busybox_rootfs_tar(cache):
    """images/busybox.tar's root filesystem as one tar, as runc's tests unpack it."""
    out = os.path.join(cache, "busybox-rootfs.tar")
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(IMAGE):
        return out
    sys.path.insert(0, PROJECT)
    from minirt.image import Store, open_image

    with tempfile.TemporaryDirectory(prefix="minirt-conformance-") as tmp:
        with open_image(IMAGE) as img:
            layers = Store(tmp).unpack(img)
        if len(layers) != 1:
            sys.exit(f"runc_suite: {IMAGE}: expected one layer, found {len(layers)}")
        # Without /proc and /sys, as the docker-library busybox runc's tests fetch:
        # mask.bats makes them symlinks, for runc to refuse.
        subprocess.run(["tar", "--numeric-owner", "--exclude=./proc", "--exclude=./sys", "-C", str(layers[0]),
                        "-cf", out + ".part", "."], check=True)
    os.rename(out + ".part", out)
    return out


def prepare(tree, rootfs):
    """Point the suite at our images, recvtty and seccompagent (in the fetched copy only)."""
    integration = os.path.join(tree, "tests", "integration")
    with open(os.path.join(integration, "get-images.sh"), "w") as f:
        f.write("#!/bin/sh\n# written by minirt's tests/conformance/runc_suite.py: no downloads\n"
                f"echo BUSYBOX_IMAGE={rootfs}\necho DEBIAN_IMAGE={rootfs}\n")
    helpers = [os.path.join(integration, "get-images.sh")]
    for name in ("recvtty", "seccompagent"):  # Go programs in runc's tree; ours in Python
        helpers.append(os.path.join(tree, "contrib", "cmd", name, name))
        with open(helpers[-1], "w") as f:
            f.write(f'#!/bin/sh\nexec {sys.executable} -I -S {os.path.join(HERE, name + ".py")} "$@"\n')
    for script in helpers:
        os.chmod(script, 0o755)
    wait_for_helpers(os.path.join(integration, "helpers.bash"))
    return integration


# The lines of helpers.bash that start recvtty and seccompagent in the background,
# and the socket each then listens on.
BACKGROUND = {'("$RECVTTY" --pid-file "$dir/pid" --mode null "$CONSOLE_SOCKET" &) &': "$CONSOLE_SOCKET",
              '("${SECCOMP_AGENT}" -socketfile="$SECCCOMP_AGENT_SOCKET" -pid-file "$BATS_TMPDIR/seccompagent.pid" &) &':
              "$SECCCOMP_AGENT_SOCKET"}


def wait_for_helpers(path):
    """Make the suite wait, after starting recvtty or seccompagent, until its
    socket is there (up to 10 s).  runc's Go helpers listen a millisecond after
    they start and the suite counts on it; a Python one on a loaded host can
    take longer than a whole short test."""
    with open(path) as f:
        text = f.read()
    for line, sock in BACKGROUND.items():
        wait = f'for _ in $(seq 200); do [ -S "{sock}" ] && break; sleep 0.05; done  # runc_suite.py'
        if line + "\n\t" + wait not in text:
            if line not in text:
                sys.exit(f"runc_suite: {path} no longer starts a helper with: {line}")
            text = text.replace(line, line + "\n\t" + wait)
    with open(path, "w") as f:
        f.write(text)


# -- 4. the runs -------------------------------------------------------------------

TAP = re.compile(r"^(ok|not ok) \d+ (.*?)(?: # (skip|timeout)\b ?(.*))?$")


def parse_tap(text):
    """TAP lines -> {test name: ("passed"|"failed"|"skipped", reason)}."""
    results = {}
    for line in text.splitlines():
        if m := TAP.match(line):
            verdict = "failed" if m[1] == "not ok" else "skipped" if m[3] == "skip" else "passed"
            results[m[2]] = (verdict, m[4] if m[3] == "skip" else f"timeout {m[4]}" if m[3] else "")
    return results


def descendants(pid):
    """The processes below ``pid``, nearest first."""
    children = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(p))
        except OSError:
            pass
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(0), [])
        found += below
        todo += below
    return found


def kill(pids):
    """SIGKILL each of ``pids``, thawing its cgroup first: a frozen process
    cannot die (cgroups.bats freezes one, to see a runtime refuse it)."""
    for pid in pids:
        thaw(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def thaw(pid):
    """Thaw the cgroups of ``pid``: cgroup v1's freezer, cgroup v2's cgroup.freeze."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return
    v2 = "/sys/fs/cgroup/unified" if os.path.ismount("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    for _hierarchy, controllers, path in entries:
        if controllers == "freezer":
            control, thawed = f"/sys/fs/cgroup/freezer{path}/freezer.state", "THAWED"
        elif controllers == "":
            control, thawed = f"{v2}{path}/cgroup.freeze", "0"
        else:
            continue
        if os.path.exists(control):
            with open(control, "w") as f:
                f.write(thawed)


def marked(marker):
    """The processes whose environment holds ``marker`` (NAME=VALUE)."""
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                if marker.encode() + b"\0" in f.read():
                    found.append(int(p))
        except OSError:
            pass
    return found


def runtime_processes(marker, runtime):
    """The processes of the run (``marker`` in their environment, even those
    that left their parent) that run ``runtime`` or one of our helpers (a
    binary, or a script: then its interpreter's argv names it), and what they
    started.  (A test that fails before its own clean-up leaves its recvtty,
    which holds bats' output open: bats would wait for it for ever.)"""
    wanted = {runtime, os.path.realpath(runtime)} | {os.path.join(HERE, f"{h}.py") for h in ("recvtty", "seccompagent")}
    found = []
    for p in marked(marker):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")[:4]
            if os.readlink(f"/proc/{p}/exe") in wanted or wanted & set(argv):
                found += [p] + descendants(p)
        except OSError:
            pass
    return found


def run_suite(integration, runtime, files, results_dir):
    """Run each .bats file with RUNC=runtime; {"FILE: test": (verdict, reason)}, seconds.

    bats runs under ``script``, on a pseudo-terminal of its own, as in runc's CI:
    ``runc run`` of a bundle with a terminal and no console socket uses the
    controlling terminal.  A runtime that hangs fails its test: when a file's
    TAP output has not grown for TEST_TIMEOUT seconds, the runtime's processes
    are killed (not the test, whose teardown cleans up).  After each file,
    whatever its tests left running (found by a variable in their environment)
    is killed: a helper whose teardown came before its pid file.  (bats' own
    BATS_TEST_TIMEOUT cannot serve: its watchdog is a background job of the
    test, and the tests that ``wait`` for their own jobs would wait for it.)"""
    os.makedirs(results_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="runc-suite-") as tmp:
        # bats' BATS_TMPDIR ($TMPDIR, else /tmp) holds fixed names, such as the
        # seccomp agent's socket and pid file: two runs at once must not share them.
        os.chmod(tmp, 0o755)
        return _run_files(integration, runtime, files, results_dir, tmp)


def _run_files(integration, runtime, files, results_dir, tmp):
    marker = f"RUNC_SUITE_RUN={os.getpid()}-{time.monotonic_ns()}"  # inherited by all the tests start
    env = dict(os.environ, RUNC=runtime, TMPDIR=tmp, **dict([marker.split("=")]))
    outcome = {}
    start = time.monotonic()
    for path in files:
        name = os.path.basename(path)
        tap_path = os.path.join(results_dir, name + ".tap")
        command = f"bats --tap {shlex.quote(path)} >{shlex.quote(tap_path)} 2>&1"
        proc = subprocess.Popen(["script", "-q", "-e", "-c", command, "/dev/null"], cwd=integration, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        began = progress = time.monotonic()
        size = 0
        while proc.poll() is None:
            time.sleep(1)
            now = time.monotonic()
            if os.path.exists(tap_path) and os.path.getsize(tap_path) != size:
                size, progress = os.path.getsize(tap_path), now
            elif now - progress > TEST_TIMEOUT:
                kill(runtime_processes(marker, runtime))
                progress = now
                with open(os.path.join(results_dir, "stalls.log"), "a") as f:
                    f.write(f"{name}: {runtime} killed after {TEST_TIMEOUT} s without progress\n")
            if now - began > FILE_TIMEOUT:
                kill(descendants(proc.pid) + [proc.pid])
                proc.wait()
                with open(tap_path, "a") as f:
                    f.write(f"\n# runc_suite: killed after {FILE_TIMEOUT} s\n")
        kill(marked(marker))  # what the file's tests left running (double-forked helpers, say)
        with open(tap_path) as f:
            tests = parse_tap(f.read())
        if not tests:  # bats refused the file (or hung before its first test)
            tests = {"(the whole file)": ("failed", "")}
        for test, verdict in tests.items():
            outcome[f"{name}: {test}"] = verdict
        print(f"  {name:28} " + " ".join(f"{v} {n}" for v, n in counts(tests).items()), file=sys.stderr)
    return outcome, time.monotonic() - start


def sweep_cgroups():
    """Remove the tests' parent cgroup (runc-cgroups-integration-test) from every
    hierarchy: on a hybrid host their teardown forgets the cgroup2 one, and a
    runtime killed mid-test leaves its container in it (perhaps frozen: thawed
    here, then killed).  Returns the cgroups that still could not go."""
    left = []
    for top in glob.glob("/sys/fs/cgroup/*/") + ["/sys/fs/cgroup/"]:
        for sub, _dirs, _files in os.walk(os.path.join(top, "runc-cgroups-integration-test"), topdown=False):
            for name, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
                if os.path.exists(os.path.join(sub, name)):
                    with open(os.path.join(sub, name), "w") as f:
                        f.write(thawed)
            with open(os.path.join(sub, "cgroup.procs")) as f:
                kill(int(pid) for pid in f.read().split())
            for _ in range(50):
                try:
                    os.rmdir(sub)
                    break
                except OSError:
                    time.sleep(0.02)  # the killed are still on their way out
            else:
                left.append(sub)
    return left


def counts(outcome):
    verdicts = [v for v, _ in outcome.values()]
    return {v: verdicts.count(v) for v in ("passed", "failed", "skipped")}


def intended_skips(path=SKIPS):
    """skips.txt: ``FILE: test name | reason``, one a line; # comments."""
    reasons = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                test, sep, reason = line.partition(" | ")
                if not sep or not reason.strip():
                    sys.exit(f"runc_suite: {path}: a line needs 'FILE: test name | reason': {line!r}")
                reasons[test.strip()] = reason.strip()
    return reasons


def report(outcomes, seconds, reference, reasons):
    """The side-by-side counts and the tests a runtime misses where the reference
    passes; returns how many of those have no reason listed."""
    print(f"{'runtime':12} {'passed':>6} {'failed':>6} {'skipped':>7} {'time':>8}")
    for name, outcome in outcomes.items():
        c = counts(outcome)
        print(f"{name:12} {c['passed']:6} {c['failed']:6} {c['skipped']:7} {seconds[name]:7.0f}s")
    unexplained = 0
    for name, outcome in outcomes.items():
        if name == reference or reference not in outcomes:
            continue
        missed = [t for t, (v, _) in outcomes[reference].items() if v == "passed" and outcome.get(t, ("failed",))[0] != "passed"]
        print(f"\n{name}: {len(missed)} of the {counts(outcomes[reference])['passed']} tests {reference} passes are not passed")
        for test in missed:
            verdict, why = outcome.get(test, ("failed", "not run"))
            reason = reasons.get(test)
            unexplained += reason is None
            print(f"  {verdict:7} {test}" + (f"  -- intended: {reason}" if reason else f"  ({why})" if why else ""))
    return unexplained


def sweep_fake_trees(before):
    """Remove what the tests made beside the host's cgroup trees: update.bats
    (with runc too) writes under /sys/fs/cgroup/<controller> for controllers
    this kernel has not mounted (hugetlb, net_cls, ...), which makes them plain
    directories of the tmpfs there -- where podman's conmon, later, makes
    "cgroups" that hold ghost task ids and can never be removed."""
    for entry in set(os.listdir("/sys/fs/cgroup")) - before:
        path = os.path.join("/sys/fs/cgroup", entry)
        if os.path.isdir(path) and not os.path.ismount(path):
            shutil.rmtree(path, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", action="append", metavar="NAME=PATH",
                        help="a runtime to test (repeatable; default runc=/usr/sbin/runc and minirt's "
                             "minirt-runc when it exists); the first is the reference")
    parser.add_argument("--cache", default=CACHE, help="where the suite and the results are kept")
    parser.add_argument("files", nargs="*", metavar="FILE.bats", help="only these files of tests/integration")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("runc_suite: run as root (runc's integration tests need it)")
    runtimes = {}
    for spec in args.runtime or ["runc=/usr/sbin/runc"] + ([f"minirt={MINIRT_RUNC}"] if os.path.exists(MINIRT_RUNC) else []):
        name, sep, path = spec.partition("=")
        if not sep or not os.access(path, os.X_OK):
            sys.exit(f"runc_suite: --runtime {spec!r}: want NAME=PATH of an executable")
        runtimes[name] = os.path.abspath(path)
    if not args.runtime and "minirt" not in runtimes:
        print(f"runc_suite: {MINIRT_RUNC} does not exist yet: runc alone", file=sys.stderr)
    reasons = intended_skips()
    if not os.path.exists(IMAGE):
        sys.exit(f"runc_suite: {IMAGE} is missing: make images")

    os.makedirs(args.cache, exist_ok=True)
    install_tools()
    tree = fetch_suite(args.cache)
    integration = prepare(tree, busybox_rootfs_tar(args.cache))
    files = [os.path.join(integration, f) for f in args.files] or sorted(glob.glob(os.path.join(integration, "*.bats")))
    for f in files:
        if not os.path.exists(f):
            sys.exit(f"runc_suite: no such file in runc's tests/integration: {os.path.basename(f)}")

    outcomes, seconds = {}, {}
    trees = set(os.listdir("/sys/fs/cgroup"))
    for name, path in runtimes.items():
        print(f"runc_suite: {name} ({path})", file=sys.stderr)
        outcomes[name], seconds[name] = run_suite(integration, path, files, os.path.join(args.cache, "results", name))
        for cgroup in sweep_cgroups():
            print(f"runc_suite: after {name}, a cgroup with processes is left: {cgroup}", file=sys.stderr)
        sweep_fake_trees(trees)
    with open(os.path.join(args.cache, "results", "summary.json"), "w") as f:
        json.dump({name: {"seconds": seconds[name], "counts": counts(o), "tests": o} for name, o in outcomes.items()},
                  f, indent=1)
    print(f"runc's integration suite ({os.path.basename(tree)}, {len(files)} files), on {os.uname().release}")
    unexplained = report(outcomes, seconds, next(iter(runtimes)), reasons)
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
