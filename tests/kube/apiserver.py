"""A Kubernetes API server stand-in, faithful enough that kubernetes-asyncio and vmagent talk to
it unchanged: HTTPS, bearer tokens and RBAC, discovery documents, list with selectors and
pagination, watch with bookmarks and 410 Gone. There is no cluster on the test machines;
every Kubernetes test runs against this instead.

In a test: `with APIServer(tmp_path) as api: api.apply({...})`; the server runs its own
event loop in a background thread, so synchronous and async tests use it alike. As a process
(for vmagent, `shoal run` and the load tests):

    python -m tests.kube.apiserver --objects DIR_OR_YAML --port N --certs DIR \
        --token-file TOKENS.csv [--rbac manifests/base/rbac.yaml]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import json
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from kubernetes_asyncio import client as kclient

from tests.kube.certs import CertFiles, make_certs
from tests.kube.rbac import RBAC_KINDS, Auth, Request, User
from tests.kube.resources import Catalog, Resource, default_catalog
from tests.kube.selectors import SelectorError, parse_field_selector, parse_label_selector
from tests.kube.serving import Served, ThreadedServer
from tests.kube.store import Event, Expired, NotFound, Store

ROOT = Path(__file__).resolve().parents[2]
RBAC_MANIFEST = ROOT / "manifests" / "base" / "rbac.yaml"
VERSION = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.0", "gitCommit": "standin",
    "gitTreeState": "clean", "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5",
    "compiler": "gc", "platform": "linux/amd64",
}


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": message, "reason": reason,
                            "code": code}
    if details:
        body["details"] = details
    return body


def _json(body: dict[str, Any], code: int = 200) -> web.Response:
    return web.Response(status=code, body=json.dumps(body, separators=(",", ":")).encode(),
                        content_type="application/json")


_TOO_LARGE = {"causes": [{"reason": "ResourceVersionTooLarge",
                         "message": "Too large resource version"}], "retryAfterSeconds": 1}
_WRITE_VERBS = {("POST", False): "create", ("PUT", True): "update", ("DELETE", True): "delete"}


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")  # injected malformed objects may have none
    return meta if isinstance(meta, dict) else {}


def _flag(q: Any, name: str) -> bool:
    # Go's strconv.ParseBool, as the server parses boolean query parameters.
    return (q.get(name) or "").lower() in ("1", "t", "true")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = status(code, reason, message, details)


@dataclass(frozen=True)
class Logged:
    """One request as the stand-in saw it: tests count watches and check who asked what."""

    method: str
    path: str
    query: dict[str, str]
    user: str
    status: int
    verb: str
    resource: str


@dataclass
class _Target:
    """What a path names."""

    resource: Resource
    namespace: str
    name: str
    subresource: str
    watch_path: bool  # the legacy /watch/ prefix


class APIServer(Served):
    """The stand-in. Objects change through apply/delete/load from any thread."""

    def __init__(self, folder: Path | str, *, objects: Iterable[dict[str, Any]] | str | Path = (),
                 rbac_files: Iterable[Path | str] = (), port: int = 0,
                 host: str = "127.0.0.1", certs: CertFiles | None = None,
                 watch_timeout: float = 1800.0, bookmark_interval: float = 60.0,
                 catalog: Catalog | None = None, first_resource_version: int = 0) -> None:
        self.folder = Path(folder)
        self.certs = certs or make_certs(self.folder / "apiserver-certs")
        self.catalog = catalog or default_catalog()
        self.store = Store(self.catalog, first_resource_version)
        self.auth = Auth()
        self._server = ThreadedServer(self._handle, self.certs, host, port, "kube-apiserver")
        self.watch_timeout = watch_timeout
        self.bookmark_interval = bookmark_interval
        self.log: collections.deque[Logged] = collections.deque(maxlen=200_000)
        self._watches: dict[int, web.Request] = {}
        self._bookmark_now: set[asyncio.Event] = set()
        for path in rbac_files:
            self.auth.load_rbac_file(Path(path))
        if isinstance(objects, (str, Path)):
            self.load(objects)
        else:
            for obj in objects:
                self.apply(obj)

    # -- objects --------------------------------------------------------------------
    def resource(self, plural: str, group: str | None = None) -> Resource:
        for r in self.catalog.resources:
            if r.plural == plural and (group is None or r.group == group):
                return r
        raise KeyError(f"no resource {plural!r}")

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace; RBAC objects configure authorization instead of being stored."""
        if obj.get("kind") in RBAC_KINDS:
            self.auth.add_object(obj)
            return obj
        if obj.get("kind") == "List":
            for item in obj.get("items") or ():
                self.apply(item)
            return obj
        return self.store.apply(obj)

    def inject_malformed(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as given (wrong types, missing fields) for bad-input tests."""
        return self.store.apply(obj, self.resource(plural), raw=True)

    def delete(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.store.delete(self.resource(plural), namespace, name)

    def get(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.store.get(self.resource(plural), namespace, name)

    def load(self, source: str | Path) -> int:
        """Objects from a YAML file, a folder of them, or YAML text; how many were applied."""
        texts: list[str]
        path = Path(source) if not (isinstance(source, str) and "\n" in source) else None
        if path is not None and path.is_dir():
            texts = [p.read_text() for p in sorted(path.rglob("*.y*ml"))]
        elif path is not None and path.exists():
            texts = [path.read_text()]
        else:
            texts = [str(source)]
        n = 0
        for text in texts:
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.apply(doc)
                    n += 1
        return n

    def compact(self) -> int:
        """Expire every resourceVersion older than now (watches from them get 410)."""
        return self.store.compact()

    @property
    def resource_version(self) -> int:
        return self.store.resource_version

    # -- auth -----------------------------------------------------------------------
    def add_token(self, token: str, service_account: str = "shoal/shoal") -> User:
        """A token for namespace/name's service account."""
        ns, name = service_account.split("/", 1)
        return self.auth.add_service_account_token(token, ns, name)

    def load_rbac(self, path: Path | str = RBAC_MANIFEST) -> None:
        self.auth.load_rbac_file(Path(path))

    # -- watches --------------------------------------------------------------------
    def cut_watches(self) -> int:
        """Cut every open watch mid-stream (as a load balancer or a crashed server would)."""
        loop = self._server.loop
        if loop is None:
            return 0
        n = len(self._watches)
        loop.call_soon_threadsafe(self._abort_watches)
        return n

    def send_bookmarks(self) -> None:
        """A BOOKMARK on every open watch that allows them, now."""
        loop = self._server.loop
        if loop is not None:
            for ev in list(self._bookmark_now):
                loop.call_soon_threadsafe(ev.set)

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def requests(self, *, verb: str | None = None, resource: str | None = None) -> list[Logged]:
        return [r for r in list(self.log) if (verb is None or r.verb == verb)
                and (resource is None or r.resource == resource)]

    # -- lifecycle ------------------------------------------------------------------
    def _before_stop(self) -> None:
        # Stopping cuts open watches; start() again serves the same objects, same port.
        self._abort_watches()
        self._watches.clear()

    def _abort_watches(self) -> None:
        for req in list(self._watches.values()):
            if req.transport is not None:
                req.transport.abort()

    # -- client helpers -------------------------------------------------------------
    def kubeconfig(self, path: Path, token: str, namespace: str = "default") -> Path:
        """A kubeconfig file pointing at this server with a bearer token."""
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {
                "server": self.url, "certificate-authority": str(self.certs.ca)}}],
            "users": [{"name": "standin", "user": {"token": token}}],
            "contexts": [{"name": "standin", "context": {
                "cluster": "standin", "user": "standin", "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    def client_configuration(self, token: str) -> kclient.Configuration:
        """kubernetes-asyncio settings for this server, trusting its CA, with a token."""
        conf = kclient.Configuration(host=self.url)
        conf.ssl_ca_cert = str(self.certs.ca)
        conf.api_key = {"BearerToken": token}
        conf.api_key_prefix = {"BearerToken": "Bearer"}
        return conf

    # -- HTTP -----------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user = self.auth.authenticate(request.headers.get("Authorization"))
        verb, resname = "", ""
        code = 200
        logged = False
        try:
            if user is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            target = self._parse(request.path)
            if target is None:
                verb = request.method.lower()
                self._authorize(user, Request(verb, path=request.path))
                if request.method != "GET":
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this "
                                   f"method on the requested resource ({request.method})")
                if request.path == "/metrics":
                    return web.Response(body=self._metrics().encode(), headers={
                        "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
                return _json(self._discovery(request))
            q = request.query
            res = target.resource
            resname = res.plural
            if request.method != "GET":
                verb = _WRITE_VERBS.get((request.method, bool(target.name)), "")
                if not verb or target.subresource:
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this "
                                   f"method on the requested resource ({request.method})")
                self._authorize(user, Request(verb, res.group, res.plural, "",
                                              target.namespace, target.name))
                code, body = await self._write(request, verb, target)
                return _json(body, code)
            watching = target.watch_path or _flag(q, "watch")
            verb = "watch" if watching else "get" if target.name else "list"
            self._authorize(user, Request(verb, res.group, res.plural, target.subresource,
                                          target.namespace, target.name))
            if watching:  # logged when it starts: tests count the watches open now
                self.log.append(Logged(request.method, request.path, dict(request.query),
                                       user.name, 200, verb, resname))
                logged = True
                return await self._watch(request, target)
            if target.name:
                return _json(self._get(target))
            return _json(self._list(target, q))
        except ApiError as e:
            code = e.body["code"]
            return _json(e.body, code)
        finally:
            if not logged:
                self.log.append(Logged(request.method, request.path, dict(request.query),
                                       user.name if user else "", code, verb, resname))

    def _metrics(self) -> str:
        """The API server's own /metrics (what the ClusterRole's nonResourceURLs grant is
        for): requests served so far, by verb, resource and code, under the real names."""
        counts = collections.Counter(
            (r.verb.upper(), r.resource, str(r.status)) for r in list(self.log) if r.resource)
        lines = ["# HELP apiserver_request_total [STABLE] Counter of apiserver requests "
                 "broken out for each verb, dry run value, group, version, resource, scope, "
                 "component, and HTTP response code.",
                 "# TYPE apiserver_request_total counter"]
        for (verb, res, code), n in sorted(counts.items()):
            lines.append(f'apiserver_request_total{{code="{code}",component="apiserver",'
                         f'resource="{res}",verb="{verb}"}} {n}')
        lines += ["# HELP apiserver_registered_watchers [ALPHA] Number of currently registered "
                  "watchers for a given resources",
                  "# TYPE apiserver_registered_watchers gauge",
                  f"apiserver_registered_watchers {len(self._watches)}",
                  "# HELP etcd_object_counts Number of stored objects.",
                  "# TYPE etcd_object_counts gauge"]
        for r in self.catalog.resources:
            lines.append(f'etcd_object_counts{{resource="{r.plural}.{r.group}"}} '
                         f"{self.store.count(r)}")
        return "\n".join(lines) + "\n"

    def _authorize(self, user: User, req: Request) -> None:
        if not self.auth.authorize(user, req):
            details: dict[str, Any] = {}
            if req.is_resource:
                details = {"kind": req.resource}
                if req.name:
                    details["name"] = req.name
                if req.api_group:
                    details["group"] = req.api_group
            raise ApiError(403, "Forbidden", req.describe(user), details or None)

    def _parse(self, path: str) -> _Target | None:
        segs = [s for s in path.split("/") if s]
        if len(segs) >= 2 and segs[0] == "api":
            group, version, rest = "", segs[1], segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            return None
        if not rest:
            return None
        watch_path = rest[0] == "watch"
        if watch_path:
            rest = rest[1:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            inner = self.catalog.find(group, version, rest[2])
            if inner is not None and inner.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        res = self.catalog.find(group, version, rest[0])
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        return _Target(res, namespace, name, sub, watch_path)

    def _discovery(self, request: web.Request) -> dict[str, Any]:
        segs = [s for s in request.path.split("/") if s]
        body: dict[str, Any] | None = None
        if segs == ["version"]:
            body = VERSION
        elif segs == ["api"]:
            body = self.catalog.api_versions(f"{self.host}:{self.port}")
        elif segs == ["apis"]:
            body = self.catalog.group_list()
        elif len(segs) == 2 and segs[0] == "api":
            body = self.catalog.resource_list("", segs[1])
        elif len(segs) == 2 and segs[0] == "apis":
            body = self.catalog.group(segs[1])
        elif len(segs) == 3 and segs[0] == "apis":
            body = self.catalog.resource_list(segs[1], segs[2])
        if body is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return body

    async def _write(self, request: web.Request, verb: str, t: _Target
                     ) -> tuple[int, dict[str, Any]]:
        """create (POST), update (PUT) and delete (DELETE), so a stand-in running as a
        process can be changed from outside (kubectl-style), as tests change it in-process."""
        res = t.resource
        if verb == "delete":
            try:
                return 200, self.store.delete(res, t.namespace, t.name)
            except NotFound:
                raise ApiError(404, "NotFound", f'{res.plural} "{t.name}" not found',
                               {"name": t.name, "kind": res.plural}) from None
        try:
            obj = json.loads(await request.read())
        except ValueError as e:
            raise ApiError(400, "BadRequest", f"invalid JSON body: {e}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise ApiError(400, "BadRequest", "object without metadata")
        meta = obj["metadata"]
        if res.namespaced and t.namespace:
            meta.setdefault("namespace", t.namespace)
            if meta["namespace"] != t.namespace:
                raise ApiError(400, "BadRequest", "the namespace of the object does not "
                               "match the namespace on the request")
        if verb == "update" and meta.get("name") != t.name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the "
                           "name on the URL")
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        if verb == "create":
            try:
                self.store.get(res, meta.get("namespace", ""), str(meta.get("name")))
                raise ApiError(409, "AlreadyExists",
                               f'{res.plural} "{meta.get("name")}" already exists')
            except NotFound:
                pass
        try:
            stored = self.store.apply(obj, res)
        except ValueError as e:
            raise ApiError(422, "Invalid", str(e)) from None
        return (201 if verb == "create" else 200), stored

    def _get(self, t: _Target) -> dict[str, Any]:
        try:
            obj = self.store.get(t.resource, t.namespace, t.name)
        except NotFound:
            raise ApiError(404, "NotFound", f'{t.resource.plural} "{t.name}" not found',
                           {"name": t.name, "kind": t.resource.plural}) from None
        if t.subresource and t.subresource not in ("status",):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return obj

    @staticmethod
    def _selectors(t: _Target, q: Any) -> Any:
        try:
            labels = parse_label_selector(q.get("labelSelector"))
            fields = parse_field_selector(q.get("fieldSelector"), t.resource.plural)
        except SelectorError as e:
            raise ApiError(400, "BadRequest", str(e)) from None

        def match(obj: dict[str, Any]) -> bool:
            meta = _meta(obj)
            if t.namespace and meta.get("namespace") != t.namespace:
                return False
            lab = meta.get("labels")
            return labels(lab if isinstance(lab, dict) else {}) and fields(obj)
        return match

    def _list(self, t: _Target, q: Any) -> dict[str, Any]:
        match = self._selectors(t, q)
        res = t.resource
        start = ""
        at: int | None = None
        if q.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(q["continue"]))
                at, start = int(token["rv"]), str(token["start"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise ApiError(400, "BadRequest", "continue key is not valid") from None
        elif q.get("resourceVersion") not in (None, "", "0"):
            try:
                want = int(q["resourceVersion"])
            except ValueError:
                raise ApiError(400, "BadRequest",
                               f"invalid resource version: {q['resourceVersion']}") from None
            if q.get("resourceVersionMatch") == "Exact":
                at = want
            elif want > self.store.resource_version:
                raise ApiError(504, "Timeout", f"Too large resource version: {want}, "
                               f"current: {self.store.resource_version}", _TOO_LARGE)
        try:
            rv, pairs = self.store.items(res, at)
        except Expired as e:
            if q.get("continue"):
                raise ApiError(410, "Expired", "The provided continue parameter is too old "
                               "to display a consistent list result. You can start a new "
                               "list without the continue parameter.") from None
            raise ApiError(410, "Expired", str(e)) from None
        selected = [(f"{ns}/{name}", obj) for (ns, name), obj in pairs
                    if not (start and f"{ns}/{name}" <= start) and match(obj)]
        meta_out: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = q.get("limit")
        if limit and limit.isdigit() and 0 < int(limit) < len(selected):
            rest = len(selected) - int(limit)
            selected = selected[: int(limit)]
            token = {"rv": rv, "start": selected[-1][0]}
            meta_out["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            meta_out["remainingItemCount"] = rest
        items = [obj for _, obj in selected]
        if res.builtin:
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                     for o in items]
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": meta_out, "items": items}

    async def _watch(self, request: web.Request, t: _Target) -> web.StreamResponse:
        q = request.query
        match = self._selectors(t, q)
        if t.name:
            by_name = match

            def match(o: dict[str, Any]) -> bool:
                return _meta(o).get("name") == t.name and by_name(o)
        res = t.resource
        bookmarks = _flag(q, "allowWatchBookmarks")
        timeout = self.watch_timeout
        if (q.get("timeoutSeconds") or "").isdigit():
            timeout = min(timeout, float(q["timeoutSeconds"]))
        deadline = time.monotonic() + timeout
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        rv_param = q.get("resourceVersion") or ""
        initial = rv_param in ("", "0") or _flag(q, "sendInitialEvents")
        lines: list[dict[str, Any]] = []

        def bookmark(rv: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if extra:
                meta["annotations"] = extra
            return {"type": "BOOKMARK", "object": {"kind": res.kind,
                                                   "apiVersion": res.api_version,
                                                   "metadata": meta}}
        try:
            if initial:
                pos, objs = self.store.snapshot(res)
                lines = [{"type": "ADDED", "object": o} for o in objs if match(o)]
                if _flag(q, "sendInitialEvents") and bookmarks:
                    lines.append(bookmark(pos, {"k8s.io/initial-events-end": "true"}))
            else:
                try:
                    pos = int(rv_param)
                except ValueError:
                    raise ApiError(400, "BadRequest",
                                   f"invalid resource version: {rv_param}") from None
                current, _ = self.store.events_after(pos)  # raises Expired
                if pos > current:
                    raise ApiError(504, "Timeout", f"Too large resource version: {pos}, "
                                   f"current: {current}", _TOO_LARGE)
        except Expired as e:
            await resp.write(json.dumps({"type": "ERROR", "object": status(
                410, "Expired", str(e))}).encode() + b"\n")
            return resp
        except ApiError as e:
            await resp.write(json.dumps({"type": "ERROR", "object": e.body}).encode() + b"\n")
            return resp

        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        now_bm = asyncio.Event()
        self.store.add_waker(loop, wake)
        self._watches[id(request)] = request
        self._bookmark_now.add(now_bm)
        next_bookmark = time.monotonic() + self.bookmark_interval
        try:
            while True:
                if lines:
                    await resp.write(b"".join(json.dumps(e, separators=(",", ":")).encode()
                                              + b"\n" for e in lines))
                    lines = []
                wake.clear()
                try:
                    cur, events = self.store.events_after(pos)
                except Expired as e:  # compacted while this watch lagged: the client relists
                    await resp.write(json.dumps({"type": "ERROR", "object": status(
                        410, "Expired", str(e))}).encode() + b"\n")
                    break
                for ev in events:
                    if ev.resource == res:
                        line = self._event_line(ev, match)
                        if line is not None:
                            lines.append(line)
                pos = cur
                if lines:
                    continue
                now = time.monotonic()
                if now >= deadline:
                    break
                if bookmarks and (now >= next_bookmark or now_bm.is_set()):
                    now_bm.clear()
                    next_bookmark = now + self.bookmark_interval
                    lines.append(bookmark(pos))
                    continue
                waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(now_bm.wait())]
                until = min(deadline, next_bookmark if bookmarks else deadline) - now
                try:
                    await asyncio.wait(waits, timeout=max(0.0, until),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
        finally:
            self.store.remove_waker(loop, wake)
            self._watches.pop(id(request), None)
            self._bookmark_now.discard(now_bm)
        await resp.write_eof()
        return resp

    @staticmethod
    def _event_line(ev: Event, match: Any) -> dict[str, Any] | None:
        now = match(ev.obj)
        if ev.type == "DELETED":
            return {"type": "DELETED", "object": ev.obj} if now else None
        before = ev.old is not None and match(ev.old)
        if now and before:
            return {"type": "MODIFIED", "object": ev.obj}
        if now:
            return {"type": "ADDED", "object": ev.obj}
        if before:  # moved out of the selection: the watcher sees it leave
            return {"type": "DELETED", "object": ev.obj}
        return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.kube.apiserver", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", action="append", default=[],
                    help="YAML file or folder of objects (repeatable)")
    ap.add_argument("--port", type=int, default=6443)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--certs", required=True, help="folder for ca.crt, tls.crt, tls.key "
                    "(made if absent)")
    ap.add_argument("--token-file", action="append", default=[],
                    help="kube-apiserver token file: token,user,uid[,\"groups\"]")
    ap.add_argument("--rbac", action="append", default=[],
                    help="YAML of ClusterRoles and bindings (default: all authenticated "
                    "requests allowed)")
    ap.add_argument("--watch-timeout", type=float, default=1800.0)
    ap.add_argument("--bookmark-interval", type=float, default=60.0)
    ap.add_argument("--compact-interval", type=float, default=300.0,
                    help="seconds between compactions (0: never)")
    args = ap.parse_args(argv)
    # Versions start from the clock, so clients of a previous run of this process get
    # 410 and relist instead of waiting for versions this run has not reached.
    server = APIServer(args.certs, certs=make_certs(Path(args.certs)), port=args.port,
                       host=args.host, rbac_files=args.rbac, watch_timeout=args.watch_timeout,
                       bookmark_interval=args.bookmark_interval,
                       first_resource_version=int(time.time() * 1000))
    for src in args.objects:
        server.load(src)
    for tf in args.token_file:
        server.auth.load_token_file(Path(tf))
    server.start()
    print(f"kube-apiserver stand-in on {server.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(args.compact_interval or None):
        server.compact()  # as etcd does, so a long run's history does not grow without end
    server.stop()


if __name__ == "__main__":
    main()
