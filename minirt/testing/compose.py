"""The ``compose`` fixture: a system of several containers, up for one test.

Lecture idea: "you can use a yaml file to define multiple images that work
together to create a system" -- and a test of such a system wants all of it
up before it starts and all of it gone after, as ``minirt compose up`` and
``down -v`` do.  Each project gets a name of the run's (SESSION-WORKER-projectN) and
lives in the run's state root, so that tests and workers never meet; its
services' containers are ``Running`` ones, which the assertions take.
Their cgroup parent is minirt's default (``$MINIRT_CGROUP_PARENT``): compose
sets none of its own.
"""

import os

from minirt.testing.containers import Running


class Project:
    """A project that is up: ``service(name)`` is its container (a Running)."""

    def __init__(self, compose):
        self.compose, self.name = compose, compose.project.name

    def service(self, name, index=1):
        """The running container ``index`` of service ``name``."""
        return Running(self.compose.container(name, index), None, None, {})

    def __repr__(self):
        return f"Project({self.name!r})"


class Projects:
    """``compose(*files, services=(), name=None)``: ``up`` of the compose files
    (paths from pytest's rootdir; none: the rootdir's compose.yaml); a Project."""

    def __init__(self, tracker, rootdir):
        self.tracker, self.rootdir = tracker, str(rootdir)

    def __call__(self, *files, services=(), name=None):
        from minirt.compose import model
        from minirt.compose.project import Compose

        paths = [os.path.join(self.rootdir, f) for f in files]
        name = name or self.tracker.run.unique("project")
        project = model.load(paths, project_name=name, project_dir=None if paths else self.rootdir)
        compose = Compose(project, self.tracker.run.root, say=lambda line: None)
        self.tracker.projects.append(compose)
        compose.up(services)
        return Project(compose)
