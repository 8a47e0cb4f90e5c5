"""minirt.lightjson reads and writes what the json package does, without importing it."""

import json
import math
import subprocess
import sys

import pytest

from minirt import lightjson

VALUES = [
    {},
    [],
    "",
    0,
    -12345678901234567890,
    3.25,
    1e300,
    -0.0,
    True,
    None,
    "tab\there \"quoted\" back\\slash \x00 \x1f \u00e9 \u20ac \U0001f600 \ud800",
    {"b": [1, 2.5, None, False], "a": {"nested": {"deep": ["x"]}}, "": 0},
    [[[]], [{}], {"k": []}],
    {"Env": ["PATH=/bin", "A=b=c"], "Cmd": ["sh", "-c", "echo hi"], "WorkingDir": "/"},
]

GOOD_TEXTS = [
    '{"a": 1}',
    ' \t\n\r{"a" : [1 , 2]}\r\n \t',
    "[1e5, -0, 0.5e-3, 1E+2]",
    '"\\u00e9\\ud83d\\ude00\\n"',
    "NaN",
    "[Infinity, -Infinity]",
    '{"dup": 1, "dup": 2}',
    "123456789012345678901234567890",
    "null",
]

BAD_TEXTS = [
    "",
    "   ",
    "{",
    "[1, 2",
    '{"a" 1}',
    "[1,]",
    "{'a': 1}",
    '"unterminated',
    '"raw \x01 control"',
    "01",
    "[1] x",
    "1 2",
    "nan",
    "\x0b1",   # whitespace to str.strip, not to JSON
    "1\x0c",
    "tru",
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_dumps_writes_what_json_writes(value):
    assert lightjson.dumps(value) == json.dumps(value)
    assert lightjson.dumps(value, sort_keys=True) == json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("value", VALUES + [(1, (2, [])), {1: [], 2.5: {}, False: [None]}],
                         ids=range(len(VALUES) + 2))
def test_dumps_indents_as_json_does(value):
    for indent in (0, 2, 4):
        assert lightjson.dumps(value, indent=indent) == json.dumps(value, indent=indent)
        assert lightjson.dumps(value, indent=indent, sort_keys=True) == json.dumps(value, indent=indent,
                                                                                   sort_keys=True)
        assert lightjson.dumps(value, indent=indent, compact=True) == json.dumps(value, indent=indent,
                                                                                 separators=(",", ":"))


def test_what_json_cannot_indent_is_refused_alike():
    cyclic = {}
    cyclic["self"] = [cyclic]
    for bad, error in ((cyclic, ValueError), ({(1,): 2}, TypeError), ([{1}], TypeError),
                       ({1: 0, "a": 0}, TypeError)):   # (the last: its keys cannot be sorted)
        with pytest.raises(error) as want:
            json.dumps(bad, indent=2, sort_keys=True)
        with pytest.raises(error) as got:
            lightjson.dumps(bad, indent=2, sort_keys=True)
        assert str(got.value) == str(want.value)
    assert lightjson.dumps({None: 1, 2.5: 2}, indent=2) == json.dumps({None: 1, 2.5: 2}, indent=2)  # (unsorted: fine)
    shared = [1]   # a container written twice, not inside itself, is no cycle
    assert lightjson.dumps([shared, shared], indent=1) == json.dumps([shared, shared], indent=1)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_round_trip(value):
    assert lightjson.loads(lightjson.dumps(value)) == value
    assert lightjson.loads(lightjson.dumps(value).encode()) == value


@pytest.mark.parametrize("text", GOOD_TEXTS)
def test_loads_reads_what_json_reads(text):
    got, want = lightjson.loads(text), json.loads(text)
    assert repr(got) == repr(want)  # repr: NaN != NaN, and 1 == 1.0 == True
    assert repr(lightjson.loads(text.encode())) == repr(want)


@pytest.mark.parametrize("text", BAD_TEXTS)
def test_loads_refuses_what_json_refuses(text):
    with pytest.raises(json.JSONDecodeError) as want:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        lightjson.loads(text)
    assert str(got.value) == str(want.value)  # the same message, line and column
    with pytest.raises(ValueError):
        lightjson.loads(text.encode())


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000, "[" * 100_000])
def test_nesting_deeper_than_python_follows_is_a_value_error(text):
    # json raises RecursionError, which no caller expects from bad input.
    with pytest.raises(RecursionError):
        json.loads(text)
    with pytest.raises(ValueError, match="JSON nested too deeply"):
        lightjson.loads(text)
    with pytest.raises(ValueError, match="JSON nested too deeply"):
        lightjson.loads(text.encode())


def test_other_encodings_are_read_as_json_reads_them():
    doc = {"a": ["\u00e9"]}
    for data in (b"\xef\xbb\xbf" + json.dumps(doc).encode(),  # UTF-8 with a byte-order mark
                 json.dumps(doc).encode("utf-16"),
                 json.dumps(doc).encode("utf-32-le")):
        assert lightjson.loads(data) == json.loads(data) == doc
    with pytest.raises(ValueError):
        lightjson.loads(b'{"a": "\xff"}')  # not UTF-8 at all


def test_what_json_cannot_write_is_refused():
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="Circular reference"):
        lightjson.dumps(cyclic)
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        lightjson.dumps({"a": {1}})
    # an error half-way leaves nothing behind: the same list is fine next time
    shared = [1]
    with pytest.raises(TypeError):
        lightjson.dumps([shared, object()])
    assert lightjson.dumps([shared, shared]) == "[[1], [1]]"


def test_non_finite_floats_as_json():
    assert lightjson.dumps([math.inf, -math.inf, math.nan]) == "[Infinity, -Infinity, NaN]"


def test_importing_it_imports_no_json_and_no_re():
    code = ("import sys; import minirt.lightjson as j; j.dumps(j.loads('{\"a\": [1]}'), indent=2);"
            " print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_documents_raise_value_error_in_a_fresh_interpreter():
    # There json.decoder, whose error class the C scanner raises, is not yet imported.
    code = ("from minirt import lightjson\n"
            "for bad in (b'{not json', b'{\"a\": }', b'[1,', b'{\"a\" 1}'):\n"
            "    try:\n        lightjson.loads(bad)\n    except ValueError:\n        print('ValueError')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (r.stdout, r.stderr) == ("ValueError\n" * 4, "")
