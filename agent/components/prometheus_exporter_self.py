"""``prometheus.exporter.self``: a target for the agent's own ``/metrics``, labelled as Alloy labels it."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from agent.runtime import services
from agent.runtime.component import Component, Options
from agent.runtime.registry import register
from agent.syntax.decode import attr

NAME = "prometheus.exporter.self"


@dataclass
class Exports:
    targets: list[dict[str, str]] = attr(default=[])


def default_instance() -> str:
    """``$HOSTNAME``, else the host name, as Alloy's exporters do."""
    return os.environ.get("HOSTNAME") or socket.gethostname() or "unknown"


@register(NAME, None, Exports)
class SelfExporter(Component):
    def __init__(self, opts: Options, args: None) -> None:
        super().__init__(opts, args)
        opts.set_exports(
            Exports(
                targets=[
                    {
                        "__address__": opts.get_service(services.HTTP).address,
                        "__scheme__": "http",
                        "__metrics_path__": "/metrics",
                        "instance": default_instance(),
                        "job": "integrations/self",
                        "__meta_component_name": NAME,
                        "__meta_component_id": opts.id,
                    }
                ]
            )
        )
