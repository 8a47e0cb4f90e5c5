"""Image references normalised as docker's distribution/reference does."""

import pytest

from minirt.errors import ImageError
from minirt.image.reference import parse, parse_optional

H = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, full, familiar", [
    ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("alpine:3.19", "docker.io/library/alpine:3.19", "alpine:3.19"),
    ("library/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("docker.io/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("index.docker.io/library/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("user/app/sub", "docker.io/user/app/sub:latest", "user/app/sub:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/app:v2", "localhost:5000/app:v2", "localhost:5000/app:v2"),
    ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t"),
    ("quay.io/x/y", "quay.io/x/y:latest", "quay.io/x/y:latest"),
    ("Host/app", "Host/app:latest", "Host/app:latest"),  # upper case: a domain
    ("[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"),
    ("a-b__c.d_e---f", "docker.io/library/a-b__c.d_e---f:latest", "a-b__c.d_e---f:latest"),
    (f"alpine@{H}", f"docker.io/library/alpine@{H}", f"alpine@{H}"),
    (f"alpine:3@{H}", f"docker.io/library/alpine:3@{H}", f"alpine:3@{H}"),
    (f"localhost:5000/app@{H}", f"localhost:5000/app@{H}", f"localhost:5000/app@{H}"),
])
def test_normalised_as_docker_does(text, full, familiar):
    ref = parse(text)
    assert (str(ref), ref.familiar) == (full, familiar)
    assert parse(str(ref)) == ref  # the full form is a fixed point


def test_parts():
    ref = parse(f"localhost:5000/a/b:t@{H}")
    assert (ref.domain, ref.path, ref.tag, ref.digest, ref.object) == ("localhost:5000", "a/b", "t", H, H)
    assert ref.registry == "localhost:5000"
    assert parse("alpine").registry == "registry-1.docker.io" and parse("alpine").object == "latest"


@pytest.mark.parametrize("text, message", [
    ("", "empty image name"),
    ("Alpine", "repository name (library/Alpine) must be lowercase"),
    ("user/App:1", "repository name (user/App) must be lowercase"),
    ("alpine:", "bad tag ''"),
    ("alpine:-x", "bad tag '-x'"),
    ("alpine:" + "t" * 129, "bad tag"),
    ("a//b", "empty repository name component"),
    ("alpine/", "empty repository name component"),
    ("-alpine", "bad repository name component '-alpine'"),
    ("al..pine", "bad repository name component 'al..pine'"),
    ("al___pine", "bad repository name component"),
    ("al pine", "bad repository name component"),
    ("alpine@sha256", "invalid checksum digest format"),
    ("alpine@md5:abc", "unsupported digest algorithm 'md5'"),
    ("alpine@sha256:abc", "invalid checksum digest length"),
    ("alpine@sha256:" + "AB" * 32, "invalid checksum digest length"),
    ("ho_st:5000/app", "bad registry name 'ho_st:5000'"),
    ("host:50x/app", "bad registry name 'host:50x'"),
    ("-host.io/app", "bad registry name"),
    ("a/" + "b" * 260, "must not be more than 255 characters"),
])
def test_malformed_references_are_refused_in_docker_words(text, message):
    with pytest.raises(ImageError) as e:
        parse(text)
    assert str(e.value).startswith("invalid reference format") and message in str(e.value)
    assert "\n" not in str(e.value)
    assert parse_optional(text) is None


def test_paths_are_not_references():
    # A relative path can spell a valid name: `minirt run` looks for the file first.
    assert str(parse_optional("images/busybox.tar")) == "docker.io/images/busybox.tar:latest"
    assert parse_optional("./x.tar") is None
    assert parse_optional("/tmp/x") is None
