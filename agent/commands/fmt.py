"""``shoal fmt [--write] [--check] PATH...``: format Alloy files the way ``alloy fmt`` does.

- One PATH, no flag: the formatted file goes to stdout (exit 0).
- ``--write``: files that are not formatted are rewritten in place.
- ``--check``, or several PATHs without ``--write``: nothing is changed; every
  file that is not formatted gets a unified diff on stdout and the exit
  status is 1.

A folder PATH means the ``*.alloy`` files directly in it; ``-`` reads stdin.
Syntax errors are printed as ``file:line:col: message`` with the source line
and a caret, and make the exit status 1; a bad file never stops the others,
and nothing ever ends in a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from agent.syntax.diag import DiagnosticsError, render
from agent.syntax.parser import parse_file
from agent.syntax.printer import format_file
from agent.syntax.scanner import decode

_SURROGATE = re.compile("[\ud800-\udfff]")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "fmt",
        help="format configuration files",
        description="Format Alloy configuration files in the canonical style.",
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="a .alloy file, a folder, or - for stdin"
    )
    p.add_argument("-w", "--write", action="store_true", help="rewrite files in place")
    p.add_argument(
        "-c", "--check", action="store_true", help="print a diff for unformatted files and exit 1"
    )


def main(args: argparse.Namespace) -> int:
    try:
        return run(args.paths, write=args.write, check=args.check)
    except Exception as exc:  # noqa: BLE001 - a bug of ours still must not print a traceback
        print(f"shoal fmt: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def run(
    paths: list[str],
    write: bool = False,
    check: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    files: list[str] = []
    status = 0
    for arg in paths:
        path = Path(arg)
        if arg != "-" and path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.suffix == ".alloy" and p.is_file())
            if not found:
                print(f"{arg}: folder has no .alloy files", file=err)
                status = 1
            files.extend(found)
        else:
            files.append(arg)

    show = not write and not check and len(files) == 1
    for name in files:
        if not _format_one(name, write=write, show=show, out=out, err=err):
            status = 1
    return status


def _format_one(name: str, write: bool, show: bool, out: TextIO, err: TextIO) -> bool:
    """Formats one file; returns False if it had errors or (when checking) was not formatted."""
    display = "<stdin>" if name == "-" else name
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        print(f"{display}: {exc.strerror or exc}", file=err)
        return False

    source = decode(raw)
    try:
        formatted = format_file(parse_file(source, display))
    except DiagnosticsError as exc:
        printable = _SURROGATE.sub("\ufffd", source)
        for diag in exc.diagnostics:
            print(render(diag, printable), file=err)
        return False

    if show or (write and name == "-"):
        out.write(formatted)
        return True
    if formatted == source:
        return True
    if write:
        _replace(Path(name), formatted)
        return True
    out.writelines(
        difflib.unified_diff(
            _lines(source),
            _lines(formatted),
            fromfile=f"{display}.orig",
            tofile=display,
        )
    )
    return False


def _lines(text: str) -> list[str]:
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines(keepends=True)]


def _replace(path: Path, text: str) -> None:
    """Writes through a temporary file, so a crash never leaves a half-written config."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
