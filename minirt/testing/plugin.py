"""pytest-minirt's hooks, options, marker and fixtures (the package's docstring
says how to use them).

Lecture idea: cleaning up is the runtime's job, not the test's -- each
fixture that makes something removes it when its test ends, whatever
happened, and the session's run (``session.py``) removes what is left.

Loaded by the package (``pytest -p minirt.testing``, or the pytest11 entry
point of that name) through its ``pytest_plugins``.
"""

import os

import pytest

pytest.register_assert_rewrite("minirt.testing.assertions")

BASE = pytest.StashKey[str]()
KEPT = pytest.StashKey[list]()        # on the config: the tests whose containers this process kept
REPORTS = pytest.StashKey[dict]()     # on an item: its reports by phase
KEPT_HERE = pytest.StashKey[list]()   # on an item: how to enter its kept containers
SECTION = "minirt: containers kept (--minirt-keep)"


def pytest_addoption(parser):
    group = parser.getgroup("minirt", "containers for isolation tests (minirt)")
    group.addoption("--minirt-root", metavar="DIR",
                    help="where test sessions keep their state and the image cache "
                         "(default $TMPDIR/minirt-pytest-UID)")
    group.addoption("--minirt-on-disk", action="store_true",
                    help="keep the containers' state and writable layers on disk, under --minirt-root "
                         "(default: in RAM, in /dev/shm, where it has 1 GiB free)")
    group.addoption("--minirt-keep", action="store_true",
                    help="keep the containers of failed tests for inspection (until the next session starts)")


def pytest_configure(config):
    from minirt.testing import session

    config.addinivalue_line("markers", "minirt(image=None, network=None, memory=None, **options): the image "
                                       "and default options of the test's containers (minirt.run's keywords)")
    base = os.path.abspath(config.getoption("minirt_root") or session.default_base())
    if os.path.exists(base) and not os.path.isdir(base):
        raise pytest.UsageError(f"--minirt-root {base}: not a directory")
    config.stash[BASE] = base
    config.stash[KEPT] = []
    session.sweep(base)


def _session_id(config):
    """(session id, worker): pytest-xdist's workers share their controller's id."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput:
        return workerinput["testrunuid"][:12], workerinput["workerid"]
    return os.urandom(6).hex(), "main"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    if report.when == "teardown" and item.stash.get(KEPT_HERE, None):
        report.sections.append((SECTION, "\n".join(item.stash[KEPT_HERE])))
    return report


def pytest_terminal_summary(terminalreporter):
    """What was kept, from every test's teardown report (pytest-xdist's workers' too)."""
    for reports in terminalreporter.stats.values():
        for report in reports:
            for title, text in getattr(report, "sections", ()):
                if title == SECTION:
                    terminalreporter.write_sep("-", f"minirt: kept for inspection: {report.nodeid}")
                    terminalreporter.write_line(text)


# -- fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def minirt_run(request):
    """This process's run: ``root`` (its state root), ``cgroup_parent``, ``name`` (session-worker)."""
    from minirt.testing import session

    run = session.Run(request.config.stash[BASE], *_session_id(request.config),
                      on_disk=request.config.getoption("minirt_on_disk")).open()
    yield run
    run.close(keep=bool(request.config.stash[KEPT]))


@pytest.fixture(scope="session")
def minirt_images(request):
    """``minirt_images.get(source)``: an image archive for a tarball, Dockerfile or reference."""
    from minirt.testing.images import Images

    return Images(request.config.stash[BASE], request.config.rootpath)


@pytest.fixture
def minirt_image(request, minirt_images):
    """The test's image: ``@pytest.mark.minirt(image=...)``; override this fixture for a suite's own."""
    marker = request.node.get_closest_marker("minirt")
    if marker is None or not marker.kwargs.get("image"):
        pytest.fail(f"{request.node.nodeid}: no image for its containers: mark it "
                    "@pytest.mark.minirt(image=...), pass image=, or override the minirt_image fixture",
                    pytrace=False)
    return minirt_images.get(marker.kwargs["image"])


@pytest.fixture
def minirt_made(request, minirt_run):
    """What the test makes (containers, networks, volumes), removed after it whatever happened."""
    from minirt.testing.containers import Tracker

    tracker = Tracker(minirt_run)
    yield tracker
    reports = request.node.stash.get(REPORTS, {})
    failed = any(r.failed for r in reports.values())
    keep = failed and request.config.getoption("minirt_keep") and (tracker.containers or tracker.projects)
    lines = tracker.close(keep=keep)
    if lines:
        request.node.stash[KEPT_HERE] = lines
        request.config.stash[KEPT].append(request.node.nodeid)


@pytest.fixture
def container(request, minirt_made, minirt_images):
    """``container(*cmd, **options)``: run to completion (a Result); ``container.start``:
    in the background (exec, logs, stop, wait).  The marker's options are the defaults."""
    from minirt.testing.containers import Containers

    marker = request.node.get_closest_marker("minirt")
    defaults = {k: v for k, v in (marker.kwargs if marker else {}).items() if k != "image"}
    return Containers(minirt_made, minirt_images, lambda: request.getfixturevalue("minirt_image"), defaults,
                      keep_exited=request.config.getoption("minirt_keep"))


@pytest.fixture
def minirt_network(minirt_made):
    """The name of a network of the test's own (``network=minirt_network``)."""
    return minirt_made.network()


@pytest.fixture
def minirt_volume(minirt_made):
    """The name of a volume of the test's own (``volumes=[f"{minirt_volume}:/data"]``)."""
    return minirt_made.volume()


@pytest.fixture
def compose(request, minirt_made):
    """``compose(*files, services=())``: ``minirt compose up`` of the files (a Project:
    ``.service(name)`` is a Running); ``down -v`` after the test."""
    from minirt.testing.compose import Projects

    return Projects(minirt_made, request.config.rootpath)
