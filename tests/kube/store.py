"""The stand-in's etcd: objects, one global resourceVersion counter, and the history of
changes that watches replay from, with compaction so that old versions expire as they do
in a real cluster. Thread-safe: tests change objects from their own thread while the
server's loop streams the changes."""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.kube.resources import Catalog, Resource

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


class Expired(Exception):
    """A resourceVersion older than the compacted history (HTTP 410 Gone)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class NotFound(KeyError):
    pass


@dataclass(frozen=True)
class Event:
    rv: int
    resource: Resource
    key: Key
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    def __init__(self, catalog: Catalog, first_rv: int = 0) -> None:
        """first_rv: the version before the first change; versions at or below it are
        gone (a stand-in process restarted with a higher one answers 410 to clients that
        resume from its previous life, as a restored etcd would)."""
        self.catalog = catalog
        self._lock = threading.Lock()
        self._objects: dict[Resource, dict[Key, dict[str, Any]]] = {}
        self._history: list[Event] = []
        self._first_rv = first_rv + 1  # rv of _history[0]
        self._rv = first_rv
        self._compacted = first_rv  # versions below this are gone
        self._wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- reading ----------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    @property
    def compacted(self) -> int:
        return self._compacted

    def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.get(res, {}).get((namespace if res.namespaced else "", name))
            if obj is None:
                raise NotFound(name)
            return obj

    def snapshot(self, res: Resource, at: int | None = None) -> tuple[int, list[dict[str, Any]]]:
        """Objects of a resource sorted by key, now or as they were at version `at`."""
        rv, items = self.items(res, at)
        return rv, [obj for _, obj in items]

    def items(self, res: Resource, at: int | None = None
              ) -> tuple[int, list[tuple[Key, dict[str, Any]]]]:
        """(key, object) pairs sorted by key (etcd's order), now or at version `at`."""
        with self._lock:
            if at is None or at >= self._rv:
                objs = self._objects.get(res, {})
                return self._rv, [(k, objs[k]) for k in sorted(objs)]
            if at < self._compacted:
                raise Expired(at, self._compacted)
            # Undo, newest first, the changes made after `at`: only the history that
            # compaction keeps is needed.
            state = dict(self._objects.get(res, {}))
            for ev in reversed(self._history[at - self._first_rv + 1:]):
                if ev.resource != res:
                    continue
                if ev.old is None:
                    state.pop(ev.key, None)
                else:
                    state[ev.key] = ev.old
            return at, [(k, state[k]) for k in sorted(state)]

    def events_after(self, rv: int) -> tuple[int, list[Event]]:
        """Events with a version above rv, and the current version."""
        with self._lock:
            if rv < self._compacted:
                raise Expired(rv, self._compacted)
            return self._rv, self._history[max(0, rv - self._first_rv + 1):]

    # -- writing ----------------------------------------------------------------
    def _resource_of(self, obj: dict[str, Any], resource: Resource | None) -> Resource:
        res = resource or self.catalog.for_object(obj)
        if res is None:
            raise ValueError(f"no resource serves {obj.get('apiVersion')}/{obj.get('kind')}")
        return res

    def _commit(self, res: Resource, key: Key, type_: str, obj: dict[str, Any],
                old: dict[str, Any] | None) -> dict[str, Any]:
        # Called with the lock held.
        self._rv += 1
        if isinstance(obj.get("metadata"), dict):
            obj["metadata"]["resourceVersion"] = str(self._rv)
        self._history.append(Event(self._rv, res, key, type_, obj, old))
        for loop, ev in list(self._wakers):
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # that loop has closed
                self._wakers.discard((loop, ev))
        return obj

    def apply(self, obj: dict[str, Any], resource: Resource | None = None,
              raw: bool = False) -> dict[str, Any]:
        """Create or replace an object; the stored copy, with its new resourceVersion.

        raw=True stores the object exactly as given but for its resourceVersion (a malformed
        object for bad-input tests: wrong types, even no metadata or name)."""
        res = self._resource_of(obj, resource)
        obj = copy.deepcopy(obj)
        if raw:
            meta = obj.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            ns = meta.get("namespace", "") if isinstance(meta, dict) else ""
            key = (ns if isinstance(ns, str) else "",
                   name if isinstance(name, str) and name else f"malformed-{uuid.uuid4()}")
            with self._lock:
                objs = self._objects.setdefault(res, {})
                old = objs.get(key)
                objs[key] = obj
                return self._commit(res, key, "MODIFIED" if old else "ADDED", obj, old)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict) or not meta.get("name"):
            raise ValueError("object without metadata.name")
        if res.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        key = (meta.get("namespace", ""), meta["name"])
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        with self._lock:
            objs = self._objects.setdefault(res, {})
            old = objs.get(key)
            if old is None:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", _now())
                meta.setdefault("generation", 1)
            else:  # an update keeps identity; generation counts changes of spec
                old_meta = old.get("metadata")
                old_meta = old_meta if isinstance(old_meta, dict) else {}
                meta["uid"] = old_meta.get("uid", str(uuid.uuid4()))
                meta["creationTimestamp"] = old_meta.get("creationTimestamp", _now())
                gen = old_meta.get("generation", 1)
                meta["generation"] = gen + 1 if obj.get("spec") != old.get("spec") else gen
            objs[key] = obj
            return self._commit(res, key, "MODIFIED" if old else "ADDED", obj, old)

    def delete(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        key = (namespace if res.namespaced else "", name)
        with self._lock:
            old = self._objects.get(res, {}).pop(key, None)
            if old is None:
                raise NotFound(name)
            gone = copy.deepcopy(old)
            return self._commit(res, key, "DELETED", gone, old)

    def compact(self) -> int:
        """Forget history up to now (its memory too): any older resourceVersion answers
        410. Long load tests call it from time to time, as etcd compacts every 5 minutes."""
        with self._lock:
            del self._history[: self._rv - self._first_rv + 1]
            self._first_rv = self._rv + 1
            self._compacted = self._rv
            return self._rv

    # -- waking watches ---------------------------------------------------------
    def add_waker(self, loop: asyncio.AbstractEventLoop, ev: asyncio.Event) -> None:
        with self._lock:
            self._wakers.add((loop, ev))

    def remove_waker(self, loop: asyncio.AbstractEventLoop, ev: asyncio.Event) -> None:
        with self._lock:
            self._wakers.discard((loop, ev))

    def count(self, res: Resource) -> int:
        with self._lock:
            return len(self._objects.get(res, {}))
