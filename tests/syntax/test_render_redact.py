"""A refused configuration is shown by the agent's log and HTTP API with string literals masked."""

from agent.syntax.diag import Diagnostic, Pos, render

SOURCE = (
    "a {\n"
    '  password = "hunter2" + 1 // a "quote in a comment\n'
    "  url = `multi\n"
    'line` x = "ab"\n'
    "}\n"
)


def shown(line: int, col: int) -> list[str]:
    return render(Diagnostic(Pos("f", line, col), "m"), SOURCE, redact=True).splitlines()


def test_literals_are_masked_and_the_caret_follows():
    head, text, caret = shown(2, 26)  # the "1" after the password literal
    assert head == "f:2:26: m"
    assert text == '  password = "***" + 1 // a "quote in a comment'
    assert text[caret.index("^")] == "1"


def test_a_column_inside_a_literal_points_at_its_quote():
    _, text, caret = shown(2, 17)
    assert "hunter2" not in text and text[caret.index("^")] == '"'


def test_a_raw_string_across_lines_keeps_line_numbers():
    _, text, caret = shown(4, 9)  # "=" after the raw string's last line
    assert text == '` x = "***"' and text[caret.index("^")] == "="
    _, text, _ = shown(5, 1)
    assert text == "}"


def test_without_redact_the_line_is_shown_as_written():
    text = render(Diagnostic(Pos("f", 2, 26), "m"), SOURCE).splitlines()[1]
    assert "hunter2" in text
