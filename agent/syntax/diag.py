"""Positions and positioned errors, shared by every stage of the language.

Every error the language reports (scanner, parser, evaluator, and the runtime
when it checks component arguments) is a :class:`Diagnostic` carrying the
position it is about, so the CLI can print ``file:line:col: message`` with the
source line and a caret, and never a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Pos:
    """A place in a source file. ``line`` and ``col`` count from 1; ``col`` in characters."""

    file: str = ""
    line: int = 0
    col: int = 0
    offset: int = 0

    @property
    def valid(self) -> bool:
        return self.line > 0

    def __str__(self) -> str:
        if not self.valid:
            return self.file or "-"
        return f"{self.file}:{self.line}:{self.col}" if self.file else f"{self.line}:{self.col}"


NO_POS = Pos()


@dataclass(frozen=True, slots=True)
class Diagnostic:
    pos: Pos
    message: str
    end: Pos = NO_POS
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.pos}: {self.message}"


@dataclass(slots=True)
class DiagnosticsError(Exception):
    """One or more diagnostics; raised when a stage cannot go on."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        Exception.__init__(self, str(self))

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)

    @classmethod
    def at(cls, pos: Pos, message: str) -> DiagnosticsError:
        return cls([Diagnostic(pos, message)])


def render(diag: Diagnostic, source: str | None, redact: bool = False) -> str:
    """``file:line:col: message``, then the offending line and a caret under the column.

    ``redact`` hides what string literals hold: the agent shows refused configurations on
    its HTTP API and in its log, and a line such as ``password = "..."`` must not carry its
    secret there. A column inside a literal then points at the literal's opening quote.
    """
    head = f"{diag.pos}: {diag.message}"
    if source is None or not diag.pos.valid:
        return head
    lines = source.splitlines()
    if not 1 <= diag.pos.line <= len(lines):
        return head
    text, col = lines[diag.pos.line - 1], diag.pos.col
    if redact:
        text, col = _redacted(source, diag.pos.line, col)
    caret = "".join("\t" if ch == "\t" else " " for ch in text[: max(col - 1, 0)]) + "^"
    return f"{head}\n{text}\n{caret}"


# Comments are matched first so that a quote inside one does not start a string.
_LITERALS = re.compile(r'(//[^\n]*|/\*.*?\*/)|("(?:[^"\\\n]|\\.)*"|`[^`]*`)', re.S)


def _redacted(source: str, line: int, col: int) -> tuple[str, int]:
    """The source's ``line`` with every string literal's content masked, and ``col`` moved to match."""
    line_start = sum(len(x) for x in source.splitlines(keepends=True)[: line - 1])
    target = line_start + col - 1
    pieces: list[str] = []
    last = 0
    moved: int | None = None
    for m in _LITERALS.finditer(source):
        if m.group(2) is None:
            continue
        quote = m.group(2)[0]
        # Newlines stay, so every line keeps its number (a raw string may span lines).
        masked = quote + "***" + "\n" * m.group(2).count("\n") + quote
        pieces.append(source[last : m.start()])
        if moved is None and target < m.end():
            before = sum(len(p) for p in pieces)
            moved = before + (target - m.start() if target < m.start() else 0)
        pieces.append(masked)
        last = m.end()
    pieces.append(source[last:])
    out = "".join(pieces)
    if moved is None:
        moved = len(out) - (len(source) - target)
    masked_start = out.rfind("\n", 0, moved) + 1
    end = out.find("\n", moved)
    return out[masked_start : len(out) if end < 0 else end], moved - masked_start + 1
