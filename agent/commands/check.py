"""``shoal check metrics [FILE|URL|-]``: is an exposition valid, and does it follow the naming rules?

The counterpart of ``promtool check metrics``, which reads only text format
0.0.4 from stdin. This reads a file, stdin (``-``, the default) or fetches a
URL with the scraper a target gets (same Accept header, gzip, redirects), and
checks the Prometheus text format 0.0.4 with client_golang's strict rules,
OpenMetrics 1.0 with the specification's family-level rules, or the delimited
protobuf format. The format comes from the response's Content-Type, else from
the content (a body whose last line is ``# EOF`` is OpenMetrics, unless it
is only valid as text: ``# EOF`` is a comment there, and Prometheus' own text
test data ends with one; a note says so), or from ``--format``.

A valid exposition is then linted with promtool's rules (client_golang's
promlint: help text, base units, ``_total`` on counters only, names reserved
for histograms and summaries, type or abbreviated units in names, colons,
camelCase). Output and exit status follow promtool: nothing and 0 when all is
well; ``line N: reason`` and 1 when the exposition is invalid (the parsers
stop at the first error) or cannot be read; ``metric: problem`` per lint
problem, sorted, and 3. Messages go to stderr, as promtool's do; nothing here
prints a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from agent.scrape.config import ScrapeConfig
from agent.scrape.loop import choose_parser
from agent.scrape.nativehist import HistogramError
from agent.scrape.omvalidate import SUFFIXES as OM_SUFFIXES
from agent.scrape.omvalidate import parse_strict
from agent.scrape.openmetrics import split_sample
from agent.scrape.protoparse import ProtoError, parse_protobuf
from agent.scrape.scraper import FetchError, Scraper
from agent.scrape.textparse import ParseError, parse_comment, parse_series, parse_text

OK, INVALID, LINT = 0, 1, 3  # promtool's successExitCode, failureExitCode, lintErrExitCode
FORMATS = ("auto", "text", "openmetrics", "protobuf")
# Families the text format groups under one name (expfmt.TextParser); OpenMetrics uses omvalidate's.
TEXT_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("check", help="check metrics expositions", description="Check things Shoal reads.")
    what = p.add_subparsers(dest="check_command", required=True, metavar="WHAT")
    m = what.add_parser(
        "metrics",
        help="check that an exposition is valid and follows Prometheus' naming rules",
        description=(
            "Check a metrics exposition (text 0.0.4, OpenMetrics 1.0 or delimited protobuf) from a file, "
            "stdin or a URL; lint it as promtool check metrics does. Exit status: 0 ok, 1 invalid or "
            "unreadable, 3 lint problems."
        ),
    )
    m.add_argument("source", nargs="?", default="-", metavar="FILE|URL|-",
                   help="a file, an http(s) URL to scrape, or - for stdin (the default)")
    m.add_argument("--format", choices=FORMATS, default="auto",
                   help="the exposition format (default: from the Content-Type, else the content)")
    m.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="scrape timeout for a URL (default 10)")
    m.add_argument("--no-lint", action="store_true", help="check validity only, skip the naming rules")


def main(args: argparse.Namespace, stdin: TextIO | None = None, err: TextIO | None = None) -> int:
    err = err or sys.stderr
    try:
        body, ctype = _read(args.source, args.timeout, stdin or sys.stdin)
    except (OSError, FetchError, ValueError) as exc:  # ValueError: a URL the HTTP client refuses
        print(f"shoal check metrics: {_reason(exc)}", file=err)
        return INVALID
    try:
        formats = [args.format] if args.format != "auto" else detect(body, ctype)
        report = check(body, formats[0])
        for fmt in formats[1:]:
            if not report.error:
                break
            if not (other := check(body, fmt)).error:
                print(f"note: not {report.format} ({report.error}), checked as {fmt}", file=err)
                report = other
    except Exception as exc:  # noqa: BLE001 - a bug of ours still must not print a traceback
        print(f"shoal check metrics: internal error: {type(exc).__name__}: {exc}", file=err)
        return INVALID
    if report.error:
        print(report.error, file=err)
        return INVALID
    problems = [] if args.no_lint else report.problems
    for p in problems:
        print(f"{p.metric}: {p.text}", file=err)
    return LINT if problems else OK


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename or 'stdin'}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def _read(source: str, timeout: float, stdin: TextIO) -> tuple[bytes, str]:
    """The body and its Content-Type ("" for a file or stdin)."""
    if source == "-":
        return stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode(), ""
    if re.match(r"(?i)https?://", source):
        return asyncio.run(_scrape(source, timeout))
    return Path(source).read_bytes(), ""


async def _scrape(url: str, timeout: float) -> tuple[bytes, str]:
    scraper = Scraper(url, ScrapeConfig(scrape_timeout=timeout), timeout)
    try:
        return await scraper.fetch()
    finally:
        await scraper.close()


def detect(body: bytes, content_type: str) -> list[str]:
    """The formats to check a body as, best guess first: its Content-Type as a scrape reads it,
    else OpenMetrics and then text if it ends ``# EOF``, else text."""
    if content_type:
        try:
            return [choose_parser(content_type, "")]
        except ValueError:
            pass  # blank or unknown media type: look at the content
    if body.rstrip(b"\n").rsplit(b"\n", 1)[-1] == b"# EOF":
        return ["openmetrics", "text"]
    return ["text"]


@dataclass(frozen=True, order=True)
class Problem:
    """One lint finding, as promlint reports it: the metric family and what is wrong."""

    metric: str
    text: str


@dataclass
class Report:
    format: str
    error: str = ""  # "line N: reason" (or the protobuf decoder's reason) when invalid
    problems: list[Problem] = field(default_factory=list)


def check(body: bytes, fmt: str) -> Report:
    """Validate ``body`` as ``fmt`` ("text", "openmetrics" or "protobuf"), then lint it if valid."""
    report = Report(fmt)
    try:
        if fmt == "protobuf":
            parse_protobuf(body)
        elif fmt == "openmetrics":
            parse_strict(body)
        else:
            parse_text(body, strict=True)
    except ParseError as exc:
        report.error = f"line {exc.line}: {exc.reason}"
    except (ProtoError, HistogramError, ValueError) as exc:
        report.error = str(exc)
    if not report.error and fmt != "protobuf":
        report.problems = lint(families(body, fmt))
    return report


# ---------------------------------------------------------------- lint


@dataclass
class Family:
    """What promlint looks at in a metric family: name, type, whether it has help, its label names."""

    name: str
    type: str = "untyped"
    help: bool = False
    samples: bool = False
    label_names: set[str] = field(default_factory=set)


def families(body: bytes, fmt: str) -> list[Family]:
    """The families of a valid body with samples, grouped as the format groups them."""
    om = fmt == "openmetrics"
    suffixes = OM_SUFFIXES if om else TEXT_SUFFIXES
    fams: dict[str, Family] = {}
    for raw in body.split(b"\n"):
        line = raw.strip(b" \t")
        if not line or line == b"# EOF":
            continue
        if line[:1] == b"#":
            c = parse_comment(line)
            if c is not None and c[0] in ("HELP", "TYPE"):
                fam = fams.setdefault(c[1], Family(c[1]))
                if c[0] == "HELP":
                    fam.help = True
                else:
                    fam.type = c[2].strip().decode() or "untyped"
            continue
        key = split_sample(raw)[0] if om else _series_key(line)
        name, pairs = parse_series(key)
        fam = fams.get(_family_name(name, fams, suffixes)) or fams.setdefault(name, Family(name))
        fam.samples = True
        fam.label_names.update(ln for ln, _ in pairs)
    out = [f for f in fams.values() if f.samples]  # expfmt drops families without metrics
    if om:
        for f in out:
            if f.type == "counter":
                f.name += "_total"  # the name its samples and Prometheus' series carry
            elif f.type == "unknown":
                f.type = "untyped"
    return out


def _series_key(line: bytes) -> bytes:
    i = line.rfind(b"}")
    return line[: i + 1] if i >= 0 else line.split()[0]


def _family_name(name: str, fams: dict[str, Family], suffixes: dict[str, tuple[str, ...]]) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_gcount", "_gsum", "_total", "_created", "_info"):
        if name.endswith(suffix):
            base = fams.get(name[: -len(suffix)])
            if base is not None and suffix in suffixes.get(base.type, ()):
                return base.name
    return name


_UNITS = {
    "amperes": "amperes", "bytes": "bytes", "celsius": "celsius", "grams": "grams", "joules": "joules",
    "kelvin": "kelvin", "meters": "meters", "metres": "metres", "seconds": "seconds", "volts": "volts",
    "minutes": "seconds", "hours": "seconds", "days": "seconds", "weeks": "seconds",
    "kelvins": "kelvin", "fahrenheit": "celsius", "rankine": "celsius",
    "inches": "meters", "yards": "meters", "miles": "meters",
    "bits": "bytes", "calories": "joules", "pounds": "grams", "ounces": "grams",
}
_PREFIXES = ("pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi",
             "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi")
_ABBREVIATIONS = ("s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d")
_TYPE_NAMES = ("counter", "gauge", "summary", "histogram", "gauge_histogram")  # client_model's, less untyped
_CAMEL = re.compile(r"[a-z][A-Z]")


def _unit(name: str) -> tuple[str, str] | None:
    """The first unit word of a name and its base unit (promlint's metricUnits)."""
    for word in name.split("_"):
        if word in _UNITS:
            return word, _UNITS[word]
        for prefix in _PREFIXES:
            if word.startswith(prefix) and word[len(prefix):] in _UNITS:
                return word, _UNITS[word[len(prefix):]]
    return None


def lint(fams: list[Family]) -> list[Problem]:
    """promlint's rules over each family, sorted by metric and text as promtool prints them."""
    out: list[Problem] = []
    for f in fams:
        n, t = f.name, f.type
        says = [] if f.help else ["no help text"]
        unit = _unit(n)
        if unit is not None and unit[0] != unit[1]:
            says.append(f'use base unit "{unit[1]}" instead of "{unit[0]}"')
        total = n.endswith("_total")
        if t == "counter" and not total:
            says.append('counter metrics should have "_total" suffix')
        if t not in ("counter", "untyped") and total:
            says.append('non-counter metrics should not have "_total" suffix')
        if t != "untyped":
            hist = t in ("histogram", "gaugehistogram")
            if not hist and n.endswith("_bucket"):
                says.append('non-histogram metrics should not have "_bucket" suffix')
            for suffix in ("_count", "_sum"):
                if not hist and t != "summary" and n.endswith(suffix):
                    says.append(f'non-histogram and non-summary metrics should not have "{suffix}" suffix')
            if not hist and "le" in f.label_names:
                says.append('non-histogram metrics should not have "le" label')
            if t != "summary" and "quantile" in f.label_names:
                says.append('non-summary metrics should not have "quantile" label')
        low = n.lower()
        for tn in _TYPE_NAMES:  # every type's name, whatever the family's type
            if f"_{tn}_" in low or low.endswith(f"_{tn}"):
                says.append(f"metric name should not include type '{tn}'")
        if ":" in n:
            says.append("metric names should not contain ':'")
        if _CAMEL.search(n):
            says.append("metric names should be written in 'snake_case' not 'camelCase'")
        if any(_CAMEL.search(ln) for ln in f.label_names):
            says.append("label names should be written in 'snake_case' not 'camelCase'")
        if any(f"_{a}_" in low or low.endswith(f"_{a}") for a in _ABBREVIATIONS):
            says.append("metric names should not contain abbreviated units")
        out += (Problem(n, s) for s in says)
    return sorted(out)
