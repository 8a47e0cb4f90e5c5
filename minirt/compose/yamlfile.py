"""A compose file's YAML, read as docker compose reads it.

Lecture idea: the file that describes a system is data, and data must mean the
same thing to every tool that reads it.  PyYAML follows YAML 1.1, in which
``22:22`` is the number 1342 (base 60), ``on`` and ``yes`` are true and ``0777``
is octal; docker compose (Go's yaml.v3) follows YAML 1.2's core schema, in
which those are strings.  A port mapping written ``"22:22"`` or not must not
change meaning, so this loader resolves plain scalars by YAML 1.2's core rules:
null, true/false (three spellings each), decimal, ``0o`` octal and ``0x`` hex
integers, floats -- and nothing else.  Anchors, aliases and ``<<`` merge keys
work as in docker compose; a key given twice in one mapping is an error.
"""

import re

import yaml

from minirt.errors import SpecError

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml's parser where installed


class CoreLoader(_Base):
    """SafeLoader with YAML 1.2's core schema for plain scalars."""

    yaml_implicit_resolvers = {}


_CORE = [
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+0123456789."),
    ("tag:yaml.org,2002:merge", r"^<<$", "<"),
]
for _tag, _pattern, _first in _CORE:
    CoreLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
CoreLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])


def _core_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


def _core_bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


def _unique_keys(loader, node, deep=False):
    """A mapping whose keys are unique (yaml.v3 refuses duplicates; PyYAML keeps the last)."""
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a scalar",
                                                    key_node.start_mark) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"mapping key {key!r} already defined",
                                                    key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


CoreLoader.add_constructor("tag:yaml.org,2002:int", _core_int)
CoreLoader.add_constructor("tag:yaml.org,2002:bool", _core_bool)
CoreLoader.add_constructor("tag:yaml.org,2002:map", _unique_keys)
# ``<<`` is a merge key only as a key (flatten_mapping sees to that); as a value, a string.
CoreLoader.add_constructor("tag:yaml.org,2002:merge", lambda loader, node: loader.construct_scalar(node))


def load(text, name):
    """The document in ``text`` (the file ``name``, for messages): a mapping."""
    try:
        data = yaml.load(text, Loader=CoreLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e)
        raise SpecError(f"{name}:{where}: invalid YAML: {what}") from None
    if data is None:
        raise SpecError(f"{name}: empty compose file")
    if not isinstance(data, dict):
        raise SpecError(f"{name}: top-level object must be a mapping")
    return data


def dump(data):
    """``data`` as YAML (``compose config``): block style, keys in their order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
