"""The running graph: evaluation, re-evaluation of dependants, health, reload, stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.runtime.controller import Controller
from agent.runtime.health import State
from agent.syntax.diag import DiagnosticsError
from agent.syntax.parser import parse_file
from tests.runtime.components import EVENTS, make_registry


def files(src: str) -> list:
    return [parse_file(src, "main.alloy")]


def run(coro):  # noqa: ANN001
    return asyncio.run(asyncio.wait_for(coro, 30))


def new_controller(tmp_path: Path) -> Controller:
    return Controller(storage_path=tmp_path, registry=make_registry())


CHAIN = """
test.source "a" { value = 1 }
test.pass "b" { input = test.source.a.value + 1 }
test.pass "c" { input = test.pass.b.value * 10 }
"""


def test_components_are_built_in_order_with_each_others_exports(tmp_path):
    async def go():
        c = new_controller(tmp_path)
        await c.load(files(CHAIN))
        await c.settle()
        assert [n.id for n in c.nodes()] == ["test.source.a", "test.pass.b", "test.pass.c"]
        assert c.node("test.pass.c").exports.value == 20
        assert [e for e in EVENTS if e[0] == "build"] == [
            ("build", "test.source.a"), ("build", "test.pass.b"), ("build", "test.pass.c")
        ]
        # Everything was evaluated with final values at build time: no update needed.
        assert c.node("test.pass.b").component.updates == 0
        assert all(n.health().state is State.HEALTHY for n in c.nodes())
        assert c.node("test.pass.b").component.opts.data_path == tmp_path / "test.pass.b"
        await c.stop()

    run(go())


def test_export_change_from_a_task_reevaluates_dependants_transitively(tmp_path):
    async def go():
        c = new_controller(tmp_path)
        await c.load(files(CHAIN + 'test.pass "d" { input = 5 }\n'))
        await c.settle()
        src = c.node("test.source.a").component
        await src.bumps.put(2)
        for _ in range(100):
            await asyncio.sleep(0.01)
            await c.settle()
            if c.node("test.pass.c").exports.value == 30:
                break
        assert c.node("test.pass.b").exports.value == 3
        assert c.node("test.pass.c").exports.value == 30
        assert c.node("test.pass.b").component.updates == 1
        assert c.node("test.pass.c").component.updates == 1
        # A component that does not depend on the change is left alone.
        assert c.node("test.pass.d").component.updates == 0
        # The same value again changes nothing downstream.
        await src.bumps.put(2)
        await asyncio.sleep(0.05)
        await c.settle()
        assert c.node("test.pass.b").component.updates == 1
        await c.stop()

    run(go())


def test_reload_updates_in_place_starts_new_and_stops_removed(tmp_path):
    async def go():
        c = new_controller(tmp_path)
        await c.load(files(CHAIN + 'test.pass "gone" { input = 1 }\ntest.num "same" { count = 1 }\n'))
        await c.settle()
        before = {n.id: n.component for n in c.nodes()}
        EVENTS.clear()
        await c.load(
            files(
                """
test.source "a" { value = 7 }
test.pass "b" { input = test.source.a.value + 1 }
test.pass "c" { input = test.pass.b.value * 10 }
test.num "same" { count = 1 }
test.pass "new" { input = test.pass.c.value }
"""
            )
        )
        await c.settle()
        after = {n.id: n.component for n in c.nodes()}
        for cid in ("test.source.a", "test.pass.b", "test.pass.c", "test.num.same"):
            assert after[cid] is before[cid], cid
        assert "test.pass.gone" not in after
        assert ("stop", "test.pass.gone") in EVENTS
        assert ("build", "test.pass.new") in EVENTS
        assert not any(e[0] == "stop" and e[1] != "test.pass.gone" for e in EVENTS)
        assert c.node("test.pass.new").exports.value == 80
        assert after["test.pass.b"].updates == 1
        await c.stop()

    run(go())


def test_broken_config_is_refused_and_the_running_graph_kept(tmp_path):
    async def go():
        c = new_controller(tmp_path)
        await c.load(files(CHAIN))
        await c.settle()
        before = {n.id: n.component for n in c.nodes()}
        broken = CHAIN.replace("value + 1", "value + \"x\"") + 'test.num "n" { count = -1 }\n'
        with pytest.raises(DiagnosticsError) as exc:
            await c.load(files(broken))
        msgs = [str(d) for d in exc.value.diagnostics]
        assert any(m.startswith("main.alloy:3:") for m in msgs), msgs
        assert "main.alloy:5:1: count must not be negative" in msgs
        assert {n.id: n.component for n in c.nodes()} == before
        assert c.node("test.pass.c").exports.value == 20
        assert not c.last_load_ok and c.loads_failed == 1
        assert "test.num.n" not in {n.id for n in c.nodes()}
        await c.stop()

    run(go())


def test_argument_errors_are_positioned(tmp_path):
    c = new_controller(tmp_path)
    with pytest.raises(DiagnosticsError) as exc:
        c.check(files('test.num "a" {\n  count = "many"\n  colour = 1\n  item { }\n}\ntest.pass "p" { }\n'))
    msgs = [str(d) for d in exc.value.diagnostics]
    assert any(m.startswith("main.alloy:2:11:") for m in msgs), msgs
    assert 'main.alloy:3:3: unrecognized attribute name "colour"' in msgs
    assert 'main.alloy:4:3: missing required attribute "n"' in msgs
    assert 'main.alloy:6:1: missing required attribute "input"' in msgs


def test_health_of_crashed_and_self_reported_components(tmp_path):
    async def go():
        c = new_controller(tmp_path)
        await c.load(files('test.crash "x" { }\ntest.sick "y" { message = "disk full" }\n'))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if c.node("test.crash.x").health().state is State.EXITED:
                break
        h = c.node("test.crash.x").health()
        assert h.state is State.EXITED and "boom" in h.message
        h = c.node("test.sick.y").health()
        assert (h.state, h.message) == (State.UNHEALTHY, "disk full")
        await c.stop()

    run(go())


def test_stop_stops_dependants_first(tmp_path):
    async def go():
        c = new_controller(tmp_path)
        await c.load(files(CHAIN))
        await c.settle()
        EVENTS.clear()
        await c.stop()
        assert EVENTS == [("stop", "test.pass.c"), ("stop", "test.pass.b"), ("stop", "test.source.a")]
        assert c.nodes() == []

    run(go())


def test_logging_block_is_decoded_into_settings(tmp_path):
    async def go():
        c = new_controller(tmp_path)
        await c.load(files('logging {\n  level = "debug"\n  format = "json"\n}\n'))
        assert (c.settings["logging"].level, c.settings["logging"].format) == ("debug", "json")
        with pytest.raises(DiagnosticsError) as exc:
            c.check(files('logging {\n  level = "loud"\n}\n'))
        assert [str(d) for d in exc.value.diagnostics] == [
            'main.alloy:1:1: unknown log level "loud"; use one of debug, info, warn, error'
        ]
        await c.stop()

    run(go())
