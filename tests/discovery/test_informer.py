"""Informers against the API server stand-in: changes arrive within a second, a 410 relists
without losing objects, restarts and credential failures leave the copy intact, and one
watch serves every subscriber of a key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.discovery.informer import Informer, InformerKey
from agent.discovery.informers import Informers
from agent.discovery.kubeclient import ClientSettings, InCluster, KubeClient, connect
from agent.httpconfig import HTTPClientConfig, TLSConfig
from tests.kube import RBAC_MANIFEST, APIServer

TOKEN = "informer-token"
PODS = InformerKey("", "v1", "pods")


def pod(name: str, node: str = "n1", ns: str = "default", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[APIServer]:
    server = APIServer(tmp_path, rbac_files=[RBAC_MANIFEST])
    server.add_token(TOKEN, "shoal/shoal")
    for i in range(3):
        server.apply(pod(f"p{i}", node=f"n{i % 2}"))
    with server:
        yield server


def settings(api: APIServer, token: str = TOKEN, **kw: Any) -> ClientSettings:
    return ClientSettings(api_server=api.url, http=HTTPClientConfig(
        bearer_token=token, tls_config=TLSConfig(ca_file=str(api.certs.ca))), **kw)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until cond holds; fails the test after timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def on_add(self, obj: dict[str, Any]) -> None:
        self.seen.append(("add", obj["metadata"]["name"]))

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.seen.append(("update", new["metadata"]["name"]))

    def on_delete(self, obj: dict[str, Any]) -> None:
        self.seen.append(("delete", obj["metadata"]["name"]))


def run_informer(api: APIServer, body: Callable[[Informer], Awaitable[None]],
                 key: InformerKey = PODS, cs: ClientSettings | None = None,
                 **opts: Any) -> Informer:
    async def go() -> Informer:
        client = await connect(cs or settings(api))
        inf = Informer(client, key, min_backoff=0.05, max_backoff=0.2, **opts)
        inf.start()
        try:
            assert await inf.wait_synced(5)
            await body(inf)
        finally:
            await inf.stop()
            await client.close()
        return inf
    return asyncio.run(go())


async def failing(cs: ClientSettings, reason: str) -> Informer:
    """An informer that keeps failing for `reason`, after its second failure."""
    client = await connect(cs)
    inf = Informer(client, PODS, min_backoff=0.05, max_backoff=0.1)
    inf.start()
    await until(lambda: inf.errors[reason] >= 2)
    await inf.stop()
    await client.close()
    return inf


def names(inf: Informer) -> list[str]:
    return sorted(o["metadata"]["name"] for o in inf.list())


def test_changes_arrive_within_a_second(api: APIServer) -> None:
    rec = Recorder()

    async def body(inf: Informer) -> None:
        inf.subscribe(rec)
        assert names(inf) == ["p0", "p1", "p2"]
        api.apply(pod("p3"))
        assert await until(lambda: ("add", "p3") in rec.seen) < 1
        api.apply(pod("p0", changed="yes"))
        assert await until(lambda: ("update", "p0") in rec.seen) < 1
        api.delete("pods", "p1")
        assert await until(lambda: ("delete", "p1") in rec.seen) < 1
        assert names(inf) == ["p0", "p2", "p3"]
        assert inf.get("default", "p0")["metadata"]["labels"] == {"changed": "yes"}

    inf = run_informer(api, body)
    assert rec.seen[:3] == [("add", "p0"), ("add", "p1"), ("add", "p2")]
    assert inf.health.healthy is True


def test_selectors_and_namespaces(api: APIServer) -> None:
    api.apply(pod("k", ns="kube-system", node="n0"))
    api.apply(pod("s", ns="shop", node="n0"))
    key = InformerKey("", "v1", "pods", namespaces=("kube-system", "default"),
                      field_selector="spec.nodeName=n0")

    async def body(inf: Informer) -> None:
        assert names(inf) == ["k", "p0", "p2"]
        api.apply(pod("p0", node="n1"))  # leaves the selection: a delete
        await until(lambda: names(inf) == ["k", "p2"])

    inf = run_informer(api, body, key=key)
    assert inf.watches >= 2  # one per namespace


def test_forced_410_relists_without_losing_objects(api: APIServer) -> None:
    rec = Recorder()

    async def body(inf: Informer) -> None:
        inf.subscribe(rec)
        rec.seen.clear()
        lists = inf.lists
        api.stop()  # while the informer cannot watch, history moves on and is compacted
        api.apply(pod("p3"))
        api.delete("pods", "p2")
        api.compact()
        api.start()
        await until(lambda: inf.lists > lists, 10)
        await until(lambda: names(inf) == ["p0", "p1", "p3"])
        assert inf.errors["gone"] >= 1

    run_informer(api, body)
    # Only the differences: p0 and p1 were never deleted and re-added.
    assert sorted(rec.seen) == [("add", "p3"), ("delete", "p2")]


def test_bookmarks_keep_the_resume_point_fresh(api: APIServer) -> None:
    """Without bookmarks a quiet watch would resume from a compacted version and relist."""
    async def body(inf: Informer) -> None:
        await until(lambda: api.open_watches == 1)
        api.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n9"}})
        api.send_bookmarks()
        await until(lambda: inf.resource_versions[""] == str(api.resource_version))
        api.compact()
        api.cut_watches()
        api.apply(pod("after"))
        await until(lambda: "after" in names(inf))
        assert inf.lists == 1 and inf.errors["gone"] == 0
        assert inf.events["BOOKMARK"] >= 1

    run_informer(api, body)


def test_kept_objects_are_compacted(api: APIServer) -> None:
    heavy = pod("heavy")
    heavy["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    api.apply(heavy)

    async def body(inf: Informer) -> None:
        assert "managedFields" not in inf.get("default", "heavy")["metadata"]
        api.apply(heavy | {"status": {"phase": "Failed"}})
        await until(lambda: inf.get("default", "heavy")["status"]["phase"] == "Failed")
        assert "managedFields" not in inf.get("default", "heavy")["metadata"]
        # Repeated short strings are one object, whether listed or watched.
        images = [o["spec"]["containers"][0]["image"] for o in inf.list()]
        assert len(images) == 4 and all(i is images[0] for i in images)

    run_informer(api, body)


def test_restarted_api_server_is_survived(api: APIServer) -> None:
    async def body(inf: Informer) -> None:
        lists = inf.lists
        api.stop()
        await until(lambda: inf.health.healthy is False)
        assert names(inf) == ["p0", "p1", "p2"]  # kept while the server is away
        assert inf.health.reason in ("disconnected", "unreachable")
        api.start()
        await asyncio.sleep(0.3)
        api.apply(pod("p9"))
        await until(lambda: "p9" in names(inf))
        assert inf.health.healthy is True
        assert inf.lists == lists  # resumed from its resourceVersion, no relist

    run_informer(api, body)


@pytest.mark.parametrize("first_rv", [0, 10_000], ids=["versions-behind", "versions-ahead"])
def test_replaced_api_server_is_relisted(api: APIServer, tmp_path: Path, first_rv: int) -> None:
    """A new server on the same address (a restored etcd, a restarted stand-in process)
    whose versions are behind ours (too large) or ahead (410): relist, keep what exists."""
    rec = Recorder()

    async def body(inf: Informer) -> None:
        for v in ("1", "2"):  # our version moves past the new server's
            api.apply(pod("p2", v=v))
        await until(lambda: inf.resource_versions[""] == str(api.resource_version))
        inf.subscribe(rec)
        rec.seen.clear()
        api.stop()
        other = APIServer(tmp_path, port=api.port, rbac_files=[RBAC_MANIFEST],
                          first_resource_version=first_rv)
        other.add_token(TOKEN, "shoal/shoal")
        for name in ("p0", "p1", "new"):
            other.apply(pod(name))
        with other:
            await until(lambda: names(inf) == ["new", "p0", "p1"], 10)
        assert inf.lists == 2

    run_informer(api, body)
    # p0 and p1 were never deleted (they may be updated: their versions changed or not).
    assert sorted(e for e in rec.seen if e[0] != "update") == [("add", "new"), ("delete", "p2")]


def test_cut_watch_resumes_from_last_version(api: APIServer) -> None:
    async def body(inf: Informer) -> None:
        await until(lambda: api.open_watches == 1)
        api.apply(pod("before-cut"))
        await until(lambda: "before-cut" in names(inf))
        seen = str(api.resource_version)
        watches = len(api.requests(verb="watch"))
        api.cut_watches()
        api.apply(pod("after-cut"))
        await until(lambda: "after-cut" in names(inf))
        again = api.requests(verb="watch")
        assert len(again) == watches + 1
        assert again[-1].query["resourceVersion"] == seen  # no event replayed
        assert inf.lists == 1

    run_informer(api, body)


def test_401_and_403_show_in_health_and_keep_the_cache(api: APIServer) -> None:
    registry = CollectorRegistry()

    async def body(inf: Informer) -> None:
        api.auth.remove_token(TOKEN)
        api.cut_watches()
        await until(lambda: inf.errors["unauthorized"] >= 1)
        assert inf.health.healthy is False and inf.health.reason == "unauthorized"
        assert names(inf) == ["p0", "p1", "p2"]
        assert registry.get_sample_value("shoal_kubernetes_informer_errors_total",
                                         {"resource": str(PODS), "reason": "unauthorized"}) >= 1
        api.add_token(TOKEN, "shoal/shoal")
        api.apply(pod("p4"))
        await until(lambda: "p4" in names(inf))
        assert inf.health.healthy is True

    run_informer(api, body, registry=registry)
    assert registry.get_sample_value("shoal_kubernetes_informer_objects",
                                     {"resource": str(PODS)}) is None  # unregistered on stop

    api.add_token("nobody-token", "default/nobody")  # no binding: every list is 403

    inf = asyncio.run(failing(settings(api, token="nobody-token"), "forbidden"))
    assert inf.health.reason == "forbidden"
    assert "cannot list resource" in inf.health.message
    assert not inf.synced.is_set()


def test_rotated_token_file_is_picked_up(api: APIServer, tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("first-token")
    (sa / "ca.crt").write_bytes(api.certs.ca.read_bytes())
    (sa / "namespace").write_text("shoal\n")
    api.add_token("first-token")
    in_cluster = InCluster(sa / "token", sa / "ca.crt", sa / "namespace", host=api.url)
    cs = ClientSettings(in_cluster=in_cluster, token_reread=0.2)

    async def body(inf: Informer) -> None:
        assert inf.client.namespace == "shoal"
        # Kubernetes writes the new token, then the old one expires.
        api.add_token("second-token")
        (sa / "token").write_text("second-token")
        await asyncio.sleep(0.3)
        api.auth.remove_token("first-token")
        api.cut_watches()
        api.apply(pod("p5"))
        await until(lambda: "p5" in names(inf))
        users = {r.user for r in api.requests(verb="watch")[-1:]}
        assert users == {"system:serviceaccount:shoal:shoal"}

    inf = run_informer(api, body, cs=cs)
    assert inf.errors["unauthorized"] == 0


def test_bearer_token_file_is_read_again(api: APIServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("file-token-1\n")
    api.add_token("file-token-1")
    cs = ClientSettings(api_server=api.url, token_reread=3600, http=HTTPClientConfig(
        bearer_token_file=str(token), tls_config=TLSConfig(ca_file=str(api.certs.ca))))

    async def body(inf: Informer) -> None:
        api.add_token("file-token-2")
        token.write_text("file-token-2\n")
        api.auth.remove_token("file-token-1")
        api.cut_watches()
        api.apply(pod("p6"))
        # Cached for an hour, but the 401 makes the client read the file again.
        await until(lambda: "p6" in names(inf))
        assert inf.errors["unauthorized"] >= 1

    run_informer(api, body, cs=cs)
    assert api.requests(verb="watch")[-1].user == "system:serviceaccount:shoal:shoal"


def test_malformed_objects_are_counted_and_skipped(api: APIServer) -> None:
    api.inject_malformed("pods", {"metadata": {"namespace": "default"}, "spec": {}})

    async def body(inf: Informer) -> None:
        assert inf.errors["malformed"] == 1  # the nameless one in the list
        api.inject_malformed("pods", {"metadata": {"name": "odd"}, "spec": "not-a-map"})
        await until(lambda: "odd" in names(inf))  # stored as is: the roles judge content
        api.inject_malformed("pods", {"kind": "Pod", "metadata": "nonsense"})
        api.apply(pod("fine"))
        await until(lambda: "fine" in names(inf))
        assert inf.errors["malformed"] == 2
        assert inf.health.reason == "malformed" and "object" in inf.health.message
        assert names(inf) == ["fine", "odd", "p0", "p1", "p2"]

    run_informer(api, body)


def test_two_subscribers_share_one_watch(api: APIServer) -> None:
    registry = CollectorRegistry()

    async def go() -> None:
        shared = Informers(registry=registry, min_backoff=0.05, max_backoff=0.2)
        shared.start()
        cs = settings(api)
        a = await shared.acquire(cs, InformerKey("", "v1", "pods", ("b", "a")))
        b = await shared.acquire(cs, InformerKey("", "v1", "pods", ("a", "b", "a")))
        c = await shared.acquire(cs, PODS)
        assert a is b and a is not c
        rec_a, rec_b = Recorder(), Recorder()
        a.subscribe(rec_a)
        b.subscribe(rec_b)
        await c.wait_synced(5)
        await a.wait_synced(5)
        api.apply(pod("new", ns="a"))
        await until(lambda: ("add", "new") in rec_a.seen and ("add", "new") in rec_b.seen)
        def watches(pred: Callable[[str], bool]) -> int:
            return len([w for w in api.requests(verb="watch", resource="pods") if pred(w.path)])

        # A synced informer has listed; its watch opens a moment later.
        await until(lambda: watches(lambda p: p == "/api/v1/pods") >= 1)
        assert watches(lambda p: p.endswith("/namespaces/a/pods")) == 1
        assert watches(lambda p: p == "/api/v1/pods") == 1
        await shared.release(cs, a)
        assert a.synced.is_set() and len(shared.running()) == 2  # b still holds it
        await shared.release(cs, b)
        assert len(shared.running()) == 1
        # c watches every namespace on its own connection: it sees "new" in its own time.
        await until(lambda: registry.get_sample_value("shoal_kubernetes_informer_objects",
                                                      {"resource": str(c.key)}) == 4)
        await shared.stop()
        assert shared.running() == []
        assert registry.get_sample_value("shoal_kubernetes_informer_objects",
                                         {"resource": str(c.key)}) is None

    asyncio.run(go())
    assert api.open_watches == 0 or time.sleep(0.5) or api.open_watches == 0


def test_concurrent_acquires_make_one_informer(api: APIServer) -> None:
    async def go() -> None:
        shared = Informers(min_backoff=0.05, max_backoff=0.2)
        cs = settings(api)
        got = await asyncio.gather(*(shared.acquire(cs, PODS) for _ in range(5)))
        assert all(inf is got[0] for inf in got)
        await got[0].wait_synced(5)
        for inf in got[:4]:
            await shared.release(cs, inf)
        assert shared.running() == [got[0]]
        await shared.release(cs, got[4])
        assert shared.running() == []
        await shared.stop()
        with pytest.raises(RuntimeError, match="stopped"):
            await shared.acquire(cs, PODS)

    asyncio.run(go())
    assert len(api.requests(verb="list", resource="pods")) == 1


def test_kubeconfig_and_errors(api: APIServer, tmp_path: Path) -> None:
    cfg = api.kubeconfig(tmp_path / "kubeconfig", TOKEN, namespace="monitoring")

    async def go() -> tuple[KubeClient, dict[str, Any]]:
        client = await connect(ClientSettings(kubeconfig_file=str(cfg)))
        body = await client.get_json("/api/v1/nodes")
        await client.close()
        return client, body

    client, body = asyncio.run(go())
    assert client.namespace == "monitoring" and body["kind"] == "NodeList"
    from agent.discovery.kubeclient import KubeConfigError
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        asyncio.run(connect(ClientSettings(in_cluster=InCluster(
            tmp_path / "t", tmp_path / "c", tmp_path / "n"))))
    with pytest.raises(KubeConfigError, match="does not exist"):
        asyncio.run(connect(ClientSettings(in_cluster=InCluster(
            tmp_path / "t", tmp_path / "c", tmp_path / "n", host=api.url))))


def test_insecure_skip_verify_and_unreachable(api: APIServer) -> None:
    cs = ClientSettings(api_server=api.url, http=HTTPClientConfig(
        bearer_token=TOKEN, tls_config=TLSConfig(insecure_skip_verify=True)))

    async def body(inf: Informer) -> None:
        assert names(inf) == ["p0", "p1", "p2"]

    run_informer(api, body, cs=cs)

    down = ClientSettings(api_server="https://127.0.0.1:1",
                          http=HTTPClientConfig(bearer_token=TOKEN))
    inf = asyncio.run(failing(down, "unreachable"))
    assert inf.health.healthy is False and inf.objects == {}
