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
    ("rel/ative:/x", "invalid characters for a local volume name.* use absolute path"),
    ("x:/x", "'x' includes invalid characters"),
    ("name:rel", "destination must be an absolute"),
    ("/:rel", "destination must be an absolute"),
    ("/:/x:rx", "mode must be ro or rw"),
    ("/nonexistent-minirt:/x", "no such file"),
    ("only", "expected SRC:DST"),
])
def test_bad_volumes_are_refused(bad, message):
    with pytest.raises(SpecError, match=message):
        spec.build(IMAGE, volumes=[bad])


def test_a_name_is_a_named_volume_and_a_lone_path_an_anonymous_one():
    named, anonymous, bound = spec.build(IMAGE, volumes=["db:/var/lib/db/:ro", "/scratch", "/:/host"]).mounts
    assert (named.volume, named.destination, named.readonly, named.anonymous) == ("db", "/var/lib/db", True, False)
    assert anonymous.anonymous and len(anonymous.volume) == 64 and anonymous.destination == "/scratch"
    assert (bound.volume, bound.source) == ("", "/")
    assert spec.Mount(**named.to_json()) == named  # as config.json keeps it
    assert "volume" not in bound.to_json()        # a bind mount's record as before


def test_relative_workdir_is_refused():
    with pytest.raises(SpecError, match="working directory"):
        spec.build(IMAGE, workdir="rel")


def test_spec_round_trips_through_json():
    s = spec.build(IMAGE, volumes=["/tmp:/data:ro"])
    assert spec.ContainerSpec.from_json(s.to_json()) == s


# -- flag values: units, numbers, names ------------------------------------------------

@pytest.mark.parametrize("text, expected", [("512m", 512 << 20), ("1.5G", 3 << 29), ("64mb", 64 << 20),
                                            ("1024", 1024), ("0", 0), ("8e18", 8 * 10 ** 18)])
def test_sizes(text, expected):
    assert spec.parse_bytes(text, "--memory") == expected


@pytest.mark.parametrize("text", ["nan", "inf", "1e400", "infinity", "9223372036854775808",
                                  "1e19", "9e9g", "", "m", "1x", "0x10"])
def test_sizes_that_are_no_sizes_are_refused(text):
    with pytest.raises(SpecError, match=r"^invalid --memory .*expected a size"):
        spec.parse_bytes(text, "--memory")


@pytest.mark.parametrize("limits, message", [
    ({"memory": "nan"}, "invalid --memory 'nan'"),
    ({"memory": "64m", "memory_swap": "nan"}, "invalid --memory-swap 'nan'"),
    ({"memory": "64m", "memory_swap": "1e400"}, "invalid --memory-swap '1e400'"),
    ({"pids_limit": "1e400"}, "invalid --pids-limit '1e400': not a number"),
    ({"pids_limit": str(2 ** 64)}, "invalid --pids-limit '18446744073709551616': at most 4194304"),
    ({"cpus": "nan"}, "invalid --cpus 'nan'"),
    ({"cpus": "inf"}, "invalid --cpus 'inf'"),
    ({"cpu_shares": "1e400"}, "invalid --cpu-shares '1e400': not a number"),
    ({"cpu_shares": str(2 ** 64)}, "invalid --cpu-shares"),
    ({"cpuset_cpus": "1-0"}, "invalid --cpuset-cpus '1-0': expected a list"),
    ({"cpuset_cpus": "0-"}, "invalid --cpuset-cpus '0-': expected a list"),
    ({"cpuset_cpus": "1²"}, "invalid --cpuset-cpus '1²': expected a list"),
    ({"cpuset_cpus": "99999999999999999999"}, "invalid --cpuset-cpus '99999999999999999999': expected a list"),
    ({"cpuset_cpus": "4096"}, "invalid --cpuset-cpus '4096': this host has CPUs 0-"),
])
def test_bad_limits_are_one_line(limits, message):
    with pytest.raises(SpecError) as e:
        spec.resources(**limits)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("port", ["1²:80", "99999999999999999999:80", "0:80", "80:65536", "-1:80", "80:80/sctp"])
def test_bad_ports_are_refused(port):
    with pytest.raises(SpecError, match="^invalid port"):
        spec.parse_port(port)


@pytest.mark.parametrize("name", ["web", "a", "Web-1.prod_2", "9" * spec.NAME_MAX])
def test_container_names_follow_dockers_rule(name):
    assert spec.build(IMAGE, name=name).name == name


@pytest.mark.parametrize("name", ["a" * 300, "a" * (spec.NAME_MAX + 1), "a/b", "a\nb", ".hidden", "-x", "_x",
                                  "a b", "a:b", "\udcff", "é"])
def test_bad_container_names_are_refused(name):
    with pytest.raises(SpecError, match=r"^invalid container name .*only \[a-zA-Z0-9\]"):
        spec.build(IMAGE, name=name)


@pytest.mark.parametrize("hostname", ["a\nb", "a/b", "x" * 65, "-x", "a b"])
def test_bad_hostnames_are_refused(hostname):
    with pytest.raises(SpecError, match="^invalid hostname"):
        spec.build(IMAGE, hostname=hostname)


@pytest.mark.parametrize("user", ["", "0", "1000:1000", "app", "app:staff", "4294967294"])
def test_users(user):
    assert spec.check_user(user) == user


@pytest.mark.parametrize("user", [":", "1000:", ":1000", "a:b:c", "4294967295", "99999999999999999999", "1²",
                                  "a\nb"])
def test_bad_users_are_refused(user):
    with pytest.raises(SpecError, match=r"^invalid --user .*a name or a number below 4294967295"):
        spec.check_user(user)


@pytest.mark.parametrize("text", ["-1", "-inf", "-1e400"])
def test_negative_sizes_are_refused(text):
    with pytest.raises(SpecError, match="must not be negative"):
        spec.parse_bytes(text, "--memory")


@pytest.mark.parametrize("bad", ["../../etc", "a/b", "ABC", "x" * 64, "0" * 63])
def test_a_given_container_id_is_64_hex_digits(bad):
    """An API caller's ``id`` names the container's directory and its lease."""
    with pytest.raises(SpecError, match="container id"):
        spec.build({}, cmd=["true"], id=bad)
    assert spec.build({}, cmd=["true"], id="0" * 64).id == "0" * 64


def test_prepare_refuses_a_bad_id_before_it_touches_the_store(tmp_path):
    from minirt.api import prepare
    with pytest.raises(SpecError, match="container id"):
        prepare("no-such-image", id="../../x", root=str(tmp_path / "root"))
    assert not (tmp_path / "root" / "layers").exists()
