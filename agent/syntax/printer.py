"""Prints a syntax tree back as text in Alloy's canonical style.

The output must be byte-identical to ``alloy fmt``, so this follows the shape
of Alloy's printer rather than inventing a simpler one:

1. A *walker* visits the tree and sends tokens and abstract whitespace
   (blank, vertical tab, newline, formfeed, indent, unindent) to the printer.
   The walker decides layout from source positions: an element written on its
   own line stays on its own line, a blank line between statements is kept.
2. The *printer* writes tokens, puts comments back where their source offsets
   say they belong, and keeps pending whitespace so nothing trails a comment
   or the end of the file.
3. An *elastic tabstop* pass (Go's text/tabwriter, which Alloy uses) aligns
   cells: ``\\v`` before ``=`` aligns attribute names in a run, ``\\t`` before a
   trailing comment aligns the comments; a formfeed or a line without cells
   ends the run. Comments (and literals with tabs or newlines in them) are
   escaped so their text is never taken for cells.
4. A trimmer drops trailing blanks on every line.

Departures from Alloy, each where Alloy's own output would change a value,
fail to parse, or change again when formatted a second time:

- whether a statement (or object field) spans several lines, which ends an
  alignment run, is measured on the printed text, not on the source (Alloy
  measures the source, so ``headers = {\n}`` followed by an attribute is not
  aligned on the first pass but is on the second);
- ``.``/name of an access and the brackets of calls and parentheses carry
  their source positions, so a comment between them stays there;
- a ``//`` comment is always followed by a line break;
- tabs, line breaks and trailing blanks inside raw strings are left alone;
- a quoted object key is written back with the text it had between its
  quotes (Alloy re-quotes it, doubling any escapes); ``f(\n)`` prints ``f()``.
"""

from __future__ import annotations

import re

from agent.syntax import ast
from agent.syntax.diag import Pos
from agent.syntax.parser import parse_file
from agent.syntax.scanner import decode, scan
from agent.syntax.token import Tok, go_quote

# Abstract whitespace, sent by the walker to the printer.
_IGNORE = ""
_BLANK = " "
_VTAB = "\v"
_NEWLINE = "\n"
_FORMFEED = "\f"
_INDENT = ">"
_UNINDENT = "<"

_ESC = "\x00"  # brackets text the alignment pass must not interpret (NUL never parses)
_MAX_NEWLINES = 2
_WS_CAPACITY = 16

# What the last written thing was, to keep two tokens from fusing (``1 .x``, ``/ *``).
_LAST_OTHER = 0
_LAST_NUMBER = 1
_LAST_DIV = 2


def format_file(file: ast.File) -> str:
    """The whole file in canonical style, ending in one newline (empty if the file is)."""
    p = _Printer(file.comments)
    _Walker(p).stmts(file.body)
    text = p.finish()
    return text + "\n" if text else ""


def format_expr(expr: ast.Expr) -> str:
    """One expression in canonical style, without a trailing newline."""
    p = _Printer([])
    _Walker(p).expr(expr)
    return p.finish()


def format_source(source: str | bytes, filename: str = "") -> str:
    """Parses and formats; raises DiagnosticsError if the source does not parse."""
    return format_file(parse_file(decode(source), filename))


# ---- line arithmetic on source positions ------------------------------------


def _start_line(node: ast.Expr | ast.Stmt) -> int:
    if isinstance(node, ast.Attribute):
        return node.name.pos.line
    return ast.start_pos(node).line


def _end_line(node: ast.Expr | ast.Stmt) -> int:
    while True:
        if isinstance(node, ast.Literal):
            value = node.value
            return node.pos.line + value.count("\n", 0, max(len(value) - 1, 0))
        if isinstance(node, ast.IdentExpr):
            return node.ident.pos.line
        if isinstance(node, ast.AccessExpr):
            return node.name.pos.line
        if isinstance(node, ast.UnaryExpr):
            node = node.value
        elif isinstance(node, ast.BinaryExpr):
            node = node.right
        elif isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Block):
            return node.rcurly.line
        else:  # arrays, objects, index, call and paren expressions record their end
            return node.end.line


def _key_end_line(f: ast.ObjectField) -> int:
    # Alloy measures the key by its unquoted text from the opening quote.
    return f.pos.line + f.name.count("\n", 0, max(len(f.name) - 1, 0))


def _quote_key(name: str) -> str:
    """A quoted key as written: Alloy keeps the text between the quotes as the key."""
    candidate = '"' + name + '"'
    toks = scan(candidate)
    if not toks.errors and toks.kinds[0] is Tok.STRING and toks.lits[0] == candidate:
        return candidate
    return go_quote(name)


# ---- the walker ---------------------------------------------------------------


class _Walker:
    __slots__ = ("p",)

    def __init__(self, p: _Printer) -> None:
        self.p = p

    def stmts(self, body: list[ast.Stmt]) -> None:
        p = self.p
        for i, s in enumerate(body):
            if i > 0:
                if isinstance(s, ast.Block):
                    p.ws(_FORMFEED)  # blocks are always set apart by a blank line
                elif _start_line(s) - _end_line(body[i - 1]) > 1:
                    p.ws(_FORMFEED)  # keep one blank line where the source had any
            mark = p.mark()
            if isinstance(s, ast.Attribute):
                self.attribute(s)
            else:
                self.block(s)
            # A statement printed over several lines ends an alignment run.
            p.ws(_FORMFEED if p.lines_since(mark) > 1 else _NEWLINE)

    def attribute(self, s: ast.Attribute) -> None:
        p = self.p
        p.at(s.name.pos)
        p.text(s.name.name)
        p.ws(_VTAB)
        p.token("=")
        p.ws(_BLANK)
        self.expr(s.value)

    def block(self, s: ast.Block) -> None:
        p = self.p
        p.at(s.pos)
        p.text(".".join(s.name))
        if s.label:
            p.ws(_BLANK)
            p.at(s.label_pos)
            p.text(go_quote(s.label))
        p.ws(_BLANK)
        p.at(s.lcurly)
        p.token("{")
        p.ws(_INDENT)
        if s.body:
            p.ws(_FORMFEED)
            self.stmts(s.body)
        else:
            p.ws(_BLANK)
        p.ws(_UNINDENT)
        p.at(s.rcurly)
        p.token("}")

    def expr(self, e: ast.Expr) -> None:
        p = self.p
        if isinstance(e, ast.Literal):
            p.at(e.pos)
            p.literal(e)
        elif isinstance(e, ast.IdentExpr):
            p.at(e.ident.pos)
            p.text(e.ident.name)
        elif isinstance(e, ast.AccessExpr):
            self.expr(e.value)
            p.at(e.pos)  # Alloy leaves these two unpositioned, which misplaces comments
            p.token(".")
            p.at(e.name.pos)
            p.text(e.name.name)
        elif isinstance(e, ast.BinaryExpr):
            self.expr(e.left)
            p.ws(_BLANK)
            p.at(e.pos)
            p.token(e.op.value)
            p.ws(_BLANK)
            self.expr(e.right)
        elif isinstance(e, ast.ArrayExpr):
            self.array(e)
        elif isinstance(e, ast.ObjectExpr):
            self.object(e)
        elif isinstance(e, ast.IndexExpr):
            self.expr(e.value)
            p.at(e.pos)
            p.token("[")
            self.expr(e.index)
            p.at(e.end)
            p.token("]")
        elif isinstance(e, ast.CallExpr):
            self.call(e)
        elif isinstance(e, ast.UnaryExpr):
            p.at(e.pos)
            p.token(e.op.value)
            self.expr(e.value)
        elif isinstance(e, ast.ParenExpr):
            p.at(e.pos)
            p.token("(")
            self.expr(e.inner)
            p.at(e.end)
            p.token(")")
        else:
            raise TypeError(f"cannot print {type(e).__name__}")

    def array(self, e: ast.ArrayExpr) -> None:
        p = self.p
        p.at(e.pos)
        p.token("[")
        prev = e.pos.line
        n = len(e.elements)
        for i, el in enumerate(e.elements):
            own_line = prev != _start_line(el)
            if own_line:
                p.ws(_INDENT, _FORMFEED)  # indent first, so comments before it indent too
            elif i > 0:
                p.ws(_BLANK)
            prev = _end_line(el)
            self.expr(el)
            if i + 1 < n:
                p.token(",")
            if own_line:
                p.ws(_UNINDENT)
        if n and prev != e.end.line:
            p.token(",")
            p.ws(_INDENT, _FORMFEED, _UNINDENT)
        p.at(e.end)
        p.token("]")

    def object(self, e: ast.ObjectExpr) -> None:
        p = self.p
        p.at(e.pos)
        p.token("{")
        p.ws(_INDENT)
        prev = e.pos.line
        fields = e.fields
        n = len(fields)
        prev_value_lines = 1
        for i, f in enumerate(fields):
            if prev != f.pos.line:
                # Fields align their `=` unless the previous value spanned lines.
                if i > 0 and prev_value_lines == 1:
                    p.ws(_NEWLINE)
                else:
                    p.ws(_FORMFEED)
            elif i > 0:
                p.ws(_BLANK)
            prev = _key_end_line(f) if f.quoted else f.pos.line
            p.at(f.pos)
            p.text(_quote_key(f.name) if f.quoted else f.name)
            p.ws(_VTAB)
            p.token("=")
            p.ws(_BLANK)
            mark = p.mark()
            self.expr(f.value)
            prev_value_lines = p.lines_since(mark)
            if i + 1 < n:
                p.token(",")
        if n and prev != e.end.line:
            p.token(",")
            p.ws(_FORMFEED)
        p.ws(_UNINDENT)
        p.at(e.end)
        p.token("}")

    def call(self, e: ast.CallExpr) -> None:
        p = self.p
        self.expr(e.value)
        p.at(e.pos)
        p.token("(")
        prev = e.pos.line
        n = len(e.args)
        for i, arg in enumerate(e.args):
            own_line = prev != _start_line(arg)
            if own_line:
                p.ws(_FORMFEED, _INDENT)
            self.expr(arg)
            prev = _end_line(arg)
            if i + 1 < n:
                p.token(",")
                p.ws(_BLANK)
            if own_line:
                p.ws(_UNINDENT)
        if n and prev != e.end.line:
            p.token(",")
            p.ws(_FORMFEED)
        p.at(e.end)
        p.token(")")


# ---- the printer -----------------------------------------------------------


class _Printer:
    """Writes tokens and whitespace, and puts comments back by source position.

    ``pos_*`` is where the printer believes it is in the source (exact after a
    positioned token, estimated after the others); ``last_line`` is the
    source line where the last text written ended.
    """

    def __init__(self, comments: list[list[ast.Comment]]) -> None:
        self.out: list[str] = []
        self.wrote = False
        self.indent = 0
        self.last_kind = _LAST_OTHER
        self.whitespace: list[str] = []
        self.groups = comments
        self.group_idx = 0
        self.group: list[ast.Comment] = []
        self.comment_off = -1  # offset of the next comment group; -1 when none left
        self.pos_off = 0
        self.pos_line = 1
        self.last_line = 0
        self.bol = True  # output is at the beginning of a line
        self.out_lines = 0  # line breaks written so far
        self.marks: list[list[int]] = []  # waiting for the line of the next token
        self._next_comment()

    # ---- what the walker calls -------------------------------------------

    def ws(self, *kinds: str) -> None:
        for kind in kinds:
            if len(self.whitespace) == _WS_CAPACITY:
                self._write_whitespace(len(self.whitespace))
            self.whitespace.append(kind)
        self.last_kind = _LAST_OTHER

    def at(self, pos: Pos) -> None:
        if pos.line > 0:
            self.pos_off = pos.offset
            self.pos_line = pos.line

    def text(self, s: str) -> None:
        self.last_kind = _LAST_OTHER
        self._emit(s, False)

    def literal(self, lit: ast.Literal) -> None:
        self.last_kind = _LAST_NUMBER if lit.kind is ast.LitKind.NUMBER else _LAST_OTHER
        value = lit.value
        # A literal with tabs or line breaks in it is one piece of text, never cells.
        escape = lit.kind is ast.LitKind.STRING and any(c in value for c in "\t\v\f\n")
        self._emit(value, escape)

    def token(self, s: str) -> None:
        if (self.last_kind == _LAST_NUMBER and s[0] == ".") or (
            self.last_kind == _LAST_DIV and s[0] == "*"
        ):
            if not any(w in (_BLANK, _VTAB, _NEWLINE, _FORMFEED) for w in self.whitespace):
                self.whitespace.append(_BLANK)
        self.last_kind = _LAST_DIV if s == "/" else _LAST_OTHER
        self._emit(s, False)

    def mark(self) -> list[int]:
        """Remembers the output line of the next token written (see lines_since)."""
        m = [0]
        self.marks.append(m)
        return m

    def lines_since(self, mark: list[int]) -> int:
        """How many output lines the text written since ``mark``'s token spans."""
        return self.out_lines - mark[0] + 1

    def finish(self) -> str:
        """Writes the comments left over and returns the aligned, trimmed text."""
        big = 1 << 62
        if self._comment_before(big):
            self._inject_comments(big, big, eof=True)
        return _trim(_align("".join(self.out)))

    # ---- internals -----------------------------------------------------------

    def _emit(self, s: str, escape: bool) -> None:
        next_off, next_line = self.pos_off, self.pos_line
        if self._comment_before(next_off):
            self._inject_comments(next_off, next_line, eof=False)
        else:
            self._write_whitespace(len(self.whitespace))
        if self.marks:
            for m in self.marks:
                m[0] = self.out_lines
            self.marks.clear()
        self._write_string(next_off, next_line, s, escape)

    def _next_comment(self) -> None:
        while self.group_idx < len(self.groups):
            group = self.groups[self.group_idx]
            self.group_idx += 1
            if group:
                if not group[0].pos.valid:
                    break  # like Alloy: a comment without a position ends comment output
                self.group = group
                self.comment_off = group[0].pos.offset
                return
        self.comment_off = -1

    def _comment_before(self, offset: int) -> bool:
        return 0 <= self.comment_off <= offset

    def _inject_comments(self, next_off: int, next_line: int, eof: bool) -> None:
        last: ast.Comment | None = None
        while self._comment_before(next_off):
            for c in self.group:
                self._comment_prefix(next_line, c)
                self._write_string(c.pos.offset, c.pos.line, c.text, True)
                last = c
            self._next_comment()
        if not eof and last is not None:
            self._comment_suffix(next_line, last)

    def _comment_prefix(self, next_line: int, c: ast.Comment) -> None:
        if not self.wrote:
            return  # nothing before the comment: no separator
        line = c.pos.line
        if line == self.last_line:
            # Same line as the text before it; a block comment with more code after it
            # on the line gets a space, a comment ending the line a tab (to align).
            self._write_byte(" " if line == next_line else "\t", 1)
            return
        count = 0
        ws = self.whitespace
        for i, w in enumerate(ws):
            if w == _INDENT or w == _UNINDENT:
                continue
            if w != _IGNORE:
                ws[i] = _IGNORE  # we write our own line breaks below
            count = i
            break
        self._write_whitespace(count)
        if line > 0 and self.last_line > 0 and line > self.last_line:
            self._write_byte(_FORMFEED, min(line - self.last_line, _MAX_NEWLINES))

    def _comment_suffix(self, next_line: int, last: ast.Comment) -> None:
        text = last.text
        end_line = last.pos.line + text.count("\n", 0, max(len(text) - 1, 0))
        if text[1:2] == "*" and next_line == end_line:
            self._write_byte(" ", 1)
        newlines = next_line - self.last_line
        dropped_formfeed = False
        ws = self.whitespace
        for i, w in enumerate(ws):
            if w == _INDENT or w == _UNINDENT:
                continue
            if w == _FORMFEED:
                dropped_formfeed = True
            ws[i] = _IGNORE
        self._write_whitespace(len(ws))
        if newlines <= 0 and text[1:2] == "/":
            newlines = 1  # a // comment runs to the end of the line, whatever came next
        if newlines > 0:
            ch = _FORMFEED if dropped_formfeed else _NEWLINE
            self._write_byte(ch, min(newlines, _MAX_NEWLINES))

    def _write_whitespace(self, n: int) -> None:
        ws = self.whitespace
        for w in ws[:n]:
            if w == _IGNORE:
                continue
            if w == _INDENT:
                self.indent += 1
            elif w == _UNINDENT:
                self.indent -= 1
                if self.indent < 0:
                    raise AssertionError("printer: negative indentation")
            else:
                self._write_byte(w, 1)
        del ws[:n]

    def _write_indent(self) -> None:
        depth = self.indent
        if depth:
            self.out.append("\t" * depth)
            self.wrote = True
            self.pos_off += depth
            self.bol = False

    def _write_byte(self, ch: str, n: int) -> None:
        if self.bol:
            self._write_indent()
        self.out.append(ch * n)
        self.wrote = True
        self.pos_off += n
        if ch == _NEWLINE or ch == _FORMFEED:
            self.pos_line += n
            self.out_lines += n
            self.bol = True
        else:
            self.bol = False

    def _write_string(self, off: int, line: int, s: str, escape: bool) -> None:
        if self.bol:
            self._write_indent()
        self.out.append(_ESC + s + _ESC if escape else s)
        self.wrote = True
        breaks = s.count("\n") + s.count("\f")
        self.pos_off = off + len(s)
        self.pos_line = line + breaks
        if breaks:
            self.out_lines += breaks
            self.bol = s[-1] in "\n\f"
        elif s:
            self.bol = False
        self.last_line = self.pos_line


# ---- elastic tabstops (the behaviour of Go's text/tabwriter as Alloy sets it up) ----

_CELL_SPLIT = re.compile("\x00[^\x00]*\x00|[\t\v\n\f]|[^\t\v\n\f\x00]+")
_TRAILING_BLANKS = re.compile("[ \t]+(?=\n)")
_TABWIDTH = 8
_PADDING = 1


class _Cell:
    __slots__ = ("text", "width", "htab")

    def __init__(self, text: str, width: int, htab: bool) -> None:
        self.text = text
        self.width = width
        self.htab = htab


def _align(text: str) -> str:
    """Pads tab-terminated cells so cells in the same column of a run line up.

    Cells end at ``\\t`` or ``\\v``; a column runs over consecutive lines
    that have a cell in it. A formfeed, or a line with a single cell, flushes:
    what follows starts afresh. Leading empty ``\\t`` cells (indentation) are
    written as tabs, other padding as spaces, and columns of only empty
    ``\\v`` cells vanish.
    """
    out: list[str] = []
    lines: list[list[_Cell]] = [[]]
    cur: list[str] = []
    width = 0

    for m in _CELL_SPLIT.finditer(text):
        piece = m.group()
        c = piece[0]
        if c == "\x00":
            cur.append(piece)
            width += len(piece) - 2
        elif c in "\t\v\n\f" and len(piece) == 1:
            lines[-1].append(_Cell("".join(cur), width, c == "\t"))
            cur = []
            width = 0
            if c == "\n" or c == "\f":
                cells = len(lines[-1])
                lines.append([])
                if c == "\f" or cells == 1:
                    _format(lines, [], 0, len(lines), out)
                    lines = [[]]
        else:
            cur.append(piece)
            width += len(piece)

    if cur:
        lines[-1].append(_Cell("".join(cur), width, False))
    _format(lines, [], 0, len(lines), out)
    return "".join(out)


def _format(
    lines: list[list[_Cell]], widths: list[int], line0: int, line1: int, out: list[str]
) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        # A column block starts here: write the lines before it, then size it.
        _write_lines(lines, widths, line0, this, out)
        line0 = this
        width = 0
        discardable = True
        while this < line1:
            line = lines[this]
            if column >= len(line) - 1:
                break
            cell = line[column]
            if cell.width + _PADDING > width:
                width = cell.width + _PADDING
            if cell.width > 0 or cell.htab:
                discardable = False
            this += 1
        if discardable:
            width = 0
        widths.append(width)
        _format(lines, widths, line0, this, out)
        widths.pop()
        line0 = this
        this += 1
    _write_lines(lines, widths, line0, line1, out)


def _write_lines(
    lines: list[list[_Cell]], widths: list[int], line0: int, line1: int, out: list[str]
) -> None:
    last = len(lines) - 1
    for i in range(line0, line1):
        use_tabs = True
        for j, cell in enumerate(lines[i]):
            if not cell.text:
                if j < len(widths):
                    _pad(0, widths[j], use_tabs, out)
            else:
                use_tabs = False
                out.append(cell.text)
                if j < len(widths):
                    _pad(cell.width, widths[j], False, out)
        if i != last:
            out.append("\n")


def _pad(textw: int, cellw: int, use_tabs: bool, out: list[str]) -> None:
    if use_tabs:
        cellw = (cellw + _TABWIDTH - 1) // _TABWIDTH * _TABWIDTH
        n = cellw - textw
        out.append("\t" * ((n + _TABWIDTH - 1) // _TABWIDTH))
    else:
        out.append(" " * (cellw - textw))


def _trim(text: str) -> str:
    """Drops blanks at line ends and the escape marks; escaped text passes untouched."""
    parts = text.split(_ESC)
    last = len(parts) - 1
    for k in range(0, len(parts), 2):
        part = _TRAILING_BLANKS.sub("", parts[k].replace("\f", "\n"))
        if k == last:
            part = part.rstrip(" \t")
        parts[k] = part
    return "".join(parts)
