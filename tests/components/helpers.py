"""A sink component and a controller over the real components, for component tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from agent.components import registry
from agent.labels import as_labels
from agent.runtime.component import Component, Options
from agent.runtime.controller import Controller
from agent.runtime.registry import Registry
from agent.runtime.services import HTTP, Services
from agent.server.http import HTTPInfo
from agent.storage import Appendable, SampleBatch
from agent.syntax.decode import attr
from agent.syntax.parser import parse_file


class Sink:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def append(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def samples(self) -> list[tuple]:
        return [
            (dict(as_labels(labels)), ts, v)
            for b in self.batches
            for labels, ts, v in zip(b.labels, b.timestamps, b.values, strict=True)
        ]


@dataclass
class SinkExports:
    receiver: Appendable = attr(default_factory=Sink)


class SinkComponent(Component):
    def __init__(self, opts: Options, args: None) -> None:
        super().__init__(opts, args)
        self.sink = Sink()
        opts.set_exports(SinkExports(self.sink))


def make_registry() -> Registry:
    real = registry()
    reg = Registry()
    for name in real.names():
        t = real.get(name)
        reg.register(name, t.arguments, t.exports)(t.factory)
    reg.register("test.sink", None, SinkExports)(SinkComponent)
    return reg


def controller(tmp_path: Path, http_address: str = "127.0.0.1:12345") -> Controller:
    return Controller(
        storage_path=tmp_path, registry=make_registry(), services=Services(**{HTTP: HTTPInfo(http_address)})
    )


def metrics_text(c: Controller) -> str:
    """/metrics as the agent would serve the components' series (with ``component_id``)."""
    reg = CollectorRegistry()
    reg.register(c.metrics)
    return generate_latest(reg).decode()


def files(src: str) -> list:
    return [parse_file(src, "main.alloy")]


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(asyncio.wait_for(coro, 60))
