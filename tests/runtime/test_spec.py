"""ContainerSpec: docker's rules for merging an image's config with the command line."""

import pytest

from minirt import spec
from minirt.errors import SpecError

IMAGE = {"Env": ["PATH=/bin", "A=image"], "Entrypoint": ["/ep"], "Cmd": ["default"],
         "WorkingDir": "/work", "User": "app"}


def test_image_defaults_are_used():
    s = spec.build(IMAGE)
    assert s.args == ["/ep", "default"]
    assert "A=image" in s.env and "PATH=/bin" in s.env
    assert s.cwd == "/work" and s.user == "app"


def test_command_line_cmd_replaces_cmd_but_keeps_entrypoint():
    assert spec.build(IMAGE, cmd=["x", "y"]).args == ["/ep", "x", "y"]


def test_entrypoint_override_drops_image_cmd():
    assert spec.build(IMAGE, entrypoint="/bin/sh").args == ["/bin/sh"]
    assert spec.build(IMAGE, entrypoint="/bin/sh", cmd=["-c", "true"]).args == ["/bin/sh", "-c", "true"]


def test_empty_entrypoint_clears_it():
    assert spec.build(IMAGE, entrypoint="", cmd=["ls"]).args == ["ls"]


def test_no_command_at_all_is_an_error():
    with pytest.raises(SpecError, match="no command"):
        spec.build({})


def test_env_overrides_and_host_passthrough():
    s = spec.build(IMAGE, env=["A=cli", "B=1", "FROM_HOST", "NOT_ON_HOST"])
    assert "A=cli" in s.env and "A=image" not in s.env
    assert "B=1" in s.env
    assert "FROM_HOST=yes" in s.env
    assert not any(e.startswith("NOT_ON_HOST") for e in s.env)


@pytest.fixture(autouse=True)
def _host_env(monkeypatch):
    monkeypatch.setenv("FROM_HOST", "yes")
    monkeypatch.delenv("NOT_ON_HOST", raising=False)


def test_default_path_and_hostname():
    s = spec.build({"Cmd": ["sh"]})
    assert any(e.startswith("PATH=/usr/local/sbin") for e in s.env)
    assert s.hostname == s.id[:12] and f"HOSTNAME={s.hostname}" in s.env
    assert len(s.id) == 64


def test_workdir_user_hostname_overrides():
    s = spec.build(IMAGE, workdir="/tmp", user="1000:1000", hostname="box")
    assert (s.cwd, s.user, s.hostname) == ("/tmp", "1000:1000", "box")


@pytest.mark.parametrize("bad, message", [
    ("relative:/x", "absolute host path"),
    ("/:rel", "destination must be an absolute"),
    ("/:/x:rx", "mode must be ro or rw"),
    ("/nonexistent-minirt:/x", "no such file"),
    ("/only", "expected SRC:DST"),
])
def test_bad_volumes_are_refused(bad, message):
    with pytest.raises(SpecError, match=message):
        spec.build(IMAGE, volumes=[bad])


def test_relative_workdir_is_refused():
    with pytest.raises(SpecError, match="working directory"):
        spec.build(IMAGE, workdir="rel")


def test_spec_round_trips_through_json():
    s = spec.build(IMAGE, volumes=["/tmp:/data:ro"])
    assert spec.ContainerSpec.from_json(s.to_json()) == s
