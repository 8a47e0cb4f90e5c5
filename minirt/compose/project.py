"""The verbs of ``minirt compose``: up, down, start, stop, restart, rm, build, pull, push,
and the containers, images and processes of a project.

Lecture idea: docker compose is a client of the engine, not an engine: each verb
is a handful of ordinary container, image, network and volume operations, in
an order the file decides.  So is this module, a client of ``minirt.api`` only.
``up`` makes the project's network and volumes, builds or pulls what is
missing, then goes through the services in dependency order: a container
whose configuration hash matches is left running (or started again), one
that differs is replaced, and a service waits for what it depends on to be
started, healthy or completed, as its ``depends_on`` says.  ``down`` undoes it.

Progress lines go to ``say`` (docker compose's words: "Container web-1  Started").
"""

import os
import sys
import time

from minirt.api import containers as api_containers
from minirt.api import images as api_images
from minirt.api import network as api_network
from minirt.api import volumes as api_volumes
from minirt.compose import plan
from minirt.errors import MinirtError, SpecError


class ComposeError(MinirtError):
    pass


def _stderr(line):
    print(line, file=sys.stderr, flush=True)


class Compose:
    """A loaded project (``model.Project``) on the state root ``root``."""

    def __init__(self, project, root, say=_stderr):
        self.project, self.root, self.say = project, root, say

    # -- what exists ------------------------------------------------------------------

    def rows(self, service=None, oneoff=False, all=True):
        """(state, config, directory) of the project's containers (of ``service``)."""
        return plan.containers_of(api_containers.listing(self.root, all=all), self.project.name, service, oneoff)

    def containers(self, services=(), all=True):
        """The project's Containers (of ``services``), in dependency order, each service's by number."""
        names = plan.order(self.project, self.selected(services, deps=False)) if services else None
        found = []
        for info, config, _ in self.rows(all=all):
            service = config["labels"][plan.SERVICE]
            if names is None or service in names:
                found.append((names.index(service) if names else 0, service, info["id"]))
        return [(service, api_containers.load(self.root, cid)) for _, service, cid in sorted(found)]

    def container(self, service, index=1):
        """The running container ``index`` of ``service`` (exec, logs of one)."""
        self.selected([service], deps=False)
        for info, config, _ in self.rows(service):
            if config["labels"].get(plan.NUMBER) == str(index):
                return api_containers.load(self.root, info["id"])
        raise ComposeError(f"service {service!r} is not running (no container {index})")

    def selected(self, services, deps=True):
        """The services a verb acts on: those named (all enabled ones if none), with
        what they depend on when ``deps``; in dependency order."""
        enabled = self.project.enabled(services)
        if not services:
            return plan.order(self.project, enabled)
        names = list(services)
        if deps:
            todo = list(names)
            while todo:
                for dep in self.project.services[todo.pop()]["depends_on"]:
                    if dep not in names:
                        names.append(dep)
                        todo.append(dep)
        return plan.order(self.project, names)

    # -- images -------------------------------------------------------------------------

    def image_id(self, service_name):
        """The id of the image the service runs, or None if there is none yet."""
        try:
            return api_images.lookup(self.root, plan.image_name(self.project, service_name))["id"]
        except MinirtError:
            return None

    def build(self, services=(), no_cache=False, only_missing=False):
        """Build the services that have a ``build`` section."""
        from minirt.api import build as api_build

        for name in self.selected(services, deps=False):
            service = self.project.services[name]
            if "build" not in service or (only_missing and self.image_id(name)):
                continue
            b, tag = service["build"], plan.image_name(self.project, name)
            self.say(f" Image {tag}  Building")
            dockerfile = os.path.join(b["context"], b["dockerfile"])
            api_build.build(self.root, b["context"], dockerfile, tags=[tag], build_args=b["args"],
                            target=b.get("target"), no_cache=no_cache)
            self.say(f" Image {tag}  Built")

    def pull(self, services=(), only_missing=False, ignore_buildable=False):
        """Pull the images of the services that name one; ``only_missing``: those
        not here yet, and those whose ``pull_policy`` is always (never: none)."""
        for name in self.selected(services, deps=False):
            service = self.project.services[name]
            image = service.get("image")
            if not image or service.get("pull_policy") in ("never", "build") \
                    or (ignore_buildable and "build" in service):
                continue
            if only_missing and service.get("pull_policy") != "always" and self.image_id(name):
                continue
            if os.path.exists(image):
                continue  # an image archive named by path: loaded as it is run
            self.say(f" Image {image}  Pulling")
            api_images.pull(self.root, api_images.reference(image))
            self.say(f" Image {image}  Pulled")

    def push(self, services=()):
        for name in self.selected(services, deps=False):
            service = self.project.services[name]
            if "build" in service and service.get("image"):
                self.say(f" Image {service['image']}  Pushing")
                api_images.push(self.root, service["image"])
                self.say(f" Image {service['image']}  Pushed")

    def images(self, services=()):
        """(container name, image name, image id) of each of the project's containers."""
        out = []
        for service, c in self.containers(services):
            out.append((c.spec.name, c.spec.image, (c.spec.labels or {}).get(plan.IMAGE, "")))
        return out

    # -- up -----------------------------------------------------------------------------

    def up(self, services=(), *, build=False, force_recreate=False, no_deps=False, no_recreate=False,
           timeout=None):
        """Make the project's containers match the file; return them by service."""
        names = self.selected(services, deps=not no_deps)
        self.ensure_networks(names)
        self.ensure_volumes(names)
        if build:
            self.build(names)
        else:
            self.build(names, only_missing=True)
        self.pull(names, only_missing=True, ignore_buildable=True)
        for name in names:
            if not self.image_id(name) and not os.path.exists(plan.image_name(self.project, name)):
                raise ComposeError(f"service {name!r}: no such image {plan.image_name(self.project, name)}")
        made, replaced = {}, set()
        for name in names:
            if not no_deps:
                self.wait_for_dependencies(name, timeout)
            before = {info["id"] for info, _, _ in self.rows(name)}
            made[name] = self.converge(name, force_recreate=force_recreate, no_recreate=no_recreate,
                                       restart=bool(self.restarted_with(name) & replaced))
            if {c.id for c in made[name]} != before:
                replaced.add(name)
        return made

    def restarted_with(self, name):
        """The services whose update restarts ``name`` (its ``depends_on: {S:
        {restart: true}}``)."""
        return {dep for dep, how in self.project.services[name]["depends_on"].items() if how["restart"]}

    def ensure_networks(self, names):
        existing = {net["name"] for net, _ in api_network.listing(self.root)}
        wanted = {key for n in names for key in self.project.services[n].get("networks", {})}
        for key in sorted(wanted):
            net = self.project.networks[key]
            if net["name"] in existing:
                continue
            if net["external"]:
                raise ComposeError(f"network {net['name']} declared as external, but could not be found")
            api_network.create(self.root, net["name"], labels={**net["labels"], plan.PROJECT: self.project.name,
                                                               plan.NETWORK: key})
            self.say(f" Network {net['name']}  Created")

    def ensure_volumes(self, names):
        wanted = {v["source"] for n in names for v in self.project.services[n]["volumes"]
                  if v["type"] == "volume" and v["source"]}
        existing = {v["Name"] for v in api_volumes.listing(self.root)}
        for key in sorted(wanted):
            vol = self.project.volumes[key]
            if vol["name"] in existing:
                continue
            if vol["external"]:
                raise ComposeError(f"external volume {vol['name']!r} not found")
            api_volumes.create(self.root, vol["name"], labels={**vol["labels"], plan.PROJECT: self.project.name,
                                                                plan.VOLUME: key})
            self.say(f" Volume {vol['name']}  Created")

    def converge(self, name, force_recreate=False, no_recreate=False, restart=False):
        """The containers of service ``name``: kept, started, replaced or made, as
        its configuration hash says; extra ones (fewer replicas) removed.  With
        ``restart`` (a dependency was replaced) the kept ones are restarted."""
        service = self.project.services[name]
        image_id = self.image_id(name)
        digest = plan.config_hash(service, image_id)
        existing = {int(config["labels"][plan.NUMBER]): info["id"] for info, config, _ in self.rows(name)}
        out = []
        for number in range(1, service["replicas"] + 1):
            cid = existing.pop(number, None)
            c = api_containers.load(self.root, cid) if cid else None
            label = f" Container {plan.container_name(self.project, name, number)}"
            if c is not None and (c.spec.labels.get(plan.CONFIG_HASH) == digest or no_recreate) \
                    and not force_recreate:
                if api_containers.is_up(c.state()) and not restart:
                    self.say(f"{label}  Running")
                elif api_containers.is_up(c.state()):
                    c.stop(timeout=service.get("stop_grace_period", 10 * 10**9) / 10**9)
                    c.restart()
                    self.say(f"{label}  Restarted")
                else:
                    c.restart()
                    self.say(f"{label}  Started")
                out.append(c)
                continue
            anonymous = {}
            if c is not None:
                anonymous = {m.destination: m.volume for m in c.spec.mounts if m.anonymous}
                self.say(f"{label}  Recreate")
                self.remove_container(c, stop=True)
            out.append(self.create(name, number, digest, image_id, anonymous))
            self.say(f"{label}  {'Recreated' if c is not None else 'Started'}")
        for number, cid in sorted(existing.items()):
            self.remove_container(api_containers.load(self.root, cid), stop=True)
        return out

    def create(self, name, number, digest, image_id, anonymous=None, *, cmd=None, oneoff=False,
               container_name=None, detach=True, remove=False, entrypoint=None, env=(), user=None, workdir=None):
        """A new container of service ``name``: started detached, or (``detach=False``)
        created for the caller to start in the foreground."""
        service = self.project.services[name]
        opts = plan.options(self.project, name, number, digest, image_id, oneoff=oneoff, name=container_name,
                            anonymous=anonymous)
        opts.update(_policies(service, oneoff))
        if entrypoint is not None:
            opts["entrypoint"] = entrypoint
        if env:
            opts["env"] = list(opts["env"]) + list(env)
        if user is not None:
            opts["user"] = user
        if workdir is not None:
            opts["workdir"] = workdir
        image = plan.image_name(self.project, name)
        spec = api_containers.prepare(image, cmd if cmd else service.get("command"), root=self.root,
                                      remove=remove, **opts)
        container = api_containers.Container(spec, self.root)
        if detach:
            api_containers.start_detached(container)
        return container

    def run(self, name, cmd=None, *, deps=True, name_as=None, detach=False, remove=False, **overrides):
        """``compose run``: a one-off container of service ``name`` running ``cmd``
        (its dependencies brought up first unless not ``deps``), started detached,
        or created for the caller to run in the foreground.  ``overrides``:
        entrypoint, env, user, workdir."""
        if name not in self.project.services:
            raise SpecError(f"no such service: {name}")
        needed = [d for d in self.selected([name]) if d != name]
        if needed and deps:
            self.up(needed)
            self.wait_for_dependencies(name)
        self.ensure_networks([name])
        self.ensure_volumes([name])
        self.build([name], only_missing=True)
        self.pull([name], only_missing=True, ignore_buildable=True)
        image_id = self.image_id(name)
        digest = plan.config_hash(self.project.services[name], image_id)
        return self.create(name, 1, digest, image_id, cmd=cmd, oneoff=True, detach=detach,
                           container_name=name_as or f"{self.project.name}-{name}-run-{os.urandom(6).hex()}",
                           remove=remove and not detach, **overrides)

    def wait_for_dependencies(self, name, timeout=None):
        """Wait until what ``name`` depends on is as its conditions ask."""
        for dep, how in self.project.services[name]["depends_on"].items():
            condition = how["condition"]
            for info, _, _ in self.rows(dep):
                c = api_containers.load(self.root, info["id"])
                if condition == "service_healthy":
                    self.say(f" Container {c.spec.name}  Waiting")
                    wait_healthy(c, timeout)
                    self.say(f" Container {c.spec.name}  Healthy")
                elif condition == "service_completed_successfully":
                    self.say(f" Container {c.spec.name}  Waiting")
                    code = c.wait(timeout)
                    if code is None:
                        raise ComposeError(f"service {dep!r} did not complete within {timeout}s")
                    if code != 0:
                        raise ComposeError(f"service {dep!r} didn't complete successfully: exit {code}")
                    self.say(f" Container {c.spec.name}  Exited")

    # -- the others ------------------------------------------------------------------------

    def stop(self, services=(), timeout=None):
        for service, c in reversed(self.containers(services)):
            grace = timeout if timeout is not None else self.project.services.get(service, {}).get(
                "stop_grace_period", 10 * 10**9) / 10**9
            if api_containers.is_up(c.state()):
                self.say(f" Container {c.spec.name}  Stopping")
                c.stop(timeout=grace)
                self.say(f" Container {c.spec.name}  Stopped")

    def start(self, services=()):
        for _, c in self.containers(services):
            if not api_containers.is_up(c.state()):
                c.restart()
                self.say(f" Container {c.spec.name}  Started")

    def restart(self, services=(), timeout=None):
        """Stop and start ``services``, and with them those that ``depends_on``
        them with ``restart: true`` (docker compose's rule)."""
        if services:
            names = set(services)
            for name in plan.order(self.project, list(self.project.services)):
                if self.restarted_with(name) & names:
                    names.add(name)
            services = [n for n in self.project.services if n in names]
        self.stop(services, timeout)
        self.start(services)

    def rm(self, services=(), stop=False, volumes=False):
        """Remove the project's stopped containers (running ones too with ``stop``)."""
        for _, c in reversed(self.containers(services)):
            if api_containers.is_up(c.state()):
                if not stop:
                    continue
            self.remove_container(c, stop=True, volumes=volumes)

    def remove_container(self, c, stop=False, volumes=False):
        if stop and api_containers.is_up(c.state()):
            self.say(f" Container {c.spec.name}  Stopping")
            c.stop(timeout=self.project.services.get(c.spec.labels.get(plan.SERVICE), {}).get(
                "stop_grace_period", 10 * 10**9) / 10**9)
        c.remove(force=True, volumes=volumes)
        self.say(f" Container {c.spec.name}  Removed")

    def down(self, volumes=False, rmi=None, timeout=None):
        """Stop and remove every container of the project (one-off ones too), its
        networks, and with ``volumes`` its named volumes; ``rmi``: local | all."""
        if rmi not in (None, "local", "all"):
            raise SpecError(f"invalid --rmi {rmi!r}: expected local or all")
        doomed = [api_containers.load(self.root, info["id"])
                  for info, _, _ in self.rows() + self.rows(oneoff=True)]
        by_order = {n: i for i, n in enumerate(plan.order(self.project, list(self.project.services)))}
        doomed.sort(key=lambda c: -by_order.get(c.spec.labels.get(plan.SERVICE), -1))
        for c in doomed:
            if timeout is not None and api_containers.is_up(c.state()):
                c.stop(timeout=timeout)
            self.remove_container(c, stop=True, volumes=volumes)
        existing = {net["name"] for net, _ in api_network.listing(self.root)}
        for key, net in self.project.networks.items():
            if not net["external"] and net["name"] in existing:
                api_network.remove(self.root, net["name"])
                self.say(f" Network {net['name']}  Removed")
        if volumes:
            existing = {v["Name"] for v in api_volumes.listing(self.root)}
            for key, vol in self.project.volumes.items():
                if not vol["external"] and vol["name"] in existing:
                    api_volumes.remove(self.root, vol["name"])
                    self.say(f" Volume {vol['name']}  Removed")
        if rmi:
            remove = api_images.remover(self.root)
            for name, service in self.project.services.items():
                if rmi == "local" and service.get("image"):
                    continue
                image = plan.image_name(self.project, name)
                if self.image_id(name):
                    for line in remove(image):
                        self.say(f" Image {image}  {line}")

    def top(self, services=()):
        """(container name, [(pid, command line)]) of each running container."""
        out = []
        for _, c in self.containers(services, all=False):
            out.append((c.spec.name, api_containers.processes(c)))
        return out


def _policies(service, oneoff=False):
    """The healthcheck and restart policy of a service's containers (docker's
    shapes); a one-off container (``run``) is never restarted."""
    out = {}
    if service.get("healthcheck") is not None:
        out["healthcheck"] = service["healthcheck"]
    if service["restart"]["Name"] != "no" and not oneoff:
        out["restart_policy"] = service["restart"]
    return out


def wait_healthy(c, timeout=None):
    """Until the container's health is ``healthy``; an error when it is unhealthy,
    exits, or (``timeout`` seconds) takes too long."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        record = api_containers.inspect(c)
        status = ((record["State"].get("Health") or {}).get("Status"))
        if status is None:
            raise ComposeError(f"container {c.spec.name} has no healthcheck (depends_on: service_healthy)")
        if status == "healthy":
            return
        if status == "unhealthy":
            raise ComposeError(f"dependency failed to start: container {c.spec.name} is unhealthy")
        if not record["State"]["Running"] and record["State"]["Status"] != "restarting":
            raise ComposeError(f"dependency failed to start: container {c.spec.name} exited"
                               f" ({record['State']['ExitCode']})")
        if deadline is not None and time.monotonic() > deadline:
            raise ComposeError(f"container {c.spec.name} is not healthy after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


# -- logs ------------------------------------------------------------------------------

class Prefixed:
    """A binary file that writes each line with ``prefix`` before it, whole
    lines at a time under ``lock`` (several containers' logs on one stream)."""

    def __init__(self, prefix, out, lock):
        self.prefix, self.out, self.lock, self.partial = prefix.encode(), out, lock, b""

    def write(self, data):
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if lines:
            self._emit(b"".join(self.prefix + line + b"\n" for line in lines))

    def line(self, text):
        """A whole line of ours, without the prefix (``NAME exited with code N``)."""
        self._emit(text.encode() + b"\n")

    def _emit(self, data):
        with self.lock:
            self.out.write(data)
            self.out.flush()

    def flush(self):
        pass

    def close(self):
        if self.partial:
            self.write(b"\n")


def logs(compose, services=(), tail=None, follow=False, prefix=True, out=None, exits=False, since=None):
    """The output of the project's containers (``services``), each line after
    its container's name; with ``follow``, as it comes, until they stop, and
    with ``exits`` then a line for each, ``NAME exited with code N`` (``up``'s).
    ``since``: {container name: its ``log_marks``}, where to start reading it."""
    import threading

    out = out or sys.stdout.buffer
    found = compose.containers(services)
    width = max((len(c.spec.name) for _, c in found), default=0)
    lock = threading.Lock()
    threads = []
    for _, c in found:
        label = f"{c.spec.name:{width}}  | " if prefix else ""
        writer = Prefixed(label, out, lock)
        start = (since or {}).get(c.spec.name, (0, 0))
        ended = f"{c.spec.name:{width}} exited with code " if exits else None
        t = threading.Thread(target=_show, args=(c, tail, follow, writer, start, ended), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # (a join with a timeout lets Ctrl-C through)


def _show(c, tail, follow, writer, since, ended):
    try:
        api_containers.show_logs(c, tail=tail, follow=follow, out=writer, err=writer, since=since)
    finally:
        writer.close()
    if ended:
        writer.line(f"{ended}{api_containers.inspect(c)['State']['ExitCode']}")
