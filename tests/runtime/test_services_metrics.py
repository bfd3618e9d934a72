"""The seams components build on: shared services by name, and a metrics registry per component."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
import structlog.testing
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.runtime.controller import Controller
from agent.runtime.health import State
from agent.runtime.services import ServiceNotFound, Services
from agent.syntax.parser import parse_file
from tests.runtime.components import make_registry


def files(src: str) -> list:
    return [parse_file(src, "main.alloy")]


def run(coro):  # noqa: ANN001
    return asyncio.run(asyncio.wait_for(coro, 30))


def scrape(c: Controller) -> dict[str, list]:
    """/metrics as served (the collector registered in a process registry), parsed back."""
    reg = CollectorRegistry()
    reg.register(c.metrics)
    text = generate_latest(reg).decode()
    assert text.count("# TYPE test_events counter") <= 1  # one family, however many components
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


TWO = """
test.counted "a" { value = 1 }
test.counted "b" { value = 1 }
"""


def test_each_component_series_carry_its_id_and_leave_with_it(tmp_path: Path):
    async def go():
        c = Controller(storage_path=tmp_path, registry=make_registry())
        await c.load(files(TWO))
        await c.load(files(TWO.replace('"a" { value = 1 }', '"a" { value = 2 }')))
        got = {(s.labels["component_id"], s.labels["kind"]): s.value for s in scrape(c)["test_events"]}
        assert got == {
            ("test.counted.a", "build"): 1.0,
            ("test.counted.a", "update"): 1.0,
            ("test.counted.b", "build"): 1.0,
        }
        await c.load(files('test.counted "a" { value = 2 }\n'))
        ids = {s.labels["component_id"] for s in scrape(c)["test_events"]}
        assert ids == {"test.counted.a"}
        # Added again under the same id: a fresh registry, not a duplicate-metric error.
        await c.load(files(TWO))
        assert c.node("test.counted.b").health().state is State.HEALTHY
        got = {(s.labels["component_id"], s.labels["kind"]): s.value for s in scrape(c)["test_events"]}
        assert got[("test.counted.b", "build")] == 1.0
        await c.stop()
        assert "test_events" not in scrape(c)

    run(go())


@dataclass
class Greeting:
    text: str
    started: bool = False
    stopped: bool = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


def test_components_reach_services_by_name(tmp_path: Path):
    async def go():
        greeting = Greeting("hello")
        svc = Services(greeting=greeting)
        await svc.start()
        c = Controller(storage_path=tmp_path, registry=make_registry(), services=svc)
        await c.load(files('test.greeter "g" { }\n'))
        assert c.node("test.greeter.g").exports.value == "hello"
        await c.stop()
        await svc.stop()
        assert greeting.started and greeting.stopped

    run(go())


def test_a_missing_service_fails_the_component_with_the_names_running(tmp_path: Path):
    async def go():
        c = Controller(storage_path=tmp_path, registry=make_registry(), services=Services(other=object()))
        with pytest.raises(Exception, match="service 'greeting' is not running in this process"):
            await c.load(files('test.greeter "g" { }\n'))
        health = c.node("test.greeter.g").health()
        assert health.state is State.UNHEALTHY and "(running: other)" in health.message
        await c.stop()

    run(go())


def test_services_stop_last_first_and_a_failing_stop_does_not_keep_others_running():
    order: list[str] = []

    class S:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        async def start(self) -> None:
            order.append("start " + self.name)

        async def stop(self) -> None:
            order.append("stop " + self.name)
            if self.fail:
                raise RuntimeError("stuck")

    async def go():
        svc = Services(a=S("a"), b=S("b", fail=True), c=S("c"))
        await svc.start()
        with structlog.testing.capture_logs() as logs:
            await svc.stop()
        return logs

    logs = run(go())
    assert order == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    # The failure is not swallowed: it is logged with the service's name and the error.
    assert [(e["event"], e["service"], e["err"]) for e in logs] == [
        ("service failed to stop", "b", "RuntimeError('stuck')")
    ]
    with pytest.raises(ServiceNotFound):
        Services().get("cluster")
    with pytest.raises(ValueError, match="registered twice"):
        Services(a=1).add("a", 2)
