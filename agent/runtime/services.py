"""Services: the long-lived parts of the process that components share.

Some things outlive every component and are shared by many: the HTTP server,
the Kubernetes informer cache (one watch per resource, however many
components ask), the cluster, the UI's live-debugging feed. ``shoal run``, the
composition root, builds them, starts them before the first component and
stops them after the last; a component reaches one by name through
``Options.get_service`` (Alloy's ``GetServiceData``) instead of importing a
module-level singleton. A service is an engine object handed in, so the
engines behind it still know nothing of the runtime.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import structlog

# The names services are registered under; a component asks for one of these.
HTTP = "http"
# agent.discovery.informers.Informers: one watch per resource however many components ask.
KUBERNETES_INFORMERS = "kubernetes.informers"
CLUSTER = "cluster"
LIVE_DEBUGGING = "livedebugging"
# agent.loopclock.LoopClock: the event loop's lag and stalls, one ticker for the whole process.
LOOP_CLOCK = "loopclock"


class ServiceNotFound(LookupError):
    """A component asked for a service this process does not run."""


class Services:
    """Named services in the order they start; they stop in reverse."""

    def __init__(self, **services: Any) -> None:
        self._by_name: dict[str, Any] = {}
        self._started: list[tuple[str, Any]] = []
        self.log = structlog.get_logger("services")
        for name, service in services.items():
            self.add(name, service)

    def add(self, name: str, service: Any) -> None:
        if name in self._by_name:
            raise ValueError(f"service {name!r} is registered twice")
        self._by_name[name] = service

    def get(self, name: str) -> Any:
        try:
            return self._by_name[name]
        except KeyError:
            have = ", ".join(sorted(self._by_name)) or "none"
            raise ServiceNotFound(f"service {name!r} is not running in this process (running: {have})") from None

    def names(self) -> list[str]:
        return list(self._by_name)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._by_name.items())

    async def start(self) -> None:
        """Start the services that have a ``start`` method (a coroutine or not), in the order they were added."""
        for name, service in self._by_name.items():
            start = getattr(service, "start", None)
            if start is not None:
                started = start()
                if inspect.isawaitable(started):
                    await started
            self._started.append((name, service))

    async def stop(self) -> None:
        """Stop what was started, last first; one that fails to stop does not keep the rest running."""
        while self._started:
            name, service = self._started.pop()
            stop = getattr(service, "stop", None)
            if stop is None:
                continue
            try:
                await stop()
            except Exception as exc:  # noqa: BLE001 - logged; the others must still stop
                self.log.error("service failed to stop", service=name, err=repr(exc))
