"""Reading a configuration from disk: one file, or every ``*.alloy`` file of a folder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from agent.syntax import ast, parser
from agent.syntax.diag import Diagnostic, DiagnosticsError, Pos, render


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    text: str


def read(path: Path) -> list[Source]:
    """The sources of a configuration path, in a stable order; a missing or empty path is an error."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".alloy" and p.is_file())
        if not files:
            raise DiagnosticsError([Diagnostic(Pos(str(path)), "folder has no *.alloy files")])
    elif path.exists():
        files = [path]
    else:
        raise DiagnosticsError([Diagnostic(Pos(str(path)), "no such file or folder")])
    out = []
    for f in files:
        try:
            out.append(Source(str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise DiagnosticsError([Diagnostic(Pos(str(f)), f"cannot read: {exc}")]) from exc
    return out


def fingerprint(path: Path) -> str:
    """A hash of the configuration's names and contents; changes whenever a reload would see something new."""
    h = hashlib.sha256()
    try:
        for s in read(path):
            h.update(s.name.encode() + b"\0" + s.text.encode() + b"\0")
    except DiagnosticsError as exc:
        h.update(str(exc).encode())
    return h.hexdigest()


def parse(sources: list[Source]) -> list[ast.File]:
    """Parse every source, reporting the errors of all files together."""
    files: list[ast.File] = []
    errors: list[Diagnostic] = []
    for s in sources:
        try:
            files.append(parser.parse_file(s.text, s.name))
        except DiagnosticsError as exc:
            errors.extend(exc.diagnostics)
    if errors:
        raise DiagnosticsError(errors)
    return files


def render_all(exc: DiagnosticsError, sources: list[Source]) -> str:
    """Every diagnostic as ``file:line:col: message`` with its source line and a caret.

    String literals on the shown lines are masked: this text goes to the agent's log and
    HTTP API, where an inline password must not appear.
    """
    by_name = {s.name: s.text for s in sources}
    return "\n".join(render(d, by_name.get(d.pos.file), redact=True) for d in exc.diagnostics)
