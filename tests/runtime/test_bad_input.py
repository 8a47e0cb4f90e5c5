"""Bad command lines, as a user (or a script gone wrong) types them.

Each is refused the way the developers' guide asks: docker's exit code (125
when minirt refuses), exactly one line on stderr starting ``minirt: ``, no
traceback, and nothing changed in the state root.  Files named on the command
line are read with a bound, and a signal stops a minirt that waits for one.
"""

import os
import signal
import subprocess
import sys
import threading

import pytest

from minirt import cli

pytestmark = pytest.mark.privileged

IMG = "{image}"                # placeholders, filled in from the fixture
ROOT = "{root}"
WEB = "web"                    # a stopped container in the state root
LIVE = "live"                  # a running one
HUGE = str(2 ** 64)


def minirt(root, *args, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args], capture_output=True,
                          timeout=timeout, **kw)


def _tree(top):
    """Every name under ``top`` with its mode, and a file's size and modification
    time (not a directory's: something made and removed again changes it)."""
    found = {}
    for path, dirs, files in os.walk(top):
        for name in dirs + files:
            st = os.lstat(os.path.join(path, name))
            found[os.path.relpath(os.path.join(path, name), top)] = (
                (st.st_mode,) if name in dirs else (st.st_mode, st.st_size, st.st_mtime_ns))
    return found


class World:
    """A state root with the image's layers unpacked, a stopped container
    ``web`` and a running one ``live``; files that are no seccomp profiles."""

    def __init__(self, root, image, files):
        self.root, self.image, self.files = root, image, files

    def argv(self, args):
        return [a.format(image=self.image, root=self.root, **self.files) if isinstance(a, str) else a
                for a in args]


@pytest.fixture(scope="module")
def world(busybox_image, tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-input")
    root = str(base / "root")
    r = minirt(root, "run", "--name", WEB, "--network", "none", "-v", f"{WEB}data:/data", busybox_image, "true")
    assert r.returncode == 0, r.stderr
    r = minirt(root, "run", "-d", "--name", LIVE, "--network", "none", busybox_image, "sleep", "3600")
    assert r.returncode == 0, r.stderr
    r = minirt(root, "load", "-i", busybox_image)   # busybox:latest, which web and live run on
    assert r.returncode == 0, r.stderr
    files = {"dir": str(base), "big": str(base / "big.json"), "deep": str(base / "deep.json"),
             "notjson": str(base / "not.json"), "fifo": str(base / "fifo"), "notify": str(base / "notify.json")}
    with open(files["big"], "wb") as f:
        f.truncate(5 << 20)  # a sparse file, larger than a profile may be
    with open(files["deep"], "w") as f:
        f.write("[" * 100000 + "]" * 100000)
    with open(files["notjson"], "w") as f:
        f.write("{not json")
    with open(files["notify"], "w") as f:
        f.write('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}')
    os.mkfifo(files["fifo"])
    yield World(root, busybox_image, files)
    assert minirt(root, "rm", "-f", WEB, LIVE).returncode == 0
    minirt(root, "system", "prune", "-f")
    assert minirt(root, "volume", "rm", f"{WEB}data").returncode == 0


CASES = [
    # (argv, docker's exit code, what the line says)
    # -- commands and flags
    ([], 125, "a command is required"),
    (["frob"], 125, "unknown command 'frob'"),
    (["-x", "ps"], 125, "unknown flag: -x"),
    (["run", "--bogus", IMG], 125, "run: unknown flag: --bogus"),
    (["run", "-Z", IMG], 125, "run: unknown flag: -Z"),
    (["ps", "--bogus"], 125, "ps: unknown flag: --bogus"),
    (["ps", "extra"], 125, "ps: unexpected argument 'extra'"),
    (["ps", "--filter", "bogus=1"], 125, "invalid filter 'bogus=1' (ps filters: id, name, label"),
    (["ps", "--filter", "name"], 125, "invalid filter 'name'"),
    (["ps", "-f", "status=sleeping"], 125, "invalid filter 'status=sleeping': expected one of created,"),
    (["ps", "-f", "health=ok"], 125, "invalid filter 'health=ok': expected one of starting,"),
    (["ps", "-f", "exited=x"], 125, "invalid filter 'exited=x': expected an exit code"),
    (["network", "ls", "--bogus"], 125, "network ls: unknown flag: --bogus"),
    (["system", "prune", "--bogus"], 125, "system prune: unknown flag: --bogus"),
    (["system", "frob"], 125, "system: unknown action 'frob'"),
    (["network"], 125, "network: an action is required"),
    (["run", "--rm=maybe", IMG], 125, "run: flag --rm takes no value"),
    # -- missing values and arguments
    (["run"], 125, "run: IMAGE is required"),
    (["run", "-e"], 125, "run: flag -e needs a value"),
    (["run", "--name"], 125, "run: flag --name needs a value"),
    (["kill", "-s"], 125, "kill: flag -s needs a value"),
    (["load"], 125, "load: flag --input is required"),
    (["--root"], 125, "flag --root needs a value"),
    (["exec", WEB], 125, "exec: no command given"),
    (["rm"], 125, "rm: CONTAINER is required"),
    (["network", "create"], 125, "network create: NAME is required"),
    # -- sizes and numbers: bad units, negative, nan, inf, overflow
    (["run", "-m", "nan", IMG, "true"], 125, "invalid --memory 'nan'"),
    (["run", "-m", "inf", IMG, "true"], 125, "invalid --memory 'inf'"),
    (["run", "-m", "1e400", IMG, "true"], 125, "invalid --memory '1e400'"),
    (["run", "-m", "99999999999999999999g", IMG, "true"], 125, "invalid --memory"),
    (["run", "-m", "12q", IMG, "true"], 125, "invalid --memory '12q'"),
    (["run", "-m", "-5m", IMG, "true"], 125, "must not be negative"),
    (["run", "-m", "1m", IMG, "true"], 125, "the minimum allowed is 6m"),
    (["run", "-m", "64m", "--memory-swap", "nan", IMG, "true"], 125, "invalid --memory-swap 'nan'"),
    (["run", "-m", "64m", "--memory-swap", "1m", IMG, "true"], 125, "must be at least --memory"),
    (["run", "--memory-swap", "1g", IMG, "true"], 125, "--memory-swap needs --memory"),
    (["run", "--cpus", "nan", IMG, "true"], 125, "invalid --cpus 'nan'"),
    (["run", "--cpus", "1e400", IMG, "true"], 125, "invalid --cpus '1e400'"),
    (["run", "--cpus", "-1", IMG, "true"], 125, "invalid --cpus '-1'"),
    (["run", "-c", "1e400", IMG, "true"], 125, "invalid --cpu-shares '1e400'"),
    (["run", "-c", HUGE, IMG, "true"], 125, "invalid --cpu-shares"),
    (["run", "--pids-limit", "1e400", IMG, "true"], 125, "invalid --pids-limit '1e400'"),
    (["run", "--pids-limit", HUGE, IMG, "true"], 125, "invalid --pids-limit"),
    (["run", "--cpuset-cpus", "5-1", IMG, "true"], 125, "invalid --cpuset-cpus '5-1'"),
    (["run", "--cpuset-cpus", "4096", IMG, "true"], 125, "invalid --cpuset-cpus '4096'"),
    (["run", "--cpuset-cpus", ",", IMG, "true"], 125, "invalid --cpuset-cpus ','"),
    (["stop", "-t", "nan", WEB], 125, "stop: flag -t: not a number: 'nan'"),
    (["stop", "-t", "1e400", WEB], 125, "stop: flag -t: not a number: '1e400'"),
    (["logs", "--tail", "-1", WEB], 125, "invalid --tail '-1'"),
    (["logs", "--tail", "²", WEB], 125, "invalid --tail '²'"),
    (["logs", "--tail", HUGE + HUGE, WEB], 125, "invalid --tail"),
    # -- healthchecks and restart policies (docker's words)
    (["run", "--health-interval", "5x", IMG, "true"], 125, "invalid --health-interval '5x': not a duration"),
    (["run", "--health-interval", "nan", IMG, "true"], 125, "invalid --health-interval 'nan'"),
    (["run", "--health-interval", "30", IMG, "true"], 125, "invalid --health-interval '30'"),
    (["run", "--health-timeout", "1.2.3s", IMG, "true"], 125, "invalid --health-timeout '1.2.3s'"),
    (["run", "--health-timeout", "-1s", IMG, "true"], 125, "--health-timeout cannot be negative"),
    (["run", "--health-start-period", HUGE + "h", IMG, "true"], 125, "invalid --health-start-period"),
    (["run", "--health-start-period", "-5m", IMG, "true"], 125, "--health-start-period cannot be negative"),
    (["run", "--health-start-interval", "", IMG, "true"], 125, "invalid --health-start-interval ''"),
    (["run", "--health-cmd", "true", "--health-interval", "500us", IMG, "true"], 125,
     "Interval in Healthcheck cannot be less than 1ms"),
    (["run", "--health-retries", "-1", IMG, "true"], 125, "--health-retries cannot be negative"),
    (["run", "--health-retries", "x", IMG, "true"], 125, "invalid --health-retries 'x'"),
    (["run", "--health-retries", "1²", IMG, "true"], 125, "invalid --health-retries '1²'"),
    (["run", "--health-retries", HUGE, IMG, "true"], 125, "invalid --health-retries"),
    (["run", "--no-healthcheck", "--health-cmd", "true", IMG, "true"], 125,
     "--no-healthcheck conflicts with --health-* options"),
    (["run", "-d", "--restart", "sometimes", IMG, "true"], 125, "invalid restart policy: unknown policy 'sometimes'"),
    (["run", "-d", "--restart", "on-failure:x", IMG, "true"], 125, "maximum retry count must be an integer"),
    (["run", "-d", "--restart", "on-failure:3x", IMG, "true"], 125, "maximum retry count must be an integer"),
    (["run", "-d", "--restart", "on-failure:", IMG, "true"], 125, "maximum retry count must be an integer"),
    (["run", "-d", "--restart", "on-failure:" + HUGE, IMG, "true"], 125, "maximum retry count must be an integer"),
    (["run", "-d", "--restart", "on-failure:-1", IMG, "true"], 125, "maximum retry count cannot be negative"),
    (["run", "-d", "--restart", "always:3", IMG, "true"], 125, "can only be used with 'on-failure'"),
    (["run", "-d", "--restart", ":3", IMG, "true"], 125, "no policy provided before colon"),
    (["run", "-d", "--rm", "--restart", "always", IMG, "true"], 125,
     "conflicting options: cannot specify both --restart and --rm"),
    (["run", "--restart", "on-failure", IMG, "true"], 125, "a restart policy needs a detached container (run -d"),
    (["start"], 125, "start: CONTAINER is required (or --all-restartable)"),
    (["start", "--all-restartable", WEB], 125, "start: --all-restartable takes no CONTAINER"),
    # -- ports
    (["run", "-p", "1²:80", IMG, "true"], 125, "invalid port '1²:80'"),
    (["run", "-p", HUGE + ":80", IMG, "true"], 125, "invalid port"),
    (["run", "-p", "80:0", IMG, "true"], 125, "invalid port '80:0'"),
    (["run", "-p", "80:", IMG, "true"], 125, "invalid port '80:'"),
    (["run", "-p", "80:80/sctp", IMG, "true"], 125, "protocol must be tcp or udp"),
    (["run", "-p", "1.2.3.4.5:80:80", IMG, "true"], 125, "is not an IPv4 address"),
    (["run", "-p", "8080:80", "--network", "none", IMG, "true"], 125, "need a bridge network"),
    # -- mounts
    (["run", "-v", "nope", IMG, "true"], 125, "invalid volume 'nope'"),
    (["run", "-v", "rel/ative:/x", IMG, "true"], 125, "If you intended to pass a host directory, use absolute path"),
    (["run", "-v", "a:/x", IMG, "true"], 125, "'a' includes invalid characters for a local volume name"),
    (["run", "-v", "data:rel", IMG, "true"], 125, "destination must be an absolute path"),
    (["run", "-v", "data:/x:zz", IMG, "true"], 125, "mode must be ro or rw"),
    (["run", "-v", "/:rel", IMG, "true"], 125, "destination must be an absolute path"),
    (["run", "-v", "/:/x:zz", IMG, "true"], 125, "mode must be ro or rw"),
    (["run", "-v", "/nonexistent-minirt:/x", IMG, "true"], 125, "no such file or directory"),
    (["run", "--tmpfs", "relative", IMG, "true"], 125, "invalid --tmpfs"),
    (["run", "-w", "relative", IMG, "true"], 125, "invalid working directory"),
    # -- volumes
    (["volume"], 125, "volume: an action is required"),
    (["volume", "frob"], 125, "volume: unknown action 'frob'"),
    (["volume", "create", "a"], 125, "'a' includes invalid characters for a local volume name"),
    (["volume", "create", "../x"], 125, "invalid characters for a local volume name"),
    (["volume", "create", "x" * 129], 125, "invalid characters for a local volume name"),
    (["volume", "create", "vol", "other"], 125, "volume create: unexpected argument 'other'"),
    (["volume", "create", "-d", "nfs", "vol"], 125, 'create vol: error looking up volume plugin nfs: plugin "nfs"'),
    (["volume", "create", "--label", "=x", "vol"], 125, "invalid label '=x'"),
    (["volume", "create", "--bogus"], 125, "volume create: unknown flag: --bogus"),
    (["volume", "inspect"], 125, "volume inspect: VOLUME is required"),
    (["volume", "inspect", "nope"], 1, "get nope: no such volume"),
    (["volume", "rm"], 125, "volume rm: VOLUME is required"),
    (["volume", "rm", "nope"], 1, "No such volume: nope"),
    (["volume", "rm", "../containers"], 1, "no such volume"),
    (["volume", "rm", WEB + "data"], 1, "remove webdata: volume is in use - ["),
    (["volume", "rm", "-f", WEB + "data"], 1, "remove webdata: volume is in use - ["),
    (["volume", "ls", "--filter", "bogus=1"], 125, "invalid filter 'bogus=1'"),
    (["volume", "ls", "--filter", "dangling"], 125, "invalid filter 'dangling'"),
    (["volume", "ls", "--filter", "dangling=maybe"], 125, "invalid filter 'dangling=maybe'"),
    (["volume", "prune", "extra"], 125, "volume prune: unexpected argument 'extra'"),
    # -- users, names, hosts, networks, cgroups
    (["run", "-u", ":", IMG, "true"], 125, "invalid --user ':'"),
    (["run", "-u", "1000:", IMG, "true"], 125, "invalid --user '1000:'"),
    (["run", "-u", "a:b:c", IMG, "true"], 125, "invalid --user"),
    (["run", "-u", "4294967295", IMG, "true"], 125, "invalid --user"),
    (["run", "-u", HUGE, IMG, "true"], 125, "invalid --user"),
    (["run", "-u", b"\xff", IMG, "true"], 125, "invalid --user"),
    (["run", "--group-add", HUGE, IMG, "true"], 125, "invalid --group-add"),
    (["run", "--name", "a" * 300, IMG, "true"], 125, "invalid container name"),
    (["run", "--name", "a/b", IMG, "true"], 125, "invalid container name 'a/b'"),
    (["run", "--name", "a\nb", IMG, "true"], 125, "invalid container name 'a\\nb'"),
    (["run", "--name", ".x", IMG, "true"], 125, "invalid container name '.x'"),
    (["run", "--name", b"\xff", IMG, "true"], 125, "invalid container name"),
    (["run", "--name", WEB, IMG, "true"], 125, 'the container name "web" is already in use'),
    (["run", "-h", "a\nb", IMG, "true"], 125, "invalid hostname"),
    (["run", "-h", "x" * 65, IMG, "true"], 125, "invalid hostname"),
    (["run", "--label", "=x", IMG, "true"], 125, "invalid label '=x'"),
    (["run", "--network-alias", "a b", IMG, "true"], 125, "invalid hostname 'a b'"),
    (["run", "--network", "a b", IMG, "true"], 125, "invalid --network 'a b'"),
    (["run", "--network", "container:", IMG, "true"], 125, "invalid --network"),
    (["run", "--network", "no-such-net", IMG, "true"], 125, "network no-such-net not found"),
    (["run", "--network", "container:nosuch", IMG, "true"], 125, "no such container: nosuch"),
    (["run", "--cgroup-parent", "../..", IMG, "true"], 125, "invalid --cgroup-parent '../..'"),
    (["run", "--cgroup-parent", "a/../../b", IMG, "true"], 125, "invalid --cgroup-parent"),
    (["run", "-e", "=x", IMG, "true"], 125, "invalid environment variable '=x'"),
    (["run", "--cap-add", "CAP_BOGUS", IMG, "true"], 125, "CAP_BOGUS"),
    (["run", "--cap-drop", "bogus", IMG, "true"], 125, "unknown capability: \"bogus\""),
    (["run", "--tmpfs", "", IMG, "true"], 125, "invalid --tmpfs"),
    (["run", "-v", "", IMG, "true"], 125, "invalid volume"),
    (["run", "-v", ":", IMG, "true"], 125, "invalid volume"),
    (["run", "-e", "", IMG, "true"], 125, "invalid environment variable"),
    (["run", "--userns", "frob", IMG, "true"], 125, "--userns"),
    # -- images
    (["run", "", "true"], 125, "no such image file or loaded image"),
    (["run", "no-such-image.tar", "true"], 125, "no-such-image.tar: no such image file"),
    (["run", b"\xff", "true"], 125, "no such image"),
    (["run", "{notjson}", "true"], 125, "not.json"),
    (["run", "{dir}", "true"], 125, ""),
    (["rmi", "no-such-image"], 1, "no-such-image"),
    (["rmi", ""], 1, ""),
    (["load", "-i", "/nonexistent.tar"], 125, "/nonexistent.tar"),
    (["load", "-i", "/dev/zero"], 125, "/dev/zero: not an image"),
    (["load", "-i", "{notjson}"], 125, "not.json"),
    (["images", "extra"], 125, "images: unexpected argument 'extra'"),
    (["images", "--format", "{{{{.Nope}}}}"], 125, "template: no field 'Nope'"),   # ({{ for str.format)
    (["images", "--format", "{{{{range .}}}}"], 125, "template: unsupported action {{{{range .}}}}"),
    (["images", "--format", "{{{{.ID"], 125, "template: unsupported action"),
    (["info", "--format", "{{{{.Nope}}}}"], 125, "template: no field 'Nope'"),
    (["image"], 125, "image: an action is required"),
    (["image", "frob"], 125, "image: unknown action 'frob'"),
    (["image", "prune", "extra"], 125, "image prune: unexpected argument 'extra'"),
    (["container", "ls", "--bogus"], 125, "container ls: unknown flag: --bogus"),
    (["container", "run"], 125, "container run: IMAGE is required"),
    (["image", "rm", "busybox"], 1, 'conflict: unable to remove repository reference "busybox:latest" (must force)'
                                    " - container "),
    (["rmi", "-f", "busybox"], 1, "(cannot be forced) - image is being used by running container"),
    (["image", "inspect", "nope"], 1, "no such image: nope"),
    (["image", "history", "nope"], 125, "no such image: nope"),
    (["image", "history"], 125, "image history: IMAGE is required"),
    (["tag", "nope", "x"], 125, "no such image: nope"),
    (["tag", "busybox"], 125, "tag: TARGET_IMAGE is required"),
    (["tag", "busybox", "Busybox:x"], 125, "invalid reference format: repository name (library/Busybox) must"
                                          " be lowercase"),
    (["tag", "busybox", "a:b:c"], 125, "invalid reference format"),
    (["tag", "busybox", "x:-bad"], 125, "bad tag '-bad'"),
    (["tag", "busybox", "x@sha256:" + "0" * 64], 125, "a tag cannot name a digest"),
    (["tag", "busybox", "bad host!/x"], 125, "invalid reference format"),
    (["tag", "busybox", ""], 125, "invalid reference format"),
    (["load", "-i", IMG, "-t", "Up:per"], 125, "invalid reference format: repository name (library/Up) must"
                                                " be lowercase"),
    (["save"], 125, "save: IMAGE is required"),
    (["save", "-o", "{dir}", "busybox"], 125, "{dir}: is a directory"),
    (["save", "-o", "/nonexistent/x.tar", "busybox"], 125, "/nonexistent/x.tar: cannot write"),
    (["save", "-o", "/dev/null", "busybox"], 125, "/dev/null: not a regular file"),
    (["save", "--format", "tar", "-o", "{dir}/x.tar", "busybox"], 125, "invalid --format 'tar'"),
    (["save", "-o", "{dir}/x.tar", "nope"], 125, "no such image: nope"),
    # -- seccomp profiles: no device, directory, huge, endless or malformed file is read
    (["run", "--security-opt", "foo", IMG, "true"], 125, "invalid --security-opt 'foo'"),
    (["run", "--security-opt", "seccomp=", IMG, "true"], 125, "invalid --security-opt"),
    (["run", "--security-opt", "no-new-privileges=maybe", IMG, "true"], 125, "invalid --security-opt"),
    (["run", "--security-opt", "seccomp=/dev/zero", IMG, "true"], 125,
     "/dev/zero: cannot read seccomp profile: not a regular file"),
    (["run", "--security-opt", "seccomp=/dev/tty", IMG, "true"], 125, "cannot read seccomp profile"),
    (["run", "--security-opt", "seccomp={dir}", IMG, "true"], 125, "cannot read seccomp profile"),
    (["run", "--security-opt", "seccomp={big}", IMG, "true"], 125, "cannot read seccomp profile: larger than 4 MiB"),
    (["run", "--security-opt", "seccomp={deep}", IMG, "true"], 125, "invalid seccomp profile: nested too deeply"),
    (["run", "--security-opt", "seccomp={notjson}", IMG, "true"], 125, "invalid seccomp profile"),
    (["run", "--security-opt", "seccomp={notify}", IMG, "true"], 125,
     "syscalls[0]: SCMP_ACT_NOTIFY needs a seccomp agent"),
    (["run", "--security-opt", "seccomp=/nonexistent", IMG, "true"], 125,
     "/nonexistent: cannot read seccomp profile: No such file or directory"),
    # -- containers and signals
    (["rm", ""], 1, "no container given"),
    (["rm", "nosuch"], 1, "no such container: nosuch"),
    (["rm", b"\xff"], 1, "no such container"),
    (["inspect", "nosuch"], 1, "no such container: nosuch"),
    (["wait", "nosuch"], 1, "no such container: nosuch"),
    (["start", "nosuch"], 1, "no such container: nosuch"),
    (["logs", "nosuch"], 125, "no such container: nosuch"),
    (["exec", "nosuch", "true"], 125, "no such container: nosuch"),
    (["exec", WEB, "true"], 125, "is not running"),
    (["exec", "-u", "4294967295", LIVE, "true"], 125, "invalid --user '4294967295'"),  # setuid(-1): root
    (["exec", "-u", HUGE, LIVE, "true"], 125, "invalid --user"),
    (["exec", "-u", "1²", LIVE, "true"], 125, "invalid --user '1²'"),
    (["exec", "-u", ":", LIVE, "true"], 125, "invalid --user ':'"),
    (["exec", "-w", "rel", LIVE, "true"], 125, "invalid working directory 'rel'"),
    (["exec", "-e", "=x", LIVE, "true"], 125, "invalid environment variable '=x'"),
    (["kill", "-s", "99", LIVE], 125, "invalid signal '99'"),
    (["kill", WEB], 1, "is not running"),
    (["kill", "-s", "99", WEB], 125, "invalid signal '99'"),
    (["kill", "-s", "4294967305", WEB], 125, "invalid signal '4294967305'"),  # 2^32 + 9: not SIGKILL
    (["kill", "-s", "0", WEB], 125, "invalid signal '0'"),
    (["kill", "-s", "-9", WEB], 125, "invalid signal '-9'"),
    (["kill", "-s", "FOO", WEB], 125, "invalid signal 'FOO'"),
    (["kill", "-s", "SIGRTMIN+99", WEB], 125, "invalid signal 'SIGRTMIN+99'"),
    (["kill", "-s", HUGE, WEB], 125, "invalid signal"),
    (["kill", "-s", "", WEB], 125, "invalid signal ''"),
    # -- networks
    (["network", "create", "a b"], 125, "a b"),
    (["network", "create", "--subnet", "nan", "net-x"], 125, "nan"),
    (["network", "create", "--subnet", "10.0.0.0/99", "net-x"], 125, "10.0.0.0/99"),
    (["network", "create", "--subnet", "300.1.1.1/24", "net-x"], 125, "300.1.1.1/24"),
    (["network", "rm", "nosuch"], 125, "nosuch"),
    (["network", "rm", "none"], 125, "none"),
    (["network", "create", "bridge"], 125, "bridge"),
    (["network", "create", "n" * 65], 125, "n" * 65),
]


def _case_id(case):
    return " ".join(a if isinstance(a, str) else repr(a) for a in case[0])[:60] or "(none)"


@pytest.mark.parametrize("args, code, says", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_command_line(world, args, code, says):
    before = _tree(world.root)
    r = minirt(world.root, *world.argv(args))
    err = r.stderr.decode(errors="backslashreplace")
    assert (r.returncode, "Traceback" in err) == (code, False), err
    assert err.startswith("minirt: ") and err.count("\n") == 1, err
    assert world.argv([says])[0] in err
    assert _tree(world.root) == before


def _endless_writer(path):
    """Write to the FIFO ``path`` until its reader goes away."""
    def write():
        try:
            with open(path, "wb") as f:
                while True:
                    f.write(b" " * 65536)
        except BrokenPipeError:
            pass

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def test_a_profile_from_an_endless_fifo_is_read_to_its_bound_only(world):
    before = _tree(world.root)
    writer = _endless_writer(world.files["fifo"])
    r = minirt(world.root, "run", "--security-opt", "seccomp=" + world.files["fifo"], world.image, "true")
    writer.join(60)
    assert (r.returncode, r.stderr.decode()) == (125, f"minirt: {world.files['fifo']}: cannot read seccomp"
                                                      " profile: larger than 4 MiB\n")
    assert _tree(world.root) == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_stops_minirt_while_it_waits_for_a_profile(world, signum):
    """A FIFO's writer that never writes: minirt waits, as cat would; a signal
    stops it with 128+N, and what it had made is gone."""
    before = _tree(world.root)
    p = subprocess.Popen([sys.executable, "-m", "minirt", "--root", world.root, "run", "--network", "none",
                          "--security-opt", "seccomp=" + world.files["fifo"], world.image, "true"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        writer = _open_writer_once_read(world.files["fifo"], p)
        try:
            p.send_signal(signum)
            _, err = p.communicate(timeout=60)
        finally:
            os.close(writer)
    finally:
        p.kill()
        p.wait()
    assert (p.returncode, err.decode()) == (128 + signum, f"minirt: stopped by signal {signum} before the"
                                                            " container started\n")
    assert _tree(world.root) == before


def _open_writer_once_read(path, process):
    """Our end of the FIFO, opened once ``process`` has opened it for reading
    (before that, a non-blocking open for writing fails with ENXIO)."""
    while process.poll() is None:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            os.sched_yield()
    raise AssertionError(f"minirt exited with {process.returncode} before it opened the FIFO")


def test_nul_bytes_in_arguments_are_one_line(capsys):
    # execve cannot pass a NUL byte: only a Python caller of the CLI can.
    for argv in (["run", "--name", "a\0b", "img"], ["rm", "a\0b"], ["run", "img", "echo", "\0"]):
        assert cli.main(argv) == 125
        err = capsys.readouterr().err
        assert err == "minirt: an argument contains a NUL byte\n"


def test_a_state_root_with_an_overlong_name_still_works(busybox_image, tmp_path):
    """Containers an older minirt made with a 300-character name (it could):
    ps, rm -f and system prune still work, for them and for the others."""
    root = str(tmp_path / "root")

    def container(name, recorded_name):
        cid = minirt(root, "run", "-d", "--network", "none", "--name", name, busybox_image, "true").stdout
        config = os.path.join(root, "containers", cid.decode().strip(), "config.json")
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace(f'"{name}"', f'"{recorded_name}"'))
        return cid.decode().strip()

    poisoned, other = container("poisoned", "a" * 300), container("other", "other")
    assert minirt(root, "wait", poisoned, other).returncode == 0
    r = minirt(root, "ps", "-a")
    assert r.returncode == 0 and r.stdout.count(b"\n") == 3, r.stderr
    r = minirt(root, "rm", "-f", poisoned)
    assert (r.returncode, r.stderr) == (0, b"")
    assert minirt(root, "wait", container("third", "b" * 300)).returncode == 0
    r = minirt(root, "system", "prune", "-f")
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert r.stdout.count(b"Deleted container") == 2
    assert os.listdir(os.path.join(root, "containers")) == []


def test_kill_sends_only_the_signal_named(world):
    """2^32 + 9 once reached the kernel as 9 (SIGKILL); RTMIN+N is docker's spelling."""
    from signal import SIGRTMIN
    loop = f"trap 'exit 3' {SIGRTMIN + 1}; while :; do sleep 0.05; done"  # PID 1 gets only what it traps
    cid = minirt(world.root, "run", "-d", "--network", "none", world.image, "sh", "-c", loop).stdout.decode().strip()
    try:
        r = minirt(world.root, "kill", "-s", str(2 ** 32 + 9), cid)
        assert (r.returncode, r.stderr.count(b"\n")) == (125, 1)
        assert cid[:12] in minirt(world.root, "ps", "-q").stdout.decode().split()
        assert minirt(world.root, "kill", "-s", "rtmin+1", cid).returncode == 0
        assert minirt(world.root, "wait", cid).stdout == b"3\n"
    finally:
        minirt(world.root, "rm", "-f", cid)
