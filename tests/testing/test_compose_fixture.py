"""The plugin's ``compose`` fixture (minirt/testing/compose.py) over ``minirt compose``:
a project up for one test, its services Running containers, down after it."""

import pytest

pytestmark = pytest.mark.privileged


def test_a_project_is_up_for_its_test_and_down_after(inner):
    with open(f"{inner.dir}/compose.yaml", "w") as f:
        f.write(f"""
services:
  web:
    image: {inner.image}
    command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
  client:
    image: {inner.image}
    command: ["sleep", "600"]
    depends_on: [web]
volumes:
  data: {{}}
""")
    inner.write("test_compose.py", """
        from minirt.api import containers

        def test_up(compose, minirt_run):
            project = compose("compose.yaml")
            client, web = project.service("client"), project.service("web")
            page = client.exec("wget", "-q", "-O", "-", "http://web:8080/hostname")
            assert page.stdout.strip() == web.exec("hostname").stdout.strip()
            assert_only_processes(web, "httpd")
            assert project.name.startswith(minirt_run.name + "-project")
            with pytest.raises(Exception, match="was made by compose: it has no twin"):
                syscall_errno(web, "getpid")

        def test_then_down(minirt_run):
            assert containers.listing(minirt_run.root, all=True) == []
    """)
    code, out = inner.run()
    assert code == 0, out
