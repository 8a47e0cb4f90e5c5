"""Registry credentials, in docker's ``config.json`` format.

Lecture idea: pulling from a private part of the library needs a login.
``minirt login`` checks a user and password with the registry and keeps them
in minirt's own file, ``$XDG_CONFIG_HOME/minirt/config.json`` (default
``~/.config/minirt/config.json``), mode 0600; ``logout`` removes them.  The
format is docker's::

    {"auths": {"registry.example:5000": {"auth": "<base64 of user:password>"}}}

so that credentials docker already has (``$DOCKER_CONFIG/config.json``,
default ``~/.docker/config.json``) are read too, after minirt's own.  Docker
Hub's entry is keyed ``https://index.docker.io/v1/``.

A file may instead send its secrets to a credential helper, as docker does:
``"credHelpers": {"HOST": "NAME"}`` for one registry, ``"credsStore": "NAME"``
for all.  The helper is the program ``docker-credential-NAME`` (pass,
secretservice, ecr-login...), spoken to on stdin/stdout: ``get`` (the server's
key in, ``{"ServerURL", "Username", "Secret"}`` out), ``store`` (that JSON in)
and ``erase``.  ``login`` and ``logout`` use the helper minirt's own file names.
"""

import base64
import os
import subprocess

from minirt import lightjson
from minirt import bounded
from minirt.errors import ImageError
from minirt.image.reference import DEFAULT_DOMAIN, DOCKER_HUB, DOCKER_HUB_AUTH_KEY


def own_file() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "minirt", "config.json")


def docker_file() -> str:
    return os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker"),
                        "config.json")


def key(registry: str) -> str:
    """How a registry is named in ``auths``: docker.io as docker names it, others by host[:port]."""
    host = registry.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB_AUTH_KEY if host in (DEFAULT_DOMAIN, DOCKER_HUB, "index.docker.io") else host


def lookup(registry: str):
    """(user, password) for ``registry``, or None."""
    want = key(registry)
    for path in (own_file(), docker_file()):
        config = _read(path)
        helper = _helper(path, config, want)
        found = helper and _run(helper, "get", want)
        if found:
            return _answer(helper, found)
        for name, entry in (config.get("auths") or {}).items():
            if key(name) == want and isinstance(entry, dict):
                found = _decode(path, name, entry)
                if found:
                    return found
    return None


def store(registry: str, user: str, password: str) -> str:
    """Keep the login: with minirt's own file's credential helper if it names
    one, else in that file (mode 0600).  Returns where it went."""
    path, want = own_file(), key(registry)
    config = _read(path)
    helper = _helper(path, config, want)
    if helper:
        _run(helper, "store", lightjson.dumps({"ServerURL": want, "Username": user, "Secret": password}))
        entry = {}  # docker's marker: logged in, the secret is with the helper
    else:
        entry = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    config.setdefault("auths", {})[want] = entry
    _write(path, config)
    return helper or path


def remove(registry: str) -> bool:
    """Forget the login for ``registry`` in minirt's own file and its
    credential helper; False if there was none."""
    path, want = own_file(), key(registry)
    config = _read(path)
    helper = _helper(path, config, want)
    erased = bool(helper and _run(helper, "erase", want) is not None)
    auths = config.get("auths") or {}
    names = [n for n in auths if key(n) == want]
    for n in names:
        del auths[n]
    if names:
        _write(path, config)
    return erased or bool(names)


def _helper(path: str, config: dict, want: str):
    """The helper program ``config`` names for the registry keyed ``want``, or None."""
    helpers = config.get("credHelpers") or {}
    name = next((n for r, n in helpers.items() if key(r) == want), None) or config.get("credsStore")
    if name is None:
        return None
    if not isinstance(name, str) or not name or "/" in name:
        raise ImageError(f"{path}: bad credential helper name {name!r}")
    return f"docker-credential-{name}"


def _run(helper: str, verb: str, stdin: str):
    """Run ``helper verb`` with ``stdin``: its output, or None when it has no
    such credentials (docker's "credentials not found" answer)."""
    try:
        r = subprocess.run([helper, verb], input=stdin.encode(), capture_output=True, timeout=60)
    except FileNotFoundError:
        raise ImageError(f"credential helper {helper} not found in $PATH") from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"credential helper {helper} {verb}: no answer in 60 s") from None
    said = (r.stdout or r.stderr).decode(errors="replace").strip()
    if r.returncode == 0:
        return said
    if "credentials not found" in said.lower():
        return None
    raise ImageError(f"credential helper {helper} {verb}: {said.splitlines()[0] if said else f'exit {r.returncode}'}")


def _answer(helper: str, output: str):
    """(user, password) from a helper's ``get`` answer."""
    try:
        found = lightjson.loads(output)
        user, secret = found["Username"], found["Secret"]
    except (ValueError, TypeError, KeyError):
        raise ImageError(f"credential helper {helper} get: not {{\"Username\", \"Secret\"}} JSON") from None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise ImageError(f"credential helper {helper} get: Username and Secret must be strings")
    if user == "<token>":  # an OAuth refresh token, for which docker asks the token server
        raise ImageError(f"credential helper {helper}: identity tokens are not supported; log in with a password")
    return user, secret


def _read(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    data = bounded.read(path, "credentials", bounded.MiB, ImageError)
    try:
        config = lightjson.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{path}: bad JSON: {e}") from None
    if not isinstance(config, dict) or not isinstance(config.get("auths", {}), dict):
        raise ImageError(f"{path}: not a docker config.json (want {{\"auths\": {{...}}}})")
    return config


def _decode(path: str, name: str, entry: dict):
    if entry.get("auth"):
        try:
            user, colon, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError, TypeError):
            raise ImageError(f"{path}: auths[{name!r}]: auth is not base64 of user:password") from None
        if colon:
            return user, password
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return entry["username"], entry["password"]
    return None


def _write(path: str, config: dict) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(lightjson.dumps(config))
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
