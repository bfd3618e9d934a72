"""Builds the syntax tree of an Alloy file, reporting every error it can find.

The grammar and the error recovery follow Alloy's own parser, so a file gets
the same messages at the same places as ``alloy fmt`` would give:

    File        = Body
    Body        = [ Statement { TERMINATOR Statement } ]
    Statement   = Attribute | Block
    Attribute   = identifier "=" Expression
    Block       = BlockName "{" Body "}"
    BlockName   = identifier { "." identifier } [ string ]
    Expression  = OrExpr                       (|| && cmp + - * / % by precedence)
    PowExpr     = UnaryExpr [ "^" PowExpr ]    (right-associative)
    UnaryExpr   = PrimaryExpr { "." identifier | "[" Expression "]" | "(" [ List ] ")" }
                | ( "!" | "-" ) UnaryExpr
    PrimaryExpr = identifier | literal | "(" Expression ")" | "[" [ List ] "]"
                | "{" [ FieldList ] "}"

After an error the parser skips to the end of the statement and carries on;
at most one parser error is reported per line, as Alloy does, so a single
mistake does not produce a cascade.
"""

from __future__ import annotations

from typing import NoReturn

from agent.syntax import ast
from agent.syntax.diag import NO_POS, Diagnostic, DiagnosticsError, Pos
from agent.syntax.scanner import LineIndex, Tokens, decode, is_valid_identifier, scan
from agent.syntax.token import (
    BINARY_OPS,
    BINARY_PRECEDENCE,
    LITERAL_KINDS,
    NAMES,
    UNARY_OPS,
    Tok,
    go_quote,
)

_STATEMENT_END = frozenset({Tok.TERMINATOR, Tok.RPAREN, Tok.RCURLY, Tok.RBRACK, Tok.COMMA})


def parse_file(source: str | bytes, filename: str = "") -> ast.File:
    """Parses a whole file; raises DiagnosticsError with every error found."""
    p = _Parser(decode(source), filename)
    try:
        body = p.parse_body(Tok.EOF)
    except RecursionError:
        p.too_deep()
    p.raise_errors()
    return ast.File(filename, body, p.comments)


def parse_expression(source: str, filename: str = "") -> ast.Expr:
    """Parses a single expression, which must make up the whole of ``source``."""
    p = _Parser(decode(source), filename)
    try:
        expr = p.parse_expression()
    except RecursionError:
        p.too_deep()
    p.expect(Tok.TERMINATOR)
    if p.tok is not Tok.EOF:
        p.error(f"expected EOF, got {NAMES[p.tok]}")
    p.raise_errors()
    return expr


class _BlockName:
    __slots__ = ("parts", "label", "start", "label_pos")

    def __init__(self, parts: list[str], start: Pos) -> None:
        self.parts = parts
        self.label: str | None = None
        self.start = start
        self.label_pos: Pos | None = None


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.lines = LineIndex(text, filename)
        toks: Tokens = scan(text)
        self.kinds = toks.kinds
        self.offsets = toks.offsets
        self.lits = toks.lits
        self.diags: list[Diagnostic] = [Diagnostic(self.lines.pos(o), m) for o, m in toks.errors]
        self.comments: list[list[ast.Comment]] = []
        self.last_error_line = 0
        self.i = -1
        self.tok = Tok.EOF
        self.off = 0
        self.lit = ""
        self.next()

    # ---- token stream -----------------------------------------------------

    def next0(self) -> None:
        i = self.i + 1
        if i < len(self.kinds):
            self.i = i
        self.tok = self.kinds[self.i]
        self.off = self.offsets[self.i]
        self.lit = self.lits[self.i]

    def next(self) -> None:
        self.next0()
        while self.tok is Tok.COMMENT:
            self._comment_group()

    def _comment_group(self) -> None:
        """Collects adjacent comments (no blank line between them) into one group."""
        group: list[ast.Comment] = []
        line = self.lines.line
        end_line = line(self.off)
        while self.tok is Tok.COMMENT and line(self.off) <= end_line + 1:
            end_line = line(self.off)
            if self.lit[1] == "*":
                end_line += self.lit.count("\n")
            group.append(ast.Comment(self.lit, self.lines.pos(self.off)))
            self.next0()
        self.comments.append(group)

    @property
    def pos(self) -> Pos:
        return self.lines.pos(self.off)

    def error(self, message: str) -> None:
        """A parser error at the current token; a second one on the same line is dropped."""
        pos = self.pos
        if pos.line == self.last_error_line:
            return
        self.last_error_line = pos.line
        self.diags.append(Diagnostic(pos, message))

    def expect(self, tok: Tok) -> tuple[Pos, Tok, str]:
        got = (self.pos, self.tok, self.lit)
        if self.tok is not tok:
            self.error(f"expected {NAMES[tok]}, got {NAMES[self.tok]}")
        self.next()
        return got

    def advance(self, to: Tok) -> None:
        while self.tok is not Tok.EOF and self.tok is not to:
            self.next()

    def advance_any(self, to: frozenset[Tok]) -> None:
        while self.tok is not Tok.EOF and self.tok not in to:
            self.next()

    def too_deep(self) -> NoReturn:
        """Python's stack ran out (hundreds of nested brackets): an error, not a crash."""
        self.diags.append(Diagnostic(self.pos, "expression is nested too deeply"))
        self.raise_errors()
        raise AssertionError("unreachable")

    def raise_errors(self) -> None:
        if self.diags:
            self.diags.sort(key=lambda d: d.pos.offset)
            raise DiagnosticsError(self.diags)

    # ---- statements -------------------------------------------------------

    def parse_body(self, until: Tok) -> list[ast.Stmt]:
        body: list[ast.Stmt] = []
        while self.tok is not until and self.tok is not Tok.EOF:
            stmt = self.parse_statement()
            if stmt is not None:
                body.append(stmt)
            if self.tok is until:
                break
            if self.tok is not Tok.TERMINATOR:
                self.error(f"expected TERMINATOR, got {NAMES[self.tok]}")
                self.consume_statement()
            self.next()
        return body

    def consume_statement(self) -> None:
        """Skips to the terminator that ends the current statement, minding brackets."""
        depth = {Tok.LCURLY: 0, Tok.LBRACK: 0, Tok.LPAREN: 0}
        closers = {Tok.RCURLY: Tok.LCURLY, Tok.RBRACK: Tok.LBRACK, Tok.RPAREN: Tok.LPAREN}
        while self.tok is not Tok.EOF:
            if self.tok in depth:
                depth[self.tok] += 1
            elif self.tok in closers:
                depth[closers[self.tok]] -= 1
            elif self.tok is Tok.TERMINATOR and all(v <= 0 for v in depth.values()):
                return
            self.next()

    def parse_statement(self) -> ast.Stmt | None:
        name = self.parse_block_name()
        if name is None:
            self.advance(Tok.IDENT)
            return None

        if self.tok is Tok.ASSIGN:
            self.next()
            if len(name.parts) != 1:
                self.diags.append(
                    Diagnostic(
                        name.start,
                        'attribute names may only consist of a single identifier with no "."',
                    )
                )
            elif name.label_pos is not None:
                self.diags.append(Diagnostic(name.label_pos, "attribute names may not have labels"))
            value = self.parse_expression()
            return ast.Attribute(ast.Ident(name.parts[0], name.start), value, name.start)

        if self.tok is Tok.LCURLY:
            lcurly, _, _ = self.expect(Tok.LCURLY)
            body = self.parse_body(Tok.RCURLY)
            rcurly, _, _ = self.expect(Tok.RCURLY)
            return ast.Block(
                name.parts,
                name.label,
                body,
                name.start,
                name.label_pos or NO_POS,
                lcurly,
                rcurly,
            )

        if len(name.parts) == 1 and name.label is None:
            self.error(f"expected attribute assignment or block body, got {NAMES[self.tok]}")
        else:
            self.error(f"expected block body, got {NAMES[self.tok]}")
        self.advance(Tok.IDENT)
        return None

    def parse_block_name(self) -> _BlockName | None:
        if self.tok is not Tok.IDENT:
            self.error(f"expected identifier, got {NAMES[self.tok]}")
            return None
        name = _BlockName([self.lit], self.pos)
        self.next()
        while self.tok is Tok.DOT:
            self.next()
            if self.tok is not Tok.IDENT:
                self.error(f"expected identifier, got {NAMES[self.tok]}")
            name.parts.append(self.lit)
            self.next()

        if self.tok is not Tok.ASSIGN and self.tok is not Tok.LCURLY:
            if self.tok is Tok.STRING:
                lit = self.lit
                if lit[0] != '"':
                    self.error(
                        "expected block label to be a double quoted string, "
                        f"but got {go_quote(lit)}"
                    )
                if len(lit) > 2:
                    label = lit[1:-1]
                    name.label = label
                    if not is_valid_identifier(label):
                        self.error(
                            "expected block label to be a valid identifier, "
                            f"but got {go_quote(label)}"
                        )
                name.label_pos = self.pos
            else:
                self.error(f"expected block label, got {NAMES[self.tok]}")
            self.next()
        return name

    # ---- expressions ------------------------------------------------------

    def parse_expression(self) -> ast.Expr:
        return self.parse_binary(1)

    def parse_binary(self, min_prec: int) -> ast.Expr:
        lhs = self.parse_pow()
        while True:
            prec = BINARY_PRECEDENCE.get(self.tok, 0)
            if prec < min_prec:
                return lhs
            op = BINARY_OPS[self.tok]
            pos = self.pos
            self.next()
            rhs = self.parse_binary(prec + 1)
            lhs = ast.BinaryExpr(op, lhs, rhs, pos)

    def parse_pow(self) -> ast.Expr:
        lhs = self.parse_unary()
        if self.tok is Tok.POW:
            pos = self.pos
            self.next()
            return ast.BinaryExpr(ast.BinOp.POW, lhs, self.parse_pow(), pos)
        return lhs

    def parse_unary(self) -> ast.Expr:
        op = UNARY_OPS.get(self.tok)
        if op is not None:
            pos = self.pos
            self.next()
            return ast.UnaryExpr(op, self.parse_unary(), pos)

        primary = self.parse_primary()
        while True:
            tok = self.tok
            if tok is Tok.DOT:
                dot = self.pos
                self.next()
                name_pos, _, name = self.expect(Tok.IDENT)
                primary = ast.AccessExpr(primary, ast.Ident(name, name_pos), dot)
            elif tok is Tok.LBRACK:
                lbrack, _, _ = self.expect(Tok.LBRACK)
                index = self.parse_expression()
                rbrack, _, _ = self.expect(Tok.RBRACK)
                primary = ast.IndexExpr(primary, index, lbrack, rbrack)
            elif tok is Tok.LPAREN:
                lparen, _, _ = self.expect(Tok.LPAREN)
                args = self.parse_list(Tok.RPAREN) if self.tok is not Tok.RPAREN else []
                rparen, _, _ = self.expect(Tok.RPAREN)
                primary = ast.CallExpr(primary, args, lparen, rparen)
            elif tok is Tok.STRING or tok is Tok.LCURLY:
                # Looks like a block written where a value belongs (`x = a.b "l" { ... }`):
                # parse it as one to say so, or give up on the statement.
                if tok is Tok.STRING:
                    self.next()
                if self.expect(Tok.LCURLY)[1] is not Tok.LCURLY:
                    self.consume_statement()
                    return primary
                self.parse_body(Tok.RCURLY)
                if self.expect(Tok.RCURLY)[1] is not Tok.RCURLY:
                    self.consume_statement()
                    return primary
                self.diags.append(
                    Diagnostic(ast.start_pos(primary), "cannot use a block as an expression")
                )
            else:
                return primary

    def parse_primary(self) -> ast.Expr:
        tok = self.tok
        if tok is Tok.IDENT:
            pos = self.pos
            expr: ast.Expr = ast.IdentExpr(ast.Ident(self.lit, pos), pos)
            self.next()
            return expr
        kind = LITERAL_KINDS.get(tok)
        if kind is not None:
            expr = ast.Literal(kind, self.lit, self.pos)
            self.next()
            return expr
        if tok is Tok.LPAREN:
            lparen, _, _ = self.expect(Tok.LPAREN)
            inner = self.parse_expression()
            rparen, _, _ = self.expect(Tok.RPAREN)
            return ast.ParenExpr(inner, lparen, rparen)
        if tok is Tok.LBRACK:
            lbrack, _, _ = self.expect(Tok.LBRACK)
            elements = self.parse_list(Tok.RBRACK) if self.tok is not Tok.RBRACK else []
            rbrack, _, _ = self.expect(Tok.RBRACK)
            return ast.ArrayExpr(elements, lbrack, rbrack)
        if tok is Tok.LCURLY:
            lcurly, _, _ = self.expect(Tok.LCURLY)
            fields = self.parse_fields()
            rcurly, _, _ = self.expect(Tok.RCURLY)
            return ast.ObjectExpr(fields, lcurly, rcurly)

        self.error(f"expected expression, got {NAMES[tok]}")
        expr = ast.Literal(ast.LitKind.NULL, "null", self.pos)
        self.advance_any(_STATEMENT_END)
        return expr

    def parse_list(self, until: Tok) -> list[ast.Expr]:
        exprs: list[ast.Expr] = []
        while self.tok is not until and self.tok is not Tok.EOF:
            exprs.append(self.parse_expression())
            if self.tok is until:
                break
            if self.tok is not Tok.COMMA:
                self.error("missing ',' in expression list")
            self.next()
        return exprs

    def parse_fields(self) -> list[ast.ObjectField]:
        fields: list[ast.ObjectField] = []
        while self.tok is not Tok.RCURLY and self.tok is not Tok.EOF:
            fields.append(self.parse_field())
            if self.tok is Tok.RCURLY:
                break
            if self.tok is not Tok.COMMA:
                self.error("missing ',' in field list")
            self.next()
        return fields

    def parse_field(self) -> ast.ObjectField:
        pos = self.pos
        name = ""
        quoted = False
        if self.tok is Tok.STRING or self.tok is Tok.IDENT:
            name = self.lit
            if self.tok is Tok.STRING and len(name) > 2:
                # Like Alloy, the key is the text between the quotes, escapes and all.
                name = name[1:-1]
                quoted = True
            self.next()
        else:
            self.error(f"expected field name (string or identifier), got {NAMES[self.tok]}")
            self.advance(Tok.ASSIGN)
        self.expect(Tok.ASSIGN)
        value = self.parse_expression()
        return ast.ObjectField(name, quoted, value, pos)
