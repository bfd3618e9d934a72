"""The process's shared informers: one list and one watch per (resource, namespace set,
label selector, field selector), however many components ask for it, so ten
discovery.kubernetes blocks for pods cost the API server one watch, not ten. Reference
counted: the last user to release a key stops its informer.

A plain engine object with start/stop; `shoal run` builds one and hands it to components
through their Options.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import CollectorRegistry

from agent.discovery.informer import Informer, InformerCollector, InformerKey
from agent.discovery.kubeclient import ClientSettings, KubeClient, connect


@dataclass
class _Entry:
    informer: Informer
    refs: int


def normalise(key: InformerKey) -> InformerKey:
    """Namespaces sorted and deduplicated, so equal sets share an informer."""
    return replace(key, namespaces=tuple(sorted(set(key.namespaces))))


class Informers:
    """Shared informers, keyed by connection settings and InformerKey."""

    def __init__(self, *, registry: CollectorRegistry | None = None,
                 connector: Callable[[ClientSettings], Awaitable[KubeClient]] = connect,
                 **informer_options: Any) -> None:
        self._registry = registry
        self._connect = connector
        self._options = informer_options
        self._clients: dict[tuple[Any, ...], tuple[KubeClient, int]] = {}
        self._entries: dict[tuple[tuple[Any, ...], InformerKey], _Entry] = {}
        self._lock = asyncio.Lock()
        self._collector = InformerCollector()
        self._registered = False
        self._stopped = False

    def start(self) -> None:
        if self._registry is not None and not self._registered:
            self._registry.register(self._collector)
            self._registered = True

    async def acquire(self, settings: ClientSettings, key: InformerKey) -> Informer:
        """The informer for this key, started if it is new; release it when done."""
        key = normalise(key)
        ident = settings.identity()
        async with self._lock:
            if self._stopped:
                raise RuntimeError("informers stopped")
            entry = self._entries.get((ident, key))
            if entry is not None:
                entry.refs += 1
                return entry.informer
            held = self._clients.get(ident)
            client = held[0] if held else await self._connect(settings)
            self._clients[ident] = (client, (held[1] if held else 0) + 1)
            inf = Informer(client, key, **self._options)
            self._entries[(ident, key)] = _Entry(inf, 1)
            self._collector.informers.append(inf)
            inf.start()
            return inf

    async def release(self, settings: ClientSettings, informer: Informer) -> None:
        ident = settings.identity()
        async with self._lock:
            entry = self._entries.get((ident, informer.key))
            if entry is None or entry.informer is not informer:
                return
            entry.refs -= 1
            if entry.refs > 0:
                return
            del self._entries[(ident, informer.key)]
            self._collector.informers.remove(informer)
            await informer.stop()
            client, users = self._clients[ident]
            if users <= 1:
                del self._clients[ident]
                await client.close()
            else:
                self._clients[ident] = (client, users - 1)

    def running(self) -> list[Informer]:
        return [e.informer for e in self._entries.values()]

    async def stop(self) -> None:
        async with self._lock:
            self._stopped = True
            for entry in list(self._entries.values()):
                await entry.informer.stop()
            self._entries.clear()
            self._collector.informers.clear()
            for client, _ in list(self._clients.values()):
                await client.close()
            self._clients.clear()
            if self._registered and self._registry is not None:
                self._registry.unregister(self._collector)
                self._registered = False
