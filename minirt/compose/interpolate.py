"""Variables in a compose file: ``${VAR}``, defaults, required values, ``$$``; .env files.

Lecture idea: one file describes a system in every place it runs; what differs
between places (a port, a password, a tag) comes from the environment.  Every
string value of the file (not its keys) is interpolated, as docker compose
does, before the file is checked against the schema:

    $VAR ${VAR}         the value, or "" when unset (with a warning)
    ${VAR:-default}     default when VAR is unset or empty;  ${VAR-default}: only when unset
    ${VAR:?message}     an error when VAR is unset or empty; ${VAR?message}: only when unset
    ${VAR:+other}       other when VAR is set and not empty; ${VAR+other}: when set
    $$                  a literal $ (for the container's shell to expand)

Defaults and messages may themselves hold ``${...}``.  The variables are the
process's environment over the project's ``.env`` (or ``--env-file``),
whose lines are ``KEY=VALUE`` as docker compose reads them (below).
"""

import os
import sys

from minirt import bounded
from minirt.errors import SpecError

ENV_FILE_MAX = 1 << 20

_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_REST = _NAME_FIRST | frozenset("0123456789")


class Unset:
    """Warnings about variables that were not set, each said once."""

    def __init__(self, out=None):
        self.out, self.said = out, set()

    def __call__(self, name):
        if name not in self.said:
            self.said.add(name)
            print(f'minirt: the "{name}" variable is not set. Defaulting to a blank string.',
                  file=self.out or sys.stderr)


def interpolate(data, variables, name, warn=None):
    """``data`` (the loaded file) with every string value interpolated; errors
    name the file ``name`` and the path: ``compose.yaml: services.web.image: ...``."""
    warn = warn or Unset()

    def walk(value, path):
        if isinstance(value, str):
            try:
                return substitute(value, variables, warn)
            except SpecError as e:
                raise SpecError(f"{name}: {path}: {e}") from None
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return walk(data, "")


def substitute(text, variables, warn=None):
    """``text`` with its variables replaced (see the module's table)."""
    if "$" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        value, i = _one(text, j, variables, warn)
        out.append(value)
    return "".join(out)


def _one(text, j, variables, warn):
    """The replacement of the ``$`` at ``j``, and where the text goes on."""
    nxt = text[j + 1:j + 2]
    if nxt == "$":
        return "$", j + 2
    if nxt in _NAME_FIRST and nxt:
        k = j + 1
        while k < len(text) and text[k] in _NAME_REST:
            k += 1
        return _lookup(text[j + 1:k], variables, warn), k
    if nxt != "{":
        raise SpecError(f"invalid interpolation format for {text!r}: a $ must be followed by a name,"
                        " {NAME} or $ (write $$ for a $)")
    end = _closing(text, j + 2)
    if end < 0:
        raise SpecError(f"invalid interpolation format for {text!r}: missing }}")
    body = text[j + 2:end]
    k = 0
    while k < len(body) and body[k] in (_NAME_FIRST if k == 0 else _NAME_REST):
        k += 1
    name, rest = body[:k], body[k:]
    if not name:
        raise SpecError(f"invalid interpolation format for {text!r}: ${{{body}}} names no variable")
    if not rest:
        return _lookup(name, variables, warn), end + 1
    colon = rest.startswith(":")
    op, arg = (rest[1:2], rest[2:]) if colon else (rest[:1], rest[1:])
    if op not in ("-", "?", "+"):
        raise SpecError(f"invalid interpolation format for {text!r}: unknown operator in ${{{body}}}")
    value = variables.get(name)
    present = value is not None and (value != "" or not colon)
    if op == "-":
        return (value if present else substitute(arg, variables, warn)), end + 1
    if op == "+":
        return (substitute(arg, variables, warn) if present else ""), end + 1
    if not present:
        raise SpecError(f"required variable {name} is missing a value"
                        + (f": {substitute(arg, variables, warn)}" if arg else ""))
    return value, end + 1


def _closing(text, start):
    """The index of the ``}`` that closes a ``${`` opened before ``start`` (nesting counted)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _lookup(name, variables, warn):
    value = variables.get(name)
    if value is None:
        if warn:
            warn(name)
        return ""
    return value


# -- .env files --------------------------------------------------------------------

def read_env_file(path, variables=None, what=None):
    """The ``KEY=VALUE`` lines of ``path`` as a dict, docker compose's way:
    ``#`` comments, ``export KEY=...``, values in single quotes taken as they
    are, in double quotes with \\n, \\t, \\" and \\\\ escapes, unquoted ones up
    to a `` #`` comment; double-quoted and unquoted values are interpolated
    with ``variables`` and the file's earlier lines.  ``KEY`` alone takes its
    value from ``variables`` (or is left out)."""
    data = bounded.read(path, what or "an env file", ENV_FILE_MAX)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SpecError(f"{path}: cannot read {what or 'an env file'}: not UTF-8") from None
    found = {}
    lookup = _Chain(found, variables or {})
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, eq, raw = line.partition("=")
        key = key.strip()
        if not key or not all(c in _NAME_REST or c in ".-" for c in key) or key[0] not in _NAME_FIRST:
            raise SpecError(f"{path}: line {number}: invalid variable name {key!r}")
        if not eq:
            if lookup.get(key) is not None:
                found[key] = lookup.get(key)
            continue
        try:
            found[key] = _env_value(raw.strip(), lookup)
        except SpecError as e:
            raise SpecError(f"{path}: line {number}: {e}") from None
    return found


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _env_value(raw, lookup):
    if raw[:1] == "'":
        end = raw.find("'", 1)
        if end < 0:
            raise SpecError("unterminated single quote")
        return raw[1:end]
    if raw[:1] == '"':
        out, i = [], 1
        while i < len(raw) and raw[i] != '"':
            if raw[i] == "\\" and i + 1 < len(raw):
                out.append(_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
                continue
            out.append(raw[i])
            i += 1
        if i >= len(raw):
            raise SpecError("unterminated double quote")
        return substitute("".join(out), lookup)
    comment = raw.find(" #")
    return substitute(raw[:comment] if comment >= 0 else raw, lookup)


class _Chain:
    """Two dicts read as one, the first winning (a file's own lines over the environment)."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def get(self, key, default=None):
        value = self.first.get(key)
        return value if value is not None else self.second.get(key, default)


def variables(project_dir, env_files=(), environ=None):
    """The variables a project's file is interpolated with: the process's
    environment over ``env_files`` (default: the project's ``.env`` if there is one)."""
    environ = dict(os.environ if environ is None else environ)
    files = list(env_files) or ([os.path.join(project_dir, ".env")]
                                if os.path.isfile(os.path.join(project_dir, ".env")) else [])
    found = {}
    for path in files:
        found.update(read_env_file(path, _Chain(environ, found)))
    found.update(environ)
    return found
