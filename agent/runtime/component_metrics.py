"""A metrics registry per component, collected with Alloy's ``component_id`` label.

Alloy hands each component a registerer already labelled with its id, and a
component's series leave ``/metrics`` when the component leaves the
configuration. Here each component gets a ``CollectorRegistry`` of its own:
engines create their metrics in it without knowing who they belong to, and
:class:`ComponentRegistries`, registered once in the process' registry, adds
``component_id`` to every sample at collection time and merges families of
the same name across components (two remote_write components both export
``prometheus_remote_storage_samples_total``). Removing a component drops its
registry and with it every series it had.

``component_path`` (Alloy's module path) is not added: Shoal has no modules
yet, and every component lives at the root.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Metric
from prometheus_client.registry import Collector

COMPONENT_ID = "component_id"


class ComponentRegistries(Collector):
    def __init__(self) -> None:
        self._by_id: dict[str, CollectorRegistry] = {}
        # Components are added from the event loop while /metrics may be collected
        # from another thread (prometheus_client's own server, tests).
        self._lock = threading.Lock()

    def for_component(self, component_id: str) -> CollectorRegistry:
        """The registry of ``component_id``; the same object for as long as the component lives."""
        with self._lock:
            reg = self._by_id.get(component_id)
            if reg is None:
                reg = self._by_id[component_id] = CollectorRegistry(auto_describe=True)
            return reg

    def remove(self, component_id: str) -> None:
        """Forget a component's registry: its series are gone from the next collection."""
        with self._lock:
            self._by_id.pop(component_id, None)

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._by_id)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            registries = sorted(self._by_id.items())
        families: dict[str, Metric] = {}
        for cid, reg in registries:
            for fam in reg.collect():
                out = families.get(fam.name)
                if out is None:
                    out = families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                elif out.type != fam.type:
                    continue  # two components disagree on a family's type: the first one wins
                for s in fam.samples:
                    out.samples.append(s._replace(labels={COMPONENT_ID: cid, **s.labels}))
        yield from families.values()
