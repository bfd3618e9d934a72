"""OpenMetrics: the 211-case parser suite (strict), Prometheus' OM error cases, real OM payloads."""

from __future__ import annotations

import base64
import json

import pytest

from agent import labels as L
from agent.scrape.omvalidate import parse_strict
from agent.scrape.openmetrics import parse_openmetrics
from agent.scrape.textparse import ParseError
from tests.conftest import CONFORMANCE

SUITE = CONFORMANCE / "openmetrics-parsers"
INDEX = json.loads((SUITE / "index.json").read_text())
TEXTPARSE = CONFORMANCE / "exposition" / "prometheus-textparse"
OM_ERRORS = json.loads((TEXTPARSE / "openmetricsparse_errors.json").read_text())


def test_suite_size() -> None:
    assert len(INDEX) == 211
    assert sum(c["shouldParse"] for c in INDEX) == 44


@pytest.mark.parametrize("case", INDEX, ids=lambda c: c["name"])
def test_openmetrics_suite_strict(case: dict) -> None:
    body = (SUITE / case["name"] / case["file"]).read_bytes()
    if case["shouldParse"]:
        parse_strict(body)
    else:
        with pytest.raises(ParseError):
            parse_strict(body)


@pytest.mark.parametrize(
    "case",
    [c for c in INDEX if c["shouldParse"]],
    ids=lambda c: c["name"],
)
def test_valid_suite_cases_also_parse_on_the_scrape_path(case: dict) -> None:
    parse_openmetrics((SUITE / case["name"] / case["file"]).read_bytes())


@pytest.mark.parametrize(
    "case",
    OM_ERRORS["parse_errors"] + OM_ERRORS["null_byte_handling"],
    ids=lambda c: f"omparse-{c['index']}",
)
@pytest.mark.parametrize("strict", [False, True])
def test_prometheus_openmetrics_error_cases(case: dict, strict: bool) -> None:
    body = base64.b64decode(case["input"]["base64"])
    if case["valid"]:
        (parse_strict if strict else parse_openmetrics)(body)
    else:
        with pytest.raises(ParseError):
            (parse_strict if strict else parse_openmetrics)(body)


@pytest.mark.parametrize("name", ["alltypes.5mfs.om.txt", "1histogram.om.txt"])
def test_real_openmetrics_payloads_parse(name: str) -> None:
    e = parse_openmetrics((TEXTPARSE / name).read_bytes())
    assert e.samples
    assert any(L.get(s.labels, "__name__").endswith("_bucket") for s in e.samples)


def test_values_timestamps_units_and_exemplars() -> None:
    e = parse_openmetrics(
        b"# TYPE a counter\n# UNIT a seconds\n# HELP a Help.\n"
        b'a_total{x="1"} 1.5 1.25 # {trace_id="abc"} 2 1.0\n'
        b"a_created 1e9\n# EOF\n"
    )
    s = {L.get(x.labels, "__name__"): x for x in e.samples}
    assert s["a_total"].value == 1.5 and s["a_total"].timestamp_ms == 1250
    assert s["a_created"].value == 1e9 and s["a_created"].timestamp_ms is None
    md = e.metadata["a"]
    assert (md.type, md.unit, md.help) == ("counter", "seconds", "Help.")


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"a 1\n", "# EOF"),
        (b"a 1\n\n# EOF\n", "blank line"),
        (b"a 1\n# EOF\nb 2\n", "after # EOF"),
        (b"# some comment\na 1\n# EOF\n", "invalid comment"),
        (b"a 1 NaN\n# EOF\n", "invalid timestamp"),
        (b'a 1 # {x="' + b"y" * 130 + b'"} 1\n# EOF\n', "exceeding the limit of 128"),
    ],
)
def test_scrape_path_rejections(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_openmetrics(body)
    assert reason in str(info.value)
