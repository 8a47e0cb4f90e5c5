"""Running a build: each needed stage, instruction by instruction, into an image.

Lecture idea: "2. Run a docker build to turn your configuration into an
image. 3. Run just like a pre-canned image. 4. It will appear when you run
docker images."  A stage starts from its base image's layers and config; then

- RUN runs its command in a minirt container on the layers so far (the same
  runtime as ``minirt run``: namespaces, cgroups, seccomp); what the command
  wrote, the overlay's upper directory, is the new layer (deletions are
  already whiteouts there);
- COPY and ADD write their layer directly (``copy.py``);
- every other instruction only changes the config (ENV, CMD, USER ...).

Each new layer is tarred, gzipped and kept in the store like a pulled one, so
the next RUN stacks it and ``save``/``push`` find its blob.  The cache (one
small file per step under ``build-cache/``) maps a step's key -- the previous
step's key, the instruction with its values expanded, the build args in scope,
for COPY and ADD the digest of the bytes copied -- to the layer it made; a hit
prints ``CACHED`` and reuses the layer.  A build that ends on a key an earlier
one ended on takes that build's times (``KEY.times``), so that it makes the
same image again, as BuildKit's rebuild from its cache does.

With ``SOURCE_DATE_EPOCH`` every time in the image (config, history, file
times in new layers) is clamped to it, so the same context gives the same
image digest on any day.
"""

import hashlib
import itertools
import json
import os
import posixpath
import shutil
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from minirt import spec as specs
from minirt.build import copy as copying
from minirt.build.context import Context
from minirt.build.dockerfile import parse
from minirt.build.ignore import Ignore
from minirt.build.mounts import parse as parse_mounts
from minirt.build.stages import arg_pairs, flags, plan
from minirt.build.view import View
from minirt.build.words import expand
from minirt.errors import BuildError, MinirtError
from minirt.image import Store
from minirt.image.formats import HOST_PLATFORM, OCI_CONFIG, OCI_MANIFEST, Layer, config_platform, parse_platform
from minirt.image.store import blob_path, release
from minirt.image.write import Layout
from minirt.runtime import state as states
from minirt.runtime.catalog import Catalog
from minirt.runtime.userns import rootless_maps

DEFAULT_SHELL = ["/bin/sh", "-c"]
_STUBS = ("etc/hostname", "etc/hosts", "etc/resolv.conf")  # bind-mount targets the runtime creates
_MOUNT_DIRS = ("proc", "sys", "dev", "etc")


class _State:
    """A stage as built so far: its image config and layers."""

    def __init__(self, image=None, layers=(), dirs=(), key=""):
        self.image = image or {"config": {}, "history": []}
        self.layers = list(layers)   # (descriptor, diff_id), bottom first
        self.dirs = list(dirs)       # the store's directories of those layers
        self.key = key               # the cache key of the last step
        self.args = {}               # ARGs in scope: name -> value (None: no value)
        self.cmd_set = False         # this stage set CMD (then ENTRYPOINT keeps it)

    @property
    def config(self) -> dict:
        return self.image.setdefault("config", {})

    def copy(self) -> "_State":
        """A later stage's start: this stage's image (not its ARGs)."""
        return _State(json.loads(json.dumps(self.image)), self.layers, self.dirs, self.key)

    def env(self) -> dict:
        return dict(e.split("=", 1) for e in self.config.get("Env") or [] if "=" in e)

    def scope(self) -> dict:
        """What ``$NAME`` means in this stage: its ARGs, then its ENV over them."""
        return {**{k: v for k, v in self.args.items() if v is not None}, **self.env()}


class Builder:
    def __init__(self, root, context, dockerfile, *, name="Dockerfile", build_args=None, target=None,
                 no_cache=False, network=None, progress=None, epoch=None, platform=None):
        self.root = root
        self.context = context if isinstance(context, Context) else Context(context)
        self.context.hide(root)
        self.name = name
        self.dockerfile = parse(dockerfile, name)
        self.build_args = dict(build_args or {})
        platform = platform or (*HOST_PLATFORM, "")
        self.plan = plan(self.dockerfile, self.build_args, target, platform, name)
        self.no_cache, self.network = no_cache, network
        self.progress = progress or _Silent()  # progress.Plain or progress.Terminal
        self.epoch = epoch
        self.platform = platform
        self.maps = rootless_maps() if os.geteuid() != 0 else None
        self.store = Store(root)
        self.catalog = Catalog(root)
        self.cache_dir = os.path.join(root, "build-cache")
        self.steps = itertools.count(1)  # step numbers, as BuildKit's #N
        self.lock = threading.Lock()      # stages build in threads: output and the lease are shared
        self.lease = f"build-{os.getpid()}-{os.urandom(4).hex()}"
        self.leased = []

    # -- the whole build ------------------------------------------------------

    def build(self, tags=()) -> str:
        """Build the target stage; its image id.  The image is in the catalog under ``tags``."""
        work = tempfile.mkdtemp(prefix="build-", dir=_private(os.path.join(self.root, "build-tmp")))
        held = states.hold(work)  # prune takes the working directories of dead builds only
        try:
            self.layout = Layout(os.path.join(work, "layout"))
            self.tmp = work
            built = self.stages()
            if self.plan.unused_build_args:
                self.progress.note(f"[Warning] One or more build-args {self.plan.unused_build_args} were not consumed")
            return self.commit(built[self.plan.target.index], tags)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            os.close(held)
            if self.leased:
                release(self.lease)

    def stages(self) -> dict:
        """Build the stages the target needs: each as soon as the stages it
        uses are built, independent ones at the same time (a RUN mostly waits
        on its container: at least two at once, more with more cores)."""
        waiting = {s.index: s for s in self.plan.needed()}
        built, running = {}, {}
        with ThreadPoolExecutor(max(1, min(len(waiting), max(2, os.cpu_count() or 1)))) as pool:
            while waiting or running:
                for index, stage in list(waiting.items()):
                    if stage.needs <= built.keys():
                        running[pool.submit(self.stage, stage, dict(built))] = stage
                        del waiting[index]
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    stage = running.pop(future)
                    if future.exception() is not None:
                        waiting.clear()  # start nothing more; those running finish first
                        for other in running:
                            other.cancel()
                        wait(running)
                        raise future.exception()
                    built[stage.index] = future.result()
        return built

    def stage(self, stage, built) -> _State:
        body = list(stage.body)
        label = stage.name or f"stage-{stage.index}"
        base = self.base(stage, built)
        triggers = [parse(t, f"{self.name} (ONBUILD of {stage.base})").instructions[0]
                    for t in base.config.pop("OnBuild", None) or []]
        total = len(body) + len(triggers) + 1
        self.progress.instant(next(self.steps), f"[{label} 1/{total}] FROM {stage.base}")
        for number, ins in enumerate(triggers + body, 2):
            self.step(base, ins, built, next(self.steps), f"[{label} {number}/{total}] {_show(ins)}")
        return base

    def base(self, stage, built) -> _State:
        if stage.base.lower() == "scratch":
            return _State(key=_key("scratch"))
        parent = next((built[i] for i in stage.needs if self.plan.stages[i].name == stage.base.lower()
                       or str(i) == stage.base), None)
        if parent is not None:
            return parent.copy()
        entry = self.image(stage.base, f"{self.name}:{stage.instruction.line}", stage.platform)
        config = entry["config"]
        image = {"config": dict(config.get("config") or {}), "history": list(config.get("history") or [])}
        layers = list(zip(entry["blobs"], entry["layers"]))
        return _State(image, layers, [self.store.layer_dir(d) for d in entry["layers"]], _key("image", entry["id"]))

    def image(self, ref, where, platform=None) -> dict:
        """The catalog entry of image ``ref`` (for ``platform``, "os/arch[/variant]"),
        pulled first if it is not there."""
        try:
            wanted = parse_platform(platform) if platform else None
        except MinirtError as e:
            raise BuildError(f"{where}: {e}") from None
        entry = self.catalog.lookup(ref)
        if entry is None:
            from minirt.image.reference import parse as parse_reference

            self.progress.note(f"#0 pulling {ref}")
            try:
                self.catalog.pull(parse_reference(ref), self.store, platform=wanted)
            except MinirtError as e:
                raise BuildError(f"{where}: FROM {ref}: {e}") from None
            entry = self.catalog.lookup(ref)
        have = config_platform(entry["config"])
        if wanted and have[:len(wanted)] != wanted[:len(have)]:
            raise BuildError(f"{where}: FROM --platform={platform} {ref}: the image is {'/'.join(have)}")
        self.hold(entry["layers"])
        missing = [d for d in entry["layers"] if not self.store.has(d)]
        if missing or len(entry.get("blobs") or []) != len(entry["layers"]):
            raise BuildError(f"{where}: {ref}: its layers are not all in the store; load or pull it again")
        return entry

    def view(self, dirs) -> View:
        return View(dirs, rootless=self.store.rootless)

    def hold(self, diff_ids):
        """Keep prune off layers this build uses (one lease, renewed as it grows)."""
        with self.lock:
            if self.leased:
                release(self.lease)
            self.leased += diff_ids
            self.store.lease(self.lease, self.leased)

    # -- one instruction ------------------------------------------------------

    def step(self, st: _State, ins, built, number, title):
        where = f"{self.name}:{ins.line}"
        values = {k: (expand(v, st.scope(), self.dockerfile.escape) if isinstance(v, str) else v)
                  for k, v in flags(ins, where).items()}
        kind = ins.command
        if kind in ("run", "copy", "add"):
            self.progress.start(number, title)
            cached = getattr(self, kind)(st, ins, values, built, where, number)
            self.progress.end(number, cached)
            return
        self.progress.instant(number, title)
        getattr(self, "meta_" + kind)(st, ins, values, where)
        st.key = _key(st.key, kind, json.dumps(st.config, sort_keys=True), json.dumps(st.args, sort_keys=True))
        if kind != "arg":
            self.history(st, _show(ins), empty=True)

    def history(self, st, created_by, empty):
        entry = {"created": self.created(), "created_by": created_by, "comment": "minirt build"}
        if empty:
            entry["empty_layer"] = True
        st.image.setdefault("history", []).append(entry)

    def created(self) -> str:
        moment = self.epoch if self.epoch is not None else time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))

    def expand(self, st, word):
        return expand(word, st.scope(), self.dockerfile.escape)

    # -- RUN ------------------------------------------------------------------

    def run(self, st, ins, values, built, where, number) -> bool:
        shell = st.config.get("Shell") or DEFAULT_SHELL
        if ins.json:
            args = list(ins.args)
        elif ins.heredocs and ins.args[0].strip() == f"<<{'-' if ins.heredocs[0].chomp else ''}{ins.heredocs[0].name}":
            args = shell + [ins.heredocs[0].content]  # RUN <<EOF: the heredoc is the script
        else:
            args = shell + [ins.args[0] + "".join(f"\n{d.content}{d.name}" for d in ins.heredocs)]
        arg_env = [f"{k}={v}" for k, v in sorted(st.args.items()) if v is not None and k not in st.env()]
        network = _run_network(values.get("network"), self.network, where)
        if values.get("security", "sandbox") != "sandbox":
            raise BuildError(f"{where}: RUN --security={values['security']}: only sandbox (the default) is allowed")
        mounts = parse_mounts(values.get("mount", []), tree_of=lambda name: self.tree_of(name, built, where),
                              cache_root=os.path.join(self.cache_dir, "mounts"), tmp=self.tmp,
                              workdir=st.config.get("WorkingDir"), where=where)
        key = _key(st.key, "run", json.dumps(args), json.dumps(arg_env), network, *mounts.key,
                   json.dumps(mounts.targets))
        if self.cached(st, key, f"RUN {_show_args(args)}"):
            return True
        if not args:
            raise BuildError(f"{where}: RUN needs a command")
        upper = self.execute(st, args, arg_env, network, mounts, where, number)
        self.add_layer(st, key, upper, f"RUN {_show_args(args)}", ids=self.inside_ids())
        return False

    def execute(self, st, args, arg_env, network, mounts, where, number) -> str:
        """Run ``args`` on ``st``'s layers; the directory of what it changed."""
        from minirt.runtime.container import Container

        dirs = st.dirs or [self.store.layer_dir(d) for d in self.empty_layer()]
        userns = {}
        if self.maps:  # without root: in a user namespace, as rootless minirt run
            userns = dict(uid_map=self.maps[0], gid_map=self.maps[1], namespaces=specs.NAMESPACES + ("user",))
        spec = specs.build(st.config, cmd=args, entrypoint="", env=arg_env, layers=dirs, network=network,
                           volumes=mounts.volumes, tmpfs=mounts.tmpfs, remove=True, hostname="buildkitsandbox",
                           **userns)
        container = Container(spec, self.root)
        container.create()
        try:
            read, write = os.pipe()
            try:
                with open(os.devnull, "rb") as null:
                    container.start(stdio=(null.fileno(), write, write))
            finally:
                os.close(write)
            with os.fdopen(read, "rb") as output:
                for line in output:
                    self.progress.log(number, line.decode(errors="replace").rstrip())
            code = container.wait()
            if code != 0:
                raise BuildError(f"{where}: RUN {_show_args(args)}: exit code {code}")
            upper = os.path.join(tempfile.mkdtemp(prefix="run-", dir=self.tmp), "upper")
            os.rename(os.path.join(container.dir, "upper"), upper)
            os.mkdir(os.path.join(container.dir, "upper"))  # delete() expects it
        finally:
            container.delete()
        _drop_stubs(upper, self.view(dirs), mounts.targets)
        return upper

    def inside_ids(self):
        """How a RUN's files, owned by host ids, are owned in the container (rootless)."""
        if not self.maps:
            return None
        uid_map, gid_map = self.maps

        def inside(ranges, host):
            for start, outside, count in ranges:
                if outside <= host < outside + count:
                    return start + host - outside
            return 65534  # the overflow id: unmapped on the host
        return lambda path, st: (inside(uid_map, st.st_uid), inside(gid_map, st.st_gid))

    def empty_layer(self):
        from minirt.image.store import EMPTY_LAYER

        self.store.unpack(_Blobs("empty layer", [], {}))
        return [EMPTY_LAYER.diff_id]

    # -- COPY and ADD ---------------------------------------------------------

    def copy(self, st, ins, values, built, where, number) -> bool:
        return self.copy_or_add(st, ins, values, built, where, "COPY")

    def add(self, st, ins, values, built, where, number) -> bool:
        return self.copy_or_add(st, ins, values, built, where, "ADD")

    def copy_or_add(self, st, ins, values, built, where, keyword) -> bool:
        if len(ins.args) < 2:
            raise BuildError(f"{where}: {keyword} requires at least two arguments (SOURCE... DEST)")
        *patterns, dest = [self.expand(st, a) for a in ins.args]
        tree = self.source_tree(st, ins, values, built, where)
        sources = []
        for pattern in patterns:
            if keyword == "ADD" and pattern.startswith(("http://", "https://")):
                sources.append(self.download(pattern, values.get("checksum"), where))
            else:
                sources += [(tree, rel) for rel in copying.select(tree, pattern, where)]
        owner = copying.parse_chown(values["chown"], self.view(st.dirs), where) if values.get("chown") else None
        mode = copying.parse_chmod(values["chmod"], where) if values.get("chmod") else None
        key = _key(st.key, keyword, json.dumps([dest, owner, mode, st.config.get("WorkingDir")]),
                   copying.content_key(sources))
        if self.cached(st, key, _show(ins)):
            return True
        out = tempfile.mkdtemp(prefix="copy-", dir=self.tmp)
        unpack = self.unpacker(where) if keyword == "ADD" else None
        owners = copying.write(out, sources, dest, base=self.view(st.dirs), workdir=st.config.get("WorkingDir") or "/",
                               owner=owner, mode=mode, where=where, keyword=keyword, unpack=unpack)
        self.add_layer(st, key, out, _show(ins), ids=lambda path, _st: owners.get(path, (0, 0)))
        return False

    def unpacker(self, where):
        """ADD's: a local archive (from the context, never a download) unpacked."""
        def unpack(path):
            if path.startswith(os.path.join(self.tmp, "download-")):
                return None
            into = tempfile.mkdtemp(prefix="unpack-", dir=self.tmp)
            return copying.unpack_archive(path, into, f"{where}: ADD {os.path.basename(path)}")
        return unpack

    def download(self, url, checksum, where):
        """ADD URL: the file fetched into a directory of its own, as (tree, path)."""
        import urllib.error
        import urllib.request

        name = posixpath.basename(url.split("?", 1)[0].rstrip("/")) or "download"
        folder = tempfile.mkdtemp(prefix="download-", dir=self.tmp)
        path = os.path.join(folder, name)
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as f:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
                modified = response.headers.get("Last-Modified")
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise BuildError(f"{where}: ADD {url}: cannot download: {reason}") from None
        if checksum and checksum != "sha256:" + digest.hexdigest():
            raise BuildError(f"{where}: ADD {url}: checksum is sha256:{digest.hexdigest()}, not {checksum}")
        os.chmod(path, 0o600)  # docker: a downloaded file is 0600
        if modified:
            from email.utils import parsedate_to_datetime
            try:
                stamp = parsedate_to_datetime(modified).timestamp()
                os.utime(path, (stamp, stamp))
            except (TypeError, ValueError):
                pass
        return Context(folder, rules=Ignore()), "/" + name

    def source_tree(self, st, ins, values, built, where):
        """Where COPY reads: --from's stage or image, heredocs, or the context."""
        if values.get("from"):
            return self.tree_of(values["from"], built, where)
        if ins.heredocs:
            files = os.path.join(tempfile.mkdtemp(prefix="heredoc-", dir=self.tmp), "ctx")
            os.mkdir(files)
            for doc in ins.heredocs:
                with open(os.path.join(files, doc.name), "w") as f:
                    f.write(self.expand(st, doc.content) if doc.expand else doc.content)
            return Context(files, rules=Ignore())
        return self.context

    def tree_of(self, name, built, where):
        """The files ``--from=NAME`` names: a built stage's, an image's, or (None) the context."""
        if name is None:
            return self.context
        for i, other in built.items():
            if self.plan.stages[i].name == name.lower() or str(i) == name:
                return self.view(other.dirs)
        return self.view([self.store.layer_dir(d) for d in self.image(name, where)["layers"]])

    # -- layers and the cache -------------------------------------------------

    def add_layer(self, st, key, tree, created_by, ids=None):
        """Tar ``tree`` into a new layer on top of ``st``, keep it in the store and the
        cache; ``ids(path, stat)``: the owners, where the disk does not hold them."""
        desc, diff_id = self.layout.add_layer(tree, "gzip", clamp=self.epoch, ids=ids)
        if _is_empty_tar(self.layout, desc):
            self.history(st, created_by, empty=True)  # nothing changed: no layer, as BuildKit
            st.key = key
            self.remember(key, None, None)
            return
        self.keep(desc, diff_id)
        self.remember(key, desc, diff_id)
        self.stack(st, key, desc, diff_id, created_by)

    def keep(self, desc, diff_id):
        """The new layer's blob kept and unpacked in the store (for the next RUN)."""
        layer = Layer(desc["digest"], desc["mediaType"], desc["size"], diff_id)
        self.hold([diff_id, desc["digest"]])
        path = os.path.join(self.layout.blobs, desc["digest"][7:])
        self.store.unpack(_Blobs(f"build layer {desc['digest'][:19]}", [layer], {layer: path}), keep_blobs=True)

    def stack(self, st, key, desc, diff_id, created_by):
        st.layers.append((desc, diff_id))
        st.dirs.append(self.store.layer_dir(diff_id))
        st.key = key
        self.history(st, created_by, empty=False)

    def cached(self, st, key, created_by) -> bool:
        if self.no_cache:
            return False
        try:
            record = states.read_json(os.path.join(self.cache_dir, key[7:] + ".json"))
        except (OSError, ValueError):
            return False
        if not isinstance(record, dict):
            return False
        if record.get("empty"):
            self.history(st, created_by, empty=True)
            st.key = key
            return True
        desc, diff_id = record.get("layer"), record.get("diff_id")
        try:
            if not os.path.isfile(blob_path(self.root, desc["digest"])):
                return False
            self.hold([diff_id, desc["digest"]])
            if not self.store.has(diff_id):  # swept by a prune: unpack it again from its blob
                layer = Layer(desc["digest"], desc["mediaType"], desc["size"], diff_id)
                self.store.unpack(_Blobs("cached layer", [layer], {layer: blob_path(self.root, desc["digest"])}))
        except (MinirtError, KeyError, TypeError):
            return False
        self.stack(st, key, desc, diff_id, created_by)
        return True

    def remember(self, key, desc, diff_id):
        os.makedirs(self.cache_dir, exist_ok=True)
        record = {"empty": True} if desc is None else {"layer": desc, "diff_id": diff_id}
        states.write_json(os.path.join(self.cache_dir, key[7:] + ".json"), record)

    # -- the image ------------------------------------------------------------

    def same_times_as_before(self, key, image):
        """A build that ends where an earlier one did (the same final key: the
        same steps on the same inputs) stamps its image with that build's
        times, so that it is the same image, with the same id, as BuildKit's
        rebuild from its cache is: pytest-xdist's workers build one image, not
        one each second.  (Not with --no-cache, nor a fixed SOURCE_DATE_EPOCH.)"""
        if self.no_cache or self.epoch is not None:
            return
        path = os.path.join(self.cache_dir, key[7:] + ".times")
        history = image.get("history", [])
        try:
            earlier = states.read_json(path)
            if len(earlier["history"]) == len(history):
                image["created"] = earlier["created"]
                image["history"] = [dict(h, created=t) for h, t in zip(history, earlier["history"])]
                return
        except (OSError, ValueError, KeyError, TypeError):
            pass
        os.makedirs(self.cache_dir, exist_ok=True)
        states.write_json(path, {"created": image["created"], "history": [h.get("created") for h in history]})

    def commit(self, st, tags) -> str:
        """Write the target stage as an image and name it; its id."""
        os_, arch, variant = self.platform
        image = dict(st.image)
        image.update(created=self.created(), architecture=arch, os=os_,
                     rootfs={"type": "layers", "diff_ids": [d for _, d in st.layers]})
        self.same_times_as_before(st.key, image)
        if variant:
            image["variant"] = variant
        for desc, _ in st.layers:  # blobs of the base image's layers come from the store
            target = os.path.join(self.layout.blobs, desc["digest"][7:])
            if not os.path.exists(target):
                os.link(blob_path(self.root, desc["digest"]), target)
        config = self.layout.add_json(image, OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": config, "layers": [d for d, _ in st.layers]}
        mdesc = self.layout.add_json(manifest, manifest["mediaType"])
        self.layout.write_index([mdesc])
        image_id, names = self.catalog.load(str(self.layout.path), self.store, tags)
        number = next(self.steps)
        self.progress.note(f"#{number} writing image {image_id} done")
        for name in names:
            self.progress.note(f"#{number} naming to {name} done")
        return image_id

    # -- instructions that change only the config -----------------------------

    def meta_arg(self, st, ins, values, where):
        for name, default in arg_pairs(ins, where):
            if name in self.build_args:
                st.args[name] = self.build_args[name]
            elif default is not None:
                st.args[name] = self.expand(st, default)
            else:
                st.args[name] = self.plan.global_args.get(name)

    def meta_env(self, st, ins, values, where):
        env = list(st.config.get("Env") or [])
        for i in range(0, len(ins.args), 3):
            name, value = self.expand(st, ins.args[i]), self.expand(st, ins.args[i + 1])
            if not name:
                raise BuildError(f"{where}: ENV names can not be blank")
            env = [e for e in env if e.split("=", 1)[0] != name] + [f"{name}={value}"]
            st.config["Env"] = env  # later pairs of one ENV see earlier ones, as BuildKit

    def meta_label(self, st, ins, values, where):
        labels = st.config.setdefault("Labels", {})
        for i in range(0, len(ins.args), 3):
            labels[self.expand(st, ins.args[i])] = self.expand(st, ins.args[i + 1])

    def command(self, st, ins):
        if ins.json:
            return list(ins.args)
        return (st.config.get("Shell") or DEFAULT_SHELL) + ins.args if ins.args else []

    def meta_cmd(self, st, ins, values, where):
        st.config["Cmd"] = self.command(st, ins)
        st.cmd_set = True

    def meta_entrypoint(self, st, ins, values, where):
        st.config["Entrypoint"] = self.command(st, ins)
        if not st.cmd_set:  # docker: a new ENTRYPOINT drops the base image's CMD
            st.config["Cmd"] = None

    def meta_expose(self, st, ins, values, where):
        ports = st.config.setdefault("ExposedPorts", {})
        for word in ins.args:
            for port in _ports(self.expand(st, word), where):
                ports[port] = {}

    def meta_volume(self, st, ins, values, where):
        volumes = st.config.setdefault("Volumes", {})
        for word in ins.args:
            path = self.expand(st, word) if not ins.json else word
            if not path:
                raise BuildError(f"{where}: VOLUME specified can not be an empty string")
            volumes[path] = {}

    def meta_user(self, st, ins, values, where):
        st.config["User"] = self.expand(st, ins.args[0]) if ins.args else ""

    def meta_workdir(self, st, ins, values, where):
        if not ins.args:
            raise BuildError(f"{where}: WORKDIR requires exactly one argument")
        path = self.expand(st, ins.args[0])
        st.config["WorkingDir"] = posixpath.normpath(posixpath.join(st.config.get("WorkingDir") or "/", path))

    def meta_stopsignal(self, st, ins, values, where):
        st.config["StopSignal"] = self.expand(st, ins.args[0]) if ins.args else ""

    def meta_maintainer(self, st, ins, values, where):
        st.image["author"] = ins.args[0] if ins.args else ""

    def meta_shell(self, st, ins, values, where):
        if not ins.json or not ins.args:
            raise BuildError(f'{where}: SHELL requires the arguments to be in JSON form, e.g. ["/bin/bash", "-c"]')
        st.config["Shell"] = list(ins.args)

    def meta_onbuild(self, st, ins, values, where):
        trigger = ins.args[0] if ins.args else None
        if trigger is None:
            raise BuildError(f"{where}: ONBUILD requires an instruction")
        if trigger.command in ("onbuild", "from", "maintainer"):
            raise BuildError(f"{where}: {trigger.keyword.upper()} isn't allowed as an ONBUILD trigger")
        st.config.setdefault("OnBuild", []).append(ins.original.split(None, 1)[1])

    def meta_healthcheck(self, st, ins, values, where):
        if not ins.args:
            raise BuildError(f"{where}: HEALTHCHECK requires an argument (NONE or CMD ...)")
        kind = ins.args[0].upper()
        if kind == "NONE":
            if len(ins.args) > 1 or values:
                raise BuildError(f"{where}: HEALTHCHECK NONE takes no other arguments")
            st.config["Healthcheck"] = {"Test": ["NONE"]}
            return
        if kind != "CMD" or len(ins.args) < 2:
            raise BuildError(f"{where}: HEALTHCHECK wants NONE or CMD and a command, not {ins.args[0]!r}")
        test = ["CMD", *ins.args[1:]] if ins.json else ["CMD-SHELL", ins.args[1]]
        check = {"Test": test}
        for flag, field in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                            ("start-interval", "StartInterval")):
            if flag in values and (ns := _duration(values[flag], flag, where)):  # (0: unset, docker's default)
                check[field] = ns
        if "retries" in values:
            if not values["retries"].isdigit():
                raise BuildError(f"{where}: --retries={values['retries']}: not a whole number")
            check["Retries"] = int(values["retries"])
        st.config["Healthcheck"] = check


class _Silent:
    """No progress shown (-q)."""

    def __getattr__(self, name):
        return lambda *args: None


class _Blobs:
    """Just enough of an image for ``Store.unpack``: layers read from files."""

    def __init__(self, source, layers, paths):
        self.source, self.layers, self.paths = source, layers, paths

    def open_layer(self, layer):
        return open(self.paths[layer], "rb")


def _key(*parts) -> str:
    return "sha256:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _private(path: str) -> str:
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _show(ins) -> str:
    return ins.original if len(ins.original) < 200 else ins.original[:197] + "..."


def _show_args(args) -> str:
    return " ".join(args)


def _is_empty_tar(layout, desc) -> bool:
    """Whether the layer blob holds no member (a RUN that changed nothing)."""
    import gzip

    with gzip.open(os.path.join(layout.blobs, desc["digest"][7:])) as f:
        return not f.read(512).strip(b"\0")


def _drop_stubs(upper, below, targets=()):
    """Remove what the runtime made only to mount on (an empty /etc/hosts, a
    /proc the image lacked, RUN --mount's targets) and the directories copied
    up only to hold those: they are no part of what RUN changed."""
    for rel in _STUBS + tuple(t.lstrip("/") for t in targets):
        path = os.path.join(upper, rel)
        if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) == 0 \
                and below.find(rel) is None:
            os.unlink(path)
    dirs = set(_MOUNT_DIRS)
    for target in targets:  # a target's parents too, deepest first
        parts = target.strip("/").split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    for rel in sorted(dirs, key=lambda d: -d.count("/")):
        path = os.path.join(upper, rel)
        try:
            if os.path.islink(path) or os.listdir(path):
                continue
        except (FileNotFoundError, NotADirectoryError):
            continue
        old, new = below.lstat(rel), os.lstat(path)
        same = old is not None and (old.st_mode, old.st_uid, old.st_gid) == (new.st_mode, new.st_uid, new.st_gid)
        if old is None or (same and not _opaque(path)):
            os.rmdir(path)


def _opaque(path):
    return any(key.endswith("overlay.opaque") for key in os.listxattr(path))


def _run_network(flag, default, where):
    """RUN --network=default|none|host; default: the build's --network (none)."""
    if flag in (None, "default"):
        return default or "none"
    if flag not in ("none", "host"):
        raise BuildError(f"{where}: RUN --network={flag}: want default, none or host")
    return flag


def _ports(text, where):
    """EXPOSE's words: 80, 80/udp, 8000-8002/tcp."""
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    first, _, last = port.partition("-")
    if proto not in ("tcp", "udp", "sctp") or not first.isdigit() or (last and not last.isdigit()):
        raise BuildError(f"{where}: invalid port {text!r} for EXPOSE (want PORT[-PORT][/tcp|udp|sctp])")
    low, high = int(first), int(last or first)
    if not 0 < low <= high <= 65535:
        raise BuildError(f"{where}: invalid port range {text!r} for EXPOSE")
    return [f"{p}/{proto}" for p in range(low, high + 1)]


def _duration(text, flag, where) -> int:
    """A HEALTHCHECK flag's duration (Go's, e.g. 1m30s, 500ms) in nanoseconds, as BuildKit checks it."""
    try:
        ns = specs.parse_duration(text)
    except ValueError:
        raise BuildError(f"{where}: --{flag}={text}: not a duration (e.g. 30s, 1m30s)") from None
    if ns and ns < 10**6:
        raise BuildError(f"{where}: --{flag}={text}: cannot be less than 1ms")
    return ns

