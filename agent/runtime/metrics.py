"""The runtime's own metrics under Alloy's names, read from the controller at scrape time."""

from __future__ import annotations

import platform
import sys
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent import __version__
from agent.runtime.health import State

if TYPE_CHECKING:
    from agent.runtime.controller import Controller


def evaluation_histogram() -> Histogram:
    """``alloy_component_evaluation_seconds`` for one controller, collected by :class:`RuntimeCollector`."""
    return Histogram(
        "alloy_component_evaluation_seconds",
        "Time spent performing component evaluation.",
        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        registry=None,
    )


class RuntimeCollector(Collector):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        c = self.controller
        build = GaugeMetricFamily(
            "alloy_build_info",
            "A metric with a constant '1' value labeled by version, revision, branch, goversion "
            "(here the Python version) from which the agent was built, and the goos and goarch.",
            labels=["version", "revision", "branch", "goversion", "goos", "goarch"],
        )
        build.add_metric(
            [__version__, "", "", "python" + platform.python_version(), sys.platform, platform.machine()], 1
        )
        yield build
        yield GaugeMetricFamily(
            "alloy_component_controller_evaluating",
            "Tracks if the controller is currently in the middle of a graph evaluation.",
            value=1 if c.evaluating else 0,
        )
        yield GaugeMetricFamily(
            "alloy_component_evaluation_queue_size",
            "Number of components waiting to be re-evaluated after an export changed.",
            value=c.queue_size(),
        )
        running = GaugeMetricFamily(
            "alloy_component_controller_running_components",
            "Total number of running components.",
            labels=["health_type"],
        )
        health = GaugeMetricFamily(
            "shoal_component_health",
            "1 for each component's current health state, by component id.",
            labels=["component_id", "component_name", "health_type"],
        )
        counts: Counter[str] = Counter()
        for node in c.nodes():
            state = node.health().state.value
            counts[state] += 1
            health.add_metric([node.id, node.name, state], 1)
        for st in State:
            running.add_metric([st.value], counts.get(st.value, 0))
        yield running
        yield health
        yield GaugeMetricFamily(
            "alloy_config_last_load_successful",
            "Config loaded successfully.",
            value=1 if c.last_load_ok else 0,
        )
        failures = CounterMetricFamily(
            "alloy_config_load_failures", "Config failed to load.", value=c.loads_failed
        )
        yield failures
        yield from c.evaluation_seconds.collect()
