from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from agent.commands.validate import load_and_report
from agent.syntax.diag import Diagnostic, Pos
from tests.conftest import CONFORMANCE, ROOT

GOOD = 'prometheus.scrape "x" {\n\ttargets    = [{"__address__" = "a:1"}]\n\tforward_to = [prometheus.remote_write.d.receiver]\n}\n'
BAD_EVAL = 'prometheus.scrape "x" {\n\ttargets = [{"a" = 1 + "b"}]\n\tjob     = string.to_upper(5 > "x")\n\tfine    = other.component.export + 1\n}\n'


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "validate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_a_valid_file_exits_zero(tmp_path: Path):
    (tmp_path / "a.alloy").write_text("// nothing configured yet\n")
    r = run(str(tmp_path / "a.alloy"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = io.StringIO()
    files, ok = load_and_report([tmp_path / "a.alloy"], out=out)
    assert ok and out.getvalue() == "" and len(files) == 1


def test_evaluation_errors_are_printed_with_line_and_caret(tmp_path: Path):
    f = tmp_path / "bad.alloy"
    f.write_text(BAD_EVAL)
    out = io.StringIO()
    _, ok = load_and_report([f], out=out)  # the language's own checks, without the runtime's hook
    assert not ok
    lines = out.getvalue().splitlines()
    assert lines[0] == f"{f}:2:24: cannot add number and string: expected number, got string"
    assert lines[1] == '\ttargets = [{"a" = 1 + "b"}]'
    assert lines[2] == "\t" + " " * 22 + "^"
    assert lines[3] == f"{f}:3:32: cannot compare number and string: expected number, got string"
    assert (
        lines[-1] == "2 errors found"
    )  # the attribute that references a component is left to the runtime


def test_syntax_errors_from_every_file_of_a_folder(tmp_path: Path):
    (tmp_path / "a.alloy").write_text("x {\n  a = \n}\n")
    (tmp_path / "b.alloy").write_text('y "l" {\n  b = "unterminated\n}\n')
    (tmp_path / "ignored.txt").write_text("not alloy {")
    r = run(str(tmp_path))
    assert r.returncode == 1
    assert f"{tmp_path / 'a.alloy'}:3:1:" in r.stderr
    assert f"{tmp_path / 'b.alloy'}:2:" in r.stderr
    assert "ignored.txt" not in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_paths_and_binary_garbage(tmp_path: Path):
    r = run(str(tmp_path / "nope.alloy"))
    assert r.returncode == 1
    assert "no such file or directory" in r.stderr
    g = tmp_path / "garbage.alloy"
    g.write_bytes(bytes(range(256)) * 4)
    r = run(str(g))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert str(g) in r.stderr


def test_the_conformance_examples_have_no_language_errors():
    out = io.StringIO()
    files, ok = load_and_report([CONFORMANCE / "alloy-syntax" / "examples"], out=out)
    assert ok, out.getvalue()
    assert len(files) == 5


def test_load_and_report_runs_the_check_hook(tmp_path: Path):
    (tmp_path / "a.alloy").write_text(GOOD)
    seen = []

    def check(files):
        seen.extend(files)
        block = files[0].body[0]
        return [Diagnostic(block.pos, 'unknown component "prometheus.scrape"')]

    out = io.StringIO()
    files, ok = load_and_report([tmp_path], check=check, out=out)
    assert not ok and seen == files and len(files) == 1
    assert (
        out.getvalue().splitlines()[0]
        == f'{tmp_path / "a.alloy"}:1:1: unknown component "prometheus.scrape"'
    )
    assert out.getvalue().splitlines()[1] == 'prometheus.scrape "x" {'

    out = io.StringIO()
    files, ok = load_and_report([tmp_path / "a.alloy"], check=lambda fs: [], out=out)
    assert ok and out.getvalue() == ""


def test_errors_without_a_position_print_just_the_file(tmp_path: Path):
    out = io.StringIO()
    _, ok = load_and_report([tmp_path], out=out)
    assert not ok
    assert out.getvalue().splitlines()[0] == f"{tmp_path}: folder has no .alloy files"
    assert Pos(str(tmp_path)).valid is False
