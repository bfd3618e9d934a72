"""The printer's canonical style, unit by unit, and the ``shoal fmt`` command."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main as cli_main
from agent.commands.fmt import run
from agent.syntax import ast, format_source
from agent.syntax.ast import BinOp, LitKind, UnOp
from agent.syntax.diag import DiagnosticsError
from agent.syntax.parser import parse_expression, parse_file
from agent.syntax.printer import format_expr, format_file
from tests.conftest import ROOT


def fmt(source: str) -> str:
    out = format_source(source)
    # every case below must also be a fixed point
    assert format_source(out) == out
    return out


def test_spacing_around_operators_and_equals() -> None:
    assert (
        fmt("a=1+2*3\nb=!x\nc=-1\nd=f(1,2)[0].x")
        == "a = 1 + 2 * 3\nb = !x\nc = -1\nd = f(1, 2)[0].x\n"
    )


def test_attribute_runs_align_until_a_blank_line() -> None:
    assert (
        fmt("a = 1\nlonger = 2\n\nx = 3\nyy = 4\n") == "a      = 1\nlonger = 2\n\nx  = 3\nyy = 4\n"
    )


def test_blank_lines_collapse_to_one_and_edges_are_trimmed() -> None:
    assert fmt("\n\n\na = 1\n\n\n\nb = 2\n\n\n") == "a = 1\n\nb = 2\n"


def test_blocks_are_indented_with_tabs_and_set_apart() -> None:
    src = 'a = 1\nouter "l" {\n  x = 1\n  inner {\n      y = 2\n  }\n}\nnext {}\n'
    assert fmt(src) == 'a = 1\n\nouter "l" {\n\tx = 1\n\n\tinner {\n\t\ty = 2\n\t}\n}\n\nnext { }\n'


def test_multi_line_statement_ends_an_alignment_run() -> None:
    src = "a = 1\nbbbb = [\n  1,\n]\nc = 2\ndddddd = 3\n"
    assert fmt(src) == "a    = 1\nbbbb = [\n\t1,\n]\nc      = 2\ndddddd = 3\n"


def test_objects_one_line_stay_one_line_and_multi_line_fields_align() -> None:
    assert fmt('x = { a = 1, "b c" = 2 }') == 'x = {a = 1, "b c" = 2}\n'
    src = 'x = {\n  a = 1,\n  "long key" = 2,\n}'
    assert fmt(src) == 'x = {\n\ta          = 1,\n\t"long key" = 2,\n}\n'


def test_arrays_keep_their_layout_and_get_a_trailing_comma() -> None:
    assert fmt("x = [1,2,3]") == "x = [1, 2, 3]\n"
    assert fmt("x = [\n1,\n2]") == "x = [\n\t1,\n\t2]\n"
    assert fmt("x = [\n1,\n2,\n]") == "x = [\n\t1,\n\t2,\n]\n"
    assert fmt("x = [1, 2,\n3,\n]") == "x = [1, 2,\n\t3,\n]\n"


def test_comments_stay_where_they_were() -> None:
    src = "// head\n\na = 1 // trailing\nbbb = 2 // aligned\n\nblk {\n  // inside\n  c = /* inline */ 3\n}\n// tail\n"
    assert fmt(src) == (
        "// head\n\na   = 1 // trailing\nbbb = 2 // aligned\n\n"
        "blk {\n\t// inside\n\tc = /* inline */ 3\n}\n// tail\n"
    )


def test_raw_strings_are_written_as_they_were() -> None:
    src = 'x = `line one\n\tindented\ttab  \nlast`\ny = "a\\tb"\n'
    out = fmt(src)
    assert "`line one\n\tindented\ttab  \nlast`" in out
    assert parse_file(out) == parse_file(src)


def test_quoted_object_keys_keep_their_text() -> None:
    # Alloy's key is the text between the quotes; it is written back as is.
    assert fmt('x = {"a\\"b" = 1, "k8s.io/x" = 2}') == 'x = {"a\\"b" = 1, "k8s.io/x" = 2}\n'
    f = parse_file('x = {`a"b` = 1}')
    out = format_file(f)
    assert out == 'x = {"a\\"b" = 1}\n'
    assert parse_file(out).body == parse_file('x = {"a\\"b" = 1}').body


def test_number_before_access_keeps_a_space() -> None:
    e = ast.AccessExpr(ast.Literal(LitKind.NUMBER, "1"), ast.Ident("x"))
    assert format_expr(e) == "1 .x"
    assert parse_expression("1 .x") == e


def test_format_expr_on_a_tree_without_positions() -> None:
    e = ast.BinaryExpr(
        BinOp.ADD,
        ast.UnaryExpr(UnOp.NEG, ast.Literal(LitKind.NUMBER, "1")),
        ast.CallExpr(
            ast.AccessExpr(ast.IdentExpr(ast.Ident("string")), ast.Ident("join")),
            [
                ast.ArrayExpr([ast.Literal(LitKind.STRING, '"a"')]),
                ast.ObjectExpr([ast.ObjectField("k", False, ast.Literal(LitKind.NULL, "null"))]),
            ],
        ),
    )
    assert format_expr(e) == '-1 + string.join(["a"], {k = null})'


def test_format_file_of_a_built_tree() -> None:
    f = ast.File(
        "x",
        [
            ast.Attribute(ast.Ident("a"), ast.Literal(LitKind.NUMBER, "1")),
            ast.Block(
                ["b", "c"],
                "lbl",
                [ast.Attribute(ast.Ident("d"), ast.Literal(LitKind.BOOL, "true"))],
            ),
        ],
    )
    assert format_file(f) == 'a = 1\n\nb.c "lbl" {\n\td = true\n}\n'


def test_empty_file_formats_to_nothing() -> None:
    assert format_source("") == ""
    assert format_source("\n\n") == ""


def test_format_source_raises_on_syntax_errors() -> None:
    with pytest.raises(DiagnosticsError, match="missing ','"):
        format_source("x = [1 2]")


# ---- shoal fmt -----------------------------------------------------------------


UGLY = 'a=1\nlonger_name="x"\nblk {\n}\n'
PRETTY = 'a           = 1\nlonger_name = "x"\n\nblk { }\n'


def call(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    paths = [a for a in args if not a.startswith("--")]
    code = run(paths, write="--write" in args, check="--check" in args, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_fmt_prints_one_file(tmp_path: Path) -> None:
    p = tmp_path / "c.alloy"
    p.write_text(UGLY)
    assert call(str(p)) == (0, PRETTY, "")
    assert p.read_text() == UGLY


def test_fmt_write_rewrites_in_place_and_keeps_mode(tmp_path: Path) -> None:
    p = tmp_path / "c.alloy"
    p.write_text(UGLY)
    p.chmod(0o640)
    assert call("--write", str(p)) == (0, "", "")
    assert p.read_text() == PRETTY
    assert p.stat().st_mode & 0o777 == 0o640
    assert [x.name for x in tmp_path.iterdir()] == ["c.alloy"]


def test_fmt_check_prints_a_diff_and_fails(tmp_path: Path) -> None:
    ugly = tmp_path / "ugly.alloy"
    pretty = tmp_path / "pretty.alloy"
    ugly.write_text(UGLY)
    pretty.write_text(PRETTY)
    code, out, err = call("--check", str(ugly), str(pretty))
    assert code == 1 and err == ""
    assert out.startswith(f"--- {ugly}.orig\n+++ {ugly}\n")
    assert "-a=1\n" in out and "+a           = 1\n" in out
    assert str(pretty) not in out
    assert call("--check", str(pretty)) == (0, "", "")
    assert ugly.read_text() == UGLY


def test_fmt_several_files_without_write_acts_as_check(tmp_path: Path) -> None:
    (tmp_path / "a.alloy").write_text(UGLY)
    (tmp_path / "b.alloy").write_text(PRETTY)
    (tmp_path / "ignored.txt").write_text("not alloy {")
    code, out, _ = call(str(tmp_path))
    assert code == 1
    assert "a.alloy" in out and "b.alloy" not in out


def test_fmt_syntax_errors_are_positioned_with_caret(tmp_path: Path) -> None:
    p = tmp_path / "bad.alloy"
    p.write_text('ok = 1\nx = [1 2]\ny = "a\\q"\n')
    code, out, err = call(str(p))
    assert code == 1 and out == ""
    assert err == (
        f"{p}:2:8: missing ',' in expression list\nx = [1 2]\n       ^\n"
        f'{p}:3:8: unknown escape sequence\ny = "a\\q"\n       ^\n'
    )


def test_fmt_missing_file(tmp_path: Path) -> None:
    code, out, err = call(str(tmp_path / "nope.alloy"))
    assert code == 1 and out == ""
    assert err == f"{tmp_path / 'nope.alloy'}: No such file or directory\n"


def test_fmt_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.alloy"
    p.write_text(UGLY)
    assert cli_main(["fmt", "--check", str(p)]) == 1
    assert "+blk { }" in capsys.readouterr().out
    assert cli_main(["fmt", "--write", str(p)]) == 0
    assert cli_main(["fmt", "--check", str(p)]) == 0


def test_fmt_stdin_with_bad_bytes_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "fmt", "-"],
        input=b'a = "\xff"\nb=2\n',
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert b"<stdin>:1:6: illegal UTF-8 encoding" in proc.stderr
    assert b"Traceback" not in proc.stderr

    good = subprocess.run(
        [sys.executable, "-m", "agent", "fmt", "-"],
        input=b"a=1\n",
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert (good.returncode, good.stdout) == (0, b"a = 1\n")
