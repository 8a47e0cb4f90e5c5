"""A compose file checked against the Compose Specification's JSON schema.

Lecture idea: a file that describes a system is checked before anything of the
system is made, so that a typo costs an error message, not half a system.
The schema is the specification's own (``compose-spec.json``, draft-07 JSON
Schema); this module is the part of JSON Schema that the file uses, about a
hundred lines, instead of the ``jsonschema`` package (whose import alone costs
more than minirt's whole start-up): ``type``, ``properties``,
``patternProperties``, ``additionalProperties``, ``required``, ``enum``,
``pattern``, ``minimum``, ``maximum``, ``uniqueItems``, ``items``, ``oneOf``
and local ``$ref``.  Annotations (``description``, ``default``, ...) are
ignored, as JSON Schema says.

minirt does not carry the schema (it is the specification's, not ours): it is
read from ``$MINIRT_COMPOSE_SCHEMA``, else from ``../shared/conformance`` next
to a source checkout; where neither is found, files are not checked against
it, and ``model.py`` still refuses, by path, any value it cannot read.
"""

import os
import re

from minirt import lightjson
from minirt.errors import SpecError

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def location():
    """Where the schema is, or None."""
    given = os.environ.get("MINIRT_COMPOSE_SCHEMA")
    if given:
        return given
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    found = os.path.join(os.path.dirname(checkout), "shared", "conformance", "compose", "compose-spec.json")
    return found if os.path.isfile(found) else None


_loaded = {}


def load(path=None):
    """The schema at ``path`` (default: ``location()``), or None when there is none."""
    path = path or location()
    if path is None:
        return None
    if path not in _loaded:
        try:
            with open(path, "rb") as f:
                _loaded[path] = lightjson.loads(f.read())
        except (OSError, ValueError) as e:
            raise SpecError(f"{path}: cannot read the compose schema: {getattr(e, 'strerror', None) or e}") from None
    return _loaded[path]


def validate(data, name, schema=None):
    """Raise SpecError ``name: path: what is wrong`` for the first place where
    ``data`` breaks ``schema`` (default: the specification's, if found)."""
    schema = schema if schema is not None else load()
    if schema is None:
        return
    problem = Validator(schema).check(data, schema, "")
    if problem:
        path, what = problem
        raise SpecError(f"{name}: {path or '(top level)'}: {what}")


class Validator:
    def __init__(self, root):
        self.root = root
        self.patterns = {}

    def check(self, value, schema, path):
        """(path, what is wrong) of the first problem, or None."""
        if schema is True or schema == {}:
            return None
        if schema is False:
            return path, "is not allowed"
        if "$ref" in schema:
            return self.check(value, self.resolve(schema["$ref"]), path)
        wanted = schema.get("type")
        if wanted is not None:
            kinds = wanted if isinstance(wanted, list) else [wanted]
            if not any(is_type(value, k) for k in kinds):
                return path, f"must be {' or '.join(_article(k) for k in kinds)}, not {_describe(value)}"
        if "enum" in schema and value not in schema["enum"]:
            return path, f"must be one of {', '.join(map(repr, schema['enum']))}, not {value!r}"
        if "oneOf" in schema:
            problem = self.one_of(value, schema["oneOf"], path)
            if problem:
                return problem
        if isinstance(value, dict):
            return self.check_object(value, schema, path)
        if isinstance(value, list):
            return self.check_array(value, schema, path)
        if isinstance(value, str) and "pattern" in schema and not self.search(schema["pattern"], value):
            return path, f"{value!r} does not match {schema['pattern']!r}"
        if is_type(value, "number"):
            if "minimum" in schema and value < schema["minimum"]:
                return path, f"must be at least {schema['minimum']}"
            if "maximum" in schema and value > schema["maximum"]:
                return path, f"must be at most {schema['maximum']}"
        return None

    def check_object(self, value, schema, path):
        for key in schema.get("required", ()):
            if key not in value:
                return path, f"{key} is required"
        properties = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                return path, f"key {key!r} must be a string"
            matched = False
            if key in properties:
                matched = True
                problem = self.check(item, properties[key], where)
                if problem:
                    return problem
            for pattern, sub in patterns.items():
                if self.search(pattern, key):
                    matched = True
                    problem = self.check(item, sub, where)
                    if problem:
                        return problem
            if not matched:
                if extra is False:
                    return path, f"additional property {key} is not allowed"
                if isinstance(extra, dict):
                    problem = self.check(item, extra, where)
                    if problem:
                        return problem
        return None

    def check_array(self, value, schema, path):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                problem = self.check(item, items, f"{path}[{i}]")
                if problem:
                    return problem
        if schema.get("uniqueItems"):
            seen = []
            for i, item in enumerate(value):
                key = lightjson.dumps(item, sort_keys=True) if not isinstance(item, str) else item
                if key in seen:
                    return f"{path}[{i}]", f"{item!r} is given twice (items must be unique)"
                seen.append(key)
        return None

    def one_of(self, value, choices, path):
        """Exactly one choice must hold.  When none does, the problem reported
        is the one inside the choice whose type fits (the user meant that one)."""
        problems = [self.check(value, choice, path) for choice in choices]
        holding = problems.count(None)
        if holding == 1:
            return None
        if holding > 1:
            return path, "matches more than one of the allowed forms"
        fitting = [p for p, c in zip(problems, choices) if self.type_fits(value, c)]
        if len(fitting) == 1:
            return fitting[0]
        kinds = []
        for c in choices:
            t = self.resolve(c["$ref"]).get("type") if "$ref" in c else c.get("type")
            kinds += t if isinstance(t, list) else [t] if t else []
        if kinds:
            return path, f"must be {' or '.join(_article(k) for k in dict.fromkeys(kinds))}, not {_describe(value)}"
        return fitting[0] if fitting else problems[0]

    def type_fits(self, value, schema):
        schema = self.resolve(schema["$ref"]) if "$ref" in schema else schema
        wanted = schema.get("type")
        if wanted is None:
            return True
        return any(is_type(value, k) for k in (wanted if isinstance(wanted, list) else [wanted]))

    def resolve(self, ref):
        if not ref.startswith("#/"):
            raise SpecError(f"compose schema: unsupported $ref {ref!r}")
        node = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def search(self, pattern, text):
        compiled = self.patterns.get(pattern)
        if compiled is None:
            compiled = self.patterns[pattern] = re.compile(pattern)
        return compiled.search(text) is not None


def is_type(value, kind):
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _article(kind):
    return {"object": "a mapping", "array": "a list", "integer": "an integer", "null": "null"}.get(kind, f"a {kind}")


def _describe(value):
    for kind in ("boolean", "null", "integer", "number", "string", "array", "object"):
        if is_type(value, kind):
            return _article(kind)
    return type(value).__name__
