"""Compose files as docker compose reads them, and the bad ones refused first.

Every bad file gives one line naming the file, the path inside it and what is
wrong, exit status 125, and changes nothing (nothing is made before the files
are read).  Then the good ones: YAML 1.2's scalars, interpolation and .env,
several -f files merged, extends, profiles, the short forms read into one shape.
"""

import os

import pytest

from minirt import cli
from minirt.compose import model, schema, yamlfile
from minirt.compose.interpolate import read_env_file, substitute
from minirt.errors import SpecError


def compose(tmp_path, *args, files=None, env=None):
    """``minirt compose`` in ``tmp_path`` (state root tmp_path/root): (status, stderr lines)."""
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        return cli.main(["--root", str(tmp_path / "root"), "compose", *args])
    finally:
        os.chdir(here)


def refused(tmp_path, capsys, text, *args, **files):
    """The one error line of ``compose config`` on compose.yaml = ``text``; nothing made."""
    code = compose(tmp_path, *args, "config", files={"compose.yaml": text, **files})
    err = capsys.readouterr().err.splitlines()
    assert code == 125, err
    assert len(err) == 1 and err[0].startswith("minirt: "), err
    assert not (tmp_path / "root").exists()
    return err[0].removeprefix("minirt: ")


@pytest.mark.parametrize("text,message", [
    ("services:\n  web:\n    image: x\n    ports:\n      - {target: 80, bogus: 1}\n",
     "compose.yaml: services.web.ports[0]: additional property bogus is not allowed"),
    ("services:\n  web:\n    image: x\n    ports: [[80]]\n",
     "compose.yaml: services.web.ports[0]: must be a number or a string or a mapping, not a list"),
    ("services:\n  web:\n    imag: x\n", "compose.yaml: services.web: additional property imag is not allowed"),
    ("services:\n  web:\n    image: x\n    healthcheck: {retries: [3]}\n",
     "compose.yaml: services.web.healthcheck.retries: must be a number or a string, not a list"),
    ("services:\n  web:\n    image: x\n    depends_on: {db: {condition: started}}\n  db: {image: x}\n",
     "compose.yaml: services.web.depends_on.db.condition: must be one of 'service_started', 'service_healthy',"
     " 'service_completed_successfully', not 'started'"),
    ("services:\n  web:\n    image: x\n    ports: ['80:80', '80:80']\n",
     "compose.yaml: services.web.ports[1]: '80:80' is given twice (items must be unique)"),
    ("servics: {}\n", "compose.yaml: (top level): additional property servics is not allowed"),
    ("services:\n  web: [x]\n", "compose.yaml: services.web: must be a mapping, not a list"),
])
def test_schema_errors_name_the_file_the_path_and_what_is_wrong(tmp_path, capsys, text, message):
    assert refused(tmp_path, capsys, text) == message


@pytest.mark.parametrize("text,message", [
    ("services:\n  web:\n    image: x\n    image: y\n",
     "compose.yaml: line 4: invalid YAML: mapping key 'image' already defined"),
    ("services:\n  web: {image: x\n", "compose.yaml: line 3: invalid YAML: did not find expected ',' or '}'"),
    ("- a\n", "compose.yaml: top-level object must be a mapping"),
    ("", "compose.yaml: empty compose file"),
    ("services:\n  web:\n    image: x\n    command: ${\n",
     "compose.yaml: services.web.command: invalid interpolation format for '${': missing }"),
    ("services:\n  web:\n    image: ${TAG:?set TAG first}\n",
     "compose.yaml: services.web.image: required variable TAG is missing a value: set TAG first"),
    ("services:\n  web:\n    image: x\n    depends_on: [db]\n",
     "compose.yaml: services.web.depends_on: service 'db' is not defined"),
    ("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n  c: {image: x, depends_on: [a]}\n",
     "compose.yaml: dependency cycle: a -> b -> c -> a"),
    ("services:\n  web: {image: x, volumes: ['data:/data']}\n",
     "compose.yaml: services.web.volumes: service 'web' refers to undefined volume 'data'"
     " (declare it under the top-level volumes)"),
    ("services:\n  web: {command: x}\n", "compose.yaml: services.web: has neither an image nor a build context specified"),
    ("services:\n  web: {image: x, ports: ['80:']}\n",
     "compose.yaml: services.web.ports[0]: '80:': '' is not a port number or range (1-65535)"),
    ("services:\n  web: {image: x, ports: ['localhost::80']}\n",
     "compose.yaml: services.web.ports[0]: 'localhost::80': 'localhost' is not an IPv4 address"),
    ("services:\n  web: {image: x, ports: ['8080-8081:80']}\n",
     "compose.yaml: services.web.ports[0]: '8080-8081:80': the host and container ranges differ in length"),
    ("services:\n  web: {image: x, ports: ['99999:80']}\n",
     "compose.yaml: services.web.ports[0]: '99999:80': '99999' is not a port number or range (1-65535)"),
    ("services:\n  web: {image: x, restart: sometimes}\n",
     "compose.yaml: services.web.restart: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure',"
     " or 'unless-stopped'"),
    ("services:\n  web: {image: x, healthcheck: {test: 'true', interval: soon}}\n",
     "compose.yaml: services.web.healthcheck: 'soon' is not a duration (such as 30s, 1m30s or 500ms)"),
    ("services:\n  web: {image: x, healthcheck: {retries: x}}\n",
     "compose.yaml: services.web.healthcheck: retries: 'x' is not a whole number"),
    ("services:\n  web: {image: x, read_only: '${RO:-maybe}'}\n",
     "compose.yaml: services.web.read_only: 'maybe' is not true or false"),
    ("services:\n  web: {image: x, mem_limit: 1k}\n",
     "compose.yaml: services.web: invalid --memory: the minimum allowed is 6m"),
    ("services:\n  web: {image: x, pull_policy: daily}\n",
     "compose.yaml: services.web.pull_policy: 'daily': minirt knows always, never, missing and build"),
    ("services:\n  web: {image: x, stop_signal: SIGINT}\n",
     "compose.yaml: services.web.stop_signal: not supported by minirt compose"),
    ("services:\n  web: {image: x, sysctls: {a: 1}}\n", "compose.yaml: services.web.sysctls: not supported by minirt compose"),
    ("services:\n  web: {image: x, networks: [a, b]}\nnetworks: {a: {}}\n",
     "compose.yaml: services.web.networks: service 'web' refers to undefined network 'b'"),
    ("services:\n  web: {image: x, extends: {service: nope}}\n",
     "compose.yaml: services.web.extends: no service 'nope' in compose.yaml"),
    ("services:\n  web: {image: x, volumes: ['data:/data:rx']}\nvolumes: {data: {}}\n",
     "compose.yaml: services.web.volumes[0]: 'data:/data:rx': unknown mode 'rx' (ro or rw)"),
])
def test_bad_files_are_refused_before_anything_is_made(tmp_path, capsys, text, message):
    assert refused(tmp_path, capsys, text) == message


def test_bad_command_lines(tmp_path, capsys):
    good = {"compose.yaml": "services:\n  web: {image: x}\n"}
    for args, message in [
        (("-p", "Bad Name", "config"), "invalid project name 'Bad Name': it must contain only lower-case letters,"
                                       " digits, dashes and underscores, and start with a letter or digit"),
        (("up", "nope"), "no such service: nope"),
        (("-f", "missing.yaml", "config"), "missing.yaml: cannot read a compose file: No such file or directory"),
        (("--env-file", "missing.env", "config"), "missing.env: cannot read an env file: No such file or directory"),
        (("logs", "--tail", "x"), "invalid --tail 'x': expected a number or all"),
        (("frobnicate",), "compose: unknown action 'frobnicate' (one of: up, down, ps, logs, build, pull, push,"
                          " exec, run, start, stop, restart, rm, config, images, top, port)"),
        (("port", "web", "80", "--protocol", "sctp"), "invalid --protocol 'sctp': expected tcp or udp"),
        (("down", "--rmi", "some"), "invalid --rmi 'some': expected local or all"),
    ]:
        code = compose(tmp_path, *args, files=good)
        err = capsys.readouterr().err.splitlines()
        assert (code, err) == (125, ["minirt: " + message]), args
    os.remove(tmp_path / "compose.yaml")
    assert compose(tmp_path, "config") == 125
    assert capsys.readouterr().err.startswith("minirt: no configuration file provided: none of compose.yaml,")


def test_yaml_1_2_core_schema_as_docker_compose_reads_it():
    data = yamlfile.load("a: 22:22\nb: on\nc: yes\nd: off\ne: 0777\nf: 0o17\ng: 0x1f\nh: 1.5\ni: ~\nj:\n"
                         "k: True\nl: 2001-01-01\nm: 1_000\nn: .inf\nbase: &b {x: 1}\no:\n  <<: *b\n  y: 2\n", "f")
    assert data == {"a": "22:22", "b": "on", "c": "yes", "d": "off", "e": 777, "f": 15, "g": 31, "h": 1.5,
                    "i": None, "j": None, "k": True, "l": "2001-01-01", "m": "1_000", "n": float("inf"),
                    "base": {"x": 1}, "o": {"x": 1, "y": 2}}


def test_ports_written_without_quotes_mean_what_they_say(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  ssh:\n    image: x\n    ports:\n      - 22:22\n"
                                           "      - 127.0.0.1:8080:80/udp\n      - 9000-9001:9000-9001\n"
                                           "      - 80\n      - 127.0.0.1::81\n      - {target: 82, protocol: udp}\n")
    ports = model.load([str(tmp_path / "compose.yaml")]).services["ssh"]["ports"]
    assert ports == [{"host_ip": "", "host_port": 22, "container_port": 22, "proto": "tcp"},
                     {"host_ip": "127.0.0.1", "host_port": 8080, "container_port": 80, "proto": "udp"},
                     {"host_ip": "", "host_port": 9000, "container_port": 9000, "proto": "tcp"},
                     {"host_ip": "", "host_port": 9001, "container_port": 9001, "proto": "tcp"},
                     {"host_ip": "", "host_port": 0, "container_port": 80, "proto": "tcp"},  # the kernel's pick
                     {"host_ip": "127.0.0.1", "host_port": 0, "container_port": 81, "proto": "tcp"},
                     {"host_ip": "", "host_port": 0, "container_port": 82, "proto": "udp"}]


@pytest.mark.parametrize("text,expected", [
    ("$A ${A}", "a a"), ("${E:-d}", "d"), ("${E-d}", ""), ("${U-d}", "d"), ("${U:-${A}x}", "ax"),
    ("$$A", "$A"), ("${A:+y}", "y"), ("${E+y}", "y"), ("${U+y}", ""), ("${A?no}", "a"), ("${E?no}", ""),
    ("no variables", "no variables"), ("${U}", ""),
])
def test_interpolation(text, expected):
    assert substitute(text, {"A": "a", "E": ""}) == expected


@pytest.mark.parametrize("text,message", [
    ("${U:?need U}", "required variable U is missing a value: need U"),
    ("${E:?}", "required variable E is missing a value"), ("${U?}", "required variable U is missing a value"),
    ("${A", "invalid interpolation format for '${A': missing }"),
    ("${}", "invalid interpolation format for '${}': ${} names no variable"),
    ("${A!}", "invalid interpolation format for '${A!}': unknown operator in ${A!}"),
    ("$ x", "invalid interpolation format for '$ x': a $ must be followed by a name, {NAME} or $ (write $$ for a $)"),
])
def test_interpolation_errors(text, message):
    with pytest.raises(SpecError) as e:
        substitute(text, {"A": "a", "E": ""})
    assert str(e.value) == message


def test_env_files(tmp_path):
    (tmp_path / "a.env").write_text("# a comment\nA=1\nexport B = two words # a comment\nC='${A} $x'\n"
                                    'D="line\\nnext ${A}"\nE=${A}${HOME_X:-h}\nF\nG=\n')
    assert read_env_file(str(tmp_path / "a.env"), {"F": "from env"}) == {
        "A": "1", "B": "two words", "C": "${A} $x", "D": "line\nnext 1", "E": "1h", "F": "from env", "G": ""}
    (tmp_path / "bad.env").write_text("A=1\n1X=2\n")
    with pytest.raises(SpecError, match=r"bad.env: line 2: invalid variable name '1X'"):
        read_env_file(str(tmp_path / "bad.env"))


def test_dot_env_env_file_and_the_environment(tmp_path):
    (tmp_path / ".env").write_text("TAG=1.0\nPORT=8080\n")
    (tmp_path / "other.env").write_text("TAG=2.0\nPORT=9090\n")  # instead of .env, not over it
    (tmp_path / "web.env").write_text("FROM_FILE=yes\nOVERRIDDEN=file\n")
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: busybox:${TAG}\n    ports: ['${PORT}:80']\n"
        "    env_file: web.env\n    environment:\n      OVERRIDDEN: env\n      FROM_SHELL:\n      NUMBER: 1\n"
        "      FLAG: true\n")
    files = [str(tmp_path / "compose.yaml")]
    p = model.load(files, environ={"FROM_SHELL": "shell"})
    assert p.services["web"]["image"] == "busybox:1.0"
    assert p.services["web"]["ports"][0]["host_port"] == 8080
    assert p.services["web"]["environment"] == ["FROM_FILE=yes", "OVERRIDDEN=env", "FROM_SHELL=shell", "NUMBER=1",
                                                "FLAG=true"]
    assert model.load(files, env_files=[str(tmp_path / "other.env")], environ={}).services["web"]["image"] \
        == "busybox:2.0"
    assert model.load(files, environ={"TAG": "3.0"}).services["web"]["image"] == "busybox:3.0"


def test_several_files_merge_as_docker_compose_merges_them(tmp_path):
    (tmp_path / "compose.yaml").write_text(
        "name: shop\nservices:\n  web:\n    image: web\n    command: [a, b]\n    environment: {A: 1, B: 2}\n"
        "    ports: ['80:80']\n    volumes: ['./x:/x', 'data:/data']\n    labels: [l1=a]\nvolumes: {data: {}}\n")
    (tmp_path / "override.yaml").write_text(
        "services:\n  web:\n    command: c\n    environment: [B=3, C=4]\n    ports: ['443:443']\n"
        "    volumes: ['./y:/x']\n    labels: {l2: b}\n  db:\n    image: db\n")
    p = model.load([str(tmp_path / "compose.yaml"), str(tmp_path / "override.yaml")])
    web = p.services["web"]
    assert p.name == "shop" and list(p.services) == ["web", "db"]
    assert web["command"] == ["c"]
    assert web["environment"] == ["A=1", "B=3", "C=4"]
    assert [q["host_port"] for q in web["ports"]] == [80, 443]
    assert [(v["source"], v["target"]) for v in web["volumes"]] == [("data", "/data"), (str(tmp_path / "y"), "/x")]
    assert web["labels"] == {"l1": "a", "l2": "b"}


def test_extends_in_the_same_file_and_another(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "common.yaml").write_text(
        "services:\n  base:\n    build: ctx\n    environment: {A: 1}\n    cap_drop: [ALL]\n"
        "    env_file: vars.env\n    volumes: ['./data:/data', {type: bind, source: ./logs, target: /logs},"
        " '/abs:/abs']\n")
    (tmp_path / "base" / "vars.env").write_text("E=5\n")
    (tmp_path / "compose.yaml").write_text(
        "services:\n  app:\n    extends: {file: base/common.yaml, service: base}\n    environment: {B: 2}\n"
        "  worker:\n    extends: app\n    command: work\n")
    p = model.load([str(tmp_path / "compose.yaml")])
    for name in ("app", "worker"):
        assert p.services[name]["build"]["context"] == str(tmp_path / "base" / "ctx")
        assert sorted(p.services[name]["environment"]) == ["A=1", "B=2", "E=5"]
        assert p.services[name]["cap_drop"] == ["ALL"]
        # (paths of the other file are its own directory's, as the build context)
        assert [(v["source"], v["target"]) for v in p.services[name]["volumes"]] == [
            (str(tmp_path / "base" / "data"), "/data"), (str(tmp_path / "base" / "logs"), "/logs"), ("/abs", "/abs")]
    assert p.services["worker"]["command"] == ["work"]


def test_profiles(tmp_path):
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web: {image: x, depends_on: [db]}\n  db: {image: x}\n"
        "  debug: {image: x, profiles: [dev]}\n  tools: {image: x, profiles: [ops], depends_on: [db]}\n")
    files = [str(tmp_path / "compose.yaml")]
    assert model.load(files, environ={}).enabled() == ["web", "db"]
    assert model.load(files, profiles=["dev"]).enabled() == ["web", "db", "debug"]
    assert model.load(files, environ={"COMPOSE_PROFILES": "dev,ops"}).enabled() == ["web", "db", "debug", "tools"]
    assert model.load(files, environ={}).enabled(["tools"]) == ["db", "tools"]


def test_project_name_and_top_level_names(tmp_path):
    d = tmp_path / "My_App.1"
    d.mkdir()
    (d / "compose.yaml").write_text(
        "services:\n  web: {image: x, volumes: ['data:/d', 'ext:/e', 'named:/n']}\n"
        "volumes: {data: {}, ext: {external: true}, named: {name: exact}}\n")
    p = model.load([str(d / "compose.yaml")], environ={})
    assert p.name == "my_app1"
    assert {k: v["name"] for k, v in p.volumes.items()} == {"data": "my_app1_data", "ext": "ext", "named": "exact"}
    assert p.networks["default"]["name"] == "my_app1_default"
    assert model.load([str(d / "compose.yaml")], environ={"COMPOSE_PROJECT_NAME": "other"}).name == "other"


def test_config_prints_the_resolved_model(tmp_path, capsys):
    files = {"compose.yaml": "services:\n  web:\n    image: busybox:${TAG:-1}\n    ports: ['8080:80']\n"
                             "    healthcheck: {test: [CMD, 'true'], interval: 1m30s}\n"}
    assert compose(tmp_path, "-p", "demo", "config", files=files) == 0
    printed = yamlfile.load(capsys.readouterr().out, "out")
    assert printed["name"] == "demo"
    web = printed["services"]["web"]
    assert web["image"] == "busybox:1"
    assert web["healthcheck"] == {"Test": ["CMD", "true"], "Interval": 90 * 10**9}
    assert compose(tmp_path, "config", "--services", files=files) == 0
    assert capsys.readouterr().out == "web\n"


def test_the_validator_knows_what_the_schema_uses(compose_schema):
    """Every keyword of the specification's schema is one the validator checks
    or one JSON Schema calls an annotation: a new keyword fails here, not silently."""
    known = {"type", "properties", "patternProperties", "additionalProperties", "required", "enum", "pattern",
             "minimum", "maximum", "uniqueItems", "items", "oneOf", "$ref",
             "$schema", "$id", "title", "description", "default", "deprecated", "format", "definitions"}
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                found.add(key)
                if key in ("properties", "patternProperties", "definitions"):
                    for sub in value.values():
                        walk(sub)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema.load(compose_schema))
    assert found <= known, found - known


def test_without_the_schema_a_file_of_the_wrong_shape_is_still_one_line(tmp_path, capsys, monkeypatch):
    """An installed minirt may not find the specification's schema: files are
    not checked against it, and what the model cannot read is still refused."""
    monkeypatch.setattr(schema, "location", lambda: None)
    monkeypatch.delenv("MINIRT_COMPOSE_SCHEMA")
    message = refused(tmp_path, capsys, "services:\n  web: [x]\n")
    assert message.startswith("compose.yaml: not a compose file minirt can read (ValueError: ")
    assert message.endswith("set MINIRT_COMPOSE_SCHEMA to the Compose Specification's schema for where")
    assert refused(tmp_path, capsys, "services:\n  web: {image: x, ports: ['80:80:80:80']}\n") == \
        "compose.yaml: services.web.ports[0]: '80:80:80:80': '80:80' is not an IPv4 address"
