"""The ``container`` fixture: containers of one test, and what the test made besides.

Lecture idea: a container is created, started, waited for and removed --
and removal is not optional.  Every container, network and volume a test
makes is recorded here as it is made, in the run's own state root and
cgroup parent (``session.py``), and removed when the test ends, whatever
happened: containers first (by force, running or not), then the networks
and volumes they used.  With ``--minirt-keep`` the containers of a failed
test stay for inspection, with the command that enters each.
"""

import os

from minirt import spec as specs
from minirt.api import containers, network, volumes
from minirt.errors import MinirtError

LIMITS = ("memory", "memory_swap", "pids_limit", "cpus")  # spec.resources' keywords, taken as options too


class Running:
    """A container started in the background: ``exec``, ``logs``, ``stop``,
    ``wait``; ``image`` and ``options`` say how it was made (a twin can be)."""

    def __init__(self, container, factory, image, options):
        self.container, self.factory, self.image, self.options = container, factory, image, options
        self.id = container.id

    def exec(self, *args, input=None, **how):
        """Run ``args`` in the container: a Result (exit_code, stdout, stderr)."""
        return self.container.exec(args, input=input, **how)

    def logs(self):
        """(stdout, stderr) so far."""
        return self.container.logs()

    def stop(self, timeout=10):
        self.container.stop(timeout)

    def wait(self, timeout=None):
        """The exit code once the container has exited."""
        return self.container.wait(timeout)

    def twin(self, *cmd, volumes=(), **overrides):
        """Run ``cmd`` to completion in a new container made like this one (plus ``volumes``)."""
        if self.factory is None:
            raise MinirtError(f"container {self.id[:12]} was made by compose: it has no twin "
                              "(make the container to test with the container fixture)")
        options = {**self.options, **overrides}
        options["volumes"] = [*options.get("volumes", ()), *volumes]
        return self.factory.run(*cmd, image=self.image, **options)

    def __repr__(self):
        return f"Running(id={self.id[:12]!r}, image={self.image!r})"


class Tracker:
    """What one test made, in the order it must go: compose projects (``compose.py``),
    containers, then networks and volumes."""

    def __init__(self, run):
        self.run = run
        self.projects, self.containers, self.networks, self.volumes = [], [], [], []

    def network(self):
        name = self.run.unique("net")
        network.create(self.run.root, name)
        self.networks.append(name)
        return name

    def volume(self):
        name = self.run.unique("vol")
        volumes.create(self.run.root, name)
        self.volumes.append(name)
        return name

    def close(self, keep=False):
        """Remove it all; with ``keep``, leave it and return how to enter each container."""
        if keep:
            kept = self.containers + [c.id for p in self.projects for _, c in p.containers()]
            return [f"minirt --root {self.run.root} exec -it {cid[:12]} sh"
                    f"   (or: minirt --root {self.run.root} logs {cid[:12]})" for cid in kept]
        for project in reversed(self.projects):
            project.down(volumes=True)
        for cid in self.containers:
            try:
                containers.load(self.run.root, cid).remove(force=True, volumes=True)
            except MinirtError:
                pass  # ran to completion and removed already
        for name in self.networks:
            network.remove(self.run.root, name)
        for name in self.volumes:
            volumes.remove(self.run.root, name, force=True)
        return []


class Containers:
    """``container(*cmd, **options)`` runs a container to completion (a Result:
    exit_code, stdout, stderr); ``container.start(*cmd, **options)`` starts one
    in the background (a Running).  ``image=`` (what ``minirt_images.get``
    takes) defaults to the test's ``minirt_image``; ``options`` are ``minirt.run``'s (``read_only``,
    ``cap_drop``, ``network``, ``volumes``, ``user``, ``env``...) and the limits
    ``memory``, ``memory_swap``, ``pids_limit``, ``cpus`` given directly."""

    def __init__(self, tracker, images, default_image, defaults, keep_exited=False):
        self.tracker, self.images, self.default_image, self.defaults = tracker, images, default_image, defaults
        self.keep_exited = keep_exited  # --minirt-keep: exited containers stay until the test passes

    def __call__(self, *cmd, **options):
        return self.run(*cmd, **options)

    def run(self, *cmd, image=None, input=None, **options):
        image, options = self._made(image, options)
        cid = os.urandom(32).hex()
        if self.keep_exited:
            self.tracker.containers.append(cid)  # else run removes it itself
        return self.tracker.run.runner.run(image, list(cmd) or None, input=input, remove=not self.keep_exited,
                                           id=cid, **self._spec_options(options))

    def start(self, *cmd, image=None, **options):
        image, options = self._made(image, options)
        cid = os.urandom(32).hex()
        self.tracker.containers.append(cid)
        started = containers.start(image, list(cmd) or None, id=cid, **self._spec_options(options))
        return Running(started, self, image, options)

    def _made(self, image, options):
        return self.images.get(image) if image else self.default_image(), {**self.defaults, **options}

    def _spec_options(self, options):
        options = dict(options)
        limits = {k: options.pop(k) for k in LIMITS if k in options}
        if limits:
            options["resources"] = specs.resources(**limits)
        return {"root": self.tracker.run.root, "cgroup_parent": self.tracker.run.cgroup_parent, **options}
