"""The runtime's part of ``shoal validate``: every component check that needs nothing started."""

from __future__ import annotations

from pathlib import Path

from agent.runtime.controller import Controller
from agent.runtime.registry import Registry
from agent.syntax import ast
from agent.syntax.diag import Diagnostic, DiagnosticsError


def check_files(files: list[ast.File], registry: Registry) -> list[Diagnostic]:
    """Unknown components, references, cycles and argument errors of a configuration, or []."""
    try:
        Controller(storage_path=Path("."), registry=registry).check(files)
    except DiagnosticsError as exc:
        return exc.diagnostics
    return []
