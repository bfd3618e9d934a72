"""The component graph of one configuration: which blocks are components, who references whom.

Everything here is static: it reads the syntax tree and the registry, never
evaluates an expression, and reports every problem it finds at once
(duplicate ids, unknown components, references to components or exports that
do not exist, cycles), each at its position in the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.runtime import refs as refmod
from agent.runtime.refs import is_builtin
from agent.runtime.registry import ComponentType, Registry
from agent.runtime.settings import SCHEMAS
from agent.syntax import ast
from agent.syntax.diag import Diagnostic, DiagnosticsError, Pos

# Top-level blocks that configure the agent itself rather than instantiate a component.
CONFIG_BLOCKS = SCHEMAS


@dataclass(slots=True)
class Reference:
    target: str  # component id
    path: list[str]  # export field path after the id (may be empty: the whole exports object)
    pos: Pos


@dataclass(slots=True)
class Decl:
    """One component block of the configuration."""

    id: str
    type: ComponentType
    block: ast.Block
    refs: list[Reference] = field(default_factory=list)
    # Where this block references something that does not exist (already reported).
    bad_refs: list[Pos] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.block.label or ""

    @property
    def deps(self) -> set[str]:
        return {r.target for r in self.refs}


@dataclass(slots=True)
class Graph:
    components: dict[str, Decl]  # in source order
    order: list[str]  # dependencies before dependants
    config_blocks: dict[str, ast.Block]
    # Decoded settings blocks (``logging``), filled in by Controller.check.
    settings: dict[str, Any] = field(default_factory=dict)

    def dependants(self, cid: str) -> list[str]:
        return [d.id for d in self.components.values() if cid in d.deps]

    def referenced_by(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {cid: [] for cid in self.components}
        for d in self.components.values():
            for dep in sorted(d.deps):
                out[dep].append(d.id)
        return out


def build(files: list[ast.File], registry: Registry) -> Graph:
    """Build the graph of all files together (a folder is one configuration), or raise every error."""
    graph, errors = build_partial(files, registry)
    if errors:
        raise DiagnosticsError(sort(errors))
    return graph


def sort(errors: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(errors, key=lambda d: (d.pos.file, d.pos.line, d.pos.col))


def build_partial(files: list[ast.File], registry: Registry) -> tuple[Graph, list[Diagnostic]]:
    """The graph of what is valid, and the errors of what is not, so checks can go on past them."""
    errors: list[Diagnostic] = []
    components: dict[str, Decl] = {}
    config_blocks: dict[str, ast.Block] = {}
    for f in files:
        for stmt in f.body:
            if isinstance(stmt, ast.Attribute):
                errors.append(
                    Diagnostic(stmt.pos, f"unexpected attribute {stmt.name.name!r} at the top level; "
                               "only blocks are allowed here")
                )
                continue
            name = stmt.full_name
            if name in CONFIG_BLOCKS:
                if stmt.label is not None:
                    errors.append(Diagnostic(stmt.label_pos, f"block {name!r} does not take a label"))
                elif name in config_blocks:
                    errors.append(Diagnostic(stmt.pos, f"{name!r} block already declared at {config_blocks[name].pos}"))
                else:
                    config_blocks[name] = stmt
                continue
            ctype = registry.get(name)
            if ctype is None:
                errors.append(Diagnostic(stmt.pos, f"unrecognized component name {name!r}"))
                continue
            if not stmt.label:
                errors.append(Diagnostic(stmt.pos, f"component {name!r} must have a label"))
                continue
            if stmt.id in components:
                errors.append(
                    Diagnostic(stmt.pos, f"component {stmt.id!r} already declared at {components[stmt.id].block.pos}")
                )
                continue
            components[stmt.id] = Decl(stmt.id, ctype, stmt)

    for decl in components.values():
        for parts, pos in refmod.block_references(decl.block):
            before = len(errors)
            ref = _resolve(parts, pos, components, registry, errors)
            if len(errors) > before:
                decl.bad_refs.append(pos)
            if ref is not None:
                if ref.target == decl.id:
                    errors.append(Diagnostic(pos, f"component {decl.id!r} cannot reference itself"))
                    decl.bad_refs.append(pos)
                    continue
                decl.refs.append(ref)
    for block in config_blocks.values():
        for parts, pos in refmod.block_references(block):
            if _resolve(parts, pos, components, registry, errors) is not None:
                errors.append(Diagnostic(pos, f"the {block.full_name!r} block cannot reference components"))

    order, cycles = _toposort(components)
    for cycle in cycles:
        first = components[cycle[0]]
        errors.append(Diagnostic(first.block.pos, "cycle detected: " + " -> ".join([*cycle, cycle[0]])))
    return Graph(components, order, config_blocks), errors


def _resolve(
    parts: list[str], pos: Pos, components: dict[str, Decl], registry: Registry, errors: list[Diagnostic]
) -> Reference | None:
    """Match the longest leading parts that name a component; the rest is the export path."""
    for k in range(len(parts), 0, -1):
        cid = ".".join(parts[:k])
        decl = components.get(cid)
        if decl is None:
            continue
        path = parts[k:]
        if path and path[0] not in decl.type.export_names():
            exported = ", ".join(sorted(decl.type.export_names())) or "nothing"
            errors.append(
                Diagnostic(pos, f"component {cid!r} does not export {path[0]!r} (it exports {exported})")
            )
            return None
        return Reference(cid, path, pos)
    if is_builtin(parts[0]):
        return None
    # Name the component the reference most likely meant: a registered type plus a label.
    for k in range(len(parts) - 1, 0, -1):
        if registry.get(".".join(parts[:k])) is not None:
            errors.append(
                Diagnostic(pos, f"component {'.'.join(parts[: k + 1])!r} does not exist or is out of scope")
            )
            return None
    errors.append(Diagnostic(pos, f"identifier {'.'.join(parts)!r} does not exist"))
    return None


def _toposort(components: dict[str, Decl]) -> tuple[list[str], list[list[str]]]:
    """Dependencies first, ties in source order; also every cycle (as a list of ids), found once each."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()

    def visit(cid: str, stack: list[str]) -> None:
        st = state.get(cid)
        if st == 2:
            return
        if st == 1:
            cycle = stack[stack.index(cid):]
            key = frozenset(cycle)
            if key not in seen_cycles:
                seen_cycles.add(key)
                cycles.append(cycle)
            return
        state[cid] = 1
        stack.append(cid)
        for ref in components[cid].refs:
            if ref.target in components:
                visit(ref.target, stack)
        stack.pop()
        state[cid] = 2
        order.append(cid)

    for cid in components:
        visit(cid, [])
    return order, cycles
