"""Small components registered only in tests, to exercise the runtime without any engine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from agent.runtime.component import Component, Options
from agent.runtime.health import Health
from agent.runtime.registry import Registry
from agent.syntax.decode import attr, block
from agent.syntax.value import Secret

EVENTS: list[tuple[str, str]] = []  # (event, component id), in order


@dataclass
class SourceArgs:
    value: Any = attr(required=True)

@dataclass
class ValueExports:
    value: Any = attr(default=None)

class Source(Component):
    """Exports its argument; ``bump`` changes the export from a task, as a discoverer would."""

    def __init__(self, opts: Options, args: SourceArgs) -> None:
        super().__init__(opts, args)
        self.bumps: asyncio.Queue[Any] = asyncio.Queue()
        opts.set_exports(ValueExports(args.value))
        EVENTS.append(("build", opts.id))

    async def run(self) -> None:
        try:
            while True:
                v = await self.bumps.get()
                self.opts.set_exports(ValueExports(v))
        finally:
            EVENTS.append(("stop", self.opts.id))

    async def update(self, args: SourceArgs) -> None:
        self.args = args
        EVENTS.append(("update", self.opts.id))
        self.opts.set_exports(ValueExports(args.value))

@dataclass
class PassArgs:
    input: Any = attr(required=True)
    password: Secret | None = attr(default=None)

class Pass(Component):
    """Exports its input unchanged and counts updates."""

    def __init__(self, opts: Options, args: PassArgs) -> None:
        super().__init__(opts, args)
        self.updates = 0
        opts.set_exports(ValueExports(args.input))
        EVENTS.append(("build", opts.id))

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            EVENTS.append(("stop", self.opts.id))

    async def update(self, args: PassArgs) -> None:
        self.args = args
        self.updates += 1
        EVENTS.append(("update", self.opts.id))
        self.opts.set_exports(ValueExports(args.input))

@dataclass
class Inner:
    n: int = attr(required=True)

@dataclass
class NumArgs:
    count: int = attr(required=True)
    item: list[Inner] = block()

    def validate(self) -> None:
        if self.count < 0:
            raise ValueError("count must not be negative")

class Num(Component):
    pass

class Crash(Component):
    async def run(self) -> None:
        raise RuntimeError("boom")

@dataclass
class SickArgs:
    message: str = attr(default="sick")

class Sick(Component):
    def current_health(self) -> Health:
        return Health.unhealthy(self.args.message)

    def debug_info(self) -> dict[str, Any]:
        return {"note": "hello", "token": Secret("hunter2")}


class Counted(Component):
    """Counts its builds and updates in its own metrics registry, as an engine would."""

    def __init__(self, opts: Options, args: SourceArgs) -> None:
        super().__init__(opts, args)
        self.counter = Counter("test_events", "Builds and updates.", ["kind"], registry=opts.registry)
        self.counter.labels("build").inc()

    async def update(self, args: SourceArgs) -> None:
        self.args = args
        self.counter.labels("update").inc()


class Greeter(Component):
    """Reads a shared service by name when built, as discovery.kubernetes reaches the informers."""

    def __init__(self, opts: Options, args: None) -> None:
        super().__init__(opts, args)
        opts.set_exports(ValueExports(opts.get_service("greeting").text))


def make_registry() -> Registry:
    reg = Registry()
    EVENTS.clear()
    reg.register("test.source", SourceArgs, ValueExports)(Source)
    reg.register("test.pass", PassArgs, ValueExports)(Pass)
    reg.register("test.num", NumArgs, None)(Num)
    reg.register("test.crash", None, None)(Crash)
    reg.register("test.sick", SickArgs, None)(Sick)
    reg.register("test.counted", SourceArgs, None)(Counted)
    reg.register("test.greeter", None, ValueExports)(Greeter)
    return reg
