"""Positions and positioned errors, shared by every stage of the language.

Every error the language reports (scanner, parser, evaluator, and the runtime
when it checks component arguments) is a :class:`Diagnostic` carrying the
position it is about, so the CLI can print ``file:line:col: message`` with the
source line and a caret, and never a traceback.
"""

from __future__ import annotations

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


def render(diag: Diagnostic, source: str | None) -> str:
    """``file:line:col: message``, then the offending line and a caret under the column."""
    head = f"{diag.pos}: {diag.message}"
    if source is None or not diag.pos.valid:
        return head
    lines = source.splitlines()
    if not 1 <= diag.pos.line <= len(lines):
        return head
    text = lines[diag.pos.line - 1]
    caret = "".join("\t" if ch == "\t" else " " for ch in text[: max(diag.pos.col - 1, 0)]) + "^"
    return f"{head}\n{text}\n{caret}"
