"""The references a block's expressions make, and which names the language itself provides."""

from __future__ import annotations

from collections.abc import Iterator

from agent.syntax import ast, stdlib, vm
from agent.syntax.diag import Pos


def block_references(block: ast.Block) -> Iterator[tuple[list[str], Pos]]:
    for stmt in block.body:
        if isinstance(stmt, ast.Attribute):
            yield from vm.references(stmt.value)
        else:
            yield from block_references(stmt)


def is_builtin(name: str) -> bool:
    """Whether a leading identifier is the standard library's rather than a component's."""
    return name in stdlib.STDLIB
