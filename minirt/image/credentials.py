"""Registry credentials, in docker's ``config.json`` format.

Lecture idea: pulling from a private part of the library needs a login.
``minirt login`` checks a user and password with the registry and keeps them
in minirt's own file, ``$XDG_CONFIG_HOME/minirt/config.json`` (default
``~/.config/minirt/config.json``), mode 0600; ``logout`` removes them.  The
format is docker's::

    {"auths": {"registry.example:5000": {"auth": "<base64 of user:password>"}}}

so that credentials docker already has (``$DOCKER_CONFIG/config.json``,
default ``~/.docker/config.json``) are read too, after minirt's own.  Docker
Hub's entry is keyed ``https://index.docker.io/v1/``.  Credential helpers
(``credsStore``) are not run.
"""

import base64
import os

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
        for name, entry in _auths(path).items():
            if key(name) == want and isinstance(entry, dict):
                found = _decode(path, name, entry)
                if found:
                    return found
    return None


def store(registry: str, user: str, password: str) -> str:
    """Keep the login in minirt's own file (mode 0600); returns the file's path."""
    path = own_file()
    config = _read(path)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    config.setdefault("auths", {})[key(registry)] = {"auth": token}
    _write(path, config)
    return path


def remove(registry: str) -> bool:
    """Forget the login for ``registry`` in minirt's own file; False if there was none."""
    path = own_file()
    config = _read(path)
    auths = config.get("auths") or {}
    names = [n for n in auths if key(n) == key(registry)]
    for n in names:
        del auths[n]
    if names:
        _write(path, config)
    return bool(names)


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


def _auths(path: str) -> dict:
    return _read(path).get("auths") or {}


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
