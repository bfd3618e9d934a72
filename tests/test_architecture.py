"""The architecture contracts of .importlinter hold, and each one would catch the import it forbids.

CI runs ``lint-imports`` on the tree (scripts/test). These tests make sure no
contract is vacuous: in a copy of ``agent/`` with one forbidden import added,
``lint-imports`` fails that contract and names the import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"
LINT = Path(sys.executable).parent / "lint-imports"


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports puts its working directory first on sys.path, so it reads `agent` from `tree`.
    return subprocess.run(
        [str(LINT), "--config", str(CONFIG), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(
    ("contract", "module", "target"),
    [
        ("Engines import nothing from the runtime", "agent/wal/segment.py", "agent.components"),
        ("Engines import nothing from the runtime", "agent/scrape/offset.py", "agent.runtime.health"),
        ("The WAL imports nothing from remote write", "agent/wal/segment.py", "agent.remote.backoff"),
        ("The configuration language imports nothing outside itself", "agent/syntax/token.py", "agent.labels"),
        ("The runtime imports no component", "agent/runtime/health.py", "agent.server.pages"),
    ],
)
def test_each_contract_fails_on_the_import_it_forbids(tmp_path, contract, module, target):
    shutil.copytree(ROOT / "agent", tmp_path / "agent", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / module
    with path.open("a") as f:
        f.write(f"\nimport {target}  # noqa: E402, F401\n")
    line = path.read_text().count("\n")
    r = lint(tmp_path)
    assert r.returncode != 0
    broken = r.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
    importer = module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {target} (l.{line})" in broken
