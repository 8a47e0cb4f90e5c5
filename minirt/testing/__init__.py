"""pytest-minirt: isolation tests with real containers -- no daemon, milliseconds, no leaks.

Lecture idea: a container is an ordinary process that the kernel shows a
different world, so testing a sandbox means starting the real thing and
asking the kernel from inside.  Without a daemon in between, a container
is started and removed in about the time of a ``fork`` and a few mounts
(by a small process of the session's own, ``runner.py``: forking pytest's
large one costs more), and nothing outlives the session: every test's
containers are removed when it ends, the session's state root and cgroup
parent when the session does, and a session that was killed is swept by the
next one (``session.py``).

Loaded by the ``pytest11`` entry point once minirt is installed, or with
``pytest -p minirt.testing``::

    import pytest
    from minirt.testing.assertions import assert_not_writable

    @pytest.mark.minirt(image="images/busybox.tar", read_only=True, network="none")
    def test_the_root_is_read_only(container):
        c = container.start("sleep", "60")
        assert_not_writable(c, "/etc")

Fixtures: ``container`` (``containers.py``), ``minirt_image`` (the test's
image: the marker's ``image=``, or override the fixture), ``minirt_images``
(``.get(source)``: a tarball, a Dockerfile or a reference, ``images.py``),
``minirt_network`` and ``minirt_volume`` (a fresh one, removed after the
test), ``compose`` (a compose project up for the test, ``compose.py``),
``minirt_run`` (the process's state root and cgroup parent).
The marker ``@pytest.mark.minirt(image=..., network=..., memory=..., ...)``
gives the test's containers their image and default options.
Options: ``--minirt-root DIR`` (where runs and the image cache live),
``--minirt-on-disk`` (the containers too: by default they are in RAM, session.py),
``--minirt-keep`` (keep a failed test's containers, and say how to enter them).
Assertions that read like sentences: ``assertions.py``.
"""

# The hooks and fixtures are in plugin.py, loaded from here: this package stays
# free of pytest, so the session's runner (runner.py, ``-m minirt.testing.runner``)
# starts without it -- a smaller process to fork for each container.
pytest_plugins = ["minirt.testing.plugin"]
