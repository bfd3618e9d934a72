"""The dispatcher imports only the command it runs, so ``shoal fmt`` does not load the scrape engine."""

from __future__ import annotations

import subprocess
import sys

from agent import __version__
from tests.conftest import ROOT

PROBE = """
import sys
from agent.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(sorted(m for m in ("aiohttp", "agent.scrape.loop", "agent.commands.check") if m in sys.modules))
"""


def loaded(argv: list[str]) -> str:
    p = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, cwd=ROOT,
                       timeout=120, text=True)
    return p.stdout.strip().splitlines()[-1]


def test_fmt_does_not_import_the_scrape_engine():
    assert loaded(["fmt", "--help"]) == "[]"


def test_check_and_the_help_listing_import_what_they_need():
    assert loaded(["check", "metrics", "--help"]) == "['agent.commands.check', 'agent.scrape.loop', 'aiohttp']"
    assert loaded(["--help"]) == "[]"  # listed by name and summary, nothing imported


def test_the_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "agent", "--help"], capture_output=True, cwd=ROOT,
                         timeout=120, text=True).stdout
    for name in ("run", "fmt", "validate", "convert", "check"):
        assert f"    {name} " in out


def test_version_prints_the_package_version_and_loads_no_command():
    p = subprocess.run([sys.executable, "-m", "agent", "--version"], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, f"shoal, version {__version__}\n")
    assert loaded(["--version"]) == "[]"
