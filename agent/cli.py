"""The ``shoal`` command: ``run``, ``fmt``, ``validate``, ``convert``, ``check metrics``.

Each subcommand lives in its own module under ``agent.commands`` and only the
one asked for is imported, so ``shoal fmt`` does not pay for the scrape
engine; the others are listed with a one-line help for ``shoal --help``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from agent import __version__

COMMANDS = {
    "run": ("agent.commands.run", "run the components of a configuration file or folder"),
    "fmt": ("agent.commands.fmt", "format configuration files"),
    "validate": ("agent.commands.validate", "check configuration files for errors"),
    "convert": ("agent.commands.convert", "convert a Prometheus configuration to Alloy syntax"),
    "check": ("agent.commands.check", "check metrics exposition, as promtool check metrics does"),
}


def _structlog_without_rich() -> None:
    """Import structlog with rich hidden from it, so that rich and pygments stay out of the process.

    structlog imports its development console renderer with the package, and that imports
    rich (and pygments) when they are installed, for coloured tracebacks on a terminal.
    Shoal renders logfmt or JSON only (agent/logs.py) and never uses it, yet it cost ~3 MB
    resident and ~60 ms of start-up wherever rich is installed (a test tool's venv, say).
    Hidden only during this import: rich stays importable by anyone who wants it.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes ``import rich`` fail
    try:
        import structlog  # noqa: F401  # not at the top: this import, with rich hidden, is the point
    finally:
        del sys.modules["rich"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _structlog_without_rich()
    parser = argparse.ArgumentParser(prog="shoal", description="A clustered Prometheus scrape agent.")
    parser.add_argument("--version", action="version", version=f"shoal, version {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    modules = {}
    for name, (modname, summary) in COMMANDS.items():
        if name != wanted:
            sub.add_parser(name, help=summary)
            continue
        modules[name] = mod = importlib.import_module(modname)
        mod.add_parser(sub)
    args = parser.parse_args(argv)
    return int(modules[args.command].main(args) or 0)
