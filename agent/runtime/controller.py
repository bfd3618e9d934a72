"""The running graph: builds components in dependency order, re-evaluates, reloads, stops.

One lock serialises everything that changes the graph (applying a
configuration, re-evaluating dependants after an export changed), so a
component never sees two ``update`` calls at once and a reload never
interleaves with a re-evaluation.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from agent.runtime import graph as graphmod
from agent.runtime import values
from agent.runtime.component import Options
from agent.runtime.component_metrics import ComponentRegistries
from agent.runtime.graph import CONFIG_BLOCKS, Decl, Graph
from agent.runtime.health import Health, State, worst
from agent.runtime.metrics import evaluation_histogram
from agent.runtime.registry import DEFAULT, Registry
from agent.runtime.services import Services
from agent.syntax import ast, decode, vm
from agent.syntax.diag import Diagnostic, DiagnosticsError, Pos

STOP_TIMEOUT = 10.0


@dataclass(eq=False)
class Node:
    """A component of the running graph, with what the runtime knows about it."""

    decl: Decl
    component: Any = None
    args: Any = None
    exports: Any = None
    export_value: Any = None
    task: asyncio.Task | None = None
    eval_health: Health = field(default_factory=lambda: Health.unknown("not evaluated yet"))
    run_health: Health = field(default_factory=lambda: Health.unknown("not started"))
    stopped: bool = False

    @property
    def id(self) -> str:
        return self.decl.id

    @property
    def name(self) -> str:
        return self.decl.type.name

    def health(self) -> Health:
        reported = None
        if self.component is not None:
            try:
                reported = self.component.current_health()
            except Exception as exc:  # noqa: BLE001 - a broken health check is itself unhealthy
                reported = Health.unhealthy(f"health check failed: {exc}")
        return worst(self.eval_health, self.run_health, reported)

    def debug_info(self) -> Any:
        if self.component is None:
            return None
        try:
            return self.component.debug_info()
        except Exception as exc:  # noqa: BLE001
            return {"error": str(exc)}


def decode_args(decl: Decl, variables: dict[str, Any]) -> Any:
    """A component's arguments from its block, evaluated against the other components' exports."""
    schema = decl.type.arguments
    if schema is None:
        if decl.block.body:
            stmt = decl.block.body[0]
            raise DiagnosticsError.at(stmt.pos, f"component {decl.type.name!r} does not take arguments or blocks")
        return None
    return decode.decode_body(decl.block.body, schema, vm.Scope(variables, None), decl.block.pos)


def decode_settings(block: ast.Block) -> Any:
    """A top-level settings block (``logging``) into its schema."""
    return decode.decode_body(block.body, CONFIG_BLOCKS[block.full_name], vm.Scope({}, None), block.pos)


def _attribute_ranges(decl: Decl, ref_pos: list[Pos]) -> list[tuple[Pos, Pos]]:
    """Source ranges of the attributes of ``decl`` that hold any of the references at ``ref_pos``."""
    out: list[tuple[Pos, Pos]] = []
    if not ref_pos:
        return out

    def walk(body: list[ast.Stmt], end: Pos) -> None:
        for i, stmt in enumerate(body):
            stop = body[i + 1].pos if i + 1 < len(body) else end
            if isinstance(stmt, ast.Block):
                walk(stmt.body, stmt.rcurly)
            elif any(_within(p, [(stmt.pos, stop)]) for p in ref_pos):
                out.append((stmt.pos, stop))

    walk(decl.block.body, decl.block.rcurly)
    return out


def _within(pos: Pos, ranges: list[tuple[Pos, Pos]]) -> bool:
    return any((a.line, a.col) <= (pos.line, pos.col) < (b.line, b.col) for a, b in ranges)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b.c": v}`` to ``{"a": {"b": {"c": v}}}``: how ids are reached from expressions."""
    out: dict[str, Any] = {}
    for cid, value in flat.items():
        parts = cid.split(".")
        cur = out
        for p in parts[:-1]:
            nxt = cur.get(p)
            if not isinstance(nxt, dict):
                nxt = cur[p] = {}
            cur = nxt
        cur[parts[-1]] = value
    return out


class Controller:
    def __init__(
        self,
        *,
        storage_path: Path,
        registry: Registry = DEFAULT,
        services: Services | None = None,
        metrics: ComponentRegistries | None = None,
        logger: Any = None,
    ) -> None:
        self.registry = registry
        self.storage_path = Path(storage_path)
        self.services = services if services is not None else Services()
        # Each component's metrics registry; the composition root registers this
        # collector in the process' registry so /metrics shows them.
        self.metrics = metrics if metrics is not None else ComponentRegistries()
        self.evaluation_seconds = evaluation_histogram()
        self.log = logger or structlog.get_logger("runtime")
        self.graph = Graph({}, [], {})
        self.settings: dict[str, Any] = {}
        self._nodes: dict[str, Node] = {}
        self._lock = asyncio.Lock()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self.evaluating = False
        self.loads_ok = 0
        self.loads_failed = 0
        self.last_load_ok = True

    # ---- introspection -------------------------------------------------

    def nodes(self) -> list[Node]:
        return [self._nodes[cid] for cid in self.graph.order if cid in self._nodes]

    def node(self, cid: str) -> Node | None:
        return self._nodes.get(cid)

    # ---- checking -----------------------------------------------------

    def check(self, files: list[ast.File], graph: Graph | None = None) -> Graph:
        """Everything that can be known without starting anything, or every error at once.

        Components already running lend their real exports; new ones a placeholder
        of their exports type, so arguments are type-checked either way.
        """
        errors: list[Diagnostic] = []
        if graph is None:
            graph, errors = graphmod.build_partial(files, self.registry)
        settings: dict[str, Any] = {}
        for name, block in graph.config_blocks.items():
            try:
                settings[name] = decode_settings(block)
            except DiagnosticsError as exc:
                errors.extend(exc.diagnostics)
        flat: dict[str, Any] = {}
        placeholders: set[str] = set()
        for cid in graph.order:
            decl = graph.components[cid]
            node = self._nodes.get(cid)
            if node is not None and node.name == decl.type.name and node.export_value is not None:
                flat[cid] = node.export_value
            else:
                flat[cid] = values.placeholder(decl.type.exports)
                placeholders.add(cid)
        variables = _nest(flat)
        for cid in graph.order:
            decl = graph.components[cid]
            try:
                decode_args(decl, variables)
            except DiagnosticsError as exc:
                # A value computed from a component that is not running yet is unknown
                # here (its errors surface when the graph is applied), and one computed
                # from a bad reference was reported as such already.
                unknown = _attribute_ranges(
                    decl, [r.pos for r in decl.refs if r.target in placeholders] + decl.bad_refs
                )
                errors.extend(d for d in exc.diagnostics if not _within(d.pos, unknown))
        if errors:
            raise DiagnosticsError(graphmod.sort(errors))
        graph.settings = settings
        return graph

    # ---- applying -----------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="runtime-evaluator")

    async def apply(self, graph: Graph) -> None:
        """Make the running graph match ``graph``: update in place, start new, stop removed.

        ``graph`` must have passed :meth:`check`. Errors raised while building or
        updating a component leave that component unhealthy and are raised
        together at the end; the rest of the graph is applied regardless.
        """
        await self.start()
        async with self._lock:
            self.evaluating = True
            try:
                errors = await self._apply_locked(graph)
            finally:
                self.evaluating = False
        self._kick()
        if errors:
            raise DiagnosticsError(errors)

    async def load(self, files: list[ast.File]) -> Graph:
        """Check a whole configuration, then apply it; a configuration that fails the check changes nothing."""
        try:
            graph = self.check(files)
            await self.apply(graph)
        except DiagnosticsError:
            self.record_load(False)
            raise
        self.record_load(True)
        return graph

    def record_load(self, ok: bool) -> None:
        """Count a configuration load for the ``alloy_config_*`` metrics."""
        self.last_load_ok = ok
        if ok:
            self.loads_ok += 1
        else:
            self.loads_failed += 1

    async def _apply_locked(self, graph: Graph) -> list[Diagnostic]:
        old = self.graph
        self.settings = graph.settings
        for cid in reversed(old.order):
            node = self._nodes.get(cid)
            new = graph.components.get(cid)
            if node is not None and (new is None or new.type.name != node.name):
                await self._stop_node(node)
        self.graph = graph
        self._dirty &= set(graph.components)
        errors: list[Diagnostic] = []
        for cid in graph.order:
            decl = graph.components[cid]
            node = self._nodes.get(cid)
            if node is None:
                node = self._nodes[cid] = Node(decl)
            node.decl = decl
            errors.extend(await self._evaluate(node))
        return errors

    def queue_size(self) -> int:
        return len(self._dirty)

    async def _evaluate(self, node: Node) -> list[Diagnostic]:
        """Decode the node's arguments now; build it, or update it if they changed."""
        t0 = time.monotonic()
        try:
            return await self._evaluate_timed(node)
        finally:
            self.evaluation_seconds.observe(time.monotonic() - t0)

    async def _evaluate_timed(self, node: Node) -> list[Diagnostic]:
        try:
            args = decode_args(node.decl, self._variables())
        except DiagnosticsError as exc:
            node.eval_health = Health.unhealthy("evaluation failed: " + "; ".join(d.message for d in exc.diagnostics))
            return exc.diagnostics
        if node.component is None:
            try:
                node.component = node.decl.type.factory(self._options(node), args)
            except Exception as exc:  # noqa: BLE001 - reported on the node and to the caller
                node.eval_health = Health.unhealthy(f"building component failed: {exc}")
                self.metrics.remove(node.id)  # a retry builds afresh, into an empty registry
                self.log.error("failed to build component", component_id=node.id, err=str(exc))
                return [Diagnostic(node.decl.block.pos, f"building component {node.id!r} failed: {exc}")]
            node.args = args
            node.eval_health = Health.healthy("started component")
            self._start_task(node)
            return []
        if args == node.args:
            return []
        try:
            await node.component.update(args)
        except Exception as exc:  # noqa: BLE001
            node.eval_health = Health.unhealthy(f"updating component failed: {exc}")
            self.log.error("failed to update component", component_id=node.id, err=str(exc))
            return [Diagnostic(node.decl.block.pos, f"updating component {node.id!r} failed: {exc}")]
        node.args = args
        node.eval_health = Health.healthy("updated component")
        return []

    def _variables(self) -> dict[str, Any]:
        flat = {}
        for cid, decl in self.graph.components.items():
            node = self._nodes.get(cid)
            if node is not None and node.export_value is not None:
                flat[cid] = node.export_value
            else:
                flat[cid] = values.placeholder(decl.type.exports)
        return _nest(flat)

    def _options(self, node: Node) -> Options:
        return Options(
            id=node.id,
            name=node.name,
            data_path=self.storage_path / node.id,
            on_state_change=lambda exports, node=node: self._on_exports(node, exports),
            logger=structlog.get_logger("component").bind(component_path="/", component_id=node.id),
            registry=self.metrics.for_component(node.id),
            services=self.services,
        )

    def _start_task(self, node: Node) -> None:
        node.run_health = Health.healthy("started")
        node.task = asyncio.create_task(node.component.run(), name=f"component {node.id}")
        node.task.add_done_callback(lambda t, node=node: self._on_exit(node, t))

    def _on_exit(self, node: Node, task: asyncio.Task) -> None:
        if task.cancelled() or node.stopped:
            return
        exc = task.exception()
        if exc is not None:
            node.run_health = Health(State.EXITED, f"run exited with error: {exc}")
            self.log.error("component exited with error", component_id=node.id, err=str(exc))
        else:
            node.run_health = Health(State.EXITED, "run exited")

    # ---- exports ------------------------------------------------------

    def _on_exports(self, node: Node, exports: Any) -> None:
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self._on_exports_loop, node, exports)
            return
        self._on_exports_loop(node, exports)

    def _on_exports_loop(self, node: Node, exports: Any) -> None:
        if node.stopped:
            return
        value = values.to_value(exports)
        node.exports = exports
        if value == node.export_value:
            return
        node.export_value = value
        for dep in self.graph.dependants(node.id):
            self._dirty.add(dep)
        self._kick()

    def _kick(self) -> None:
        if self._dirty:
            self._idle.clear()
            self._wake.set()

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                self.evaluating = True
                try:
                    while self._dirty:
                        cid = next(c for c in self.graph.order if c in self._dirty)
                        self._dirty.discard(cid)
                        node = self._nodes.get(cid)
                        if node is not None and not node.stopped:
                            for d in await self._evaluate(node):
                                self.log.error("re-evaluation failed", component_id=cid, err=str(d))
                finally:
                    self.evaluating = False
            if not self._dirty:
                self._idle.set()

    async def settle(self) -> None:
        """Wait until every pending re-evaluation has run (tests and reload callers use this)."""
        while True:
            await self._idle.wait()
            async with self._lock:
                if not self._dirty:
                    return

    # ---- stopping -----------------------------------------------------

    async def _stop_node(self, node: Node) -> None:
        node.stopped = True
        self._nodes.pop(node.id, None)
        self._dirty.discard(node.id)
        task = node.task
        if task is not None and not task.done():
            task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
            except asyncio.CancelledError:
                if not task.done():
                    raise
            except TimeoutError:
                self.log.error("component did not stop in time", component_id=node.id)
            except Exception as exc:  # noqa: BLE001
                self.log.error("component failed while stopping", component_id=node.id, err=str(exc))
        node.component = None
        self.metrics.remove(node.id)

    async def stop(self) -> None:
        """Stop every component, dependants first: scrapers stop before the WAL they write to closes."""
        async with self._lock:
            for cid in reversed(self.graph.order):
                node = self._nodes.get(cid)
                if node is not None:
                    await self._stop_node(node)
            self.graph = Graph({}, [], {})
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

