"""Shoal's converter against Alloy's own converter output (../shared/conformance).

Cases made only of parts Shoal runs must match Alloy byte for byte (and its
diagnostics line for line). Cases with a discovery Shoal has no component
for must report each such discovery at its YAML path and, with
--bypass-errors, produce Alloy's output minus those components.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.convert.diag import Severity
from agent.convert.prometheus import SUPPORTED_SD, convert
from agent.syntax import ast
from agent.syntax.parser import parse_file
from agent.syntax.strings import unquote
from tests.components.helpers import controller

CORPUS = Path(__file__).resolve().parents[3] / "shared/conformance/alloy-syntax/prometheus-convert"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/conformance/alloy-syntax/prometheus-convert")

EXACT = [
    "scrape", "kubernetes", "file", "metric_relabel", "unsupported", "bad_config", "broken_yaml",
]
ALL = sorted(p.stem for p in CORPUS.glob("*.yaml"))
PARTIAL = [c for c in ALL if c not in EXACT]


def _expected(case: str, suffix: str) -> str:
    path = CORPUS / f"{case}.{suffix}"
    return path.read_text() if path.exists() else ""


def test_corpus_is_there() -> None:
    assert len(ALL) == 29
    assert set(EXACT) <= set(ALL)


@pytest.mark.parametrize("case", EXACT)
def test_matches_alloy_byte_for_byte(case: str) -> None:
    text, diags = convert((CORPUS / f"{case}.yaml").read_bytes())
    expected_alloy = _expected(case, "alloy")
    if diags.has(Severity.CRITICAL):
        assert expected_alloy == ""
    else:
        assert text == expected_alloy
    got = "".join(
        f"({d.severity.label()}) {d.summary}\n" for d in diags if d.severity != Severity.INFO
    )
    assert got == _expected(case, "diags")


def _unsupported_paths(case: str) -> set[str]:
    cfg = yaml.safe_load((CORPUS / f"{case}.yaml").read_text()) or {}
    paths = set()
    for i, sc in enumerate(cfg.get("scrape_configs") or []):
        for key, items in sc.items():
            if key.endswith("_sd_configs") and key not in SUPPORTED_SD:
                paths |= {f"scrape_configs[{i}].{key}[{j}]" for j in range(len(items))}
    return paths


@pytest.mark.parametrize("case", PARTIAL)
def test_unsupported_discovery_reported_rest_matches(case: str) -> None:
    text, diags = convert((CORPUS / f"{case}.yaml").read_bytes())
    wanted = _unsupported_paths(case)
    assert wanted, "every partial case has a discovery Shoal lacks"
    reported = {d.path for d in diags if d.severity == Severity.ERROR and "_sd_configs[" in d.path}
    assert reported == wanted
    dropped = {"discovery." + re.sub(r"_sd_configs\[\d+\]$", "", p.split(".")[1]) for p in wanted}
    # Alloy's other diagnostics (not about a discovery left out) are all there, in order.
    alloy_diags = [
        line[len("(Error) ") :]
        for line in _expected(case, "diags").splitlines()
        if not any(f" {d.removeprefix('discovery.')}_sd_configs " in line for d in dropped)
    ]
    ours = [d.summary for d in diags if d.severity == Severity.ERROR]
    assert [s for s in ours if s in alloy_diags] == alloy_diags
    assert _shape(text, dropped) == _shape(_expected(case, "alloy"), dropped)
    assert not any(f"{name} " in text for name in dropped)


def _shape(text: str, dropped: set[str]) -> list[tuple[str, list[Any]]]:
    """Blocks, minus the dropped discoveries and references to them, statement by statement."""
    f = parse_file(text, "x.alloy")
    lines = text.splitlines()
    out = []
    for b in f.body:
        assert isinstance(b, ast.Block)
        if b.full_name in dropped:
            continue
        stmts: list[Any] = []
        for k, s in enumerate(b.body):
            if isinstance(s, ast.Attribute) and s.name.name == "targets":
                stmts.append(("targets", _targets(s.value, dropped)))
                continue
            start = ast.start_pos(s).line
            end = ast.start_pos(b.body[k + 1]).line if k + 1 < len(b.body) else b.rcurly.line
            chunk = " ".join(" ".join(lines[start - 1 : end - 1]).split())
            stmts.append(re.sub(r" = ", "=", chunk))
        out.append((b.id, stmts))
    return out


def _targets(e: ast.Expr, dropped: set[str]) -> list[Any]:
    items = e.args if isinstance(e, ast.CallExpr) else [e]
    out: list[Any] = []
    for it in items:
        if isinstance(it, ast.AccessExpr):
            ref = _dotted(it)
            if not any(ref.startswith(d + ".") for d in dropped):
                out.append(ref)
        else:
            assert isinstance(it, ast.ArrayExpr)
            for obj in it.elements:
                assert isinstance(obj, ast.ObjectExpr)
                out.append(
                    {fl.name: unquote(fl.value.value) for fl in obj.fields}  # type: ignore[union-attr]
                )
    return out


def _dotted(e: ast.Expr) -> str:
    if isinstance(e, ast.AccessExpr):
        return _dotted(e.value) + "." + e.name.name
    assert isinstance(e, ast.IdentExpr)
    return e.ident.name


@pytest.mark.parametrize("case", ["file", "metric_relabel", "unsupported", "discovery"])
def test_converted_files_pass_shoals_checks(case: str, tmp_path: Path) -> None:
    """What the converter writes for parts Shoal runs is accepted by Shoal's own checks."""
    text, _ = convert((CORPUS / f"{case}.yaml").read_bytes())
    controller(tmp_path).check([parse_file(text, f"{case}.alloy")])
