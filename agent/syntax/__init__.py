"""The Alloy configuration language: scanner, parser, printer, evaluator.

The front half is re-exported here because almost every caller wants exactly
one of these: parse a file, or format one.
"""

from agent.syntax.parser import parse_expression, parse_file
from agent.syntax.printer import format_expr, format_file, format_source

__all__ = ["format_expr", "format_file", "format_source", "parse_expression", "parse_file"]
