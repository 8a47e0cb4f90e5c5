"""The assembler: toy assembly in, a program image out.

Lecture idea: a guest operating system is just a program for the virtual
hardware; this is the tool that makes such programs.  It is a classic
two-pass assembler.  Pass 1 reads every line (following includes, expanding
macros and pseudo-instructions), decides how many bytes each line takes and so
learns the address of every label.  Pass 2 evaluates the operands, now that
every label is known, and encodes them with ``isa.encode``.

Syntax, by example::

    .equ  CONSOLE, 0xF0000000     ; constants; ';' starts a comment
    .macro putc reg               ; macros, arguments written \\reg
        stb \\reg, [t0]
    .endm
    _start:                       ; the entry point, if defined
        li    t0, CONSOLE         ; pseudo-instructions (see isa.PSEUDO)
        addi  a0, zero, 'A'
        putc  a0
        ldw   t1, [sp + 4]        ; memory operands: [base], [base + expr]
        beq   a0, zero, done      ; branch targets are labels or addresses
    msg: .asciz "hi\\n"
        .align 4
        .word msg, done - msg, 1 << 4

Expressions have C's operators (+ - * / % << >> & | ^ ~ and parentheses),
numbers in decimal, 0x, 0b or 'c' form, labels, constants, ``.`` for the
address of the current line, and ``hi(x)`` / ``lo(x)`` for the halves of a word.
The whole syntax is in docs/asm.md.  Every error names file:line:column, and
no source, however malformed, gets anything else out of the assembler: sizes,
nesting and values are bounded before anything is allocated.
"""

import errno
import os
import re
import stat
from collections import namedtuple

from . import isa
from .image import Image

Loc = namedtuple("Loc", "file line col")

# Limits, so that no source can make the assembler allocate or loop without
# bound.  An image lies in RAM, which ends where the devices start.
RAM_END = isa.MMIO_BASE
MAX_IMAGE = 64 << 20          # bytes of code and data in one image
MAX_SOURCE = 16 << 20         # bytes in one source file
MAX_LINES = 1 << 16           # lines, after includes and macro expansion
MAX_VALUE = 1 << 64           # no value in an expression gets this large
MAX_NESTING = 32              # parentheses, unary operators, hi()/lo() in one expression
MAX_CHAIN = 64                # constants defined in terms of later constants

# Every directive there is (docs/asm.md describes each; a test keeps it so).
DIRECTIVES = (".equ", ".org", ".word", ".byte", ".ascii", ".asciz", ".space", ".align",
              ".macro", ".endm", ".include")


class AsmError(Exception):
    def __init__(self, message, loc):
        super().__init__(message)
        self.message, self.loc = message, loc

    def __str__(self):
        return f"{self.loc.file}:{self.loc.line}:{self.loc.col}: {self.message}"


class Undefined(Exception):
    def __init__(self, name, col):
        self.name, self.col = name, col


# -- expressions ------------------------------------------------------------------

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>0[xX][0-9a-fA-F_]+|0[bB][01_]+|[0-9][0-9_]*)
    | (?P<char>'(?:\\.|[^'\\])')
    | (?P<name>[A-Za-z_.$][A-Za-z0-9_.$]*)
    | (?P<op><<|>>|[-+*/%&|^~()])
    )""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}

_BINARY = {  # operator: (precedence, function); higher binds tighter, as in C
    "|": (1, lambda a, b: a | b), "^": (2, lambda a, b: a ^ b), "&": (3, lambda a, b: a & b),
    "<<": (4, lambda a, b: a << b), ">>": (4, lambda a, b: a >> b),
    "+": (5, lambda a, b: a + b), "-": (5, lambda a, b: a - b),
    "*": (6, lambda a, b: a * b), "/": (6, None), "%": (6, None),
}
_FUNCTIONS = {"hi": lambda v: (v >> 16) & 0xFFFF, "lo": lambda v: v & 0xFFFF}


def _unescape(text, loc):
    """The characters a quoted string or character stands for (quotes removed)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2:i + 4]):
                out.append(chr(int(text[i + 2:i + 4], 16)))
                i += 4
                continue
            if nxt not in _ESCAPES:
                raise AsmError(f"unknown escape \\{nxt}", loc)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class Expr:
    """A parsed expression: kept as a tree so pass 1 can parse it before the
    labels it names are known, and pass 2 can evaluate it after."""

    def __init__(self, text, loc):
        self.text, self.loc = text, loc
        self.tokens = self._tokenize(text, loc)
        self.pos = self.depth = 0
        self.code = []               # postfix: evaluated with a stack, never recursively
        self._binary(0)
        if self.pos < len(self.tokens):
            self._error("unexpected " + repr(self.tokens[self.pos][1]), self.tokens[self.pos][2])

    def _tokenize(self, text, loc):
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                col = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise AsmError(f"cannot read expression at {text[col:].strip()!r}",
                               loc._replace(col=loc.col + col))
            kind = m.lastgroup
            start = m.start(kind)
            tokens.append((kind, m.group(kind), loc.col + start))
            pos = m.end()
        return tokens

    def _error(self, message, col=None):
        raise AsmError(message, self.loc._replace(col=col if col is not None else self.loc.col))

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None, None)

    def _binary(self, min_prec):
        # Precedence climbing: parse operators that bind at least as tightly
        # as min_prec, each one's right side with a higher minimum.
        self._unary()
        while True:
            kind, op, col = self._peek()
            if kind != "op" or op not in _BINARY or _BINARY[op][0] < min_prec:
                return
            self.pos += 1
            self._binary(_BINARY[op][0] + 1)
            self.code.append(("bin", op, col))

    def _unary(self):
        kind, value, col = self._peek()
        if kind is None:
            self._error("expression expected", self.loc.col + len(self.text))
        self.pos += 1
        if kind == "op" and value in "-+~":
            self._nested(col, self._unary)
            self.code.append(("un", value))
        elif kind == "op" and value == "(":
            self._nested(col, self._binary, 0)
            self._expect(")")
        elif kind == "num":
            self.code.append(("num", self._number(value, col)))
        elif kind == "char":
            text = _unescape(value[1:-1], self.loc._replace(col=col))
            self.code.append(("num", ord(text)))
        elif kind == "name" and value == ".":
            self.code.append(("dot",))
        elif kind == "name" and value in _FUNCTIONS and self._peek()[1] == "(":
            self.pos += 1
            self._nested(col, self._binary, 0)
            self._expect(")")
            self.code.append(("call", value))
        elif kind == "name":
            self.code.append(("sym", value, col))
        else:
            self._error(f"unexpected {value!r}", col)

    def _nested(self, col, parse, *args):
        # The parser recurses once per level: a bound keeps it off Python's stack limit.
        self.depth += 1
        if self.depth > MAX_NESTING:
            self._error(f"expression nested too deeply (more than {MAX_NESTING} levels)", col)
        parse(*args)
        self.depth -= 1

    def _number(self, text, col):
        digits = text.replace("_", "")
        if re.fullmatch(r"0+[1-9][0-9]*", digits):
            self._error(f"number {text} has a leading zero: it is not octal here "
                        f"(write {int(digits)}, or 0x/0b)", col)
        if len(digits) > 70:
            self._error(f"number too large ({len(digits)} digits)", col)
        try:
            value = int(digits, 0)
        except ValueError:
            self._error(f"bad number {text!r}", col)
        if value >= MAX_VALUE:
            self._error(f"number {text} too large (more than 64 bits)", col)
        return value

    def _expect(self, op):
        kind, value, col = self._peek()
        if value != op:
            self._error(f"expected {op!r}", col if col is not None else self.loc.col + len(self.text))
        self.pos += 1

    def value(self, lookup, dot):
        """Evaluate; `lookup(name, col)` gives a symbol's value or raises Undefined."""
        stack = []
        for step in self.code:
            tag = step[0]
            if tag == "num":
                stack.append(step[1])
            elif tag == "dot":
                stack.append(dot)
            elif tag == "sym":
                stack.append(lookup(step[1], step[2]))
            elif tag == "un":
                v = stack.pop()
                stack.append(-v if step[1] == "-" else ~v if step[1] == "~" else v)
            elif tag == "call":
                stack.append(_FUNCTIONS[step[1]](stack.pop()))
            else:
                b, a = stack.pop(), stack.pop()
                stack.append(self._apply(step[1], a, b, step[2]))
        return stack.pop()

    def _apply(self, op, a, b, col):
        if op in "/%":
            if b == 0:
                self._error("division by zero", col)
            q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)   # C rounds toward zero
            return q if op == "/" else a - q * b
        if op in ("<<", ">>") and not 0 <= b < 64:
            self._error(f"shift by {b}", col)
        value = _BINARY[op][1](a, b)
        if abs(value) >= MAX_VALUE:
            self._error("value too large (more than 64 bits)", col)
        return value


# -- source lines -------------------------------------------------------------------

Line = namedtuple("Line", "text loc note")   # note: "in macro X called at f:l" or ""


def _closing_quote(text, start):
    """Where the string or character opened at text[start] closes, or None."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == text[start]:
            return i
        else:
            i += 1
    return None


def _strip_comment(text):
    i = 0
    while i < len(text):
        if text[i] in "\"'":
            end = _closing_quote(text, i)
            if end is None:
                return text              # split_operands reports the open quote
            i = end
        elif text[i] == ";":
            return text[:i]
        i += 1
    return text


def split_operands(text, loc):
    """Split at top-level commas; each operand with the column it starts at
    (`loc` is where `text` starts).  Quotes and brackets must be balanced."""
    parts, open_at, start, i = [], [], 0, 0
    while i <= len(text):
        ch = text[i] if i < len(text) else ","
        if ch in "\"'":
            end = _closing_quote(text, i)
            if end is None:
                raise AsmError("unterminated string" if ch == '"' else "unterminated character",
                               loc._replace(col=loc.col + i))
            i = end
        elif ch in "([":
            open_at.append(i)
        elif ch in ")]":
            if not open_at or text[open_at[-1]] != "(["[")]".index(ch)]:
                raise AsmError(f"unbalanced {ch!r}", loc._replace(col=loc.col + i))
            open_at.pop()
        elif ch == "," and not open_at:
            piece = text[start:i]
            parts.append((piece.strip(), loc.col + start + len(piece) - len(piece.lstrip())))
            start = i + 1
        i += 1
    if open_at:
        raise AsmError(f"unbalanced {text[open_at[-1]]!r}", loc._replace(col=loc.col + open_at[-1]))
    if len(parts) == 1 and parts[0][0] == "":
        return []
    return parts


_LABEL = re.compile(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*:")
_WORD = re.compile(r"\s*(\S+)")
_NAME = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*$")


class Assembler:
    def __init__(self, read_file=None):
        self._read = read_file or _read_source
        self.symbols = {}        # labels: name -> address
        self.constants = {}      # .equ: name -> (Expr, dot at definition)
        self.macros = {}         # name -> (parameters, body lines)
        self.items = []          # (addr, size, loc, source text, emit) in program order
        self.expansions = 0      # numbers the expansions, for \@ in macro bodies
        self.lines = 0           # lines read, after includes and macros (MAX_LINES)
        self.size = 0            # bytes emitted (MAX_IMAGE)
        self._resolving = set()

    # -- public entry points ---------------------------------------------------------

    def assemble_file(self, path):
        return self._assemble(self._lines_of(path, Loc(path, 0, 0), depth=0))

    def assemble_text(self, text, filename="<input>"):
        return self._assemble(self._lines_from(text, filename, depth=0))

    # -- reading lines, includes and macros ---------------------------------------------

    def _lines_of(self, path, loc, depth):
        if depth > 16:
            raise AsmError("includes nested too deeply (an include cycle?)", loc)
        try:
            data = self._read(path)
        except OSError as e:
            raise AsmError(f"cannot read {path}: {e.strerror}", loc) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            col = len(data[data.rfind(b"\n", 0, e.start) + 1:e.start].decode("utf-8", "replace")) + 1
            raise AsmError("not UTF-8 text", Loc(path, line, col)) from None
        return self._lines_from(text, path, depth)

    def _lines_from(self, text, filename, depth):
        for number, raw in enumerate(text.splitlines(), 1):
            line = Line(_strip_comment(raw).rstrip(), Loc(filename, number, 1), "")
            word = _WORD.match(line.text)
            if word and word.group(1) == ".include":
                operand = line.text[word.end():].strip()
                inc_loc = line.loc._replace(col=word.end() + 2)
                if not (len(operand) >= 2 and operand[0] == operand[-1] == '"'):
                    raise AsmError('.include needs a quoted file name', inc_loc)
                target = os.path.join(os.path.dirname(filename), operand[1:-1])
                yield from self._lines_of(target, inc_loc, depth + 1)
            else:
                yield line

    # -- pass 1 ---------------------------------------------------------------------------

    def _assemble(self, lines):
        self.dot = 0
        lines = iter(lines)
        for line in lines:
            self._pass1(line, lines)
        # Pass 2: every label is known now.
        chunks = []
        for addr, size, line, emit in self.items:
            with _noted(line.note):
                data = emit()
            assert len(data) == size, (line, size, len(data))
            chunks.append((addr, data, line.loc))
        image = Image(self._segments(chunks), self._entry(chunks), self.symbols)
        return image

    def _pass1(self, line, lines, depth=0):
        text, loc = line.text, line.loc
        self.lines += 1
        if self.lines > MAX_LINES:
            raise AsmError(f"too many lines (more than {MAX_LINES}, counting includes and "
                           "macro expansions)", loc)
        pos = 0
        while True:                                  # labels, any number of them
            m = _LABEL.match(text, pos)
            if not m:
                break
            self._define_label(m.group(1), line, loc._replace(col=m.start(1) + 1))
            pos = m.end()
        m = _WORD.match(text, pos)
        if not m:
            return
        word, col = m.group(1), m.start(1) + 1
        rest_col = m.end() + 1
        operands = split_operands(text[m.end():], loc._replace(col=rest_col))
        here = line._replace(loc=loc._replace(col=col))
        name = word.lower()
        if name == ".macro":
            self._define_macro(operands, here, text[m.end():], lines)
        elif name == ".endm":
            raise AsmError(".endm without .macro", here.loc)
        elif name.startswith("."):
            self._directive(name, operands, here)
        elif word in self.macros:
            self._expand_macro(word, operands, here, depth)
        elif name in isa.PSEUDO:
            self._pseudo(name, operands, here, depth)
        elif name in isa.BY_MNEMONIC:
            self._instruction(name, operands, here)
        else:
            raise AsmError(f"unknown instruction {word!r}", here.loc)

    def _define_label(self, name, line, loc):
        if name in self.symbols or name in self.constants:
            raise AsmError(f"{name!r} is already defined", loc)
        if name.lower() in isa.REGISTERS:
            raise AsmError(f"{name!r} is a register name", loc)
        self.symbols[name] = self.dot

    def _emit(self, size, line, emit):
        # Checked before anything is allocated: sizes come from the source.
        if size and self.dot + size > RAM_END:
            raise AsmError(f"bytes at {self.dot:#x}..{self.dot + size - 1:#x} are above RAM "
                           f"(which ends at {RAM_END:#x})", line.loc)
        self.size += size
        if self.size > MAX_IMAGE:
            raise AsmError(f"image larger than {MAX_IMAGE >> 20} MiB", line.loc)
        self.items.append((self.dot, size, line, emit))
        self.dot += size

    # -- macros -----------------------------------------------------------------------

    def _define_macro(self, operands, line, rest, lines):
        words = rest.replace(",", " ").split()
        if not words:
            raise AsmError(".macro needs a name", line.loc)
        name, params = words[0], words[1:]
        if not _NAME.match(name) or name.lower() in isa.BY_MNEMONIC:
            raise AsmError(f"bad macro name {name!r}", line.loc)
        body = []
        for inner in lines:
            first = _WORD.match(inner.text)
            if first and first.group(1).lower() == ".endm":
                self.macros[name] = (params, body)
                return
            if first and first.group(1).lower() == ".macro":
                raise AsmError("macros cannot be defined inside macros", inner.loc)
            body.append(inner)
        raise AsmError(f"macro {name!r} has no .endm", line.loc)

    def _expand_macro(self, name, operands, line, depth):
        params, body = self.macros[name]
        if depth > 32:
            raise AsmError(f"macro {name!r} expands too deeply (recursive?)", line.loc)
        if len(operands) != len(params):
            raise AsmError(f"macro {name!r} takes {len(params)} arguments, got {len(operands)}", line.loc)
        self.expansions += 1
        note = line.note or f" (in macro {name} called at {line.loc.file}:{line.loc.line})"
        for inner in body:
            text = inner.text.replace("\\@", str(self.expansions))
            # Longest names first, so \ab is not replaced as \a followed by b.
            for param, (value, _col) in sorted(zip(params, operands), key=lambda p: -len(p[0])):
                text = text.replace("\\" + param, value)
            with _noted(note):
                self._pass1(Line(text, inner.loc, note), iter(()), depth + 1)

    # -- directives ---------------------------------------------------------------------

    def _known(self, text, loc, what):
        """A value that must be known in pass 1 (it decides sizes or addresses)."""
        try:
            return Expr(text, loc).value(self._lookup, self.dot)
        except Undefined as u:
            raise AsmError(f"{u.name!r} must be defined before it is used in {what}",
                           loc._replace(col=u.col)) from None

    def _directive(self, name, operands, line):
        loc = line.loc
        if name not in DIRECTIVES:
            raise AsmError(f"unknown directive {name}", loc)

        def need(count):
            if len(operands) != count:
                raise AsmError(f"{name} takes {count} operand{'s' if count > 1 else ''}", loc)

        if name == ".equ":
            need(2)
            sym, sym_col = operands[0]
            if not _NAME.match(sym):
                raise AsmError(f"bad constant name {sym!r}", loc._replace(col=sym_col))
            if sym in self.symbols or sym in self.constants:
                raise AsmError(f"{sym!r} is already defined", loc._replace(col=sym_col))
            expr = Expr(operands[1][0], loc._replace(col=operands[1][1]))
            try:        # known now: keep the number, so long chains of constants stay flat
                self.constants[sym] = (expr.value(self._lookup, self.dot), None)
            except Undefined:
                self.constants[sym] = (expr, self.dot)
        elif name == ".org":
            need(1)
            target = self._known(operands[0][0], loc._replace(col=operands[0][1]), ".org")
            if not 0 <= target < 1 << 32:
                raise AsmError(f".org address {target} out of range", loc)
            self.dot = target
        elif name == ".space":
            if len(operands) not in (1, 2):
                raise AsmError(".space takes a size and an optional fill byte", loc)
            size = self._known(operands[0][0], loc._replace(col=operands[0][1]), ".space")
            if size < 0:
                raise AsmError(f".space size {size} is negative", loc)
            fill = self._known(operands[1][0], loc, ".space") & 0xFF if len(operands) == 2 else 0
            self._emit(size, line, lambda: bytes([fill]) * size)
        elif name == ".align":
            need(1)
            align = self._known(operands[0][0], loc._replace(col=operands[0][1]), ".align")
            if align <= 0 or align & (align - 1):
                raise AsmError(f".align needs a power of two, not {align}", loc)
            pad = -self.dot % align
            self._emit(pad, line, lambda: bytes(pad))
        elif name in (".word", ".byte"):
            if not operands:
                raise AsmError(f"{name} needs at least one value", loc)
            width = 4 if name == ".word" else 1
            exprs = [Expr(text, loc._replace(col=col)) for text, col in operands]
            dot = self.dot
            self._emit(width * len(exprs), line, lambda: b"".join(
                self._data(e, width, dot) for e in exprs))
        elif name in (".ascii", ".asciz"):
            need(1)
            text, col = operands[0]
            if not (text[:1] == '"' and _closing_quote(text, 0) == len(text) - 1):
                raise AsmError(f"{name} needs one quoted string", loc._replace(col=col))
            chars = _unescape(text[1:-1], loc._replace(col=col))
            wide = [ch for ch in chars if ord(ch) > 0xFF]
            if wide:
                raise AsmError(f"{wide[0]!r} is not a byte (write its bytes as \\xNN)",
                               loc._replace(col=col))
            data = chars.encode("latin-1")
            if name == ".asciz":
                data += b"\0"
            self._emit(len(data), line, lambda: data)
        else:
            raise AsmError(f"{name} is not allowed here (inside a macro?)", loc)

    def _data(self, expr, width, dot):
        value = self._value(expr, dot)
        lo = -(1 << (8 * width - 1))
        if not lo <= value < 1 << (8 * width):
            raise AsmError(f"value {value} does not fit in {width} byte{'s' if width > 1 else ''}", expr.loc)
        return (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")

    # -- symbols ------------------------------------------------------------------------

    def _lookup(self, name, col):
        if name in self.symbols:
            return self.symbols[name]
        if name in self.constants:
            expr, dot = self.constants[name]
            if dot is None:
                return expr
            if name in self._resolving:
                raise AsmError(f"constant {name!r} is defined in terms of itself", expr.loc)
            if len(self._resolving) >= MAX_CHAIN:
                raise AsmError(f"constants nested too deeply (more than {MAX_CHAIN} defined "
                               "in terms of later ones)", expr.loc)
            self._resolving.add(name)
            try:
                return expr.value(self._lookup, dot)
            finally:
                self._resolving.discard(name)
        raise Undefined(name, col)

    def _value(self, expr, dot):
        """Pass 2 evaluation: an undefined name is now an error."""
        try:
            return expr.value(self._lookup, dot)
        except Undefined as u:
            raise AsmError(f"undefined symbol {u.name!r}", expr.loc._replace(col=u.col)) from None

    # -- instructions ----------------------------------------------------------------------

    def _pseudo(self, name, operands, line, depth):
        params, expansion = isa.PSEUDO[name]
        params = [p.strip() for p in params.split(",") if p.strip()]
        if len(operands) != len(params):
            raise AsmError(f"{name} takes {len(params)} operand{'s' if len(params) != 1 else ''}"
                           f" ({', '.join(params) or 'none'})", line.loc)
        if expansion is None:
            return self._load_immediate(name, operands, line)
        values = {p: text for p, (text, _col) in zip(params, operands)}
        for template in expansion:
            text = template.format(**values)
            # Columns in the expansion point at the pseudo-instruction itself.
            self._pass1(Line(" " * (line.loc.col - 1) + text, line.loc._replace(col=1), line.note),
                        iter(()), depth + 1)

    def _load_immediate(self, name, operands, line):
        (reg_text, reg_col), (value_text, value_col) = operands
        rd = self._register(reg_text, line.loc._replace(col=reg_col))
        expr = Expr(value_text, line.loc._replace(col=value_col))
        short = False
        if name == "li":
            # The size must be fixed now.  A value known already gets one word
            # if it fits; one that depends on a later label always gets two.
            try:
                short = -0x8000 <= expr.value(self._lookup, self.dot) <= 0x7FFF
            except Undefined:
                pass
        dot = self.dot

        def emit():
            value = self._value(expr, dot)
            if not -(1 << 31) <= value < 1 << 32:
                raise AsmError(f"value {value} does not fit in 32 bits", expr.loc)
            if short:
                return isa.encode("addi", rd=rd, rs1=0, imm=value).to_bytes(4, "little")
            value &= isa.WORD
            words = (isa.encode("lui", rd=rd, imm=value >> 16),
                     isa.encode("ori", rd=rd, rs1=rd, imm=value & 0xFFFF))
            return b"".join(w.to_bytes(4, "little") for w in words)

        self._emit(4 if short else 8, line, emit)

    def _register(self, text, loc):
        number = isa.REGISTERS.get(text.lower())
        if number is None:
            raise AsmError(f"expected a register, got {text!r}", loc)
        return number

    def _instruction(self, mnemonic, operands, line):
        insn = isa.BY_MNEMONIC[mnemonic]
        spec = isa.FORMATS[insn.format]
        if len(operands) != len(spec):
            wanted = ", ".join(name for name, _kind, _field in spec) or "no operands"
            raise AsmError(f"{mnemonic} takes {len(spec)} operand{'s' if len(spec) != 1 else ''} "
                           f"({wanted}), got {len(operands)}", line.loc)
        if self.dot % 4:
            raise AsmError(f"instruction at unaligned address {self.dot:#x} (use .align 4)", line.loc)
        parsed = []
        for (name, kind, _field), (text, col) in zip(spec, operands):
            loc = line.loc._replace(col=col)
            if kind == "reg":
                parsed.append((name, kind, self._register(text, loc), loc))
            elif kind == "sreg":
                if text.lower() not in isa.SYSTEM_REGISTERS:
                    raise AsmError(f"expected a system register ({', '.join(isa.SYSTEM_REGISTERS)}), "
                                   f"got {text!r}", loc)
                parsed.append((name, kind, isa.SYSTEM_REGISTERS[text.lower()][0], loc))
            elif kind == "mem":
                parsed.append((name, kind, self._memory_operand(text, loc), loc))
            else:
                parsed.append((name, kind, Expr(text, loc), loc))
        dot = self.dot

        def emit():
            values = {}
            for name, kind, value, loc in parsed:
                if kind == "mem":
                    base, offset = value
                    values[name] = (base, self._value(offset, dot) if offset else 0)
                elif kind == "target":
                    target = self._value(value, dot)
                    # Offsets wrap around the 32-bit address space, like the CPU's pc.
                    values[name] = isa.sx((target - dot) & isa.WORD)
                elif kind in ("simm", "uimm", "shamt"):
                    values[name] = self._value(value, dot)
                else:
                    values[name] = value
            try:
                return isa.encode(mnemonic, **values).to_bytes(4, "little")
            except isa.EncodingError as e:
                raise AsmError(str(e), loc_of_error(e, parsed, line.loc)) from None

        self._emit(4, line, emit)

    def _memory_operand(self, text, loc):
        if not (text.startswith("[") and text.endswith("]")):
            raise AsmError(f"expected a memory operand like [sp + 4], got {text!r}", loc)
        inner = text[1:-1]
        m = re.match(r"\s*([A-Za-z0-9_]+)\s*", inner)
        if not m:
            raise AsmError("expected a base register after '['", loc)
        base = self._register(m.group(1), loc._replace(col=loc.col + 1 + m.start(1)))
        rest = inner[m.end():]
        if not rest.strip():
            return base, None
        if rest.lstrip()[0] not in "+-":
            raise AsmError("expected + or - after the base register", loc)
        # Parse "+ expr" or "- expr" as the expression "0 + expr".
        return base, Expr(rest, loc._replace(col=loc.col + 1 + m.end()))

    # -- output ----------------------------------------------------------------------------

    def _segments(self, chunks):
        segments = []
        for addr, data, loc in sorted(chunks, key=lambda c: c[0]):
            if not data:
                continue
            if segments and addr < segments[-1][0] + len(segments[-1][1]):
                raise AsmError(f"code at {addr:#x} overlaps earlier code (check .org)", loc)
            if segments and addr == segments[-1][0] + len(segments[-1][1]):
                segments[-1][1].extend(data)
            else:
                segments.append((addr, bytearray(data)))
        return segments

    def _entry(self, chunks):
        if "_start" in self.symbols:
            return self.symbols["_start"]
        addrs = [addr for addr, data, _loc in chunks if data]
        return min(addrs) if addrs else 0

    def listing(self):
        """Address, bytes and source of every line that produced bytes."""
        out = []
        for addr, size, line, emit in self.items:
            data = emit()
            # Words as the CPU sees them (little-endian, so not byte order).
            shown = " ".join(f"{int.from_bytes(data[i:i + 4], 'little'):08x}" if size % 4 == 0
                             else data[i:i + 4].hex() for i in range(0, min(size, 8), 4))
            if size > 8:
                shown += " ..."
            where = f"{os.path.basename(line.loc.file)}:{line.loc.line}"
            out.append(f"{addr:08x}  {shown:<19} {where:<14} {line.text.strip()}")
        names = sorted(self.symbols.items(), key=lambda item: (item[1], item[0]))
        out += ["", "symbols:"] + [f"{value:08x}  {name}" for name, value in names]
        return "\n".join(out) + "\n"


def _read_source(path):
    """A source file's bytes: a regular file, and not a huge one."""
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = f.read(MAX_SOURCE + 1)
    if len(data) > MAX_SOURCE:
        raise OSError(errno.EFBIG, f"larger than {MAX_SOURCE >> 20} MiB")
    return data


class _noted:
    """Add where a macro was called to errors from inside its body."""

    def __init__(self, note):
        self.note = note

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if isinstance(error, AsmError) and self.note and not getattr(error, "noted", False):
            error.message += self.note
            error.noted = True          # the innermost call site is the useful one


def loc_of_error(error, parsed, default):
    """Point an encoding error at the operand it is about, when we can tell."""
    message = str(error)
    for name, kind, _value, loc in parsed:
        if (kind in ("simm", "uimm") and message.startswith("immediate")) or \
           (kind == "shamt" and message.startswith("shift")) or \
           (kind == "mem" and message.startswith("offset")) or \
           (kind == "target" and message.startswith("branch")):
            return loc
    return default


def assemble(text, filename="<input>"):
    """Assemble source text; returns an Image.  Raises AsmError."""
    return Assembler().assemble_text(text, filename)


def assemble_file(path):
    return Assembler().assemble_file(path)
