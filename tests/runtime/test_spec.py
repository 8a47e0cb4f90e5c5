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


@pytest.mark.parametrize("port", ["1²:80", "99999999999999999999:80", "80:0", "80:65536", "-1:80", "80:80/sctp", "0", "80:"])
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


# -- durations, healthchecks and restart policies --------------------------------------

@pytest.mark.parametrize("text, ns", [
    ("30s", 30 * 10**9), ("1m30s", 90 * 10**9), ("1.5s", 1500 * 10**6), ("500ms", 500 * 10**6), (".5s", 5 * 10**8),
    ("1h", 3600 * 10**9), ("0", 0), ("-2s", -2 * 10**9), ("+3ms", 3 * 10**6), ("250us", 250_000),
    ("250µs", 250_000), ("7ns", 7), ("2562047h47m16.854775807s", (1 << 63) - 1)])
def test_durations_are_read_as_go_reads_them(text, ns):
    assert spec.parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "-", "+", "s", "1", "30", "1x", "1.2.3s", "2562048h", "nan", "inf", "1s ",
                                  " 1s", "²s", "1S", "--1s", "1e3s", "0x10s"])
def test_what_is_not_a_duration(text):
    with pytest.raises(ValueError):
        spec.parse_duration(text)


@pytest.mark.parametrize("ns, text", [(0, "0s"), (30 * 10**9, "30s"), (90 * 10**9, "1m30s"), (1500 * 10**6, "1.5s"),
                                      (500 * 10**6, "500ms"), (3600 * 10**9, "1h0m0s"), (1500, "1.5µs"),
                                      (7, "7ns"), (-2 * 10**9, "-2s")])
def test_durations_are_printed_as_go_prints_them(ns, text):
    assert spec.format_duration(ns) == text


def test_health_flags_make_docker_s_healthconfig():
    assert spec.healthcheck_flags("curl -f localhost", "1s", "2s", "3s", "100ms", "4") == {
        "Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 10**9, "Timeout": 2 * 10**9,
        "StartPeriod": 3 * 10**9, "StartInterval": 10**8, "Retries": 4}
    assert spec.healthcheck_flags() is None                       # the image's stays
    assert spec.healthcheck_flags(interval="0s", retries="0") is None  # zero: unset, as docker's flags
    assert spec.healthcheck_flags(interval="5s") == {"Interval": 5 * 10**9}  # the image's Test, another interval
    assert spec.healthcheck_flags(none=True) == {"Test": ["NONE"]}


def test_run_s_healthcheck_merges_with_the_image_s_as_docker_s():
    image = dict(IMAGE, Healthcheck={"Test": ["CMD", "/check"], "Interval": 10**10, "Retries": 5})
    assert spec.build(image).healthcheck == image["Healthcheck"]
    assert spec.build(image, healthcheck={"Interval": 10**9}).healthcheck == {
        "Test": ["CMD", "/check"], "Interval": 10**9, "Retries": 5}
    assert spec.build(image, healthcheck={"Test": ["CMD-SHELL", "true"]}).healthcheck["Test"] == ["CMD-SHELL", "true"]
    off = spec.build(image, healthcheck={"Test": ["NONE"]}).healthcheck
    assert off["Test"] == ["NONE"] and not spec.health_enabled(off)
    assert spec.build(IMAGE).healthcheck is None and spec.build(IMAGE, healthcheck={"Interval": 10**9}).healthcheck == {
        "Interval": 10**9}                                        # no Test anywhere: no probes
    assert not spec.health_enabled({"Interval": 10**9}) and spec.health_enabled(image["Healthcheck"])


def test_a_built_spec_keeps_its_healthcheck_and_policy_through_json():
    s = spec.build(dict(IMAGE, Shell=["/bin/bash", "-c"]), healthcheck={"Test": ["CMD-SHELL", "true"]},
                   restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    again = spec.ContainerSpec.from_json(s.to_json())
    assert again == s and again.shell == ["/bin/bash", "-c"]
    assert again.restart_policy == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert spec.build(IMAGE).restart_policy == {"Name": "no", "MaximumRetryCount": 0}


@pytest.mark.parametrize("check, says", [
    ("CMD true", "expected an object"),
    ({"Test": "true"}, "Test must be a list of strings"),
    ({"Test": ["true"]}, "Test must be [\"NONE\"]"),
    ({"Test": ["CMD"]}, "Test must be"),
    ({"Test": ["CMD-SHELL", "a", "b"]}, "Test must be"),
    ({"Test": ["NONE", "x"]}, "Test must be"),
    ({"Test": ["CMD", "x"], "Interval": "1s"}, "Interval must be a whole number of nanoseconds"),
    ({"Test": ["CMD", "x"], "Interval": 1.5}, "Interval must be a whole number"),
    ({"Test": ["CMD", "x"], "Timeout": True}, "Timeout must be a whole number"),
    ({"Test": ["CMD", "x"], "Timeout": 999_999}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "x"], "StartPeriod": -1}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "x"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Test": ["CMD", "x"], "Retries": "3"}, "Retries must be a whole number"),
    ({"Test": ["CMD", "x"], "Intervall": 1}, "unknown field 'Intervall'"),
])
def test_a_bad_healthcheck_from_the_api_is_one_clear_error(check, says):
    with pytest.raises(SpecError, match=None) as e:
        spec.build(IMAGE, healthcheck=check)
    assert says in str(e.value)


@pytest.mark.parametrize("text, policy", [
    ("no", {"Name": "no", "MaximumRetryCount": 0}), ("", {"Name": "no", "MaximumRetryCount": 0}),
    ("always", {"Name": "always", "MaximumRetryCount": 0}), ("unless-stopped", {"Name": "unless-stopped",
                                                                                 "MaximumRetryCount": 0}),
    ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
    ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}), ("no:0", {"Name": "no", "MaximumRetryCount": 0})])
def test_restart_policies_are_read_as_docker_reads_them(text, policy):
    assert spec.parse_restart(text) == policy


@pytest.mark.parametrize("policy, says", [
    ({"Name": "sometimes"}, "unknown policy 'sometimes'"),
    ({"Name": "on-failure", "MaximumRetryCount": -1}, "cannot be negative"),
    ({"Name": "on-failure", "MaximumRetryCount": "3"}, "must be an integer"),
    ({"Name": "always", "MaximumRetryCount": 2}, "can only be used with 'on-failure'"),
    ({"Name": "always", "Max": 2}, "expected {\"Name\""),
    ("always", "expected {\"Name\""),
])
def test_a_bad_restart_policy_from_the_api_is_one_clear_error(policy, says):
    with pytest.raises(SpecError) as e:
        spec.build(IMAGE, restart_policy=policy)
    assert says in str(e.value)


def test_a_restart_policy_and_remove_exclude_each_other():
    with pytest.raises(SpecError, match="cannot specify both --restart and --rm"):
        spec.build(IMAGE, remove=True, restart_policy={"Name": "always"})
    assert spec.build(IMAGE, remove=True, restart_policy={"Name": "no"}).remove
