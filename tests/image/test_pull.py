"""minirt pull from a real registry (Debian's docker-registry): without auth, with
basic auth, behind a token server; images pushed there by skopeo, whose digests
minirt must record as skopeo reports them; a two-platform index."""

import base64
import importlib.util
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from minirt.image.registry import parse_challenge
from minirt.image.write import Layout
from minirt.runtime.catalog import Catalog

registry = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
    "registry", pathlib.Path(__file__).with_name("registry.py")))
registry.__spec__.loader.exec_module(registry)
BUSYBOX = "docker-archive:" + os.path.realpath("images/busybox.tar")


@pytest.fixture(scope="module")
def plain(registries):
    return registries()


@pytest.fixture(scope="module")
def basic(registries):
    return registries("basic")


@pytest.fixture(scope="module")
def token(registries):
    return registries("token")


minirt, ok = registry.minirt, registry.ok


def test_pull_what_skopeo_pushed_with_the_digests_skopeo_reports(plain, tmp_path):
    ref = plain.push(BUSYBOX, "busybox:latest")
    out = ok(minirt(tmp_path, "pull", ref))
    digest = plain.inspect("busybox:latest")["Digest"]
    config = plain.inspect("busybox:latest", raw=True)["config"]["digest"]
    lines = out.splitlines()
    assert lines[0] == "latest: Pulling from busybox"
    assert lines[1].endswith(": Pull complete")
    assert lines[-3:] == [f"Digest: {digest}", f"Status: Downloaded newer image for {ref}", ref]
    entry = Catalog(str(tmp_path / "state")).lookup(ref)
    assert entry["id"] == config and entry["repo_digests"] == [f"{ref.split(':latest')[0]}@{digest}"]
    again = ok(minirt(tmp_path, "pull", ref)).splitlines()
    assert again[1].endswith(": Already exists") and again[-2] == f"Status: Image is up to date for {ref}"
    # by digest: the same image, found again by that digest, no tag
    pinned = f"{ref.split(':latest')[0]}@{digest}"
    assert ok(minirt(tmp_path, "pull", "-q", pinned)).splitlines() == [pinned]
    assert Catalog(str(tmp_path / "state")).lookup(pinned)["id"] == config


def test_layers_arrive_concurrently_and_each_is_verified(plain, tmp_path):
    layout = Layout(tmp_path / "layout")
    layers = []
    for i in range(4):
        tree = tmp_path / f"t{i}"
        (tree / "data").mkdir(parents=True)
        (tree / "data" / f"f{i}").write_bytes(os.urandom(300_000))
        layers.append(layout.add_layer(tree, "gzip"))
    layout.add_image(layers, {"Cmd": ["sh"]})
    ref = plain.push(f"oci:{tmp_path / 'layout'}", "four:1")
    out = ok(minirt(tmp_path, "pull", ref))
    assert out.count(": Pull complete") == 4
    state = tmp_path / "state" / "layers" / "sha256"
    for _, diff_id in layers:
        assert (state / diff_id[7:] / "data").is_dir()
    assert os.listdir(tmp_path / "state" / "layers" / "tmp") == []


def test_two_platform_index_resolves_to_the_platform(plain, tmp_path, two_platforms):
    two_platforms(tmp_path / "multi")
    ref = plain.push(f"oci:{tmp_path / 'multi'}:1", "multi:1", "--all")
    index = plain.inspect("multi:1", raw=True)
    assert len(index["manifests"]) == 2
    catalog = Catalog(str(tmp_path / "state"))
    for arch in ("arm64", "amd64"):
        out = ok(minirt(tmp_path, "pull", "--platform", f"linux/{arch}", ref))
        assert f"Digest: {plain.inspect('multi:1')['Digest']}" in out  # the index's, as docker prints
        assert catalog.lookup(ref)["config"]["architecture"] == arch
    r = minirt(tmp_path, "pull", "--platform", "linux/s390x", ref)
    assert r.returncode == 125 and "no linux/s390x image (has linux/amd64, linux/arm64)" in r.stderr


def test_basic_auth_login_pull_logout(basic, tmp_path):
    ref = basic.push(BUSYBOX, "private/busybox:1")
    r = minirt(tmp_path, "pull", ref)
    assert r.returncode == 125 and f"unauthorized (log in first: minirt login {basic.host})" in r.stderr
    r = minirt(tmp_path, "login", "-u", basic.user, "--password-stdin", basic.host, input="wrong\n")
    assert r.returncode == 125 and "unauthorized" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "cfg" / "minirt" / "config.json").exists()
    ok(minirt(tmp_path, "login", "-u", basic.user, "--password-stdin", basic.host, input=basic.password + "\n"))
    saved = tmp_path / "cfg" / "minirt" / "config.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    auth = json.loads(saved.read_text())["auths"][basic.host]["auth"]
    assert base64.b64decode(auth).decode() == f"{basic.user}:{basic.password}"
    assert "Status: Downloaded newer image" in ok(minirt(tmp_path, "pull", ref))
    ok(minirt(tmp_path, "logout", basic.host))
    assert basic.host not in json.loads(saved.read_text())["auths"]
    r = minirt(tmp_path, "pull", ref)
    assert r.returncode == 125 and "unauthorized" in r.stderr


def test_docker_config_json_is_read(basic, tmp_path):
    ref = basic.push(BUSYBOX, "private/busybox:2")
    (tmp_path / "docker").mkdir()
    auth = base64.b64encode(f"{basic.user}:{basic.password}".encode()).decode()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {f"http://{basic.host}": {"auth": auth}}}))
    assert "Status: Downloaded newer image" in ok(minirt(tmp_path, "pull", ref))


def test_bearer_tokens_from_the_token_server(token, tmp_path):
    ref = token.push(BUSYBOX, "team/busybox:1")
    r = minirt(tmp_path, "pull", ref)
    assert r.returncode == 125 and "token server: unauthorized (log in first" in r.stderr
    ok(minirt(tmp_path, "login", "-u", token.user, "--password-stdin", token.host, input=token.password + "\n"))
    token.tokens.requests.clear()
    assert "Status: Downloaded newer image" in ok(minirt(tmp_path, "pull", ref))
    # one token for the whole pull (manifest, config and layers): it is cached
    assert len(token.tokens.requests) == 1 and "scope=repository%3Ateam%2Fbusybox%3Apull" in token.tokens.requests[0]


def test_anonymous_bearer_pull(token, tmp_path):
    ref = token.push(BUSYBOX, "public/busybox:1")
    token.tokens.anonymous_pull = True
    try:
        assert "Status: Downloaded newer image" in ok(minirt(tmp_path, "pull", ref))
    finally:
        token.tokens.anonymous_pull = False


def test_challenge_parsing():
    assert parse_challenge('realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"') == {
        "realm": "https://auth.example/token", "service": "reg", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('realm=x, service="a\\"b"') == {"realm": "x", "service": 'a"b'}


@pytest.mark.privileged
def test_run_pulls_a_missing_image_then_runs_it(plain, tmp_path):
    ref = plain.push(BUSYBOX, "runme:latest")
    r = minirt(tmp_path, "run", "--rm", "--network", "none", ref, "echo", "hello from the registry")
    assert r.returncode == 0, r
    assert r.stdout == "hello from the registry\n"
    assert r.stderr.startswith(f"Unable to find image '{ref}' locally\nlatest: Pulling from runme\n")
    assert f"Status: Downloaded newer image for {ref}" in r.stderr
    r = minirt(tmp_path, "run", "--rm", "--network", "none", ref, "true")  # pulled: no second pull
    assert (r.returncode, r.stderr) == (0, "")
    digest = plain.inspect("runme:latest")["Digest"]
    pinned = f"{plain.host}/runme@{digest}"
    r = minirt(tmp_path, "run", "--rm", "--network", "none", pinned, "echo", "pinned")
    assert (r.returncode, r.stdout, r.stderr) == (0, "pinned\n", "")  # known by its digest


@pytest.mark.privileged
def test_run_of_a_missing_tag_is_one_line(plain, tmp_path):
    r = minirt(tmp_path, "run", "--rm", f"{plain.host}/nothing:here", "true")
    assert r.returncode == 125
    assert r.stderr.splitlines()[-1] == (f"minirt: {plain.host}/nothing:here: manifest: not found "
                                         "(MANIFEST_UNKNOWN: manifest unknown)")


def test_progress_on_a_terminal(plain, tmp_path):
    import pty

    ref = plain.push(BUSYBOX, "tty:latest")
    layer = plain.inspect("tty:latest", raw=True)["layers"][0]
    primary, secondary = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "minirt", "--root", str(tmp_path), "pull", ref],
                         stdout=secondary, stderr=secondary)
    os.close(secondary)
    out = b""
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        out += data
    os.close(primary)
    assert p.wait() == 0, out
    text = out.decode()
    short = layer["digest"][7:19]
    # the layer's line, redrawn in place: bytes of the total, then done
    assert f"{short}: Downloading " in text and f"/{layer['size'] / 1e6:.1f}MB (" in text
    assert f"\x1b[1A\x1b[2K{short}: Pull complete\r\n" in text
    assert text.count(f"{short}:") >= 2 and "Digest: sha256:" in text


def test_tokens_are_kept_until_they_expire(token, tmp_path, monkeypatch):
    from minirt.image import registry

    token.push(BUSYBOX, "cache/busybox:1")
    client = registry.Client(token.host, (token.user, token.password))
    now = [1000.0]
    monkeypatch.setattr(registry.time, "monotonic", lambda: now[0])

    def get():
        client.request("GET", "/v2/cache/busybox/manifests/1", scope="repository:cache/busybox:pull",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, what="m").read()

    token.tokens.requests.clear()
    get()
    get()
    now[0] += token.tokens.seconds - 10  # still valid
    get()
    assert len(token.tokens.requests) == 1
    now[0] += 10  # expired (or about to): a new one
    get()
    assert len(token.tokens.requests) == 2
    client.close()


@pytest.mark.privileged
def test_a_pulled_image_runs_remapped(plain):
    # --userns=remap needs the layers id-shifted: fetched again by digest into that store
    import pathlib
    import shutil
    import tempfile

    ref = plain.push(BUSYBOX, "remap:latest")
    top = pathlib.Path(tempfile.mkdtemp(prefix="minirt-pull-remap-"))
    try:
        os.chmod(top, 0o711)  # the remapped root (uid 100000) must reach the store
        ok(minirt(top, "pull", "-q", ref))
        # the layer's blob, kept by the pull, is read again: the registry need not have it any more
        plain.delete_blob("remap", plain.inspect("remap:latest", raw=True)["layers"][0]["digest"])
        r = minirt(top, "run", "--rm", "--network", "none", "--userns", "remap", ref, "stat", "-c", "%u", "/bin")
        assert (r.returncode, r.stdout, r.stderr) == (0, "0\n", "")
        assert any(d.startswith("shift-") for d in os.listdir(top / "state" / "layers"))
    finally:
        shutil.rmtree(top)


@pytest.mark.privileged
def test_the_api_pulls_a_missing_image_as_the_cli_does(plain, tmp_path):
    import minirt as api

    ref = plain.push(BUSYBOX, "api:latest")
    root = str(tmp_path / "state")
    r = api.run(ref, ["echo", "pulled by the API"], root=root, network="none")
    assert (r.exit_code, r.stdout) == (0, b"pulled by the API\n")
    assert Catalog(root).lookup(ref)["repo_digests"] == [f"{plain.host}/api@{plain.inspect('api:latest')['Digest']}"]
    with pytest.raises(api.ImageError, match="manifest: not found"):
        api.run(f"{plain.host}/api:nothing", ["true"], root=root, network="none")
    with pytest.raises(api.ImageError, match="no such image file or loaded image"):
        api.run("missing.tar", ["true"], root=root, network="none")


def test_a_local_registry_may_have_a_certificate_nobody_trusts(registries, tmp_path):
    # as docker: HTTPS first, without checking a local registry's certificate (then HTTP)
    tls = registries(tls=True)
    ref = tls.push(BUSYBOX, "tls:1")
    assert "Status: Downloaded newer image" in ok(minirt(tmp_path, "pull", ref))


def test_a_remote_registry_needs_a_trusted_certificate(registries, tmp_path):
    from minirt.errors import ImageError
    from minirt.image.registry import Client

    tls = registries(tls=True)
    client = Client(tls.host)
    client.insecure = False  # as if it were elsewhere: its certificate is checked
    with pytest.raises(ImageError) as e:
        client.request("GET", "/v2/", scope="", what="ping")
    assert str(e.value) == (f"ping: TLS: self-signed certificate (--insecure-registry {tls.host} "
                            "if you trust it)")
    client.close()


def test_platform_variants():
    from minirt.errors import ImageError
    from minirt.image.formats import pick_manifest
    from minirt.image.formats import parse_platform

    def entry(digit, variant):
        return {"digest": "sha256:" + digit * 64, "platform": {"os": "linux", "architecture": "arm", "variant": variant}}

    index = {"manifests": [entry("6", "v6"), entry("7", "v7")]}
    assert pick_manifest("x", "index", index, None, parse_platform("linux/arm/v7"))["digest"][7] == "7"
    assert pick_manifest("x", "index", index, None, parse_platform("linux/arm/v6"))["digest"][7] == "6"
    with pytest.raises(ImageError, match="no linux/arm/v8 image"):
        pick_manifest("x", "index", index, None, parse_platform("linux/arm/v8"))
    for bad in ("linux", "linux/", "a/b/c/d", "linux/am d64"):
        with pytest.raises(ImageError, match="invalid platform"):
            parse_platform(bad)



def test_without_a_variant_the_best_one_the_cpu_runs_is_chosen():
    # containerd's matcher: arm means the host's variant (v7 by default), else older ones, newest first
    from minirt.errors import ImageError
    from minirt.image.formats import pick_manifest

    def index(*platforms):
        return {"manifests": [{"digest": f"sha256:{i}" + "0" * 63, "platform": dict(zip(("os", "architecture", "variant"), p))}
                              for i, p in enumerate(platforms)]}

    def pick(idx, plat=("linux", "arm")):
        return int(pick_manifest("x", "index", idx, None, plat)["digest"][7])

    assert pick(index(("linux", "arm", "v6"), ("linux", "arm", "v7"))) == 1
    assert pick(index(("linux", "arm", "v5"), ("linux", "arm", "v6"))) == 1
    assert pick(index(("linux", "arm", "v6"), ("linux", "arm"))) == 1  # no variant: arm's is v7
    assert pick(index(("linux", "arm64", "v8"), ("linux", "arm", "v7")), ("linux", "arm64")) == 0
    assert pick(index(("linux", "amd64", "v3"), ("linux", "amd64")), ("linux", "amd64")) == 1
    with pytest.raises(ImageError, match="no linux/arm image"):
        pick(index(("linux", "arm", "v8")))


def _skopeo_inspect(*args):
    out = subprocess.run(["skopeo", "inspect", *args], check=True, capture_output=True).stdout
    return json.loads(out)


def test_a_pulled_image_is_saved_with_the_registrys_blobs_and_loads_back(plain, tmp_path):
    import tarfile

    ref = plain.push(BUSYBOX, "saved:1")  # skopeo gzips the layers: the registry's blobs are not the archive's
    config = plain.inspect("saved:1", raw=True)["config"]["digest"]
    layers = plain.inspect("saved:1")["Layers"]
    ok(minirt(tmp_path, "pull", "-q", ref))
    archive = tmp_path / "saved.tar"
    ok(minirt(tmp_path, "save", "-o", str(archive), ref))
    assert _skopeo_inspect("--raw", f"docker-archive:{archive}")["config"]["digest"] == config
    diff_ids = Catalog(str(tmp_path / "state")).lookup(ref)["layers"]
    # skopeo names a docker-archive's layers by their diff_ids; the files are the blobs as downloaded
    assert _skopeo_inspect(f"docker-archive:{archive}")["Layers"] == diff_ids
    assert _skopeo_inspect("--config", f"docker-archive:{archive}")["rootfs"]["diff_ids"] == diff_ids
    with tarfile.open(archive) as tar:
        assert {f"blobs/{d.replace(':', '/')}" for d in layers + [config]} <= set(tar.getnames())
    again = tmp_path / "again"
    assert ok(minirt(again, "load", "-i", str(archive))) == f"Loaded image: {ref}\n"
    entry = Catalog(str(again / "state")).lookup(ref)
    assert (entry["id"], entry["layers"], [b["digest"] for b in entry["blobs"]]) == (config, diff_ids, layers)


def test_a_pulled_images_digest_is_shown_by_images_and_image_inspect(plain, tmp_path):
    ref = plain.push(BUSYBOX, "shown:2")
    digest = plain.inspect("shown:2")["Digest"]
    ok(minirt(tmp_path, "pull", "-q", ref))
    repository = ref.rsplit(":", 1)[0]
    ok(minirt(tmp_path, "tag", ref, "mine"))

    def rows():
        return [line.split()[:3] for line in ok(minirt(tmp_path, "images", "--digests")).splitlines()[1:]]

    assert rows() == [[repository, "2", digest], ["mine", "latest", "<none>"]]
    inspected = json.loads(ok(minirt(tmp_path, "image", "inspect", "mine")))[0]
    assert inspected["RepoDigests"] == [f"{repository}@{digest}"]
    ok(minirt(tmp_path, "rmi", ref))
    assert rows() == [["mine", "latest", "<none>"], [repository, "<none>", digest]]  # as docker: by digest still
    assert json.loads(ok(minirt(tmp_path, "image", "inspect", f"{repository}@{digest}")))[0]["Id"] == inspected["Id"]


def test_repo_digests_gather_every_repository_an_image_was_pulled_from(plain, tmp_path):
    first, second = plain.push(BUSYBOX, "first:1"), plain.push(BUSYBOX, "second:1")
    digest = plain.inspect("first:1")["Digest"]
    ok(minirt(tmp_path, "pull", "-q", first))
    ok(minirt(tmp_path, "pull", "-q", second))
    ok(minirt(tmp_path, "load", "-i", os.path.realpath("images/busybox.tar")))  # the same image, from a file
    inspected = json.loads(ok(minirt(tmp_path, "image", "inspect", "busybox")))[0]
    assert sorted(inspected["RepoDigests"]) == sorted(f"{r.rsplit(':', 1)[0]}@{digest}" for r in (first, second))
