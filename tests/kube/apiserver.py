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


class APIServer:
    """The stand-in. Objects change through apply/delete/load from any thread."""

    def __init__(self, folder: Path | str, *, objects: Iterable[dict[str, Any]] | str | Path = (),
                 rbac_files: Iterable[Path | str] = (), port: int = 0,
                 host: str = "127.0.0.1", certs: CertFiles | None = None,
                 watch_timeout: float = 1800.0, bookmark_interval: float = 60.0,
                 catalog: Catalog | None = None) -> None:
        self.folder = Path(folder)
        self.certs = certs or make_certs(self.folder / "apiserver-certs")
        self.catalog = catalog or default_catalog()
        self.store = Store(self.catalog)
        self.auth = Auth()
        self.host = host
        self.port = port
        self.watch_timeout = watch_timeout
        self.bookmark_interval = bookmark_interval
        self.log: collections.deque[Logged] = collections.deque(maxlen=200_000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
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
        loop = self._loop
        if loop is None:
            return 0
        n = len(self._watches)

        def cut() -> None:
            for req in list(self._watches.values()):
                if req.transport is not None:
                    req.transport.abort()
        loop.call_soon_threadsafe(cut)
        return n

    def send_bookmarks(self) -> None:
        """A BOOKMARK on every open watch that allows them, now."""
        if self._loop is not None:
            for ev in list(self._bookmark_now):
                self._loop.call_soon_threadsafe(ev.set)

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def requests(self, *, verb: str | None = None, resource: str | None = None) -> list[Logged]:
        return [r for r in list(self.log) if (verb is None or r.verb == verb)
                and (resource is None or r.resource == resource)]

    # -- lifecycle ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> APIServer:
        started = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # reported to the starting thread
                error.append(e)
                started.set()
                loop.close()
                self._loop = None
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"kube-apiserver:{self.port}",
                                        daemon=True)
        self._thread.start()
        started.wait()
        if error:
            raise error[0]
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5,
                                     handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port,
                           ssl_context=self.certs.server_context(), reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop serving: open watches are cut, the port refuses connections. start() again
        serves the same objects on the same port."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            for req in list(self._watches.values()):
                if req.transport is not None:
                    req.transport.abort()
            if self._runner is not None:
                await self._runner.cleanup()
            loop.stop()
        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None
        self._watches.clear()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> APIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
            if request.method != "GET":
                raise ApiError(405, "MethodNotAllowed",
                               f"the server does not allow this method on the requested "
                               f"resource ({request.method})")
            target = self._parse(request.path)
            if target is None:
                verb = "get"
                self._authorize(user, Request("get", path=request.path))
                return _json(self._discovery(request))
            q = request.query
            res = target.resource
            resname = res.plural
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
            meta = obj.get("metadata") or {}
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
                               f"current: {self.store.resource_version}",
                               {"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}],
                                "retryAfterSeconds": 1})
        try:
            rv, objs = self.store.snapshot(res, at)
        except Expired as e:
            if q.get("continue"):
                raise ApiError(410, "Expired", "The provided continue parameter is too old "
                               "to display a consistent list result. You can start a new "
                               "list without the continue parameter.") from None
            raise ApiError(410, "Expired", str(e)) from None
        items = []
        for obj in objs:
            meta = obj["metadata"]
            if start and f"{meta.get('namespace', '')}/{meta['name']}" <= start:
                continue
            if match(obj):
                items.append(obj)
        meta_out: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = q.get("limit")
        if limit and limit.isdigit() and 0 < int(limit) < len(items):
            rest = len(items) - int(limit)
            items = items[: int(limit)]
            last = items[-1]["metadata"]
            token = {"rv": rv, "start": f"{last.get('namespace', '')}/{last['name']}"}
            meta_out["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            meta_out["remainingItemCount"] = rest
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
                return o["metadata"].get("name") == t.name and by_name(o)
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
                self.store.events_after(pos)  # raises Expired
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
                except Expired:  # compacted while we lagged: the client must relist
                    cur, events = pos, []
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
    args = ap.parse_args(argv)
    server = APIServer(args.certs, certs=make_certs(Path(args.certs)), port=args.port,
                       host=args.host, rbac_files=args.rbac, watch_timeout=args.watch_timeout,
                       bookmark_interval=args.bookmark_interval)
    for src in args.objects:
        server.load(src)
    for tf in args.token_file:
        server.auth.load_token_file(Path(tf))
    server.start()
    print(f"kube-apiserver stand-in on {server.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
