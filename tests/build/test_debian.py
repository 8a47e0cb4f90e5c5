"""minirt build on a real distribution: the getting-started tutorial from
Debian's minbase (images/debian.tar, made by debootstrap), the base a
Dockerfile usually starts from.  The app is a web server in perl-base (no
network in a build, so nothing is downloaded): packaged as a .deb in one
stage, installed by apt in the next, run as a user the build adds, served
through a published port; docker and podman run the saved image alike.
Then what such a base brings through a build: hard links, setuid programs,
its users and groups, xattrs, a deletion of thousands of files."""

import os
import shutil
import subprocess
import sys

import pytest

from .test_build import context, free_port, http_get, ok, steps

pytestmark = pytest.mark.privileged

DOCKERFILE = """\
FROM debian:bookworm AS package
ARG VERSION=1.0
WORKDIR /src/hello-web
COPY control DEBIAN/
RUN sed -i "s/^Version: .*/Version: $VERSION/" DEBIAN/control
COPY app/ usr/share/hello-web/
RUN dpkg-deb --root-owner-group --build . /hello-web.deb

FROM debian:bookworm
RUN useradd --system --create-home --home-dir /srv/web web
COPY --from=package /hello-web.deb /tmp/
RUN apt-get install -y /tmp/hello-web.deb && rm /tmp/hello-web.deb
WORKDIR /srv/web
USER web
EXPOSE 8080
CMD ["perl", "/usr/share/hello-web/server.pl", "8080"]
"""

CONTROL = """\
Package: hello-web
Version: 0
Architecture: all
Maintainer: The class <class@example.org>
Description: the getting-started tutorial's web app
"""

SERVER = r"""# The tutorial's web app: the files in www/ over HTTP, with perl-base alone.
use strict;
use warnings;
use IO::Socket::INET;

my $root = "/usr/share/hello-web/www";
my $server = IO::Socket::INET->new(LocalPort => $ARGV[0] || 8080, Listen => 5, ReuseAddr => 1)
    or die "listen: $!\n";
while (my $client = $server->accept) {
    my ($path) = (<$client> // "") =~ m{^GET (/[\w-]*(?:\.\w+)?) };
    $path = "/index.html" if defined $path && $path eq "/";
    if (defined $path && -f "$root$path" && open my $file, "<", "$root$path") {
        local $/;
        my $body = <$file>;
        print $client "HTTP/1.0 200 OK\r\nContent-Length: " . length($body) . "\r\n\r\n" . $body;
    } else {
        print $client "HTTP/1.0 404 Not Found\r\n\r\n";
    }
    close $client;
}
"""


@pytest.fixture(scope="module")
def minirt(tmp_path_factory, debian_image):
    """``minirt ARGS`` against a state root of the module's own, Debian loaded once."""
    root = str(tmp_path_factory.mktemp("debian") / "root")

    def call(*args):
        return subprocess.run([sys.executable, "-m", "minirt", "--root", root, *args], capture_output=True,
                              text=True, timeout=300)
    ok(call("load", "-i", debian_image))
    yield call
    call("system", "prune")
    shutil.rmtree(root, ignore_errors=True)  # some 130 MB unpacked


def app(path, index="<h1>hello from Debian</h1>\n"):
    return context(path, DOCKERFILE, control=CONTROL, **{"app/server.pl": SERVER, "app/www/index.html": index})


def test_the_tutorial_app_builds_runs_as_its_user_and_serves(minirt, tmp_path):
    r = ok(minirt("build", "-t", "hello-web", app(tmp_path / "app")))
    assert "naming to hello-web:latest done" in r.stderr
    out = ok(minirt("run", "--rm", "hello-web", "sh", "-c", "id -un; pwd; dpkg-query -W hello-web; ls -A /tmp; "
                                                            "ls /src 2>&1; true")).stdout
    assert out.splitlines() == ["web", "/srv/web", "hello-web\t1.0",
                                "ls: cannot access '/src': No such file or directory"]
    port = free_port()
    started = ok(minirt("run", "-d", "-p", f"127.0.0.1:{port}:8080", "hello-web"))
    try:
        assert http_get(port).endswith(b"\r\n\r\n<h1>hello from Debian</h1>\n")
        assert http_get(port, "/missing.html").startswith(b"HTTP/1.0 404 Not Found")
    finally:
        minirt("rm", "-f", started.stdout.strip())


def test_a_rebuild_after_editing_one_page_reuses_the_steps_before_it(minirt, tmp_path):
    ctx = app(tmp_path / "app")
    ok(minirt("build", "-t", "hello-web:edit", ctx))
    assert steps(ok(minirt("build", "-t", "hello-web:edit", ctx)).stderr, "DONE") == []
    (tmp_path / "app" / "app" / "www" / "index.html").write_text("<h1>edited</h1>\n")
    edited = ok(minirt("build", "-t", "hello-web:edit", ctx))
    assert steps(edited.stderr, "CACHED") == [
        "COPY control DEBIAN/", 'RUN sed -i "s/^Version: .*/Version: $VERSION/" DEBIAN/control',
        "RUN useradd --system --create-home --home-dir /srv/web web"]
    assert steps(edited.stderr, "DONE") == [
        "COPY app/ usr/share/hello-web/", "RUN dpkg-deb --root-owner-group --build . /hello-web.deb",
        "COPY --from=package /hello-web.deb /tmp/", "RUN apt-get install -y /tmp/hello-web.deb && rm /tmp/hello-web.deb"]
    out = ok(minirt("run", "--rm", "hello-web:edit", "cat", "/usr/share/hello-web/www/index.html")).stdout
    assert out == "<h1>edited</h1>\n"


def test_the_final_stage_holds_only_the_package_and_target_stops_at_the_builder(minirt, tmp_path):
    ctx = app(tmp_path / "app")
    ok(minirt("build", "--build-arg", "VERSION=2.0", "-t", "hello-web:2", ctx))
    assert ok(minirt("run", "--rm", "hello-web:2", "dpkg-query", "-W", "hello-web")).stdout == "hello-web\t2.0\n"
    history = ok(minirt("image", "history", "--no-trunc", "hello-web:2")).stdout
    assert "dpkg-deb" not in history and "COPY app/" not in history and "COPY --from=package" in history
    r = ok(minirt("build", "--target", "package", "-t", "hello-web:builder", ctx))
    assert "useradd" not in r.stderr  # the final stage is not needed, so not built
    out = ok(minirt("run", "--rm", "hello-web:builder", "sh", "-c", "pwd; dpkg-deb -f /hello-web.deb Version; "
                                                                    "ls usr/share/hello-web; id -un")).stdout
    assert out.splitlines() == ["/src/hello-web", "1.0", "server.pl", "www", "root"]


# setxattr(2) and getxattr(2) from perl-base (minbase has no setfattr): x86-64's numbers 188, 191
SETXATTR = 'my @a = @ARGV; syscall(188, @a, length $a[2], 0) == 0 or die "setxattr: $!\\n"'
GETXATTR = 'for my $f (@ARGV) { my ($p, $k, $b) = ($f, "user.note", "\\0" x 64); ' \
           'my $n = syscall(191, $p, $k, $b, 64); print "$f: ", ($n < 0 ? "none" : substr($b, 0, $n)), "\\n" }'


PROPERTIES = f"""\
FROM debian:bookworm AS tools
RUN cp -a /usr/bin/su /usr/local/bin/su-copy && ln /usr/local/bin/su-copy /usr/local/bin/su-link
FROM debian:bookworm
COPY --from=tools /usr/local/bin/ /usr/local/bin/
COPY --from=tools /usr/bin/perl /usr/bin/perl5.36.0 /opt/perl/
COPY --chown=www-data:www-data owned.txt /srv/
RUN rm -rf /usr/share/zoneinfo /usr/share/doc && mkdir /usr/share/doc && echo new > /usr/share/doc/README
RUN chmod u+s /usr/bin/date && ln /usr/bin/date /usr/local/bin/now
RUN echo data > /noted && for f in /noted /usr/bin/ls; do perl -e '{SETXATTR}' $f user.note "on $f"; done
USER nobody:nogroup
"""


def test_a_debian_base_s_files_keep_links_modes_owners_and_xattrs_through_a_build(minirt, tmp_path):
    """Hard links (the base's, a RUN's, COPY --from's), setuid bits, owners by
    the image's names, xattrs (a RUN's, on a new and a copied-up file, and a
    context file's), whiteouts over thousands of files and an opaque directory."""
    ctx = context(tmp_path / "props", PROPERTIES, **{"owned.txt": "x"})
    os.setxattr(os.path.join(ctx, "owned.txt"), "user.note", b"from the context")
    ok(minirt("build", "-t", "props", ctx))
    files = "/usr/local/bin/su-copy /usr/local/bin/su-link /opt/perl/perl /opt/perl/perl5.36.0 " \
            "/usr/bin/date /usr/local/bin/now /usr/bin/su /srv/owned.txt"
    script = f"id; stat -c '%n %a %U:%G %h %i' {files}; ls /usr/share/zoneinfo 2>&1; ls -A /usr/share/doc; " \
             f"ls /usr/share/perl5; perl -e '{GETXATTR}' /noted /usr/bin/ls /srv/owned.txt /usr/bin/cat"
    out = ok(minirt("run", "--rm", "props", "sh", "-c", script)).stdout.splitlines()
    assert out[0] == "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
    stat = {line.split()[0]: line.split()[1:] for line in out[1:9]}
    inode = {name: fields.pop() for name, fields in stat.items()}
    assert stat["/usr/local/bin/su-copy"] == stat["/usr/local/bin/su-link"] == ["4755", "root:root", "2"]
    assert inode["/usr/local/bin/su-copy"] == inode["/usr/local/bin/su-link"]
    assert stat["/opt/perl/perl"] == stat["/opt/perl/perl5.36.0"] == ["755", "root:root", "2"]
    assert inode["/opt/perl/perl"] == inode["/opt/perl/perl5.36.0"]
    assert stat["/usr/bin/date"] == stat["/usr/local/bin/now"] == ["4755", "root:root", "2"]
    assert inode["/usr/bin/date"] == inode["/usr/local/bin/now"]
    assert stat["/usr/bin/su"] == ["4755", "root:root", "1"]
    assert stat["/srv/owned.txt"] == ["644", "www-data:www-data", "1"]
    assert out[9] == "ls: cannot access '/usr/share/zoneinfo': No such file or directory"
    assert out[10:] == ["README", "Debconf", "Debian",  # the rest of /usr/share is still there
                        "/noted: on /noted", "/usr/bin/ls: on /usr/bin/ls", "/srv/owned.txt: from the context",
                        "/usr/bin/cat: none"]


def test_docker_and_podman_run_the_debian_app_alike(minirt, tmp_path, docker, podman):
    """The tutorial's image, saved by minirt, loaded and run by a real dockerd and podman."""
    ok(minirt("build", "-t", "hello-web:interop", app(tmp_path / "app")))
    ok(minirt("save", "-o", str(tmp_path / "app.tar"), "hello-web:interop"))
    check = ["sh", "-c", "id -un; pwd; dpkg-query -W hello-web; perl -c /usr/share/hello-web/server.pl 2>&1"]
    ours = ok(minirt("run", "--rm", "--network", "none", "hello-web:interop", *check)).stdout
    assert ours == "web\n/srv/web\nhello-web\t1.0\n/usr/share/hello-web/server.pl syntax OK\n"
    for engine, run in ((docker, lambda *a: docker("run", "--rm", "--network", "none", *a)), (podman, podman.run)):
        loaded = engine("load", "-i", str(tmp_path / "app.tar"))
        assert loaded.returncode == 0, loaded.stderr
        theirs = run("hello-web:interop", *check)
        assert theirs.returncode == 0 and theirs.stdout.decode() == ours, theirs.stderr
