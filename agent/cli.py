"""The ``shoal`` command: ``run``, ``fmt``, ``validate``, ``check metrics``.

Each subcommand lives in its own module under ``agent.commands`` and is only
imported when used, so ``shoal fmt`` does not pay for the scrape engine.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "run": "agent.commands.run",
    "fmt": "agent.commands.fmt",
    "validate": "agent.commands.validate",
    "check": "agent.commands.check",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="shoal", description="A clustered Prometheus scrape agent.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the command being run is imported (``check`` pulls in the scrape engine and aiohttp,
    # ~0.3 s that ``fmt`` should not pay); all of them when there is none, for the help listing.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    modules = {}
    for name, modname in COMMANDS.items():
        if chosen in COMMANDS and name != chosen:
            continue
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            continue
        modules[name] = mod
        mod.add_parser(sub)
    args = parser.parse_args(argv)
    return int(modules[args.command].main(args) or 0)
