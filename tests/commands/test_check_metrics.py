"""``shoal check metrics``: the real command on files, stdin and a real HTTP target, beside promtool.

Each conformance input runs through the command's ``main`` in this process
(a subprocess per case would cost a second of start-up a time on this shared
machine); a handful of cases run ``shoal`` itself as a subprocess, to check
the exit status, the output streams and that bad input never prints a
traceback. Where Debian's ``promtool check metrics`` (text 0.0.4 only) is
installed, both must reach the same verdict and, for lint problems, print
the same problems.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands import check
from tests.conftest import CONFORMANCE, ROOT
from tests.protobuf.metrics_pb import CONTENT_TYPE, COUNTER, MetricFamily, encode_delimited
from tests.targets import OPENMETRICS, TEXT, Target

EXPO = CONFORMANCE / "exposition"
EXPFMT = json.loads((EXPO / "prometheus-common-expfmt" / "text_parse_errors.json").read_text())
PROMPARSE = json.loads((EXPO / "prometheus-textparse" / "promparse_errors.json").read_text())
OM_ERRORS = json.loads((EXPO / "prometheus-textparse" / "openmetricsparse_errors.json").read_text())
OM_SUITE = CONFORMANCE / "openmetrics-parsers"
OM_INDEX = json.loads((OM_SUITE / "index.json").read_text())
PROMTOOL = shutil.which("promtool")

TEXT_FILES = [
    *sorted((EXPO / "prometheus-common-expfmt" / "fuzz-corpus-valid").iterdir()),
    *sorted((EXPO / "prometheus-common-expfmt" / "fuzz-corpus-invalid").iterdir()),
    EXPO / "prometheus-common-expfmt" / "text",
    EXPO / "prometheus-textparse" / "alltypes.237mfs.prom.txt",
    EXPO / "prometheus-textparse" / "alltypes.237mfs.nometa.prom.txt",
    EXPO / "prometheus-textparse" / "promtestdata.txt",
]
TEXT_CASES = [
    *[(p.parent.name + "/" + p.name, p.read_bytes()) for p in TEXT_FILES],
    *[(f"expfmt-{c['index']}", base64.b64decode(c["input"]["base64"])) for c in EXPFMT["cases"]],
    *[
        (f"promparse-{k}-{c['index']}", base64.b64decode(c["input"]["base64"]))
        for k, cases in PROMPARSE.items()
        if isinstance(cases, list)
        for c in cases
    ],
]
# Debian's promtool (2.42) predates two expfmt changes the transcribed cases expect:
# quoted UTF-8 metric names (41, 42: valid now) and refusing negative histogram and
# summary counts (43-46: invalid now). There the current expfmt's verdict is checked.
PROMTOOL_OLDER = {f"expfmt-{i}" for i in (41, 42, 43, 44, 45, 46)}

OM = b"""# HELP rpc_seconds RPC latency.
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le="0.5"} 1 # {trace_id="abc"} 0.2 1520879607.789
rpc_seconds_bucket{le="+Inf"} 2
rpc_seconds_count 2
rpc_seconds_sum 1.5
# EOF
"""
LINTED = b"""# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200"} 3
# TYPE latency_ms gauge
latency_ms{fooBar="x"} 1
# HELP jobs counted
# TYPE jobs counter
jobs 4
"""


def run_main(argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    check.add_parser(parser.add_subparsers(dest="command"))
    err = io.StringIO()
    code = check.main(parser.parse_args(["check", "metrics", *argv]), io.TextIOWrapper(io.BytesIO(stdin)), err)
    return code, err.getvalue()


def promtool(body: bytes) -> tuple[int, str]:
    assert PROMTOOL is not None
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=60)
    return p.returncode, p.stderr.decode()


def shoal(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "check", "metrics", *argv],
        input=stdin, capture_output=True, cwd=ROOT, timeout=120,
    )


def expected_text_verdict(name: str) -> bool | None:
    """Valid or not as the transcribed upstream case says (None for the files, which must all parse
    except the invalid fuzz corpus)."""
    if name.startswith("expfmt-"):
        return EXPFMT["cases"][int(name.split("-")[1])]["expect_utf8_validation"]["valid"]
    if name.startswith("fuzz-corpus-"):
        return name.startswith("fuzz-corpus-valid")
    if name.startswith("promparse-"):
        return None
    return True


@pytest.mark.parametrize(("name", "body"), TEXT_CASES, ids=[n for n, _ in TEXT_CASES])
def test_text_verdicts_match_upstream_and_promtool(name: str, body: bytes, tmp_path: Path) -> None:
    f = tmp_path / "metrics.prom"
    f.write_bytes(body)
    code, out = run_main([str(f)])
    out = "".join(ln for ln in out.splitlines(keepends=True) if not ln.startswith("note: "))
    assert code in (0, 1, 3)
    want = expected_text_verdict(name)
    if want is not None:
        assert (code != 1) == want, out
    if code == 1:
        assert out.startswith("line ") or out.startswith("protobuf"), out
    if PROMTOOL is None or name in PROMTOOL_OLDER:
        return
    pcode, pout = promtool(body)
    assert code == pcode, (out, pout)
    if code == 3:  # the same problems, "metric: problem" where promtool writes "metric problem"
        assert out.splitlines() == sorted(ln.replace(" ", ": ", 1) for ln in pout.splitlines()), pout


@pytest.mark.parametrize("case", OM_INDEX, ids=lambda c: c["name"])
def test_openmetrics_suite_verdicts(case: dict) -> None:
    path = str(OM_SUITE / case["name"] / case["file"])
    code, out = run_main(["--format", "openmetrics", path])
    assert (code != 1) == case["shouldParse"], out
    if code == 1:
        assert out.startswith("line "), out


@pytest.mark.parametrize(
    "case", OM_ERRORS["parse_errors"] + OM_ERRORS["null_byte_handling"], ids=lambda c: f"omparse-{c['index']}"
)
def test_prometheus_openmetrics_cases_by_content_type(case: dict) -> None:
    body = base64.b64decode(case["input"]["base64"])
    report = check.check(body, check.detect(body, OPENMETRICS)[0])
    assert report.format == "openmetrics"
    assert (not report.error) == case["valid"], report.error
    if report.error:
        assert report.error.startswith("line "), report.error


def test_lint_problems_are_promtools_and_exit_3(tmp_path: Path) -> None:
    f = tmp_path / "m.prom"
    f.write_bytes(LINTED)
    code, out = run_main([str(f)])
    assert code == 3
    assert out.splitlines() == [
        'jobs: counter metrics should have "_total" suffix',
        "latency_ms: label names should be written in 'snake_case' not 'camelCase'",
        "latency_ms: metric names should not contain abbreviated units",
        "latency_ms: no help text",
    ]
    assert run_main(["--no-lint", str(f)]) == (0, "")
    if PROMTOOL is not None:
        assert promtool(LINTED)[0] == 3


def test_openmetrics_counters_are_linted_by_their_sample_name() -> None:
    body = b"# HELP jobs Jobs.\n# TYPE jobs counter\njobs_total 4\n# HELP t_info x\n# TYPE t_info gauge\nt_info 1\n# EOF\n"
    assert run_main(["-"], body) == (0, "")
    bad = body.replace(b"jobs_total 4", b"jobs_total -4")
    code, out = run_main(["--format", "openmetrics", "-"], bad)
    assert code == 1 and out.startswith("line 3: counter value"), out


def test_subprocess_exit_codes_and_streams(tmp_path: Path) -> None:
    good = b"# HELP up_total x\n# TYPE up_total counter\nup_total 1\n"
    p = shoal("-", stdin=good)
    assert (p.returncode, p.stdout, p.stderr) == (0, b"", b"")

    p = shoal("-", stdin=b'up{a="1" 1\n')
    assert p.returncode == 1 and p.stdout == b""
    assert p.stderr.startswith(b"line 1: ") and b"Traceback" not in p.stderr

    f = tmp_path / "lint.prom"
    f.write_bytes(LINTED)
    p = shoal(str(f))
    assert p.returncode == 3 and p.stderr.count(b"\n") == 4

    p = shoal(str(tmp_path / "missing.prom"))
    assert p.returncode == 1 and b"No such file" in p.stderr and b"Traceback" not in p.stderr

    p = shoal("-", stdin=b"\xff\xfe\x00garbage{{{\n")
    assert p.returncode == 1 and b"Traceback" not in p.stderr


def test_url_uses_the_content_type_of_a_real_target() -> None:
    with Target(OM, OPENMETRICS) as t:
        p = shoal(t.url)
        assert (p.returncode, p.stderr) == (0, b"")
        assert t.requests[-1].headers["accept"].startswith("application/openmetrics-text")
        # The same bytes served as text 0.0.4 are not valid text (float timestamps, exemplars).
        t.set(OM, TEXT)
        p = shoal(t.url)
        assert p.returncode == 1 and p.stderr.startswith(b"line "), p.stderr
        t.set(b"# HELP a_total x\n# TYPE a_total counter\na_total 1\n", TEXT)
        assert shoal(t.url).returncode == 0
        t.set(b"oops", TEXT, status=500)
        p = shoal(t.url)
        assert p.returncode == 1 and b"500" in p.stderr
    p = shoal(t.url)  # stopped: connection refused
    assert p.returncode == 1 and b"Traceback" not in p.stderr and t.url.encode() in p.stderr


def test_gzip_and_protobuf_targets() -> None:
    text = (EXPO / "prometheus-common-expfmt" / "text").read_bytes()
    with Target(text, TEXT, gzip=True) as t:
        code, out = run_main([t.url])
        assert code == 3 and "no help text" not in out  # the file's lint problems, read through gzip
        assert t.requests[-1].headers["accept-encoding"] == "gzip"
        mf = MetricFamily(name="jobs_total", help="x", type=COUNTER)
        mf.metric.add().counter.value = 2
        t.set(encode_delimited([mf]), CONTENT_TYPE)
        assert run_main([t.url]) == (0, "")
        t.set(encode_delimited([mf])[:-3], CONTENT_TYPE)
        code, out = run_main([t.url])
        assert code == 1 and out.startswith("protobuf: "), out


def test_a_text_body_ending_with_eof_is_still_text() -> None:
    # Prometheus' own text test data ends with "# EOF", a comment in text 0.0.4.
    body = b"# HELP a_total x\n# TYPE a_total counter\na_total 1\n# EOF\n"  # OM wants a_total_total
    assert check.detect(body, "") == ["openmetrics", "text"]
    code, out = run_main(["-"], body)
    assert code == 0
    assert out.startswith("note: not openmetrics (line 3: ") and out.endswith("checked as text\n")
    assert run_main(["--format", "openmetrics", "-"], body)[0] == 1
