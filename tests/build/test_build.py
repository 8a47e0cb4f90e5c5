"""minirt build, end to end: the tutorial's app (built, run, served through a
published port), the rebuild that hits the cache, multi-stage builds, --target,
build args, USER and WORKDIR, reproducible digests, .dockerignore, and every
failure named by its step or line."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.privileged

APP = """\
FROM busybox AS base
ARG GREETING=hello
ENV APP_HOME=/srv
WORKDIR $APP_HOME
RUN echo "$GREETING, built" > /greeting && echo "web:x:1234:1234::/srv:/bin/sh" >> /etc/passwd
COPY site/ ./www/
EXPOSE 8080
USER web
CMD ["httpd", "-f", "-p", "8080", "-h", "/srv/www"]
"""


@pytest.fixture
def minirt(tmp_path, busybox_image):
    """``minirt ARGS`` against a state root of its own holding busybox."""
    root = str(tmp_path / "root")

    def call(*args, input=None, env=None):
        return subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args], capture_output=True,
                              text=True, input=input, timeout=300, env={**os.environ, **(env or {})})
    assert call("load", "-i", busybox_image, "-t", "busybox").returncode == 0
    yield call
    call("system", "prune")


def ok(r):
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r


def context(path, dockerfile, **files):
    path.mkdir(exist_ok=True)
    (path / "Dockerfile").write_text(dockerfile)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    return str(path)


def steps(stderr, word):
    """The instructions (as printed) whose step ended with ``word`` (CACHED or DONE)."""
    lines = stderr.splitlines()
    titles = {line.split(" ", 1)[0]: line.split("] ", 1)[1] for line in lines if "] " in line}
    return [titles[line.split(" ", 1)[0]] for line in lines
            if line.split(" ")[1:2] == [word] and line.split(" ", 1)[0] in titles]


def test_the_tutorial_app_builds_runs_and_serves(minirt, tmp_path):
    ctx = context(tmp_path / "app", APP, **{"site/index.html": "<h1>hello</h1>\n"})
    r = ok(minirt("build", "-t", "getting-started", ctx))
    assert "naming to getting-started:latest done" in r.stderr
    assert "getting-started" in ok(minirt("image", "ls")).stdout
    out = ok(minirt("run", "--rm", "getting-started", "sh", "-c", "id -u; pwd; cat /greeting; echo $APP_HOME"))
    assert out.stdout.split("\n") == ["1234", "/srv", "hello, built", "/srv", ""]
    port = free_port()
    started = ok(minirt("run", "-d", "-p", f"127.0.0.1:{port}:8080", "getting-started"))
    try:
        assert http_get(port).endswith(b"<h1>hello</h1>\n")
    finally:
        minirt("rm", "-f", started.stdout.strip())


def test_a_rebuild_after_a_source_change_reuses_the_earlier_steps(minirt, tmp_path):
    dockerfile = "FROM busybox\nRUN echo deps > /deps\nCOPY src/ /app/src/\nRUN cat /app/src/main.txt > /app/out\n"
    ctx = context(tmp_path / "app", dockerfile, **{"src/main.txt": "v1\n", "README": "x"})
    first = ok(minirt("build", "-t", "app", ctx))
    assert steps(first.stderr, "CACHED") == []
    image = json.loads(ok(minirt("image", "inspect", "app")).stdout)[0]["Id"]
    time.sleep(1.1)  # (the image's times are seconds)
    again = ok(minirt("build", "-t", "app", ctx))
    assert len(steps(again.stderr, "CACHED")) == 3
    assert json.loads(ok(minirt("image", "inspect", "app")).stdout)[0]["Id"] == image  # the same image, as BuildKit's
    os.utime(os.path.join(ctx, "src", "main.txt"))  # a new mtime alone changes nothing
    assert len(steps(ok(minirt("build", "-t", "app", ctx)).stderr, "CACHED")) == 3
    (tmp_path / "app" / "src" / "main.txt").write_text("v2\n")
    edited = ok(minirt("build", "-t", "app", ctx))
    assert steps(edited.stderr, "CACHED") == ["RUN echo deps > /deps"]
    assert steps(edited.stderr, "DONE") == ["COPY src/ /app/src/", "RUN cat /app/src/main.txt > /app/out"]
    assert ok(minirt("run", "--rm", "app", "cat", "/app/out")).stdout == "v2\n"
    assert steps(ok(minirt("build", "--no-cache", "-t", "app", ctx)).stderr, "CACHED") == []


def test_multi_stage_copies_only_the_artifact_and_target_stops_early(minirt, tmp_path):
    dockerfile = """\
FROM busybox AS build
RUN mkdir /src && for i in 1 2 3; do head -c 100000 /dev/urandom > /src/junk$i; done
RUN echo artifact > /out
FROM busybox AS unused
RUN exit 1
FROM busybox
COPY --from=build /out /app/out
"""
    ctx = context(tmp_path / "multi", dockerfile)
    r = ok(minirt("build", "-t", "small", ctx))
    assert "RUN exit 1" not in r.stderr  # a stage the target does not need is never built
    assert ok(minirt("run", "--rm", "small", "sh", "-c", "cat /app/out; ls /src 2>&1; true")).stdout.startswith(
        "artifact\nls: /src: No such file")
    history = ok(minirt("image", "history", "small")).stdout
    assert "junk" not in history and "COPY --from=build /out /app/out" in history
    ok(minirt("build", "--target", "build", "-t", "builder", ctx))
    assert ok(minirt("run", "--rm", "builder", "ls", "/src")).stdout.split() == ["junk1", "junk2", "junk3"]


def test_build_args_reach_run_and_not_the_image(minirt, tmp_path):
    dockerfile = "ARG BASE=busybox\nFROM --platform=$BUILDPLATFORM $BASE\nARG WHO=nobody\nARG UNSET\nRUN echo \"$WHO\" > /who\n"
    ctx = context(tmp_path / "args", dockerfile)
    ok(minirt("build", "--build-arg", "WHO=alice", "-t", "a", ctx))
    out = ok(minirt("run", "--rm", "a", "sh", "-c", "cat /who; echo \"[$WHO]\""))
    assert out.stdout == "alice\n[]\n"
    ok(minirt("build", "-t", "b", ctx))
    assert ok(minirt("run", "--rm", "b", "cat", "/who")).stdout == "nobody\n"


def test_source_date_epoch_makes_the_digest_reproducible(minirt, tmp_path):
    dockerfile = "FROM busybox\nCOPY . /ctx/\nRUN echo built > /built && touch /stamp\nCMD [\"cat\", \"/built\"]\n"
    ctx = context(tmp_path / "repro", dockerfile, data="same bytes\n")
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    first = ok(minirt("build", "-q", "--no-cache", ctx, env=env)).stdout.strip()
    time.sleep(1.1)
    os.utime(os.path.join(ctx, "data"))
    second = ok(minirt("build", "-q", "--no-cache", ctx, env=env)).stdout.strip()
    assert first == second and first.startswith("sha256:")
    third = ok(minirt("build", "-q", "--no-cache", ctx)).stdout.strip()
    assert third != first


def test_dockerignore_keeps_files_out(minirt, tmp_path):
    ctx = context(tmp_path / "ign", "FROM busybox\nCOPY . /ctx/\n", **{
        ".dockerignore": "secret*\n**/*.log\n!keep.log\n", "secret.txt": "x", "app.txt": "a",
        "sub/debug.log": "l", "keep.log": "k"})
    ok(minirt("build", "-t", "ign", ctx))
    listed = ok(minirt("run", "--rm", "ign", "find", "/ctx", "-type", "f")).stdout.split()
    assert sorted(listed) == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/app.txt", "/ctx/keep.log"]


def test_a_failing_run_names_the_step_the_command_and_the_code(minirt, tmp_path):
    ctx = context(tmp_path / "fail", "FROM busybox\n\nRUN echo about to fail && exit 3\nRUN true\n")
    r = minirt("build", "-t", "broken", ctx)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1] == "minirt: Dockerfile:3: RUN /bin/sh -c echo about to fail && exit 3: exit code 3"
    assert "about to fail" in r.stderr
    assert "broken" not in ok(minirt("image", "ls")).stdout


@pytest.mark.parametrize("dockerfile, message", [
    ("FROM busybox\nRUN true\nFROB x\n", "Dockerfile:3: unknown instruction: FROB"),
    ("FROM busybox\nCOPY missing.txt /x\n", "Dockerfile:2: missing.txt: no such file or directory"),
    ("FROM busybox\nCOPY a b /dest\n", "Dockerfile:2: COPY with more than one source needs a destination"),
    ("FROM busybox\nCOPY --chown=ghost a /a\n", "Dockerfile:2: --chown=ghost: no user 'ghost'"),
    ("FROM nosuch.invalid:5000/x\n", "Dockerfile:1: FROM nosuch.invalid:5000/x:"),
    ("FROM busybox\nSHELL /bin/bash -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
    ("FROM busybox\nEXPOSE 80/xyz\n", "Dockerfile:2: invalid port '80/xyz'"),
    ("FROM --platform=linux/arm64 busybox\n", "Dockerfile:1: FROM --platform=linux/arm64 busybox: the image is linux/amd64"),
    ("FROM --platform=linux busybox\n", "Dockerfile:1: invalid platform 'linux'"),
])
def test_broken_dockerfiles_are_one_line_with_the_line(minirt, tmp_path, dockerfile, message):
    ctx = context(tmp_path / "bad", dockerfile, a="a", b="b")
    r = minirt("build", "-t", "bad", ctx)
    assert r.returncode == 125 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1].startswith(f"minirt: {message}"), r.stderr
    assert "bad" not in ok(minirt("image", "ls")).stdout


@pytest.mark.parametrize("args, message", [
    (["build", "/nonexistent"], "unable to prepare context: /nonexistent: not a directory"),
    (["build", "--progress", "fancy", "."], "invalid --progress 'fancy'"),
    (["build", "-t", "Bad:Name", "."], "invalid reference format"),
    (["build", "--build-arg", "=x", "."], "invalid --build-arg '=x'"),
    (["build", "-f", "/nonexistent/Dockerfile", "."], "unable to read the Dockerfile: /nonexistent/Dockerfile"),
    (["build", "--target", "nope", "CTX"], "target stage 'nope' could not be found"),
])
def test_bad_command_lines_change_nothing(minirt, tmp_path, args, message):
    ctx = context(tmp_path / "ctx", "FROM busybox\n")
    r = minirt(*[ctx if a == "CTX" else a for a in args])
    assert r.returncode == 125 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert len(ok(minirt("image", "ls", "-q")).stdout.split()) == 1  # busybox alone


def test_a_context_tar_on_stdin_and_a_dockerfile_s_own_ignore_file(minirt, tmp_path):
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, text in [("build/Custom", "FROM busybox\nCOPY . /ctx/\n"), ("app.txt", "app\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    r = subprocess.run([sys.executable, "-m", "minirt", "--root", str(tmp_path / "root"), "build", "-f",
                        "build/Custom", "-t", "from-tar", "--build-arg", "NOT_USED=1", "-"],
                       input=data.getvalue(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert b"[Warning] One or more build-args ['NOT_USED'] were not consumed" in r.stderr
    listed = ok(minirt("run", "--rm", "from-tar", "find", "/ctx", "-type", "f")).stdout.split()
    assert sorted(listed) == ["/ctx/app.txt", "/ctx/build/Custom"]
    ctx = context(tmp_path / "own", "FROM busybox\nCOPY . /ctx/\n", **{
        ".dockerignore": "a.txt\n", "Dockerfile.dockerignore": "b.txt\n", "a.txt": "a", "b.txt": "b"})
    ok(minirt("build", "-t", "own", ctx))
    listed = ok(minirt("run", "--rm", "own", "find", "/ctx", "-type", "f")).stdout.split()
    assert sorted(listed) == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/Dockerfile.dockerignore", "/ctx/a.txt"]


def test_a_dockerfile_from_stdin_and_the_iidfile(minirt, tmp_path):
    iid = tmp_path / "iid"
    r = ok(minirt("build", "-q", "--iidfile", str(iid), "-", input="FROM busybox\nLABEL a=b\n"))
    assert iid.read_text() == r.stdout.strip()
    inspect = ok(minirt("image", "inspect", r.stdout.strip())).stdout
    assert '"a": "b"' in inspect


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/"):
    """The whole answer to ``GET path`` on 127.0.0.1:port, once the server answers (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                if data:
                    return data
        except OSError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            return b""
        time.sleep(0.1)


def test_add_unpacks_local_archives_and_fetches_urls(minirt, tmp_path):
    import http.server
    import io
    import tarfile
    import threading

    ctx = tmp_path / "add"
    ctx.mkdir()
    for name, mode in [("a.tar", "w"), ("b.tar.gz", "w:gz"), ("c.tar.bz2", "w:bz2"), ("d.tar.xz", "w:xz")]:
        with tarfile.open(ctx / name, mode) as tar:
            info = tarfile.TarInfo(f"{name}.d/file")
            info.uid, info.gid, info.size = 42, 43, 3
            tar.addfile(info, io.BytesIO(b"in\n"))
    (ctx / "plain.txt").write_text("not an archive\n")
    served = b"from the server\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/files/data.bin" else 404)
            self.end_headers()
            self.wfile.write(served if self.path == "/files/data.bin" else b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/files/data.bin"
    try:
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD a.tar b.tar.gz c.tar.bz2 d.tar.xz plain.txt /x/\n"
                                        f"ADD --checksum=sha256:{__import__('hashlib').sha256(served).hexdigest()} "
                                        f"{url} /y/\n")
        ok(minirt("build", "-t", "added", str(ctx)))
        out = ok(minirt("run", "--rm", "added", "sh", "-c",
                        "find /x /y -type f | sort; stat -c %u:%g /x/b.tar.gz.d/file; cat /y/data.bin")).stdout
        assert out.split("\n") == ["/x/a.tar.d/file", "/x/b.tar.gz.d/file", "/x/c.tar.bz2.d/file",
                                   "/x/d.tar.xz.d/file", "/x/plain.txt", "/y/data.bin", "42:43",
                                   "from the server", ""]
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {url} /y/\n")
        r = minirt("build", str(ctx))
        assert r.returncode == 125 and "Dockerfile:2: ADD " + url + ": checksum is sha256:" in r.stderr
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {url}.missing /y/\n")
        r = minirt("build", str(ctx))
        assert r.returncode == 125 and "cannot download: Not Found" in r.stderr.splitlines()[-1]
    finally:
        server.shutdown()
        server.server_close()


def test_add_refuses_an_archive_that_climbs_out(minirt, tmp_path):
    import io
    import tarfile

    ctx = tmp_path / "evil"
    ctx.mkdir()
    with tarfile.open(ctx / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (ctx / "Dockerfile").write_text("FROM busybox\nADD evil.tar /x/\n")
    r = minirt("build", str(ctx))
    assert r.returncode == 125 and r.stderr.splitlines()[-1].startswith("minirt: Dockerfile:2: ADD evil.tar")
    assert not (tmp_path / "escaped").exists()


def test_run_mounts_are_seen_by_the_step_and_kept_out_of_the_layer(minirt, tmp_path):
    dockerfile = """\
FROM busybox
RUN --mount=type=bind,source=src,target=/src cat /src/a.txt > /from-bind
RUN --mount=type=cache,target=/cache,id=c1 sh -c 'echo run >> /cache/log; wc -l < /cache/log > /cache-count'
RUN --mount=type=tmpfs,target=/scratch sh -c 'echo x > /scratch/f && grep -c " /scratch tmpfs" /proc/mounts > /tmpfs'
RUN --mount=type=bind,source=src,target=/src,rw sh -c 'echo changed > /src/a.txt'
"""
    ctx = context(tmp_path / "mounts", dockerfile, **{"src/a.txt": "from the context\n"})
    ok(minirt("build", "-t", "mounted", ctx))
    check = "cat /from-bind /cache-count /tmpfs; ls -d /src /cache /scratch 2>&1; true"
    out = ok(minirt("run", "--rm", "mounted", "sh", "-c", check)).stdout.splitlines()
    assert out[:3] == ["from the context", "1", "1"] and all("No such file" in line for line in out[3:])
    assert (tmp_path / "mounts" / "src" / "a.txt").read_text() == "from the context\n"  # rw: a private copy
    ok(minirt("build", "--no-cache", "-t", "mounted", ctx))  # the cache mount outlives the build
    assert ok(minirt("run", "--rm", "mounted", "cat", "/cache-count")).stdout == "2\n"


@pytest.mark.parametrize("flag, message", [
    ("--mount=type=secret,target=/s", "--mount=type=secret: minirt build has no --secret"),
    ("--mount=type=bind", "--mount=type=bind: a mount needs target=PATH"),
    ("--mount=type=bind,target=/x,source=nope", "--mount=type=bind,target=/x,source=nope: /nope: no such file"),
    ("--mount=type=volume,target=/x", "--mount=type=volume,target=/x: unknown mount type 'volume'"),
    ("--mount=type=bind,target=/x,colour=red", "--mount=type=bind,target=/x,colour=red: unknown option 'colour'"),
    ("--network=bridge", "RUN --network=bridge: want default, none or host"),
    ("--security=insecure", "RUN --security=insecure: only sandbox"),
])
def test_bad_run_flags_are_one_line(minirt, tmp_path, flag, message):
    ctx = context(tmp_path / "badrun", f"FROM busybox\nRUN {flag} true\n")
    r = minirt("build", ctx)
    assert r.returncode == 125 and f"Dockerfile:2: {message}" in r.stderr.splitlines()[-1], r.stderr


def test_onbuild_triggers_run_in_the_child_build(minirt, tmp_path):
    ok(minirt("build", "-t", "parent", context(tmp_path / "p", "FROM busybox\nONBUILD RUN echo triggered > /t\n")))
    assert "/t" not in ok(minirt("run", "--rm", "parent", "ls", "/")).stdout.split()
    ok(minirt("build", "-t", "child", context(tmp_path / "c", "FROM parent\nRUN cat /t > /seen\n")))
    assert ok(minirt("run", "--rm", "child", "cat", "/seen")).stdout == "triggered\n"


def test_builder_prune_forgets_the_cache_and_prune_takes_dead_builds_leftovers(minirt, tmp_path):
    dockerfile = "FROM busybox\nRUN --mount=type=cache,target=/c sh -c 'echo x >> /c/n; wc -l < /c/n > /count'\n"
    ctx = context(tmp_path / "prune", dockerfile)
    ok(minirt("build", "-t", "p", ctx))
    out = ok(minirt("builder", "prune", "-f")).stdout
    assert "Deleted 1 cached build steps" in out and "Deleted cache mount" in out and "Total reclaimed space" in out
    r = ok(minirt("build", "-t", "p", ctx))
    assert steps(r.stderr, "CACHED") == [] and ok(minirt("run", "--rm", "p", "cat", "/count")).stdout == "1\n"
    root = tmp_path / "root"
    (root / "build-tmp" / "build-dead").mkdir(parents=True)  # as a killed build leaves it
    (root / "build-tmp" / "build-dead" / "upper-3").mkdir()
    assert "Deleted build leftovers build-dead" in ok(minirt("system", "prune")).stdout
    assert os.listdir(root / "build-tmp") == []


SYNC = "RUN --mount=type=cache,target=/sync,id=sync sh -c " \
       "'touch /sync/{me}; for i in $(seq 100); do [ -e /sync/{other} ] && exit 0; sleep 0.1; done; exit 1'"


def test_independent_stages_build_at_the_same_time(minirt, tmp_path):
    """Each of two stages waits (10 s at most) for a file the other makes:
    both succeed only if they run at once."""
    dockerfile = "\n".join([
        "FROM busybox AS left", SYNC.format(me="left", other="right"), "RUN echo L > /l",
        "FROM busybox AS right", SYNC.format(me="right", other="left"), "RUN echo R > /r",
        "FROM busybox", "COPY --from=left /l /", "COPY --from=right /r /", ""])
    ok(minirt("build", "-t", "both", context(tmp_path / "par", dockerfile)))
    assert ok(minirt("run", "--rm", "both", "cat", "/l", "/r")).stdout == "L\nR\n"


def test_a_failing_stage_stops_the_build_and_its_sibling_finishes_cleanly(minirt, tmp_path):
    dockerfile = "FROM busybox AS bad\nRUN sleep 1; exit 4\nFROM busybox AS good\nRUN sleep 2\n" \
                 "FROM busybox\nCOPY --from=bad / /bad\nCOPY --from=good / /good\n"
    r = minirt("build", "-t", "never", context(tmp_path / "fails", dockerfile))
    assert r.returncode == 125 and r.stderr.splitlines()[-1].endswith("exit code 4"), r.stderr
    assert "never" not in ok(minirt("image", "ls")).stdout
    assert ok(minirt("ps", "-a", "-q")).stdout == ""


def test_at_a_terminal_the_progress_is_a_block_redrawn_in_place(minirt, tmp_path, terminal):
    ctx = context(tmp_path / "tty", "FROM busybox\nENV A=1\nRUN echo one && echo two && sleep 1\nCOPY . /ctx/\n")
    t = terminal("--root", str(tmp_path / "root"), "build", "-t", "tty", ctx, size=(40, 100))
    assert t.wait() == 0, t.out
    text = t.out.decode()
    assert "[+] Building" in text and "(4/4)" in text and "\x1b[2K" in text
    assert " => [stage-0 3/4] RUN echo one && echo two && sleep 1" in text and " => => # two" in text
    t = terminal("--root", str(tmp_path / "root"), "build", "-t", "tty", ctx, size=(40, 100))
    assert t.wait() == 0
    assert " => CACHED [stage-0 3/4] RUN echo one && echo two && sleep 1" in t.out.decode()


def test_a_state_root_inside_the_context_is_not_part_of_it(tmp_path, busybox_image):
    ctx = tmp_path / "ctx"
    context(ctx, "FROM busybox\nCOPY . /ctx/\n", app="app\n")
    root = str(ctx / "state")

    def minirt(*args):
        return subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args], capture_output=True,
                              text=True, timeout=120)
    try:
        ok(minirt("load", "-i", busybox_image, "-t", "busybox"))
        ok(minirt("build", "-t", "inside", str(ctx)))
        listed = ok(minirt("run", "--rm", "inside", "find", "/ctx")).stdout.split()
        assert sorted(listed) == ["/ctx", "/ctx/Dockerfile", "/ctx/app"]
    finally:
        minirt("system", "prune")
