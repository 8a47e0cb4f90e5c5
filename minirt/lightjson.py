"""JSON without importing the json package.

A container's start-up reads JSON (the image's index, manifest and config) and
writes it (the container's config and state).  ``import json`` costs some 8 ms:
its pure-Python half imports ``re``, which imports ``enum``, ``functools`` and
``collections`` -- a quarter of the 30 ms ``minirt run`` may add to Python's own
start-up.  Yet all the work of ``json.loads`` and ``json.dumps`` is done by the
package's C accelerator, ``_json``, which imports nothing; the Python half only
configures it.  This module configures it the same way, and nothing more:

- ``loads`` uses json's own scanner with json's defaults, so a text it accepts
  gives the value ``json.loads`` gives.  Whatever it does not accept whole (a
  syntax error, a byte-order mark, UTF-16) is handed to ``json.loads``, which
  either reads it after all or raises its ``JSONDecodeError`` (a ValueError)
  with line and column: the json package is imported on that path only.
  One difference: a document nested deeper than Python's recursion limit is a
  ValueError here (json raises RecursionError), because it is bad input like
  any other, and callers catch ValueError for that.
- ``dumps`` is ``json.dumps(value, sort_keys=...)``: one line, ASCII, ``", "``
  and ``": "`` between items.  json's C encoder cannot indent: with
  ``indent``, as ``json.dumps(value, indent=...)``, the arrays and objects are
  laid out here (json's Python half does the same), and the C encoder still
  writes each string and number.

``_json`` is a CPython implementation module, not a documented interface:
this one is used as ``json`` itself uses it (checked on CPython 3.10 to 3.13),
and the tests compare the two modules on every kind of value and error, so a
Python whose ``_json`` differs fails them instead of writing wrong files.
"""

import _json


class _Decoder:
    """The settings json's C scanner reads from a ``json.JSONDecoder``, at
    their defaults: strict strings, plain dicts, Python's int and float (its
    fast paths), and json's NaN / Infinity / -Infinity."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_int = int
    parse_float = float
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__


_scan = _json.make_scanner(_Decoder())
_WHITESPACE = " \t\n\r"  # JSON's own, no more (str.strip's default is wider)


def loads(data):
    """The value of a JSON document (``str``, or ``bytes`` in UTF-8)."""
    try:
        return _loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _loads(data):
    text = data
    if isinstance(data, (bytes, bytearray)):
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return _slowly(data)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except (StopIteration, ValueError, SystemError):  # no value at start, or an error in one
        # (SystemError: the C scanner, asked for json.decoder's error class
        # which nobody imported, fails "without setting an exception".)
        return _slowly(data)
    if text[end:].strip(_WHITESPACE):  # something after the value
        return _slowly(data)
    return value


def _slowly(data):
    import json

    return json.loads(data)


def _unserializable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value, sort_keys=False, compact=False, indent=None):
    """``value`` as a line of JSON, as ``json.dumps(value, sort_keys=sort_keys)``;
    ``compact``: without spaces, as ``separators=(",", ":")`` (Go's encoding/json);
    ``indent`` (a number of spaces): each item on a line of its own, as
    ``json.dumps(value, indent=indent)``."""
    if indent is not None:
        return "".join(_indented(value, " " * indent, "\n", bool(sort_keys), ":" if compact else ": ", set()))
    # A new encoder each time, as json.dumps makes: its first argument holds the
    # ids of the lists and dicts being written (to refuse a cycle), and an error
    # half-way leaves them there.
    encode = _json.make_encoder({}, _unserializable, _json.encode_basestring_ascii, None,
                                ":" if compact else ": ", "," if compact else ", ", bool(sort_keys), False, True)
    return "".join(encode(value, 0))


# The C encoder, for one string or number at a time (no container: no cycle to watch).
_scalar_chunks = _json.make_encoder(None, _unserializable, _json.encode_basestring_ascii, None,
                                    ": ", ", ", False, False, True)
_KEY_WORDS = {True: "true", False: "false", None: "null"}


def _scalar(value):
    return "".join(_scalar_chunks(value, 0))


def _indented(value, step, newline, sort_keys, colon, path):
    """The chunks of ``value`` laid out as json's ``indent`` does: each item
    on a line of its own, ``newline`` deeper by ``step`` than its container's;
    ``path``: the ids of the containers being written (to refuse a cycle)."""
    if isinstance(value, dict):
        items, brackets = (sorted(value.items()) if sort_keys else value.items()), "{}"
    elif isinstance(value, (list, tuple)):
        items, brackets = value, "[]"
    else:
        yield _scalar(value)
        return
    if not value:
        yield brackets
        return
    if id(value) in path:
        raise ValueError("Circular reference detected")
    path.add(id(value))
    inner = newline + step
    yield brackets[0]
    for i, item in enumerate(items):
        yield "," + inner if i else inner
        if brackets == "{}":
            key, item = item
            yield _key(key) + colon
        yield from _indented(item, step, inner, sort_keys, colon, path)
    yield newline + brackets[1]
    path.discard(id(value))


def _key(key):
    """An object's key as json writes it: a string; numbers, booleans and null as text."""
    if isinstance(key, str):
        return _scalar(key)
    if key is None or isinstance(key, bool):
        return f'"{_KEY_WORDS[key]}"'
    if isinstance(key, (int, float)):
        return f'"{_scalar(key)}"'
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")

