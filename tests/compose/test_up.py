"""minirt compose end to end: the tutorial's system, dependencies, restarts.

Docker's getting-started tutorial in the shape of a test: an app built from a
Dockerfile, published on a host port, that talks to a second service by name,
which keeps its data in a named volume.  ``up -d``, a request through the
published port, ``logs``, ``down``, ``up`` again with the data still there,
``down -v`` with it gone.  Then what ``up`` promises: it is idempotent (only
a changed service is recreated), ``depends_on`` with ``service_healthy``
really waits, ``service_completed_successfully`` runs a one-shot first, and
``restart: on-failure:3`` restarts a crashing service three times.  Each test
takes its project down; the module's state root is removed at the end.
"""

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

import pytest

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def root(busybox_image):
    d = tempfile.mkdtemp(prefix="minirt-compose-")
    minirt(d, "load", "-i", busybox_image)
    yield d
    ids = minirt(d, "ps", "-aq", "--no-trunc").stdout.split()
    if ids:
        minirt(d, "rm", "-f", "-v", *ids)
    minirt(d, "system", "prune")
    shutil.rmtree(d)


def minirt(root, *args, cwd=None, ok=True, timeout=120):
    r = subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args], capture_output=True, text=True,
                       cwd=cwd, timeout=timeout)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def project(root, tmp_path):
    """project(compose.yaml's text, **other files) -> compose(*args): ``minirt
    compose`` in that directory.  Whatever it brought up is taken down after."""
    used = []

    def make(text, **files):
        d = tmp_path / "shop"
        d.mkdir(exist_ok=True)
        (d / "compose.yaml").write_text(textwrap.dedent(text))
        for name, content in files.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(textwrap.dedent(content))
        used.append(d)
        return lambda *args, ok=True: minirt(root, "compose", *args, cwd=d, ok=ok)

    yield make
    for d in used:
        minirt(root, "compose", "down", "-v", "-t", "1", cwd=d)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=15):
    """The body at ``url``, retried while the service comes up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def inspect(root, name):
    return json.loads(minirt(root, "inspect", name).stdout)[0]


TUTORIAL = """\
    services:
      app:
        build: ./app
        init: true
        ports: ["${APP_PORT}:80"]
        depends_on: [db]
      db:
        image: busybox
        init: true
        volumes: [store:/data]
        command:
          - sh
          - -c
          - |
            mkdir -p /www/cgi-bin
            printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho visit >> /data/visits\\nwc -l < /data/visits\\n' > /www/cgi-bin/count
            chmod +x /www/cgi-bin/count
            echo db ready
            exec httpd -f -p 8000 -h /www
    volumes:
      store:
    """
APP = {"app/Dockerfile": """\
           FROM busybox
           COPY index.cgi /www/cgi-bin/index
           RUN chmod +x /www/cgi-bin/index
           CMD ["httpd", "-f", "-vv", "-p", "80", "-h", "/www"]
           """,
       "app/index.cgi": """\
           #!/bin/sh
           echo Content-Type: text/plain
           echo
           echo "visits: $(wget -qO- http://db:8000/cgi-bin/count)"
           """}


def test_the_tutorial_app_with_a_database_and_a_named_volume(root, project):
    port = free_port()
    compose = project(TUTORIAL, **APP, **{".env": f"APP_PORT={port}\n"})
    up = compose("up", "-d")
    assert "Container shop-db-1  Started" in up.stderr and "Container shop-app-1  Started" in up.stderr
    assert up.stderr.index("shop-db-1  Started") < up.stderr.index("shop-app-1  Started")
    url = f"http://127.0.0.1:{port}/cgi-bin/index"
    assert get(url).strip() == "visits: 1"
    assert get(url).strip() == "visits: 2"

    ps = compose("ps").stdout.splitlines()
    assert ps[0].split()[:3] == ["NAME", "IMAGE", "COMMAND"]
    assert any(line.startswith("shop-app-1") and f"0.0.0.0:{port}->80/tcp" in line for line in ps[1:])
    labels = inspect(root, "shop-app-1")["Config"]["labels"]
    assert (labels["com.docker.compose.project"], labels["com.docker.compose.service"],
            labels["com.docker.compose.container-number"], labels["com.docker.compose.oneoff"]) == \
        ("shop", "app", "1", "False")
    assert len(labels["com.docker.compose.config-hash"]) == 64
    logs = compose("logs").stdout
    assert re.search(r"^shop-db-1  +\| db ready$", logs, re.M)
    assert re.search(r"^shop-app-1 +\| .*url:/cgi-bin/index$", logs, re.M)
    assert compose("logs", "--tail", "1", "db").stdout == "shop-db-1  | db ready\n"
    assert compose("exec", "-T", "db", "cat", "/data/visits").stdout == "visit\nvisit\n"

    down = compose("down")
    assert "Network shop_default  Removed" in down.stderr
    assert minirt(root, "ps", "-aq").stdout == ""
    assert "shop_store" in minirt(root, "volume", "ls", "-q").stdout.split()
    assert "shop_default" not in minirt(root, "network", "ls").stdout

    compose("up", "-d")
    assert get(url).strip() == "visits: 3"  # the data outlived the containers
    compose("down", "-v")
    assert "shop_store" not in minirt(root, "volume", "ls", "-q").stdout.split()
    compose("up", "-d")
    assert get(url).strip() == "visits: 1"  # a new volume
    compose("down", "-v", "--rmi", "local")  # the image built for app goes, busybox (named in the file) stays
    assert [line.split()[0] for line in minirt(root, "images").stdout.splitlines()[1:]] == ["busybox"]


def test_up_is_idempotent_and_recreates_only_what_changed(root, project):
    text = """\
        services:
          a: {image: busybox, init: true, command: sleep 60, environment: {V: "1"}}
          b: {image: busybox, init: true, command: sleep 60, depends_on: [a]}
        """
    compose = project(text)
    compose("up", "-d")
    ids = {n: inspect(root, f"shop-{n}-1")["Id"] for n in "ab"}
    assert compose("ps", "--services").stdout == "a\nb\n"
    assert [line.split()[0] for line in compose("ps", "b").stdout.splitlines()] == ["NAME", "shop-b-1"]
    assert compose("ps", "-q", "a").stdout == ids["a"] + "\n"
    again = compose("up", "-d")
    assert "Container shop-a-1  Running" in again.stderr and "Container shop-b-1  Running" in again.stderr
    assert {n: inspect(root, f"shop-{n}-1")["Id"] for n in "ab"} == ids

    compose_file = project(text.replace('V: "1"', 'V: "2"'))
    changed = compose_file("up", "-d")
    assert "Container shop-a-1  Recreated" in changed.stderr and "Container shop-b-1  Running" in changed.stderr
    assert inspect(root, "shop-a-1")["Id"] != ids["a"] and inspect(root, "shop-b-1")["Id"] == ids["b"]
    assert "V=2" in inspect(root, "shop-a-1")["Config"]["env"]

    compose("stop", "b")
    assert inspect(root, "shop-b-1")["State"]["Status"] == "exited"
    assert "Container shop-b-1  Started" in compose("up", "-d").stderr
    assert inspect(root, "shop-b-1")["Id"] == ids["b"]
    compose("up", "-d", "--force-recreate", "b")
    assert inspect(root, "shop-b-1")["Id"] != ids["b"]


def test_depends_on_restart_true_restarts_the_dependent_when_its_dependency_is_updated(root, project):
    text = """\
        services:
          db: {image: busybox, init: true, command: sleep 60, environment: {V: "1"}}
          app: {image: busybox, init: true, command: sleep 60, depends_on: {db: {condition: service_started,
                                                                                  restart: true}}}
          other: {image: busybox, init: true, command: sleep 60, depends_on: [db]}
        """
    compose = project(text)
    compose("up", "-d")

    def started():
        return {n: (inspect(root, f"shop-{n}-1")["Id"], inspect(root, f"shop-{n}-1")["State"]["StartedAt"])
                for n in ("db", "app", "other")}

    first = started()
    changed = project(text.replace('V: "1"', 'V: "2"'))("up", "-d")
    assert "Container shop-db-1  Recreated" in changed.stderr and "Container shop-app-1  Restarted" in changed.stderr
    second = started()
    assert second["app"][0] == first["app"][0] and second["app"][1] != first["app"][1]  # same container, new start
    assert second["other"] == first["other"]  # (plain depends_on: left running)
    compose("restart", "db")  # an explicit restart of the dependency restarts it too
    third = started()
    assert third["app"][1] != second["app"][1] and third["other"] == second["other"]


def test_depends_on_service_healthy_really_waits(root, project):
    compose = project("""\
        services:
          db:
            image: busybox
            init: true
            volumes: [shared:/shared]
            command: sh -c 'sleep 1.5; date +%s.%N > /shared/ready; exec sleep 60'
            healthcheck: {test: "test -f /shared/ready", interval: 100ms, retries: 100}
          app:
            image: busybox
            init: true
            volumes: [shared:/shared]
            command: sh -c 'cat /shared/ready; exec sleep 60'
            depends_on: {db: {condition: service_healthy}}
        volumes: {shared: {}}
        """)
    started = time.monotonic()
    up = compose("up", "-d")
    assert time.monotonic() - started >= 1.5
    lines = [line.strip() for line in up.stderr.splitlines()]
    assert lines.index("Container shop-db-1  Healthy") < lines.index("Container shop-app-1  Started")
    assert compose("logs", "app", "--no-log-prefix").stdout.strip()  # the file was there when app started
    assert inspect(root, "shop-db-1")["State"]["Health"]["Status"] == "healthy"


def test_an_unhealthy_dependency_stops_up(root, project):
    compose = project("""\
        services:
          db:
            image: busybox
            init: true
            command: sleep 60
            healthcheck: {test: "false", interval: 100ms, retries: 2}
          app: {image: busybox, command: sleep 60, depends_on: {db: {condition: service_healthy}}}
        """)
    r = compose("up", "-d", ok=False)
    assert r.returncode == 125
    assert r.stderr.splitlines()[-1] == "minirt: dependency failed to start: container shop-db-1 is unhealthy"
    assert "shop-app-1" not in minirt(root, "ps", "-a").stdout


def test_service_completed_successfully_runs_a_one_shot_first(root, project):
    compose = project("""\
        services:
          migrate:
            image: busybox
            volumes: [db:/db]
            command: sh -c 'sleep 0.5; echo schema v2 > /db/schema'
          app:
            image: busybox
            init: true
            volumes: [db:/db]
            command: sh -c 'cat /db/schema; exec sleep 60'
            depends_on: {migrate: {condition: service_completed_successfully}}
        volumes: {db: {}}
        """)
    compose("up", "-d")
    assert inspect(root, "shop-migrate-1")["State"]["ExitCode"] == 0
    assert compose("logs", "app", "--no-log-prefix").stdout == "schema v2\n"

    failing = project("""\
        services:
          migrate: {image: busybox, command: sh -c 'exit 4'}
          app:
            image: busybox
            command: sleep 60
            depends_on: {migrate: {condition: service_completed_successfully}}
        """)
    r = failing("up", "-d", "--force-recreate", ok=False)
    assert r.stderr.splitlines()[-1] == "minirt: service 'migrate' didn't complete successfully: exit 4"


def test_restart_on_failure_3_restarts_a_crashing_service_three_times(root, project):
    compose = project("""\
        services:
          crash:
            image: busybox
            command: sh -c 'echo crashing; exit 3'
            restart: on-failure:3
        """)
    compose("up", "-d")
    deadline = time.monotonic() + 30
    while True:
        state = inspect(root, "shop-crash-1")
        if state["RestartCount"] == 3 and state["State"]["Status"] == "exited":
            break
        assert time.monotonic() < deadline, state["State"]
        time.sleep(0.1)
    assert state["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert compose("logs", "--no-log-prefix").stdout == "crashing\n" * 4


def test_run_exec_top_images_and_rm(root, project):
    compose = project("""\
        services:
          web: {image: busybox, init: true, command: sleep 60, environment: [WHO=web], depends_on: [db]}
          db: {image: busybox, init: true, command: sleep 60}
        """)
    compose("run", "--rm", "-T", "web", "true")  # its dependency first
    assert [line.split()[0] for line in compose("ps").stdout.splitlines()] == ["NAME", "shop-db-1"]
    detached = compose("run", "-d", "--name", "one-off", "web", "sleep", "60").stdout
    assert detached == "one-off\n" and inspect(root, "one-off")["Config"]["labels"]["com.docker.compose.oneoff"] == "True"
    compose("up", "-d")
    assert compose("exec", "-T", "web", "sh", "-c", "echo $WHO").stdout == "web\n"
    r = compose("run", "--rm", "-T", "web", "sh", "-c", "echo $WHO; exit 7", ok=False)
    assert (r.returncode, r.stdout) == (7, "web\n")
    assert [line.split()[0] for line in minirt(root, "ps", "-a").stdout.splitlines()[1:]] != []
    assert "shop-web-run" not in minirt(root, "ps", "-a").stdout
    top = compose("top", "web").stdout
    assert top.startswith("shop-web-1\nPID") and "sleep 60" in top
    assert compose("images", "web").stdout.splitlines()[1].split()[:3] == ["shop-web-1", "busybox", "latest"]
    compose("stop", "-t", "1")
    compose("rm")
    assert minirt(root, "ps", "-aq").stdout.split() == [inspect(root, "one-off")["Id"][:12]]  # a one-off is down's


def test_build_push_and_pull_through_a_registry(root, project, registries):
    registry = registries()
    ref = f"{registry.host}/shop/app:1"
    compose = project(f"""\
        services:
          app: {{build: ./app, image: "{ref}", init: true}}
        """, **APP)
    built = compose("build")
    assert f"Image {ref}  Built" in built.stderr
    assert "Pushed" in compose("push").stderr
    image_id = json.loads(minirt(root, "image", "inspect", ref).stdout)[0]["Id"]
    minirt(root, "rmi", ref)
    assert "Pulled" in compose("pull").stderr
    assert json.loads(minirt(root, "image", "inspect", ref).stdout)[0]["Id"] == image_id
    compose("up", "-d")
    assert compose("down", "--rmi", "all").returncode == 0
    assert minirt(root, "image", "inspect", ref, ok=False).returncode != 0


def test_services_on_two_networks_with_aliases_an_external_network_and_a_kernel_chosen_port(root, project):
    """web is on front (eth0, alias www) and back; db on back, proxy on front:
    web reaches db only through back, and proxy never reaches db."""
    assert minirt(root, "network", "create", "shop-outside").returncode == 0
    try:
        compose = project("""\
            services:
              web:
                image: busybox
                init: true
                command: [sh, -c, "mkdir /www && echo hello from web > /www/index.html && exec httpd -f -p 80 -h /www"]
                ports: ["80"]
                networks:
                  front: {aliases: [www]}
                  back:
                  outside:
              db: {image: busybox, init: true, command: [sleep, "300"], networks: [back]}
              proxy: {image: busybox, init: true, command: [sleep, "300"], networks: [front]}
            networks:
              front:
              back:
              outside: {external: true, name: shop-outside}
            """)
        compose("up", "-d")
        address = compose("port", "web", "80").stdout.strip()
        host, port = address.rsplit(":", 1)
        assert host == "0.0.0.0" and int(port) > 0
        assert get(f"http://127.0.0.1:{port}/").strip() == "hello from web"
        assert any(f"{address}->80/tcp" in line for line in compose("ps").stdout.splitlines())
        networks = inspect(root, "shop-web-1")["NetworkSettings"]["Networks"]
        assert {n: (e["Interface"], e["Aliases"]) for n, e in networks.items()} == {
            "shop_front": ("eth0", ["web", "www"]), "shop_back": ("eth1", ["web"]),
            "shop-outside": ("eth2", ["web"])}

        def reaches(container, target):
            return minirt(root, "exec", container, "ping", "-c1", "-W1", target, ok=False).returncode == 0

        assert reaches("shop-web-1", "db") and reaches("shop-db-1", "web") and reaches("shop-proxy-1", "www")
        assert not reaches("shop-db-1", "www") and not reaches("shop-proxy-1", "db")
        db_address = inspect(root, "shop-db-1")["NetworkSettings"]["Networks"]["shop_back"]["IPAddress"]
        assert not reaches("shop-proxy-1", db_address)
        r = compose("port", "web", "81", ok=False)
        assert r.returncode == 125 and "no public port '81/tcp' published" in r.stderr

        down = compose("down")
        assert "Network shop_front  Removed" in down.stderr and "Network shop_back  Removed" in down.stderr
        assert "shop-outside" in minirt(root, "network", "ls").stdout  # external: not the project's to remove
    finally:
        minirt(root, "network", "rm", "shop-outside", ok=False)


def test_up_attached_shows_each_start_once_and_how_each_container_ended(project):
    compose = project("""
        services:
          a:
            image: busybox
            command: sh -c "echo hello from a; sleep 0.3; echo bye a"
          b:
            image: busybox
            command: sh -c "echo hello from b; exit 3"
        """)
    for _ in range(2):  # the second up starts the same containers again: their new output only
        r = compose("up")
        lines = r.stdout.splitlines()
        assert sorted(lines) == sorted(["shop-a-1  | hello from a", "shop-a-1  | bye a", "shop-b-1  | hello from b",
                                        "shop-b-1 exited with code 3", "shop-a-1 exited with code 0"]), r.stdout
        assert lines.index("shop-a-1  | bye a") < lines.index("shop-a-1 exited with code 0")
