"""docker's image and container commands, as the lecture's cheat sheet runs them.

``minirt image ls|rm|inspect|history|prune|tag|save|load``, ``tag``, ``save``,
``container ls|rm|...``, ``version``, ``info``, ``--version``: their output
shapes, what they change in the state root, and that an image saved and
loaded again keeps its digests (checked with skopeo too, which must accept
what ``save`` writes).  Bad command lines are in ``test_bad_input.py``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from minirt.image import open_image
from minirt.image.write import write_image

pytestmark = pytest.mark.privileged

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Root:
    """A private state root; ``self("images")`` runs ``minirt --root ROOT images``."""

    def __init__(self, path):
        self.path = path

    def __call__(self, *args, **kw):
        return subprocess.run([sys.executable, "-m", "minirt", "--root", self.path, *args],
                              capture_output=True, timeout=120, **kw)

    def ok(self, *args, **kw):
        r = self(*args, **kw)
        assert r.returncode == 0, (args, r.stderr.decode())
        return r.stdout.decode()

    def rows(self, *args):
        """A table's rows, each a list of its cells (three spaces or more apart)."""
        return [re.split(r"\s{3,}", line) for line in self.ok(*args).splitlines()]

    def blobs(self):
        d = os.path.join(self.path, "layers", "blobs", "sha256")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.fixture
def root():
    path = tempfile.mkdtemp(prefix="minirt-imgcmd-")
    r = Root(path)
    yield r
    r("system", "prune")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def loaded(root, busybox_image):
    root.ok("load", "-i", busybox_image)
    with open_image(busybox_image) as img:
        root.id = img.id
    return root


def skopeo_digests(transport):
    """(config digest, layer digests) of an archive, as skopeo reads it."""
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", transport], capture_output=True,
                                    check=True).stdout)
    config = json.loads(subprocess.run(["skopeo", "inspect", "--config", "--raw", transport], capture_output=True,
                                       check=True).stdout)
    return config, [layer["digest"] for layer in raw["layers"]]


# -- tag, images, rmi ------------------------------------------------------------------------------

def test_tag_is_a_second_name_and_rmi_of_one_name_keeps_the_image(loaded):
    assert loaded.ok("tag", "busybox", "mine/bb:v1") == ""
    assert loaded.ok("image", "tag", "busybox:latest", "localhost:5000/x/y") == ""
    rows = loaded.rows("image", "ls")
    assert rows[0] == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert sorted((r[0], r[1], r[2]) for r in rows[1:]) == [
        ("busybox", "latest", loaded.id[7:19]), ("localhost:5000/x/y", "latest", loaded.id[7:19]),
        ("mine/bb", "v1", loaded.id[7:19])]
    assert all(r[3] == "56 years ago" and r[4] == "2.14MB" for r in rows[1:])   # made at the epoch
    assert loaded.rows("images") == rows   # the old spelling

    assert loaded.ok("rmi", "mine/bb:v1") == "Untagged: mine/bb:v1\n"
    r = loaded("image", "rm", loaded.id[7:19])   # by id, while two names point at it
    assert r.returncode == 1
    assert r.stderr.decode() == (f"minirt: conflict: unable to delete {loaded.id[7:19]} (must be forced)"
                                 " - image is referenced in multiple repositories\n")
    assert len(loaded.rows("images")) == 3
    out = loaded.ok("image", "rm", "-f", loaded.id[7:19]).splitlines()
    assert out == ["Untagged: busybox:latest", "Untagged: localhost:5000/x/y:latest", f"Deleted: {loaded.id}"]
    assert loaded.rows("images") == [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]


def test_every_command_reads_names_as_docker_does(root, busybox_image, tmp_path):
    # one grammar (image/reference.py): docker.io/library/busybox:latest is busybox
    root.ok("load", "-i", busybox_image, "-t", "docker.io/library/busybox:latest")
    assert root.rows("images")[1][:2] == ["busybox", "latest"]
    root.ok("tag", "index.docker.io/library/busybox", "docker.io/me/box:1")
    assert sorted(json.loads(root.ok("image", "inspect", "library/busybox:latest"))[0]["RepoTags"]) == [
        "busybox:latest", "me/box:1"]
    out = tmp_path / "out.tar"
    root.ok("save", "-o", str(out), "docker.io/library/busybox")
    with open_image(str(out)) as img:
        assert img.tags == ["busybox:latest"]
    assert root.ok("rmi", "docker.io/library/busybox:latest") == "Untagged: busybox:latest\n"
    assert root.ok("rmi", "me/box:1").splitlines()[0] == "Untagged: me/box:1"


def test_a_run_of_a_loaded_image_imports_no_registry_client(loaded):
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "minirt", "--root", loaded.path,
                        "run", "--rm", "--network", "none", "busybox", "true"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()}
    assert "minirt.runtime.catalog" in imported  # (the catalog was read)
    assert not imported & {"minirt.image.pull", "minirt.image.registry", "http.client", "ssl"}


def test_a_tag_moved_to_another_image_leaves_the_first_dangling(loaded, tmp_path):
    other = write_image(tmp_path / "other.tar", [b"\0" * 1024], config={"Cmd": ["sh"]}, tag="busybox:latest")
    loaded.ok("load", "-i", str(other))
    rows = loaded.rows("images")
    assert ["<none>", "<none>", loaded.id[7:19]] in [r[:3] for r in rows]
    assert loaded.ok("images", "-q").split()[-1] == loaded.id[7:19]   # loaded first: listed last


def test_images_quiet_no_trunc_digests_and_format(loaded):
    loaded.ok("tag", "busybox", "second")
    assert loaded.ok("images", "-q") == loaded.id[7:19] + "\n"   # one image, once
    assert loaded.ok("images", "-aq", "--no-trunc") == loaded.id + "\n"
    assert loaded.rows("images", "--digests")[0] == ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    assert loaded.rows("images", "--digests")[1][2] == "<none>"   # loaded, not pulled: no registry digest
    out = loaded.ok("image", "ls", "--format", r"{{.Repository}}:{{.Tag}}\t{{.ID}} {{json .Size}}")
    assert sorted(out.splitlines()) == [f"busybox:latest\t{loaded.id[7:19]} \"2.14MB\"",
                                        f"second:latest\t{loaded.id[7:19]} \"2.14MB\""]


def test_rmi_of_an_image_a_container_uses_is_refused_unless_forced(loaded):
    cid = loaded.ok("run", "-d", "--network", "none", "busybox", "sleep", "60").strip()
    try:
        r = loaded("rmi", "busybox")
        assert (r.returncode, r.stderr.decode()) == (1, 'minirt: conflict: unable to remove repository reference'
                                                     f' "busybox:latest" (must force) - container {cid[:12]} is'
                                                     f' using its referenced image {loaded.id[7:19]}\n')
        r = loaded("rmi", "-f", loaded.id)
        assert r.returncode == 1 and f"(cannot be forced) - image is being used by running container {cid[:12]}" \
            in r.stderr.decode()
        assert loaded.ok("images", "-q") == loaded.id[7:19] + "\n"   # refused: nothing changed
        loaded.ok("stop", "-t", "0", cid)
        r = loaded("rmi", loaded.id[7:19])
        assert r.returncode == 1 and "(must be forced) - image is being used by stopped container" in r.stderr.decode()
        # Forced: the image goes; the stopped container keeps its layers and starts again.
        assert loaded.ok("rmi", "-f", "busybox").splitlines() == ["Untagged: busybox:latest", f"Deleted: {loaded.id}"]
        loaded.ok("start", cid)
        assert loaded.ok("exec", cid, "echo", "still here") == "still here\n"
    finally:
        loaded.ok("rm", "-f", cid)


# -- inspect, history ---------------------------------------------------------------------------------

def test_image_inspect_has_dockers_shape(loaded):
    [info] = json.loads(loaded.ok("image", "inspect", "busybox"))
    with open_image(os.path.join(REPO, "images", "busybox.tar")) as img:
        diff_ids = [layer.diff_id for layer in img.layers]
    assert info["Id"] == loaded.id and info["RepoTags"] == ["busybox:latest"] and info["RepoDigests"] == []
    assert (info["Created"], info["Architecture"], info["Os"]) == ("1970-01-01T00:00:00Z", "amd64", "linux")
    assert info["Config"]["Cmd"] == ["sh"] and info["Size"] == 2140160
    assert info["RootFS"] == {"Type": "layers", "Layers": diff_ids}
    r = loaded("image", "inspect", "busybox", "nope")
    assert r.returncode == 1 and r.stderr.decode() == "minirt: no such image: nope\n"
    assert [i["Id"] for i in json.loads(r.stdout)] == [loaded.id]   # the others still shown, as docker


def test_image_history_is_the_configs_history_newest_first(root, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 30000)
    (tmp_path / "b").mkdir()
    path = write_image(tmp_path / "two.tar", [tmp_path / "a", tmp_path / "b"], config={"Cmd": ["sh"]},
                       tag="two:layers")
    root.ok("load", "-i", str(path))
    rows = root.rows("image", "history", "two:layers")
    image_id = json.loads(root.ok("image", "inspect", "two:layers"))[0]["Id"]
    assert rows[0] == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert [r[0] for r in rows[1:]] == [image_id[7:19], "<missing>"]
    assert [r[2] for r in rows[1:]] == ["minirt.image.write"] * 2
    assert [r[3] for r in rows[1:]] == ["10.2kB", "41kB"]   # newest (the empty one) first: tar records of 10 kB
    assert root.ok("image", "history", "-q", "--no-trunc", "two:layers").split() == [image_id, "<missing>"]


def test_history_steps_without_a_layer_have_no_size(root, tmp_path):
    """docker's configs say ENV, CMD ... as steps with ``empty_layer``: the
    layers' sizes go to the other steps, in order."""
    from minirt.image.formats import OCI_CONFIG, OCI_MANIFEST
    from minirt.image.write import EPOCH, Layout, tar_archive

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_bytes(b"x" * 30000)
    layout = Layout(tmp_path / "layout")
    layer, diff_id = layout.add_layer(tmp_path / "tree")
    steps = [{"created": EPOCH, "created_by": "ADD rootfs /"},
             {"created": EPOCH, "created_by": "ENV A=1", "empty_layer": True, "comment": "buildkit"},
             {"created": EPOCH, "created_by": 'CMD ["sh", "-c", "' + "a very long command line " * 4 + '"]',
              "empty_layer": True}]
    config = layout.add_json({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "history": steps,
                              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}, OCI_CONFIG)
    manifest = layout.add_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                                "layers": [layer]}, OCI_MANIFEST)
    layout.write_index([dict(manifest, annotations={"org.opencontainers.image.ref.name": "steps:v1"})])
    tar_archive(tmp_path / "layout", tmp_path / "steps.tar")
    root.ok("load", "-i", str(tmp_path / "steps.tar"))
    rows = root.rows("image", "history", "steps:v1")
    assert [r[1:] for r in rows[1:]] == [
        ["56 years ago", 'CMD ["sh", "-c", "a very long command line a…', "0B"],
        ["56 years ago", "ENV A=1", "0B", "buildkit"],
        ["56 years ago", "ADD rootfs /", "41kB"]]
    assert steps[2]["created_by"] in root.ok("image", "history", "--no-trunc", "steps:v1")


def test_save_of_an_image_loaded_by_an_older_minirt_says_to_load_it_again(loaded, tmp_path):
    path = os.path.join(loaded.path, "images", loaded.id[7:] + ".json")
    with open(path) as f:
        entry = json.load(f)
    del entry["blobs"]   # as minirt wrote it before it kept blobs
    with open(path, "w") as f:
        json.dump(entry, f)
    assert loaded.rows("images")[1][4] == "0B"
    r = loaded("save", "-o", str(tmp_path / "out.tar"), "busybox")
    assert (r.returncode, r.stderr.decode()) == (125, "minirt: busybox: loaded by an older minirt, which kept"
                                                      " no blobs; load it again\n")
    assert os.listdir(tmp_path) == []
    loaded.ok("load", "-i", os.path.join(REPO, "images", "busybox.tar"))
    loaded.ok("save", "-o", str(tmp_path / "out.tar"), "busybox")


# -- prune -------------------------------------------------------------------------------------------

def test_image_prune_deletes_dangling_images_and_then_with_a_every_unused_one(loaded, tmp_path):
    blobs = loaded.blobs()
    assert loaded.id[7:] in blobs and len(blobs) == 3   # the config, the layer and the manifest, as they came
    other = write_image(tmp_path / "other.tar", [b"\0" * 1024], config={"Cmd": ["sh"]}, tag="busybox:latest")
    loaded.ok("load", "-i", str(other))   # takes the name: the first image dangles
    kept = loaded.ok("images", "-q").split()[0]
    out = loaded.ok("image", "prune").splitlines()
    assert out[:3] == ["Deleted Images:", f"deleted: {loaded.id}", ""]
    assert out[3] == "Total reclaimed space: 2.14MB"
    assert loaded.ok("images", "-q").split() == [kept] and loaded.id[7:] not in loaded.blobs()
    assert not os.path.exists(os.path.join(loaded.path, "layers", "sha256", busybox_layers()[0]))

    loaded.ok("load", "-i", os.path.join(REPO, "images", "busybox.tar"), "-t", "bb")
    cid = loaded.ok("run", "-d", "--network", "none", "bb", "sleep", "60").strip()
    try:
        out = loaded.ok("image", "prune", "-a", "-f").splitlines()   # bb is in use: kept
        assert out[1] == "untagged: busybox:latest" and out[2].startswith("deleted: sha256:" + kept)
        assert loaded.ok("images", "-q") == loaded.id[7:19] + "\n"
    finally:
        loaded.ok("rm", "-f", cid)
    out = loaded.ok("image", "prune", "-a").splitlines()
    assert out[1:3] == ["untagged: bb:latest", f"deleted: {loaded.id}"]
    assert loaded.ok("images", "-q") == "" and loaded.blobs() == []


def busybox_layers():
    with open_image(os.path.join(REPO, "images", "busybox.tar")) as img:
        return [layer.diff_id[7:] for layer in img.layers]


# -- save ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["docker-archive", "oci-archive"])
def test_save_then_load_keeps_every_digest_and_skopeo_reads_it(root, form, tmp_path):
    source = os.path.join(REPO, "images", "busybox-oci.tar")   # gzip layers: kept compressed, as they came
    root.ok("load", "-i", source, "-t", "busybox")
    with open_image(source) as img:
        image_id, layers, diff_ids = img.id, [layer.digest for layer in img.layers], [la.diff_id for la in img.layers]
    out = tmp_path / "saved.tar"
    assert root.ok("save", "--format", form, "-o", str(out), "busybox") == ""
    config, skopeo_layers = skopeo_digests(f"{form}:{out}")
    # skopeo names a docker-archive's layers by what they are unpacked (docker load's view)
    assert skopeo_layers == (layers if form == "oci-archive" else diff_ids)
    assert config["rootfs"]["diff_ids"] == diff_ids
    with open_image(out) as img:
        assert (img.id, [layer.digest for layer in img.layers], img.tags) == (image_id, layers, ["busybox:latest"])

    root.ok("rmi", "busybox")
    root.ok("system", "prune")   # the layers and blobs go: the archive alone brings the image back
    assert root.blobs() == []
    assert root.ok("load", "-i", str(out)) == "Loaded image: busybox:latest\n"
    assert root.ok("images", "-q", "--no-trunc") == image_id + "\n"
    r = root("run", "--rm", "--network", "none", "busybox", "echo", "round trip")
    assert (r.returncode, r.stdout) == (0, b"round trip\n"), r.stderr


def test_save_to_a_pipe_and_two_names_of_one_image(loaded, tmp_path):
    loaded.ok("tag", "busybox", "other:v2")
    with open(tmp_path / "piped.tar", "wb") as f:
        r = subprocess.run([sys.executable, "-m", "minirt", "--root", loaded.path, "image", "save", "busybox",
                            "other:v2"], stdout=f, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "piped.tar", "rb") as f:
        manifest = json.loads(subprocess.run(["tar", "-xOf", "-", "manifest.json"], stdin=f,
                                             capture_output=True, check=True).stdout)
    assert [(e["Config"], e["RepoTags"]) for e in manifest] == [
        ("blobs/sha256/" + loaded.id[7:], ["busybox:latest", "other:v2"])]
    with open_image(tmp_path / "piped.tar", ref="other:v2") as img:
        assert img.id == loaded.id


def test_save_refuses_to_write_to_a_terminal(loaded, terminal):
    t = terminal("--root", loaded.path, "save", "busybox")
    t.read_until(b"cowardly refusing to save to a terminal. Use the -o flag or redirect")
    _, status = os.waitpid(t.pid, 0)
    t.pid = None
    assert os.waitstatus_to_exitcode(status) == 125


def test_save_of_an_unknown_image_writes_no_file(loaded, tmp_path):
    r = loaded("save", "-o", str(tmp_path / "out.tar"), "busybox", "nope")
    assert (r.returncode, r.stderr.decode()) == (125, "minirt: no such image: nope\n")
    assert os.listdir(tmp_path) == []


# -- containers ---------------------------------------------------------------------------------------

def test_container_commands_are_the_lifecycle_commands(loaded):
    cid = loaded.ok("container", "run", "-d", "--network", "none", "busybox", "sleep", "60").strip()
    try:
        assert loaded.ok("container", "ls", "-q") == cid[:12] + "\n"
        assert loaded.ok("container", "ls", "-aq", "--no-trunc") == cid + "\n"
        rows = loaded.rows("container", "ls", "--size")
        assert rows[0] == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES", "SIZE"]
        assert rows[1][0] == cid[:12] and rows[1][-1] == "0B"
        loaded.ok("container", "exec", cid, "sh", "-c", "head -c 2000 /dev/zero > /f")
        assert loaded.rows("ps", "-s")[1][-1] == "2kB"
        assert loaded.rows("ps", "--no-trunc")[1][2] == '"sleep 60"'
        assert json.loads(loaded.ok("container", "inspect", cid))[0]["Id"] == cid
        assert loaded.ok("container", "stop", "-t", "0", cid) == cid + "\n"
        assert loaded.ok("container", "ls", "-q") == ""
        assert loaded.ok("container", "start", cid) == cid + "\n"
        assert loaded.ok("container", "kill", cid) == cid + "\n"
        assert loaded.ok("container", "logs", cid) == ""
    finally:
        assert loaded.ok("container", "rm", "-f", cid) == cid + "\n"


# -- version, info, help ------------------------------------------------------------------------------

def test_version_line_and_sections(root):
    assert re.fullmatch(r"minirt version \d+\.\d+\.\d+, build \w+\n", root.ok("--version"))
    out = root.ok("version")
    assert out.startswith("Client: minirt\n Version:")
    assert f" Kernel version:    {os.uname().release}\n" in out and " OS/Arch:           linux/amd64\n" in out
    assert re.search(r"  overlayfs: +yes\n", out)


def test_info_counts_containers_and_images(loaded):
    cid = loaded.ok("run", "-d", "--network", "none", "busybox", "sleep", "60").strip()
    try:
        loaded.ok("run", "--network", "none", "busybox", "true")
        out = loaded.ok("info")
        assert " Containers: 2\n  Running: 1\n  Paused: 0\n  Stopped: 1\n Images: 1\n" in out
        assert " Storage Driver: overlay\n" in out and f" Minirt Root Dir: {loaded.path}\n" in out
        from minirt.kernel import cgroups
        version = {"v1": "1", "v2": "2"}[cgroups.detect()]
        assert loaded.ok("info", "--format", "{{.CgroupVersion}} {{.ContainersStopped}} {{.NCPU}}") == \
            f"{version} 1 {os.cpu_count()}\n"
        assert json.loads(loaded.ok("info", "-f", "{{json .}}"))["KernelVersion"] == os.uname().release
    finally:
        loaded.ok("rm", "-f", cid)


@pytest.mark.parametrize("command, lines", [
    (["image", "--help"], ["    ls         list loaded images", "    history    the steps that made an image,"
                                                                   " newest first"]),
    (["container", "--help"], ["    ls         list containers", "    run        run a command in a new container"]),
    (["image", "save", "--help"], ["usage: minirt image save [OPTIONS] IMAGE [IMAGE...]"]),
    (["container", "run", "--help"], ["usage: minirt container run [OPTIONS] IMAGE [COMMAND [ARG...]]"]),
    (["tag", "--help"], ["usage: minirt tag SOURCE_IMAGE TARGET_IMAGE"]),
    (["--help"], ["    image      manage images", "    info       system-wide information: containers, images,"
                  " storage, cgroups, security", "  -v, --version   print the version and exit"]),
])
def test_help_texts(root, command, lines):
    out = root.ok(*command).splitlines()
    for line in lines:
        assert line in out
