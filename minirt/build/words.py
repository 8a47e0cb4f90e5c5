"""Word expansion in a Dockerfile, as BuildKit does it.

Lecture idea: "Create a Dockerfile to define your image" -- and the values in
it are written like a shell's: ``COPY $SRC/*.py /app``, ``ENV PATH=/opt/bin:$PATH``,
``WORKDIR ${HOME:-/root}``.  The builder, not a shell, expands them, so the rules
are BuildKit's subset of POSIX sh (its ``shell/lex.go``):

- ``'...'`` is literal; ``"..."`` is literal except ``$`` and the escape
  character, which there escapes only ``"``, ``$`` and itself;
- outside quotes the escape character (``\\``, or `````` after ``# escape=```)
  takes the next character literally, and vanishes at the end of the word;
- ``$NAME``, ``${NAME}``, ``${NAME:-word}``/``${NAME-word}`` (default),
  ``${NAME:+word}``/``${NAME+word}`` (alternative), ``${NAME:?message}``/
  ``${NAME?message}`` (an error); with a colon an empty value counts as unset;
  ``${NAME#glob}``, ``${NAME##glob}``, ``${NAME%glob}``, ``${NAME%%glob}`` (prefix
  and suffix removal), ``${NAME/glob/word}`` and ``${NAME//glob/word}`` (replace);
- an unknown name, ``$1`` or a special parameter (``$@``, ``$#`` ...) is empty.

:func:`expand` gives one string (ENV, WORKDIR, USER ...); :func:`expand_words`
splits it into words where a variable's value has spaces but quotes do not
(the arguments of COPY and ADD), as a shell would split them.
"""

import fnmatch
import re

from minirt.errors import BuildError

_SPECIAL = "@*#?-$!0"


class ExpansionError(BuildError):
    """A word that cannot be expanded (an unterminated quote, a bad ``${...}``)."""


def expand(word: str, env: dict, escape: str = "\\") -> str:
    """``word`` with its quotes removed and variables replaced from ``env``."""
    return _Lexer(word, env, escape).run()[0]


def expand_words(word: str, env: dict, escape: str = "\\") -> list:
    """``word`` expanded and split into words at unquoted whitespace."""
    return _Lexer(word, env, escape).run()[1]


class _Words:
    """The words being gathered: whitespace from a variable's value or the
    source splits them; a quoted part or an escaped character never does."""

    def __init__(self):
        self.words, self.word, self.in_word = [], "", False

    def add(self, text: str):
        for ch in text:
            if not ch.isspace():
                self.raw(ch)
            elif self.in_word and self.word:
                self.words.append(self.word)
                self.word, self.in_word = "", False

    def raw(self, text: str):
        self.word += text
        self.in_word = True

    def done(self) -> list:
        if self.word:
            self.words.append(self.word)
            self.word, self.in_word = "", False
        return self.words


class _Lexer:
    def __init__(self, source: str, env: dict, escape: str):
        self.source, self.env, self.escape = source, env, escape
        self.pos = 0

    def run(self):
        try:
            return self.until(None)
        except ExpansionError as e:
            raise ExpansionError(f"failed to process {self.source!r}: {e}") from None

    def peek(self):
        return self.source[self.pos] if self.pos < len(self.source) else None

    def next(self):
        ch = self.peek()
        self.pos += ch is not None
        return ch

    def until(self, stop):
        """Expand up to the character ``stop`` (consumed) or the end: (text, words)."""
        text, words = [], _Words()
        while (ch := self.peek()) is not None:
            if ch == stop:
                self.next()
                return "".join(text), words.done()
            if ch == "$":
                value = self.dollar()
                words.add(value)
            elif ch == "'":
                value = self.single_quoted()
                words.raw(value)
            elif ch == '"':
                value = self.double_quoted()
                words.raw(value)
            else:
                value = self.next()
                if value == self.escape:
                    value = self.next()
                    if value is None:  # an escape at the very end is dropped
                        break
                    words.raw(value)
                else:
                    words.add(value)
            text.append(value)
        if stop is not None:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(text), words.done()

    def single_quoted(self) -> str:
        self.next()
        end = self.source.find("'", self.pos)
        if end < 0:
            raise ExpansionError("unexpected end of statement while looking for matching single-quote")
        text, self.pos = self.source[self.pos:end], end + 1
        return text

    def double_quoted(self) -> str:
        self.next()
        text = []
        while (ch := self.peek()) != '"':
            if ch is None:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if ch == "$":
                text.append(self.dollar())
                continue
            self.next()
            if ch == self.escape:
                if self.peek() is None:
                    continue
                if self.peek() in ('"', "$", self.escape):
                    ch = self.next()
            text.append(ch)
        self.next()
        return "".join(text)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.next()
        if self.peek() is None:
            raise ExpansionError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == "}":
            return self.env.get(name, "")
        if op is None:
            raise ExpansionError("syntax error: missing '}'")
        colon = op == ":"
        if colon:
            op = self.next()
        elif op in "#%/" and op is not None:
            return self.pattern(name, op)
        if op is None or op not in "+-?":
            if colon:
                raise ExpansionError(f"unsupported modifier ({op or ''}) in substitution")
            raise ExpansionError("missing ':' in substitution")
        word = self.operand()
        found = name in self.env
        value = self.env.get(name, "")
        is_set = bool(value) if colon else found
        if op == "-":
            return value if is_set else word
        if op == "+":
            return word if is_set else ""
        if is_set:  # "?"
            return value
        default = "is not allowed to be empty" if colon and found else "is not allowed to be unset"
        raise ExpansionError(f"{name}: {word or default}")

    def operand(self) -> str:
        start = self.pos
        try:
            return self.until("}")[0]
        except ExpansionError:
            self.pos = start
            raise ExpansionError("syntax error: missing '}'") from None

    def pattern(self, name: str, op: str) -> str:
        """``${NAME#glob}``, ``##``, ``%``, ``%%``, ``/glob/word`` and ``//``."""
        longest = self.peek() == op
        if longest:
            self.next()
        value = self.env.get(name, "")
        if op != "/":
            return _trim(value, self.operand(), prefix=op == "#", longest=longest)
        start = self.pos  # the glob ends at an unescaped / (then the word) or }
        while (ch := self.next()) not in ("/", "}"):
            if ch is None:
                raise ExpansionError("syntax error: missing '}'")
            if ch == self.escape:
                self.next()
        glob = expand(self.source[start:self.pos - 1], self.env, self.escape)
        return _replace(value, glob, self.operand() if ch == "/" else "", every=longest)

    def name(self) -> str:
        """A variable's name: letters, digits and _, or all digits (a
        positional parameter), or one special parameter."""
        ch = self.peek()
        if ch is None:
            return ""
        if ch.isdigit():
            start = self.pos
            while (c := self.peek()) is not None and c.isdigit():
                self.next()
            return self.source[start:self.pos]
        if ch in _SPECIAL:
            return self.next()
        start = self.pos
        while (c := self.peek()) is not None and (c.isalnum() or c == "_"):
            self.next()
        return self.source[start:self.pos]


def _trim(value: str, glob: str, prefix: bool, longest: bool) -> str:
    """The shortest or longest prefix (or suffix) that ``glob`` matches, removed."""
    matches = re.compile(fnmatch.translate(glob)).match  # anchored at both ends
    cuts = range(len(value) + 1)
    if prefix:
        ends = [i for i in cuts if matches(value, 0, i)]
        return value[(ends[-1] if longest else ends[0]):] if ends else value
    starts = [i for i in cuts if matches(value, i)]
    return value[:(starts[0] if longest else starts[-1])] if starts else value


def _replace(value: str, glob: str, word: str, every: bool) -> str:
    """The first (or every) longest non-empty match of ``glob`` replaced by ``word``."""
    matches = re.compile(fnmatch.translate(glob)).match
    out, i = [], 0
    while i < len(value):
        end = next((j for j in range(len(value), i, -1) if matches(value, i, j)), None)
        if end is None:
            out.append(value[i])
            i += 1
            continue
        out.append(word)
        i = end
        if not every:
            break
    return "".join(out) + value[i:]
