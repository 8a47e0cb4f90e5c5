"""A Dockerfile's syntax: its lines made into instructions, as BuildKit's parser does.

Lecture idea: "1. Create a Dockerfile to define your image."  A Dockerfile is a
list of instructions, one per logical line:

- parser directives first (``# escape=``````, ``# syntax=...``), before any
  comment or instruction; ``escape`` changes the escape character, which also
  continues a line when it ends one;
- comments (``#`` first on a line) and empty lines between continued lines are
  dropped; a heredoc (``RUN <<EOF`` ... ``EOF``) takes the lines after its
  instruction as they are;
- ``--flag`` words right after the keyword are the instruction's flags;
- each keyword's arguments are split its own way (BuildKit's dispatch table):
  ``RUN``/``CMD``/``ENTRYPOINT``/``SHELL`` take a JSON array (exec form) or the
  rest of the line (shell form); ``COPY``/``ADD``/``VOLUME`` a JSON array or
  whitespace-separated words; ``ENV``/``LABEL`` ``key=value`` pairs (or the old
  ``key value``); ``ARG`` words; ``ONBUILD`` a whole instruction; an unknown
  keyword is kept for the next stage to refuse with its line.

Nothing is expanded here (that is ``words.py``, once values are known), so
:meth:`Instruction.dump` gives BuildKit's own test format, ``(copy ["--chown=1"]
"a" "/b")``, and the conformance tests compare the two parsers line by line.
"""

import json
import re
from dataclasses import dataclass, field

from minirt.errors import BuildError

_DIRECTIVE = re.compile(r"#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*")
_KNOWN_DIRECTIVES = ("escape", "syntax", "check")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"(\d*)<<(-?)([^<]*)")
_HEREDOC_KEYWORDS = ("run", "copy", "add")


@dataclass
class Heredoc:
    """``<<EOF`` (``<<-EOF`` strips leading tabs; a quoted name is not expanded)."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int = 0


@dataclass
class Instruction:
    """One instruction: ``keyword`` as written, ``args`` split as the keyword
    says (strings; for ONBUILD one Instruction), its lines (from 1)."""

    keyword: str
    args: list
    flags: list = field(default_factory=list)
    json: bool = False
    line: int = 0
    end: int = 0
    original: str = ""
    heredocs: list = field(default_factory=list)

    @property
    def command(self) -> str:
        return self.keyword.lower()

    def dump(self) -> str:
        """BuildKit's ``Node.Dump`` form: ``(keyword ["flags"] "arg" ...)``."""
        parts = [self.command]
        if self.flags:
            parts.append("[" + " ".join(_go_quote(f) for f in self.flags) + "]")
        parts += [a.dump() if isinstance(a, Instruction) else _go_quote(a) for a in self.args]
        return "(" + " ".join(parts) + ")"


@dataclass
class Dockerfile:
    instructions: list
    escape: str = "\\"
    directives: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def parse(text: str, name: str = "Dockerfile") -> Dockerfile:
    """The instructions of a Dockerfile's ``text``; a BuildError names the line."""
    return _Parser(text, name).run()


class _Parser:
    def __init__(self, text: str, name: str):
        self.name = name
        self.lines = text.split("\n")
        if self.lines[-1] == "":
            self.lines.pop()
        if self.lines:
            self.lines[0] = self.lines[0].removeprefix("\ufeff")
        self.number = 0  # lines read so far
        self.escape = "\\"
        self.directives, self.reading_directives = {}, True
        self.continuation = _continuation(self.escape)

    def error(self, message, line=None):
        return BuildError(f"{self.name}:{line or self.number}: {message}")

    def read(self, first: bool) -> str:
        """The next raw line, directive checked, comment emptied; ``first``
        lines lose their leading whitespace."""
        raw = self.lines[self.number].rstrip("\r\n")
        self.number += 1
        if first:
            raw = raw.lstrip()
        self.directive(raw)
        return "" if _is_comment(raw) else raw

    def directive(self, line: str):
        if not self.reading_directives:
            return
        match = _DIRECTIVE.fullmatch(line)
        if not match:
            self.reading_directives = False
            return
        key, value = match.group(1).lower(), match.group(2)
        if key in _KNOWN_DIRECTIVES:
            if key in self.directives:
                raise self.error(f"only one {key} parser directive can be used")
            self.directives[key] = value
        if key == "escape":
            if value not in ("\\", "`"):
                raise self.error(f"invalid escape token '{value}' does not match ` or \\")
            self.escape, self.continuation = value, _continuation(value)

    def run(self) -> Dockerfile:
        instructions, warnings = [], []
        while self.number < len(self.lines):
            start = self.number + 1
            line, ended = self.trim(self.read(first=True))
            if ended and not line:
                continue
            empty_continuation = False
            while not ended and self.number < len(self.lines):
                raw = self.lines[self.number]
                more = self.read(first=False)
                if _is_comment(raw):
                    continue
                if not more.strip():
                    empty_continuation = True
                    continue
                more, ended = self.trim(more)
                line += more
            if empty_continuation:
                warnings.append(f"{self.name}:{start}: empty continuation line")
            try:
                instruction = _instruction(line, self.escape)
            except BuildError as e:
                raise self.error(str(e), start) from None
            instruction.line, instruction.end, instruction.original = start, self.number, line
            self.heredocs(instruction)
            instructions.append(instruction)
        if not instructions:
            raise self.error("file with no instructions", max(self.number, 1))
        return Dockerfile(instructions, self.escape, self.directives, warnings)

    def trim(self, line: str):
        """(line without its continuation, whether the instruction ends here)."""
        trimmed, continued = self.continuation.subn(r"\1", line)
        return trimmed, not continued

    def heredocs(self, instruction: Instruction):
        if instruction.command not in _HEREDOC_KEYWORDS or instruction.json or "<<" not in instruction.original:
            return
        for doc in _heredocs_of(instruction.original, self.escape):
            lines = []
            while True:
                if self.number == len(self.lines):
                    raise self.error(f"unterminated heredoc {doc.name}", instruction.line)
                raw = self.lines[self.number].rstrip("\r\n")
                self.number += 1
                if doc.chomp:  # <<- : leading tabs go, as in a shell
                    raw = raw.lstrip("\t")
                if raw == doc.name:
                    break
                lines.append(raw + "\n")
            doc.content = "".join(lines)
            instruction.heredocs.append(doc)
        instruction.end = self.number


def _continuation(escape: str):
    # BuildKit's rule: the escape character last on a line (blanks after it
    # allowed) continues it, unless another escape character comes just before
    e = re.escape(escape)
    return re.compile(f"(^|[^{e}]){e}[ \\t]*$")


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _instruction(line: str, escape: str) -> Instruction:
    keyword, rest = _split_keyword(line)
    flags, rest = _flags(rest)
    args, is_json = _ARGUMENTS.get(keyword.lower(), _ignored)(rest.strip(), escape)
    return Instruction(keyword, args, flags, is_json)


def _split_keyword(line: str):
    parts = _WHITESPACE.split(line.strip(), 1)
    return parts[0], parts[1] if len(parts) == 2 else ""


def _flags(line: str):
    """The ``--name[=value]`` words that start ``line`` (``--`` ends them), and the rest."""
    flags, pos = [], 0
    while True:
        while pos < len(line) and line[pos].isspace():
            pos += 1
        if not line.startswith("--", pos):
            return flags, line[pos:]
        word, pos = _flag_word(line, pos)
        if word == "--":
            return flags, line[pos:]
        flags.append(word)


def _flag_word(line: str, pos: int):
    """One flag word from ``pos``: quotes removed, backslash escapes taken."""
    word, quote, blank_ok = [], None, False
    while pos < len(line):
        ch = line[pos]
        pos += 1
        if quote is None and ch.isspace():
            break
        if quote is None and ch in "'\"":
            quote, blank_ok = ch, True
            continue
        if ch == quote:
            quote = None
            continue
        if ch == "\\":
            if pos == len(line):
                break
            ch = line[pos]
            pos += 1
        word.append(ch)
    text = "".join(word)
    return (text if text or blank_ok else ""), pos


def _words(rest: str, escape: str) -> list:
    """``rest`` split at whitespace outside quotes, quotes and escapes kept
    (the arguments of ENV, LABEL and ARG, expanded later)."""
    words, word, quote, blank_ok, pos = [], "", None, False, 0
    while pos < len(rest):
        ch = rest[pos]
        pos += 1
        if quote is None:
            if ch.isspace():
                if blank_ok or word:
                    words.append(word)
                word, blank_ok = "", False
                continue
            if ch in "'\"":
                quote, blank_ok = ch, True
        elif ch == quote:
            quote = None
        if ch == escape and quote != "'":
            if pos == len(rest):
                continue  # an escape at the very end is dropped
            word += ch
            ch = rest[pos]
            pos += 1
        word += ch
    if blank_ok or word:
        words.append(word)
    return words


def _json_array(rest: str):
    """The strings of a JSON array that starts ``rest`` (what follows it is
    ignored, as Go's decoder does), or None if ``rest`` is no JSON array."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder(parse_constant=_no_constant).raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise BuildError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _json_or_line(rest, escape):  # RUN, CMD, ENTRYPOINT, SHELL
    value = _json_array(rest)
    if value is not None:
        return value, True
    return ([rest] if rest else []), False


def _json_or_words(rest, escape):  # COPY, ADD, VOLUME
    value = _json_array(rest)
    if value is not None:
        return value, True
    return _whitespace_words(rest, escape)


def _whitespace_words(rest, escape):  # FROM, EXPOSE
    return (_WHITESPACE.split(rest) if rest else []), False


def _string(rest, escape):  # MAINTAINER, USER, WORKDIR, STOPSIGNAL
    return ([rest] if rest else []), False


def _arg_words(rest, escape):  # ARG
    return _words(rest, escape), False


def _key_values(keyword):  # ENV, LABEL: (key, value, "=" or "") for each pair
    def parse(rest, escape):
        words = _words(rest, escape)
        if not words:
            raise BuildError(f"{keyword} must have two arguments")
        if "=" not in words[0]:  # the old form: KEY name value
            parts = _WHITESPACE.split(rest, 1)
            if len(parts) < 2:
                raise BuildError(f"{keyword} must have two arguments")
            return [parts[0], parts[1], ""], False
        args = []
        for word in words:
            if "=" not in word:
                raise BuildError(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
            args += [*word.split("=", 1), "="]
        return args, False
    return parse


def _healthcheck(rest, escape):  # HEALTHCHECK [--flags] NONE | CMD ...
    if not rest:
        return [], False
    kind, command = _split_keyword(rest)
    args, is_json = _json_or_line(command.lstrip(), escape)
    return [kind, *args], is_json


def _onbuild(rest, escape):
    return ([_instruction(rest, escape)] if rest else []), False


def _ignored(rest, escape):  # an unknown keyword: refused later, with its line
    return [""], False


_ARGUMENTS = {
    "add": _json_or_words, "arg": _arg_words, "cmd": _json_or_line, "copy": _json_or_words,
    "entrypoint": _json_or_line, "env": _key_values("ENV"), "expose": _whitespace_words,
    "from": _whitespace_words, "healthcheck": _healthcheck, "label": _key_values("LABEL"),
    "maintainer": _string, "onbuild": _onbuild, "run": _json_or_line, "shell": _json_or_line,
    "stopsignal": _string, "user": _string, "volume": _json_or_words, "workdir": _string,
}


def _heredocs_of(line: str, escape: str) -> list:
    """The heredocs a RUN, COPY or ADD line opens: words like ``<<EOF``,
    ``<<-EOF``, ``<<"EOF"`` (quoted: the content is not expanded), ``3<<EOF``."""
    docs = []
    for word in _words(line, escape):
        match = _HEREDOC.fullmatch(word)
        if not match or not match.group(3):
            continue
        fd, chomp, name = match.groups()
        unquoted = _words(name, escape)
        if len(unquoted) != 1:
            continue
        bare = re.sub(r"""["']""", "", name)
        docs.append(Heredoc(bare, "", expand=bare == name, chomp=chomp == "-", fd=int(fd or 0)))
    return docs


def _go_quote(text: str) -> str:
    """``text`` as Go's strconv.Quote writes it (BuildKit's dump format)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out) + '"'


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
