"""What minirt builds, docker and podman run: the image saved with ``minirt
save`` is loaded into a real dockerd and a real podman (tests/engines.py), and
pushed to a real registry for docker to pull; each runs it with the same
output as minirt."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.privileged

DOCKERFILE = """\
FROM busybox AS build
RUN echo "built in stage one" > /artifact
FROM busybox
ARG WHO=world
ENV GREETING="hello $WHO"
WORKDIR /app
COPY --from=build /artifact ./
COPY greet.sh /usr/local/bin/
RUN chmod 755 /usr/local/bin/greet.sh
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/greet.sh"]
CMD ["twice"]
"""

SCRIPT = '#!/bin/sh\necho "$GREETING ($1) as $(id -u) in $(pwd)"; cat artifact\n'


@pytest.fixture(scope="module")
def image(tmp_path_factory, busybox_image):
    """The app built by minirt: (the docker archive it saved, minirt's output of
    the app, ``minirt(*args)`` on the state root that holds it)."""
    tmp = tmp_path_factory.mktemp("interop")
    root, ctx = str(tmp / "root"), tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "greet.sh").write_text(SCRIPT)

    def minirt(*args):
        r = subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout
    try:
        minirt("load", "-i", busybox_image, "-t", "busybox")
        minirt("build", "--build-arg", "WHO=class", "-t", "interop/app:1", str(ctx))
        minirt("save", "-o", str(tmp / "app.tar"), "interop/app:1")
        yield str(tmp / "app.tar"), minirt("run", "--rm", "--network", "none", "interop/app:1"), minirt
    finally:
        minirt("system", "prune")


def test_minirt_runs_what_it_built(image):
    _, output, _ = image
    assert output == "hello class (twice) as 1000 in /app\nbuilt in stage one\n"


def test_docker_loads_and_runs_it_alike(image, docker):
    archive, output, _ = image
    r = docker("load", "-i", archive)
    assert r.returncode == 0, r.stderr
    r = docker("run", "--rm", "--network", "none", "interop/app:1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == output


def test_podman_loads_and_runs_it_alike(image, podman):
    archive, output, _ = image
    r = podman("load", "-i", archive)
    assert r.returncode == 0, r.stderr
    r = podman.run("interop/app:1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == output


def test_pushed_to_a_registry_docker_pulls_and_runs_it_alike(image, registries, docker):
    _, output, minirt = image
    registry = registries()
    name = f"{registry.host}/interop/app:1"
    minirt("tag", "interop/app:1", name)
    pushed = minirt("push", name)
    digest = pushed.splitlines()[-1].split("digest: ")[1].split()[0]
    inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{name}"],
                             capture_output=True, text=True, timeout=60)
    assert inspect.returncode == 0 and f'"Digest": "{digest}"' in inspect.stdout
    r = docker("pull", name)
    assert r.returncode == 0, r.stderr
    r = docker("run", "--rm", "--network", "none", name)
    assert r.returncode == 0 and r.stdout.decode() == output, r.stderr
