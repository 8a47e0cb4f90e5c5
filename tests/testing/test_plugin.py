"""pytest-minirt (minirt/testing/), used as its users do: a pytest of its own
runs a test file written with the plugin, and the host is checked afterwards.

Each inner session gets a ``--minirt-root`` of its own (in tmp_path), so that
what it leaves -- or what the next session sweeps -- is only its own.  The
inner tests write their run's name (SESSION-WORKER) to ``runs.txt``, which
names their cgroup parent: none of that may be left once they are done.
"""

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.privileged


def test_containers_run_to_completion_and_in_the_background_and_nothing_is_left(inner):
    inner.write("test_use.py", """
        def test_run_to_completion(container):
            r = container("sh", "-c", "echo out; echo err >&2; exit 3")
            assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\\n", b"err\\n")
            assert container("cat", input=b"fed").stdout == b"fed"

        def test_in_the_background(container):
            c = container.start("sh", "-c", "echo started; exec sleep 60")
            assert c.exec("sh", "-c", "echo $((6*7))").stdout == b"42\\n"
            deadline = time.monotonic() + 10
            while not c.logs()[0] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert c.logs() == (b"started\\n", b"")
            c.stop(timeout=1)
            assert c.wait() == 137

        def test_left_running_and_failing(container):
            container.start("sleep", "60")
            assert False, "this test fails with a container running"

        def test_a_network_and_a_volume_of_the_tests_own(container, minirt_network, minirt_volume):
            server = container.start("httpd", "-f", "-p", "8080", network=minirt_network)
            address = address_of(server)
            client = container.start("sleep", "60", network=minirt_network, volumes=[f"{minirt_volume}:/data"])
            assert reachable(client, f"{address}:8080", f"{address}:8081") == [f"{address}:8080"]
            assert client.exec("sh", "-c", "echo kept > /data/f").exit_code == 0
            assert container("cat", "/data/f", volumes=[f"{minirt_volume}:/data:ro"]).stdout == b"kept\\n"

        @pytest.mark.minirt(image=IMAGE, network="none", memory="32m", memory_swap="32m", read_only=True)
        def test_the_marker_gives_defaults(container):
            r = container("sh", "-c", "ip -o link | wc -l; touch /x")
            assert (r.stdout, r.exit_code) == (b"1\\n", 1)
            assert container("sh", "-c", "head -c 64m /dev/zero | tail").exit_code == 137
            assert container("touch", "/x", read_only=False).exit_code == 0
    """)
    code, out = inner.run()
    assert code == 1, out
    assert "4 passed" in out and "1 failed" in out and "this test fails" in out, out
    assert "kept for inspection" not in out


def test_the_assertions_hold_of_a_sandbox_and_a_failure_shows_the_difference(inner):
    inner.write("test_sandbox.py", """
        SANDBOX = dict(read_only=True, cap_drop=["ALL"], network="none", memory="48m", memory_swap="48m")

        def test_holds(container, minirt_network):
            peer = container.start("httpd", "-f", "-p", "80", network=minirt_network)
            address = address_of(peer)
            c = container.start("sleep", "60", **SANDBOX)
            assert_only_processes(c, "sleep")
            assert_not_writable(c, "/", "/etc", "/bin/sh")
            assert_capabilities_absent(c, "NET_RAW", "CAP_SYS_ADMIN", "chown")
            assert_syscall_refused(c, "unshare", 0x10000000)           # CLONE_NEWUSER: seccomp says no
            assert_syscall_refused(c, "close", 999, errno=errno.EBADF)
            assert_unreachable(c, f"{address}:80", "127.0.0.1:80")
            assert_memory_limit_kills_at(c, 48)

        def test_processes(container):
            assert_only_processes(container.start("sleep", "60"), "sleep", "nginx")

        def test_writable(container):
            assert_not_writable(container.start("sleep", "60"), "/etc", "/tmp")

        def test_capability(container):
            assert_capabilities_absent(container.start("sleep", "60"), "NET_RAW")

        def test_syscall(container):
            assert_syscall_refused(container.start("sleep", "60"), "getuid")

        def test_reachable(container, minirt_network):
            peer = container.start("httpd", "-f", "-p", "80", network=minirt_network)
            address = address_of(peer)
            assert_unreachable(container.start("sleep", "60", network=minirt_network), f"{address}:80")

        def test_memory(container):
            assert_memory_limit_kills_at(container.start("sleep", "60", memory="96m", memory_swap="96m"), 32)
    """)
    code, out = inner.run()
    assert code == 1, out
    assert "1 passed" in out and "6 failed" in out, out
    # pytest's own diffs, through the helpers' rewritten asserts:
    assert "assert ['sleep'] == ['nginx', 'sleep']" in out, out
    assert "assert ['/etc', '/tmp'] == []" in out and "writable in container" in out, out
    assert "assert ['CAP_NET_RAW'] == []" in out, out
    assert "assert 'success' == 'EPERM'" in out, out
    assert "80'] == []" in out, out
    assert "{'3/4': 0, '5/4': 0} == {'3/4': 0, '5/4': 137}" in out, out


def test_bad_input_is_one_clear_error(inner):
    inner.write("test_bad.py", """
        @pytest.mark.minirt()
        def test_no_image(container):
            container("true")

        def test_no_such_image(container):
            container("true", image="nowhere/missing.tar")

        def test_no_such_syscall(container):
            assert_syscall_refused(container.start("sleep", "60"), "no_such_call")

        def test_bad_memory(container):
            container("true", memory="lots")
    """)
    code, out = inner.run()
    assert code == 1 and "4 failed" in out, out
    assert "no image for its containers: mark it @pytest.mark.minirt(image=...)" in out, out
    assert "nowhere/missing.tar: no such image file (relative paths start at" in out, out
    assert "invalid syscall 'no_such_call': not an x86-64 system call" in out, out
    assert "invalid --memory 'lots'" in out, out


def test_a_minirt_root_that_is_a_file_is_a_usage_error(inner):
    inner.write("test_any.py", "def test_any(): pass\n")
    os.makedirs(os.path.dirname(inner.base), exist_ok=True)
    with open(inner.base, "w") as f:
        f.write("not a directory")
    code, out = inner.run()
    assert code == 4 and f"ERROR: --minirt-root {inner.base}: not a directory" in out, out
    assert open(inner.base).read() == "not a directory"
    os.unlink(inner.base)


def test_a_runs_containers_live_in_memory_unless_asked_to_stay_on_disk(inner):
    inner.write("test_where.py", """
        def test_where(container, minirt_run):
            c = container.start("sleep", "60")
            link = os.path.join(minirt_run.root, "containers")
            with open("where.txt", "a") as f:
                f.write(f"{minirt_run.name} {os.path.islink(link)} {os.path.realpath(link)} "
                        f"{os.path.isdir(os.path.join(link, c.id))}\\n")
    """)
    for args in ((), ("--minirt-on-disk",)):
        code, out = inner.run(*args)
        assert code == 0, out
    with open(os.path.join(inner.dir, "where.txt")) as f:
        (run, memory, path, there), (run2, *disk) = [line.split() for line in f]
    assert (memory, there) == ("True", "True") and path.startswith(f"/dev/shm/minirt-pytest-{run}-"), path
    assert disk == ["False", os.path.join(inner.base, "runs", run2, "root", "containers"), "True"]


def test_minirt_keep_keeps_a_failed_tests_containers_until_the_next_session(inner):
    inner.write("test_keep.py", """
        def test_fails(container):
            container.start("sleep", "60")
            assert False

        def test_passes(container):
            container.start("sleep", "60")
    """)
    code, out = inner.run("--minirt-keep")
    assert code == 1, out
    assert "kept for inspection: test_keep.py::test_fails" in out, out
    assert "kept for inspection: test_keep.py::test_passes" not in out, out
    [run] = inner.runs()
    root = os.path.join(inner.base, "runs", run, "root")
    command = next(line for line in out.splitlines() if line.startswith("minirt --root"))
    cid = command.split()[5]
    assert command.startswith(f"minirt --root {root} exec -it {cid} sh"), out
    ps = subprocess.run([sys.executable, "-m", "minirt", "--root", root, "ps", "-q"], env=inner.env(),
                        capture_output=True, text=True)
    assert ps.stdout.split() == [cid], ps
    assert inner.leftovers() != []
    inner.write("test_next.py", "def test_nothing(): pass\n")
    code, out = inner.run("test_next.py")
    assert code == 0, out  # and the fixture checks it swept the kept run


def test_a_session_killed_mid_run_is_swept_by_the_next_one(inner):
    inner.write("test_killed.py", """
        def test_killed_here(container):
            container.start("sleep", "600")
            c = container.start("sleep", "600")
            with open("started", "w"):
                pass
            container("sleep", "600")  # in the foreground when pytest is killed
    """)
    session = subprocess.Popen(inner.argv("test_killed.py"), cwd=inner.dir, env=inner.env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(inner.dir, "started")):
            assert session.poll() is None and time.monotonic() < deadline, "the inner session never started"
            time.sleep(0.05)
        time.sleep(0.3)  # the foreground container is being made
    finally:
        session.send_signal(signal.SIGKILL)
        session.wait()
    left = inner.leftovers()
    assert any(item.startswith("process") for item in left), left
    inner.write("test_next.py", "def test_nothing(): pass\n")
    code, out = inner.run("test_next.py")
    assert code == 0, out  # and the fixture checks that nothing is left


def test_xdist_workers_have_their_own_root_and_share_an_image_built_once(inner):
    import shutil

    context = os.path.join(inner.dir, "context")
    os.makedirs(context)
    shutil.copy("/bin/busybox", os.path.join(context, "busybox"))
    with open(os.path.join(context, "Dockerfile"), "w") as f:
        f.write('FROM scratch\nCOPY busybox /bin/sh\nCMD ["/bin/sh", "-c", "echo built"]\n')
    tests = "".join(f"""
        def test_{n}(container, minirt_images, minirt_run):
            image = minirt_images.get("context")
            assert container(image=image).stdout == b"built\\n"
            with open("images.txt", "a") as f:
                f.write(image + " " + minirt_run.root + "\\n")
            time.sleep(0.2)  # the other worker takes tests too
    """ for n in range(6))
    inner.write("test_workers.py", tests)
    code, out = inner.run("-p", "xdist", "-n", "2")
    assert code == 0, out
    with open(os.path.join(inner.dir, "images.txt")) as f:
        used = [line.split() for line in f]
    assert len({image for image, _ in used}) == 1
    assert len({root for _, root in used}) == 2
    runs = inner.runs()
    assert len(runs) == 2 and runs[0].split("-")[0] == runs[1].split("-")[0]  # one session, two workers
    assert sorted(name.split("-")[1] for name in runs) == ["gw0", "gw1"]
    archives = glob.glob(os.path.join(inner.base, "images", "*.tar"))
    assert archives == [used[0][0]]


def test_the_entry_point_loads_the_plugin_without_p(tmp_path, busybox_image):
    """The pytest11 entry point, as pip would install it (the package's metadata,
    written by setuptools from pyproject.toml), found by a pytest given no -p."""
    metadata = tmp_path / "metadata"
    metadata.mkdir()
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(metadata)],
                   cwd=REPO, check=True, capture_output=True)
    entry_points = (metadata / "minirt.egg-info" / "entry_points.txt").read_text()
    assert "[pytest11]\nminirt.testing = minirt.testing\n" in entry_points
    (tmp_path / "test_loaded.py").write_text(textwrap.dedent(f"""
        import pytest

        @pytest.mark.minirt(image={busybox_image!r})
        def test_loaded(container):
            assert container("echo", "hi").stdout == b"hi\\n"
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(metadata), REPO, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--minirt-root",
                        str(tmp_path / "base"), "test_loaded.py"], cwd=tmp_path, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr
