"""The API server stand-in, driven by the real kubernetes-asyncio client: what every later
Kubernetes test relies on must hold here first."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, watch

from tests.kube import RBAC_MANIFEST, APIServer

TOKEN = "shoal-token"


def pod(name: str, node: str = "n1", ns: str = "default", phase: str = "Running",
        **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": phase, "podIP": "10.0.0.1"}}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[APIServer]:
    server = APIServer(tmp_path, rbac_files=[RBAC_MANIFEST], bookmark_interval=0.2)
    server.add_token(TOKEN, "shoal/shoal")
    server.add_token("other-token", "default/other")
    with server:
        yield server


def run(api: APIServer, body: Any, token: str = TOKEN) -> Any:
    async def go() -> Any:
        async with client.ApiClient(api.client_configuration(token)) as ac:
            return await body(ac)
    return asyncio.run(go())


def test_list_fills_metadata_and_selects(api: APIServer) -> None:
    for i in range(6):
        api.apply(pod(f"p{i}", node=f"n{i % 2}", app="web" if i < 3 else "db",
                      tier=str(i)))
    api.apply(pod("other", ns="kube-system", app="web"))

    async def body(ac: client.ApiClient) -> Any:
        v1 = client.CoreV1Api(ac)
        every = await v1.list_pod_for_all_namespaces()
        on_n0 = await v1.list_namespaced_pod("default", field_selector="spec.nodeName=n0")
        web = await v1.list_pod_for_all_namespaces(label_selector="app=web")
        sets = await v1.list_pod_for_all_namespaces(
            label_selector="tier in (1,2,9),app!=db,!missing")
        notin = await v1.list_namespaced_pod("default", label_selector="tier notin (0,1)")
        exists = await v1.list_pod_for_all_namespaces(label_selector="tier")
        phase = await v1.list_pod_for_all_namespaces(field_selector="status.phase!=Running")
        return every, on_n0, web, sets, notin, exists, phase

    every, on_n0, web, sets, notin, exists, phase = run(api, body)
    assert len(every.items) == 7
    assert int(every.metadata.resource_version) == api.resource_version
    p0 = every.items[0].metadata
    assert p0.uid and p0.creation_timestamp and p0.generation == 1
    assert [p.metadata.name for p in on_n0.items] == ["p0", "p2", "p4"]
    assert sorted(p.metadata.name for p in web.items) == ["other", "p0", "p1", "p2"]
    assert [p.metadata.name for p in sets.items] == ["p1", "p2"]
    assert [p.metadata.name for p in notin.items] == ["p2", "p3", "p4", "p5"]
    assert len(exists.items) == 6
    assert phase.items == []


def test_bad_selector_is_400(api: APIServer) -> None:
    async def body(ac: client.ApiClient) -> Any:
        with pytest.raises(client.ApiException) as e:
            await client.CoreV1Api(ac).list_pod_for_all_namespaces(
                field_selector="spec.bogus=x")
        return e.value
    err = run(api, body)
    assert err.status == 400
    assert "field label not supported: spec.bogus" in json.loads(err.body)["message"]


def test_pagination_is_consistent_while_objects_change(api: APIServer) -> None:
    for i in range(25):
        api.apply(pod(f"p{i:02}"))

    async def body(ac: client.ApiClient) -> list[str]:
        v1 = client.CoreV1Api(ac)
        names: list[str] = []
        page = await v1.list_namespaced_pod("default", limit=10)
        first_rv = page.metadata.resource_version
        assert page.metadata.remaining_item_count == 15
        api.apply(pod("p99"))  # after the first page: not in this list
        api.delete("pods", "p24")
        while True:
            names += [p.metadata.name for p in page.items]
            assert page.metadata.resource_version == first_rv
            if not page.metadata._continue:
                return names
            page = await v1.list_namespaced_pod("default", limit=10,
                                                _continue=page.metadata._continue)

    assert run(api, body) == [f"p{i:02}" for i in range(25)]


def test_watch_streams_changes_with_bookmarks(api: APIServer) -> None:
    api.apply(pod("a", node="n1"))
    api.apply(pod("b", node="n2"))

    async def body(ac: client.ApiClient) -> list[tuple[str, str]]:
        v1 = client.CoreV1Api(ac)
        listed = await v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
        seen: list[tuple[str, str]] = []
        w = watch.Watch()
        stream = w.stream(v1.list_pod_for_all_namespaces, field_selector="spec.nodeName=n1",
                          resource_version=listed.metadata.resource_version,
                          allow_watch_bookmarks=True, timeout_seconds=5)
        api.apply(pod("c", node="n1"))
        api.apply(pod("b", node="n2", changed="yes"))  # not on n1: never seen
        api.apply(pod("a", node="n1", changed="yes"))
        api.delete("pods", "c")
        api.apply(pod("b", node="n1"))  # moves onto n1: ADDED
        api.apply(pod("a", node="n3"))  # moves off n1: DELETED
        async for ev in stream:
            if ev["type"] == "BOOKMARK":
                rv = ev["raw_object"]["metadata"]["resourceVersion"]
                seen.append(("BOOKMARK", rv))
                break
            seen.append((ev["type"], ev["object"].metadata.name))
        await w.close()
        return seen

    seen = run(api, body)
    assert seen == [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "c"), ("ADDED", "b"),
                    ("DELETED", "a"), ("BOOKMARK", str(api.resource_version))]


def test_watch_from_compacted_version_is_410(api: APIServer) -> None:
    api.apply(pod("a"))
    old = api.resource_version
    api.apply(pod("b"))
    kept = api.compact()
    api.apply(pod("c"))
    api.delete("pods", "a")

    async def body(ac: client.ApiClient) -> tuple[Any, Any, Any]:
        v1 = client.CoreV1Api(ac)
        then = await v1.list_pod_for_all_namespaces(resource_version=str(kept),
                                                    resource_version_match="Exact")
        assert [p.metadata.name for p in then.items] == ["a", "b"]  # as at compaction
        resp = await v1.list_pod_for_all_namespaces(
            watch=True, resource_version=str(old), _preload_content=False)
        line = json.loads(await resp.content.readline())
        with pytest.raises(client.ApiException) as listed:
            await v1.list_pod_for_all_namespaces(resource_version=str(old),
                                                 resource_version_match="Exact")
        # The client's own Watch turns the ERROR event into an ApiException.
        with pytest.raises(client.ApiException) as watched:
            async for _ in watch.Watch().stream(v1.list_pod_for_all_namespaces,
                                                resource_version=str(old), timeout_seconds=2):
                pass
        return line, listed.value, watched.value

    line, listed, watched = run(api, body)
    assert resp_ok(line)
    assert line["object"]["code"] == 410 and line["object"]["reason"] == "Expired"
    assert listed.status == 410
    assert watched.status == 410


def resp_ok(line: dict[str, Any]) -> bool:
    return line["type"] == "ERROR" and line["object"]["kind"] == "Status"


def test_unknown_token_is_401(api: APIServer) -> None:
    async def body(ac: client.ApiClient) -> Any:
        with pytest.raises(client.ApiException) as e:
            await client.CoreV1Api(ac).list_node()
        return e.value
    err = run(api, body, token="nobody")
    assert err.status == 401
    assert json.loads(err.body)["reason"] == "Unauthorized"


def test_rbac_manifest_grants_reads_and_nothing_else(api: APIServer) -> None:
    async def body(ac: client.ApiClient) -> tuple[Any, Any]:
        v1 = client.CoreV1Api(ac)
        await v1.list_node()
        await client.CustomObjectsApi(ac).list_cluster_custom_object(
            "monitoring.coreos.com", "v1", "servicemonitors")
        with pytest.raises(client.ApiException) as apps:
            await client.CustomObjectsApi(ac).list_cluster_custom_object(
                "monitoring.coreos.com", "v1", "prometheusrules")
        await v1.list_namespaced_pod("default")
        return apps.value, await client.VersionApi(ac).get_code()

    forbidden, version = run(api, body)
    assert forbidden.status == 403
    st = json.loads(forbidden.body)
    assert st["reason"] == "Forbidden" and st["details"]["group"] == "monitoring.coreos.com"
    assert st["message"] == (
        'prometheusrules is forbidden: User "system:serviceaccount:shoal:shoal" cannot list '
        'resource "prometheusrules" in API group "monitoring.coreos.com" at the cluster scope')
    assert version.git_version.startswith("v1.")

    async def other(ac: client.ApiClient) -> Any:
        with pytest.raises(client.ApiException) as e:
            await client.CoreV1Api(ac).list_namespaced_pod("default")
        return e.value
    err = run(api, other, token="other-token")
    assert err.status == 403
    assert 'in the namespace "default"' in json.loads(err.body)["message"]
    unused = api.auth.unused_grants("shoal")
    assert ("list", "", "nodes") not in {(g.verb, g.api_group, g.resource) for g in unused}
    assert ("watch", "", "nodes") in {(g.verb, g.api_group, g.resource) for g in unused}


def test_discovery_documents_and_crds(api: APIServer) -> None:
    async def body(ac: client.ApiClient) -> tuple[Any, Any, Any]:
        groups = await client.ApisApi(ac).get_api_versions()
        core = await client.CoreV1Api(ac).get_api_resources()
        mon = await client.CustomObjectsApi(ac).get_api_resources("monitoring.coreos.com", "v1")
        return groups, core, mon

    groups, core, mon = run(api, body)
    names = {g.name for g in groups.groups}
    assert {"discovery.k8s.io", "networking.k8s.io", "monitoring.coreos.com"} <= names
    core_names = {r.name for r in core.resources}
    assert {"nodes", "nodes/metrics", "pods", "services", "endpoints"} <= core_names
    assert {r.kind for r in mon.resources} >= {"ServiceMonitor", "PodMonitor", "Probe"}


def test_watch_cut_and_restart_on_same_port(api: APIServer) -> None:
    api.apply(pod("a"))
    port = api.port

    async def body(ac: client.ApiClient) -> tuple[type[BaseException], int]:
        v1 = client.CoreV1Api(ac)
        resp = await v1.list_pod_for_all_namespaces(watch=True, _preload_content=False)
        assert json.loads(await resp.content.readline())["type"] == "ADDED"
        api.stop()
        with socket.socket() as s:
            refused = s.connect_ex(("127.0.0.1", port))
        with pytest.raises(Exception) as cut:
            while await resp.content.readline():
                pass
            raise EOFError
        return cut.type, refused

    err, refused = run(api, body)
    assert refused != 0
    api.start()
    assert api.port == port
    api.apply(pod("b"))
    got = run(api, lambda ac: client.CoreV1Api(ac).list_pod_for_all_namespaces())
    assert [p.metadata.name for p in got.items] == ["a", "b"]


def test_cut_watches_mid_stream(api: APIServer) -> None:
    async def body(ac: client.ApiClient) -> int:
        v1 = client.CoreV1Api(ac)
        resp = await v1.list_pod_for_all_namespaces(
            watch=True, resource_version=str(api.resource_version), _preload_content=False)
        api.apply(pod("x"))
        assert json.loads(await resp.content.readline())["object"]["metadata"]["name"] == "x"
        assert api.cut_watches() == 1
        with pytest.raises(Exception):  # noqa: B017 - aiohttp's payload error, by version
            await asyncio.wait_for(resp.content.readline(), 5)
        return len(api.requests(verb="watch", resource="pods"))

    assert run(api, body) == 1


def test_server_closes_watch_after_timeout(tmp_path: Path) -> None:
    with APIServer(tmp_path, watch_timeout=0.3) as server:
        server.add_token(TOKEN)

        async def body(ac: client.ApiClient) -> bytes:
            resp = await client.CoreV1Api(ac).list_node(watch=True, _preload_content=False)
            return await asyncio.wait_for(resp.content.read(), 5)
        assert run(server, body) == b""


def test_yaml_objects_and_malformed_injection(api: APIServer, tmp_path: Path) -> None:
    (tmp_path / "objs.yaml").write_text(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n"
        "status: {addresses: [{type: InternalIP, address: 10.1.0.1}]}\n---\n"
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: web-abc, namespace: shop}\nendpoints: []\n---\n"
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\n"
        "metadata: {name: web, namespace: shop}\nspec: {endpoints: [{port: web}]}\n")
    assert api.load(tmp_path / "objs.yaml") == 3
    assert api.load(RBAC_MANIFEST) == 3  # the manifest as a whole: its ServiceAccount too
    assert api.get("serviceaccounts", "shoal", "shoal")["metadata"]["uid"]
    api.inject_malformed("pods", {"metadata": {"name": "bad"}, "spec": {"containers": "oops"}})

    async def body(ac: client.ApiClient) -> tuple[Any, Any, Any]:
        v1 = client.CoreV1Api(ac)
        nodes = await v1.list_node()
        sms = await client.CustomObjectsApi(ac).list_namespaced_custom_object(
            "monitoring.coreos.com", "v1", "shop", "servicemonitors")
        raw = await v1.list_pod_for_all_namespaces(_preload_content=False)
        return nodes, sms, json.loads(await raw.read())

    nodes, sms, raw = run(api, body)
    assert nodes.items[0].status.addresses[0].address == "10.1.0.1"
    assert sms["items"][0]["kind"] == "ServiceMonitor"  # CRD lists keep kind on items
    assert raw["items"][0]["spec"]["containers"] == "oops"


def test_legacy_watch_path_and_timeout_seconds(api: APIServer) -> None:
    api.apply(pod("a", ns="shop"))
    api.apply(pod("b", ns="default"))

    async def body(ac: client.ApiClient) -> list[dict[str, Any]]:
        resp = await ac.call_api(
            "/api/v1/watch/namespaces/shop/pods", "GET",
            query_params=[("timeoutSeconds", "1")], auth_settings=["BearerToken"],
            _preload_content=False)
        text = await asyncio.wait_for(resp.read(), 10)  # the server ends it after 1 s
        return [json.loads(line) for line in text.splitlines()]

    events = run(api, body)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a")]
    assert api.requests(verb="watch")[-1].path == "/api/v1/watch/namespaces/shop/pods"


def test_own_metrics_need_the_nonresource_grant(api: APIServer) -> None:
    api.apply(pod("a"))

    async def body(ac: client.ApiClient) -> str:
        await client.CoreV1Api(ac).list_pod_for_all_namespaces()
        resp = await ac.call_api("/metrics", "GET", auth_settings=["BearerToken"],
                                 _preload_content=False)
        return (await resp.read()).decode()

    text = run(api, body)
    assert 'apiserver_request_total{code="200",component="apiserver",resource="pods",' \
        'verb="LIST"} 1' in text
    assert ("get", "", "/metrics") not in {
        (g.verb, g.api_group, g.resource) for g in api.auth.unused_grants("shoal")}

    async def other(ac: client.ApiClient) -> int:
        with pytest.raises(client.ApiException) as e:
            await ac.call_api("/metrics", "GET", auth_settings=["BearerToken"])
        return e.value.status
    assert run(api, other, token="other-token") == 403
