"""What a project's containers should be: their names, labels, options and order.

Lecture idea: a system described in a file is *desired state*; ``up`` makes
the host match it and does nothing where it already does.  Each container
carries docker compose's labels (which project, which service, which number)
and the hash of the configuration it was made from, so that the next ``up``
finds it again, sees whether its service changed, and recreates only the
containers whose hash differs.  Services start in the order ``depends_on``
gives (a topological sort; ``model.py`` has refused cycles), and stop in the
reverse order.
"""

import os

from minirt import lightjson
from minirt import spec as specs
from minirt.digests import sha256

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
CONFIG_HASH = "com.docker.compose.config-hash"
ONEOFF = "com.docker.compose.oneoff"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
DEPENDS_ON = "com.docker.compose.depends_on"
IMAGE = "com.docker.compose.image"
VERSION = "com.docker.compose.version"
VOLUME = "com.docker.compose.volume"
NETWORK = "com.docker.compose.network"
COMPOSE_VERSION = "2.20.0"   # the docker compose whose labels and names these are


def order(project, names):
    """``names`` and nothing else, each after the services it depends on."""
    wanted, out = set(names), []

    def visit(name):
        if name in out:
            return
        for dep in project.services[name]["depends_on"]:
            if dep in wanted:
                visit(dep)
        out.append(name)

    for name in names:
        visit(name)
    return out


def image_name(project, service_name):
    """The image a service runs: its ``image``, or for a built one ``<project>-<service>``."""
    service = project.services[service_name]
    return service.get("image") or f"{project.name}-{service_name}"


def container_name(project, service_name, number):
    service = project.services[service_name]
    return service.get("container_name") or f"{project.name}-{service_name}-{number}"


def config_hash(service, image_id):
    """The hash ``up`` compares: the service's normalised configuration and the image it runs."""
    text = lightjson.dumps({"service": service, "image": image_id}, sort_keys=True, compact=True)
    return sha256(text.encode()).hexdigest()


def labels(project, service_name, number, digest, image_id, oneoff=False):
    service = project.services[service_name]
    return {**service["labels"], PROJECT: project.name, SERVICE: service_name, NUMBER: str(number),
            CONFIG_HASH: digest, ONEOFF: "True" if oneoff else "False", WORKING_DIR: project.dir,
            CONFIG_FILES: ",".join(project.files), IMAGE: image_id, VERSION: COMPOSE_VERSION,
            DEPENDS_ON: ",".join(f"{d}:{c['condition']}:{str(c['restart']).lower()}"
                                 for d, c in service["depends_on"].items())}


def networks_of(project, service_name):
    """The ``--network``s of a service's containers, with their aliases there:
    [{"name", "aliases"}], the first one eth0's."""
    service = project.services[service_name]
    mode = service.get("network_mode")
    if mode is not None:
        if mode.startswith("service:"):
            return [{"name": "container:" + container_name(project, mode[len("service:"):], 1), "aliases": []}]
        return [{"name": mode, "aliases": []}]
    return [{"name": project.networks[key]["name"], "aliases": [service_name] + options["aliases"]}
            for key, options in service["networks"].items()]


def mounts(project, service, anonymous=None):
    """The service's volumes as ``spec.Mount``s; bind sources made if missing, as
    docker compose does.  ``anonymous``: {target: name} of volumes to keep
    (those of the container being replaced)."""
    out = []
    for v in service["volumes"]:
        if v["type"] == "tmpfs":
            continue
        if v["type"] == "bind":
            if not os.path.exists(v["source"]) and v.get("create_host_path"):
                os.makedirs(v["source"], exist_ok=True)
            out.append(specs.Mount.parse(f"{v['source']}:{v['target']}:{'ro' if v['read_only'] else 'rw'}"))
        elif v["source"]:
            out.append(specs.Mount("", v["target"], v["read_only"], volume=project.volumes[v["source"]]["name"]))
        else:
            name = (anonymous or {}).get(v["target"]) or os.urandom(32).hex()
            out.append(specs.Mount("", v["target"], v["read_only"], volume=name, anonymous=True))
    return out


def options(project, service_name, number, digest, image_id, *, oneoff=False, name=None, anonymous=None):
    """The keyword arguments of ``minirt.api.containers.prepare`` for one container."""
    service = project.services[service_name]
    first, *more = networks_of(project, service_name)
    tmpfs = list(service["tmpfs"]) + [v["target"] + (f":size={v['size']}" if v.get("size") else "")
                                      for v in service["volumes"] if v["type"] == "tmpfs"]
    out = dict(
        name=name or container_name(project, service_name, number),
        env=service["environment"], entrypoint=service.get("entrypoint"),
        workdir=service.get("working_dir"), user=service.get("user"), hostname=service.get("hostname"),
        volumes=mounts(project, service, anonymous), tmpfs=tmpfs,
        ports=[] if oneoff else service["ports"], network=first["name"], aliases=[] if oneoff else first["aliases"],
        more_networks=[dict(n, aliases=[]) if oneoff else n for n in more],
        cap_add=service["cap_add"], cap_drop=service["cap_drop"], read_only=service["read_only"],
        init=service["init"], privileged=service["privileged"], tty=service["tty"],
        resources=specs.resources(**service["resources"]),
        labels=labels(project, service_name, number, digest, image_id, oneoff))
    return out


def containers_of(rows, project_name, service_name=None, oneoff=False):
    """The rows of ``api.containers.listing`` that belong to the project (and service),
    by container number."""
    out = []
    for info, config, directory in rows:
        lab = config.get("labels") or {}
        if lab.get(PROJECT) != project_name or (lab.get(ONEOFF) == "True") != oneoff:
            continue
        if service_name is not None and lab.get(SERVICE) != service_name:
            continue
        out.append((info, config, directory))
    out.sort(key=lambda row: (row[1]["labels"].get(SERVICE, ""), int(row[1]["labels"].get(NUMBER) or 0)))
    return out
