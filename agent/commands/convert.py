"""``shoal convert --source-format=prometheus [-o OUT] [-r REPORT] [-b] [FILE]``.

Alloy's ``alloy convert``, same flags and behaviour, so a migration guide
written for Alloy works with Shoal: the converted configuration goes to
stdout (or ``-o``); a critical problem, or an error without
``--bypass-errors``, prints ``Error: `` and every diagnostic on stderr and
exits 1 with nothing written; ``--report`` writes Alloy's text report
whatever the outcome. FILE missing or ``-`` reads stdin.

One addition to Alloy's behaviour: the output is put through Shoal's own
component checks (what ``shoal validate`` runs), and anything Shoal cannot run
yet (an argument or block Alloy has and Shoal lacks) becomes a Warning in the
report and on stderr, so a file that converts cleanly is known to run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.components import registry
from agent.convert import prometheus
from agent.convert.diag import Diagnostics, Severity, report
from agent.runtime.check import check_files
from agent.syntax.diag import DiagnosticsError
from agent.syntax.parser import parse_file

FORMATS = ("prometheus",)


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "convert",
        help="convert a Prometheus configuration to Alloy syntax",
        description="Translate a supported configuration file to an Alloy configuration file.",
    )
    p.add_argument("file", nargs="?", default="-", metavar="FILE", help="input file, - for stdin")
    p.add_argument("-o", "--output", default="", help="where the output is written")
    p.add_argument("-r", "--report", default="", help="where the diagnostic report is written")
    p.add_argument(
        "-f", "--source-format", default="", help=f"format of the source file: {', '.join(FORMATS)}"
    )
    p.add_argument(
        "-b", "--bypass-errors", action="store_true", help="write what could be converted"
    )


def main(args: argparse.Namespace) -> int:
    try:
        return run(args.file, args.source_format, args.output, args.report, args.bypass_errors)
    except OSError as exc:
        print(f"Error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug of ours still must not print a traceback
        print(f"shoal convert: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def run(file: str, source_format: str, output: str, report_path: str, bypass: bool) -> int:
    if not source_format:
        print("Error: source-format is a required flag", file=sys.stderr)
        return 1
    if source_format not in FORMATS:
        diags = Diagnostics()
        diags.add(Severity.CRITICAL, f"unsupported input format {source_format!r}")
        return _fail(diags)
    if file != "-" and Path(file).is_dir():
        print("Error: cannot convert a directory", file=sys.stderr)
        return 1
    raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()

    text, diags = prometheus.convert(raw)
    warnings = shoal_checks(text, output or "converted.alloy") if text and not diags.has(Severity.CRITICAL) else Diagnostics()
    diags.extend(warnings)
    if report_path:
        Path(report_path).write_text(report(diags, bypass), encoding="utf-8")
    if diags.has(Severity.CRITICAL) or (diags.has(Severity.ERROR) and not bypass):
        return _fail(diags)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if warnings:
        print(warnings.text(), file=sys.stderr)
    return 0


def shoal_checks(text: str, name: str) -> Diagnostics:
    """Shoal's component checks on the converted text, as warnings with their position."""
    out = Diagnostics()
    try:
        problems = check_files([parse_file(text, name)], registry())
    except DiagnosticsError as exc:  # our own output should always parse; say so if not
        problems = exc.diagnostics
    for d in problems:
        out.add(Severity.WARN, f"Shoal cannot run this yet: {d}")
    return out


def _fail(diags: Diagnostics) -> int:
    print("Error: " + diags.text(), file=sys.stderr)
    return 1
