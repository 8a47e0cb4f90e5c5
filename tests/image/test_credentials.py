"""Logins kept by docker's credential helpers (``credsStore``, ``credHelpers``)
and asked for at a terminal, against the real registry with basic auth.

The helper here is a small program speaking docker's protocol that keeps its
secrets in a directory and logs every call, so a test sees which helper was
asked for what."""

import importlib.util
import json
import os
import pathlib
import stat
import sys

import pytest

registry = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
    "registry", pathlib.Path(__file__).with_name("registry.py")))
registry.__spec__.loader.exec_module(registry)
BUSYBOX = "docker-archive:" + os.path.realpath("images/busybox.tar")

HELPER = f"""#!{sys.executable}
import json, os, sys
keychain = os.path.join(os.path.dirname(__file__), "keychain")
verb, data = sys.argv[1], sys.stdin.read()
with open(os.path.join(keychain, "calls"), "a") as log:
    log.write(f"{{os.path.basename(sys.argv[0])}} {{verb}}\\n")
if os.environ.get("HELPER_FAILS"):
    sys.exit(os.environ["HELPER_FAILS"])
server = json.loads(data)["ServerURL"] if verb == "store" else data
path = os.path.join(keychain, server.replace("/", "_"))
if verb == "store":
    with open(path, "w") as f:
        f.write(data)
elif not os.path.exists(path):
    print("credentials not found in native keychain")
    sys.exit(1)
elif verb == "get":
    print(open(path).read())
elif verb == "erase":
    os.unlink(path)
"""


minirt, ok = registry.minirt, registry.ok


@pytest.fixture(scope="module")
def basic(registries):
    return registries("basic")


@pytest.fixture
def keychain(tmp_path, monkeypatch):
    """docker-credential-test (and -other) on $PATH; their keychain directory."""
    bindir = tmp_path / "bin"
    (bindir / "keychain").mkdir(parents=True)
    for name in ("test", "other"):
        (bindir / f"docker-credential-{name}").write_text(HELPER)
        (bindir / f"docker-credential-{name}").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return bindir / "keychain"


def keep(keychain, server, user, secret):
    (keychain / server).write_text(json.dumps({"ServerURL": server, "Username": user, "Secret": secret}))


def config(tmp_path, which, content):
    path = tmp_path / {"docker": "docker", "own": "cfg/minirt"}[which] / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def calls(keychain):
    return (keychain / "calls").read_text().splitlines() if (keychain / "calls").exists() else []


def test_docker_creds_store_is_asked(basic, tmp_path, keychain):
    ref = basic.push(BUSYBOX, "private/busybox:helper")
    config(tmp_path, "docker", {"credsStore": "test"})
    keep(keychain, basic.host, basic.user, basic.password)
    assert "Status: Downloaded newer image" in ok(minirt(tmp_path, "pull", ref))
    assert "docker-credential-test get" in calls(keychain)


def test_a_registry_s_own_helper_comes_before_the_store_and_the_file(basic, tmp_path, keychain):
    ref = basic.push(BUSYBOX, "private/busybox:helper")
    config(tmp_path, "docker", {"credsStore": "test", "credHelpers": {basic.host: "other"},
                                "auths": {basic.host: {"auth": "d3Jvbmc6d3Jvbmc="}}})  # wrong:wrong
    keep(keychain, basic.host, basic.user, basic.password)
    assert "Status: Downloaded newer image" in ok(minirt(tmp_path, "pull", ref))
    assert calls(keychain) == ["docker-credential-other get"]


def test_login_and_logout_go_through_the_own_file_s_helper(basic, tmp_path, keychain):
    saved = config(tmp_path, "own", {"credsStore": "test"})
    out = ok(minirt(tmp_path, "login", "-u", basic.user, "--password-stdin", basic.host,
                    input=basic.password + "\n"))
    assert "Login Succeeded (saved in docker-credential-test)" in out
    assert json.loads((keychain / basic.host).read_text()) == {
        "ServerURL": basic.host, "Username": basic.user, "Secret": basic.password}
    assert json.loads(saved.read_text())["auths"] == {basic.host: {}}  # docker's marker, no secret
    ref = basic.push(BUSYBOX, "private/busybox:helper")
    assert "Status: Downloaded newer image" in ok(minirt(tmp_path, "pull", ref))
    assert "Removing login credentials" in ok(minirt(tmp_path, "logout", basic.host))
    assert not (keychain / basic.host).exists() and json.loads(saved.read_text())["auths"] == {}
    assert calls(keychain)[-1] == "docker-credential-test erase"


@pytest.mark.parametrize("setup, message", [
    ({"credsStore": "missing"}, "credential helper docker-credential-missing not found in $PATH"),
    ({"credsStore": "../x"}, "bad credential helper name '../x'"),
    ({"credsStore": "test", "fails": "keychain locked"}, "credential helper docker-credential-test get: keychain locked"),
    ({"credsStore": "test", "garbage": True}, "credential helper docker-credential-test get: not {\"Username\", \"Secret\"} JSON"),
])
def test_a_broken_helper_is_one_line(basic, tmp_path, keychain, monkeypatch, setup, message):
    if setup.pop("fails", None):
        monkeypatch.setenv("HELPER_FAILS", "keychain locked")
    if setup.pop("garbage", None):
        (keychain / basic.host).write_text("no json here")
    config(tmp_path, "docker", setup)
    r = minirt(tmp_path, "pull", f"{basic.host}/private/busybox:helper")
    assert r.returncode == 125 and message in r.stderr and r.stderr.count("\n") == 1, r
    assert not (tmp_path / "state" / "images").exists() or not os.listdir(tmp_path / "state" / "images")


def test_login_asks_at_a_terminal(basic, tmp_path, terminal, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    t = terminal("--root", str(tmp_path / "state"), "login", basic.host)
    t.read_until(b"Username: ")
    t.write(basic.user.encode() + b"\n")
    t.read_until(b"Password: ")
    t.write(basic.password.encode() + b"\n")
    t.read_until(b"Login Succeeded")
    assert basic.password.encode() not in t.out  # not echoed
    saved = tmp_path / "cfg" / "minirt" / "config.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    # the next time, the user known is offered
    t = terminal("--root", str(tmp_path / "state"), "login", basic.host)
    t.read_until(f"Username ({basic.user}): ".encode())
    t.write(b"\n")
    t.read_until(b"Password: ")
    t.write(b"wrong\n")
    t.read_until(b"unauthorized")
