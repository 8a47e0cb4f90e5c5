"""The catalog names images as docker does: every spelling of a reference finds its image."""

import pytest

from minirt.runtime import state
from minirt.runtime.catalog import Catalog

ID = "sha256:" + "cd" * 32


@pytest.fixture
def catalog(tmp_path):
    (tmp_path / "images").mkdir()
    state.write_json(str(tmp_path / "images" / (ID[7:] + ".json")),
                     {"id": ID, "config": {}, "layers": [], "source": "x"})
    state.write_json(str(tmp_path / "images" / "tags.json"),
                     {"busybox:latest": ID, "localhost:5000/app:v1": ID})
    return Catalog(str(tmp_path))


@pytest.mark.parametrize("ref", ["busybox", "busybox:latest", "library/busybox",
                                 "docker.io/library/busybox:latest", "index.docker.io/library/busybox",
                                 "localhost:5000/app:v1", ID, ID[7:19]])
def test_every_spelling_finds_the_image(catalog, ref):
    assert catalog.lookup(ref)["id"] == ID


@pytest.mark.parametrize("ref", ["busybox:1", "docker.io/other/busybox", "localhost:5000/app"])
def test_other_names_do_not(catalog, ref):
    assert catalog.lookup(ref) is None
