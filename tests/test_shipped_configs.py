"""The example configurations we ship are canonically formatted and load without errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.components import registry
from agent.runtime.check import check_files
from agent.syntax import format_source, parse_file

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "config").glob("*.alloy"))


def test_there_are_configs() -> None:
    assert CONFIGS, "config/ holds no *.alloy files"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_formatted(path: Path) -> None:
    source = path.read_text()
    assert format_source(source, str(path)) == source


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_checks_clean(path: Path) -> None:
    file = parse_file(path.read_text(), str(path))
    assert [str(d) for d in check_files([file], registry())] == []
