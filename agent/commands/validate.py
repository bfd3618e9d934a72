"""``shoal validate PATH...``: report every problem a configuration has, without running it.

Files are parsed (a folder means every ``*.alloy`` directly in it, as Alloy
loads a folder), then every attribute whose value depends on nothing but the
standard library is evaluated, so ``1 + "a"`` or a bad ``encoding.from_json``
literal is caught here rather than at start-up. Checks that need the
components (unknown component names, argument types) come from the runtime
through the ``check`` hook of :func:`load_and_report`.

Errors are printed as ``file:line:col: message`` with the source line and a
caret; the exit status is 1 when there is any, and never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from agent.components import registry
from agent.runtime.check import check_files
from agent.syntax import ast
from agent.syntax.diag import Diagnostic, DiagnosticsError, Pos, render
from agent.syntax.parser import parse_file
from agent.syntax.stdlib import STDLIB
from agent.syntax.vm import Scope, evaluate, references

Check = Callable[[list[ast.File]], list[Diagnostic]]


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "validate",
        help="check configuration files for errors",
        description="Parse Alloy configuration files (or every *.alloy in a folder) and report every error.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="a .alloy file or a folder of them")


def main(args: argparse.Namespace) -> int:
    try:
        components = registry()
        _, ok = load_and_report(args.paths, check=lambda files: check_files(files, components))
    except Exception as exc:  # noqa: BLE001 - a bug of ours still must not print a traceback
        print(f"shoal validate: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def config_files(path: Path) -> list[Path]:
    """The files a PATH argument names: itself, or the ``*.alloy`` files directly in a folder."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix == ".alloy" and p.is_file())
    return [path]


def load_and_report(
    paths: list[str | Path],
    check: Check | None = None,
    out: TextIO | None = None,
) -> tuple[list[ast.File], bool]:
    """Parse and check ``paths``, print every error to ``out`` (stderr); return the parsed files and success.

    ``check``, if given, is called with the files that parsed and returns more
    diagnostics (the runtime's component checks).
    """
    out = out if out is not None else sys.stderr
    sources: dict[str, str] = {}
    diags: list[Diagnostic] = []
    files: list[ast.File] = []
    for arg in paths:
        path = Path(arg)
        if not path.exists():
            diags.append(Diagnostic(Pos(str(arg)), "no such file or directory"))
            continue
        names = config_files(path)
        if path.is_dir() and not names:
            diags.append(Diagnostic(Pos(str(arg)), "folder has no .alloy files"))
        for name in names:
            fname = str(name)
            try:
                data = name.read_bytes()
            except OSError as exc:
                diags.append(Diagnostic(Pos(fname), f"cannot read file: {exc.strerror or exc}"))
                continue
            sources[fname] = data.decode("utf-8", "replace")
            try:
                f = parse_file(data, fname)
            except DiagnosticsError as exc:
                diags.extend(exc.diagnostics)
                continue
            files.append(f)
            diags.extend(evaluate_constants(f))
    if check is not None and files:
        diags.extend(check(files))
        diags = list(dict.fromkeys(diags))  # the check may find a constant's error again
    for d in diags:
        print(render(d, sources.get(d.pos.file)), file=out)
    if diags:
        n = len(diags)
        print(f"{n} error{'s' if n != 1 else ''} found", file=out)
    return files, not diags


def _attributes(body: list[ast.Stmt]) -> Iterator[ast.Attribute]:
    for stmt in body:
        if isinstance(stmt, ast.Attribute):
            yield stmt
        else:
            yield from _attributes(stmt.body)


def evaluate_constants(f: ast.File) -> list[Diagnostic]:
    """Errors of every attribute that can be evaluated without components (it references only the stdlib)."""
    scope = Scope({})
    diags: list[Diagnostic] = []
    for a in _attributes(f.body):
        if all(parts[0] in STDLIB for parts, _ in references(a.value)):
            try:
                evaluate(a.value, scope)
            except DiagnosticsError as exc:
                diags.extend(exc.diagnostics)
    return diags
