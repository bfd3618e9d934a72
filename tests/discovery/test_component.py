"""discovery.kubernetes under the runtime against the API server stand-in: the exported
targets are the builders' for the objects served, and follow adds, changes and deletes
within a second; errors show on the health while the known targets stay."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.components.discovery_kubernetes import DiscoveryKubernetes
from agent.convert.prometheus import convert
from agent.discovery.informers import Informers
from agent.discovery.kubeclient import InCluster
from agent.discovery.roles import build
from agent.runtime.controller import Controller
from agent.runtime.health import State
from agent.runtime.services import HTTP, KUBERNETES_INFORMERS, Services
from agent.server.http import HTTPInfo
from tests.components.helpers import files, make_registry, metrics_text, run
from tests.discovery.fixtures import OBJECTS, load, lookups, named
from tests.discovery.test_informer import until
from tests.kube import RBAC_MANIFEST, APIServer

TOKEN = "component-token"
M = "__meta_kubernetes_"
KINDS = {"node": "Node", "pod": "Pod", "service": "Service", "endpoints": "Endpoints",
         "endpointslice": "EndpointSlice", "ingress": "Ingress"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[APIServer]:
    server = APIServer(tmp_path / "api", objects=yaml.safe_load(OBJECTS.read_text()),
                       rbac_files=[RBAC_MANIFEST])
    server.add_token(TOKEN, "shoal/shoal")
    with server:
        yield server


def config(api: APIServer, role: str, extra: str = "", token: str = TOKEN) -> str:
    return f'''
discovery.kubernetes "k" {{
  role         = "{role}"
  api_server   = "{api.url}"
  bearer_token = "{token}"
  tls_config {{
    ca_file = "{api.certs.ca}"
  }}
  {extra}
}}
'''


def controller(tmp_path: Path, informers: Informers) -> Controller:
    services = Services(**{HTTP: HTTPInfo("127.0.0.1:12345"), KUBERNETES_INFORMERS: informers})
    return Controller(storage_path=tmp_path / "data", registry=make_registry(), services=services)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, src: str) -> AsyncIterator[tuple[Controller, Informers]]:
    """The configuration running under a controller with its own shared informers."""
    informers = Informers(min_backoff=0.05, max_backoff=0.2)
    c = controller(tmp_path, informers)
    await c.load(files(src))
    try:
        yield c, informers
    finally:
        await c.stop()
        await informers.stop()


def _key(t: dict[str, str]) -> tuple:
    return tuple(sorted(t.items()))


def expected(role: str, objs: dict[str, list[dict[str, Any]]], attach_node: bool = False,
             attach_namespace: bool = False) -> list[tuple]:
    lk = lookups(objs, attach_node, attach_namespace)
    return sorted(_key(t) for o in objs[KINDS[role]] for t in build(role, o, lk).flatten())


def exported(c: Controller) -> list[tuple]:
    return sorted(_key(t) for t in c.node("discovery.kubernetes.k").exports.targets)


@pytest.mark.parametrize("role,attach", [
    ("node", False), ("pod", False), ("pod", True), ("service", False), ("endpoints", False),
    ("endpoints", True), ("endpointslice", True), ("ingress", False),
])
def test_exports_the_builders_targets_for_each_role(tmp_path: Path, api: APIServer, role: str, attach: bool) -> None:
    objs = load()

    async def go() -> None:
        extra = "attach_metadata {\n    node = true\n  }" if attach else ""
        async with running(tmp_path, config(api, role, extra)) as (c, _):
            want = expected(role, objs, attach)
            await until(lambda: exported(c) == want)
            assert c.node("discovery.kubernetes.k").health().state == State.HEALTHY

    run(go())


def test_watch_add_change_delete_within_a_second(tmp_path: Path, api: APIServer) -> None:
    objs = load()

    async def go() -> None:
        async with running(tmp_path, config(api, "pod", "attach_metadata {\n    node = true\n  }")) as (c, informers):
            await until(lambda: exported(c) == expected("pod", objs, True))

            def addresses() -> set[str]:
                return {t["__address__"] for t in c.node("discovery.kubernetes.k").exports.targets}

            # Added: a new pod's target appears.
            new = copy.deepcopy(named(objs, "Pod", "checkout-5d8f7b9c6-fghij"))
            new["metadata"]["name"] = "checkout-5d8f7b9c6-klmno"
            new["status"]["podIP"] = "10.244.1.99"
            await asyncio.to_thread(api.apply, new)
            assert await until(lambda: "10.244.1.99:8080" in addresses(), 1.0) < 1.0

            # Changed: a pending pod gets its IP.
            report = copy.deepcopy(named(objs, "Pod", "report-28911230-q7w8e"))
            report["status"]["podIP"] = "10.244.2.50"
            await asyncio.to_thread(api.apply, report)
            assert await until(lambda: "10.244.2.50" in addresses(), 1.0) < 1.0

            # A node's label changes: the pods on it carry the new label (attach_metadata node).
            node = copy.deepcopy(named(objs, "Node", "worker-b"))
            node["metadata"]["labels"]["tier"] = "spot"
            await asyncio.to_thread(api.apply, node)

            def on_b_labelled() -> bool:
                ts = [t for t in c.node("discovery.kubernetes.k").exports.targets if t[M + "pod_node_name"] == "worker-b"]
                return bool(ts) and all(t.get(M + "node_label_tier") == "spot" for t in ts)
            assert await until(on_b_labelled, 1.0) < 1.0

            # Deleted: its targets go.
            await asyncio.to_thread(api.delete, "pods", "checkout-5d8f7b9c6-klmno", "shop")
            assert await until(lambda: "10.244.1.99:8080" not in addresses(), 1.0) < 1.0

    run(go())


def test_endpoints_follow_their_pods_and_services(tmp_path: Path, api: APIServer) -> None:
    objs = load()

    async def go() -> None:
        async with running(tmp_path, config(api, "endpoints")) as (c, informers):
            await until(lambda: exported(c) == expected("endpoints", objs))
            svc = copy.deepcopy(named(objs, "Service", "checkout"))
            svc["metadata"]["labels"]["release"] = "blue"
            await asyncio.to_thread(api.apply, svc)
            pod = copy.deepcopy(named(objs, "Pod", "checkout-5d8f7b9c6-fghij"))
            pod["status"]["conditions"][0]["status"] = "False"
            await asyncio.to_thread(api.apply, pod)
            objs2 = copy.deepcopy(objs)
            named(objs2, "Service", "checkout")["metadata"] = svc["metadata"]
            named(objs2, "Pod", "checkout-5d8f7b9c6-fghij")["status"] = pod["status"]
            want = expected("endpoints", {**objs, "Service": objs2["Service"], "Pod": objs2["Pod"]})
            await until(lambda: exported(c) == want, 1.0)

    run(go())


def test_errors_show_on_health_and_known_targets_stay(tmp_path: Path, api: APIServer) -> None:
    objs = load()

    async def go() -> None:
        async with running(tmp_path, config(api, "service")) as (c, informers):
            want = expected("service", objs)
            await until(lambda: exported(c) == want)
            node = c.node("discovery.kubernetes.k")
            await asyncio.to_thread(api.stop)
            await until(lambda: node.health().state == State.UNHEALTHY)
            assert "services" in node.health().message
            assert exported(c) == want
            await asyncio.to_thread(api.start)
            await until(lambda: node.health().state == State.HEALTHY, 10.0)
            assert exported(c) == want

    run(go())


def test_forbidden_and_malformed_objects(tmp_path: Path, api: APIServer) -> None:
    async def go() -> None:
        async with running(tmp_path, config(api, "node", token="not-a-token")) as (c, informers):
            node = c.node("discovery.kubernetes.k")
            await until(lambda: node.health().state == State.UNHEALTHY)
            assert "unauthorized" in node.health().message
            assert node.exports.targets == []
            # A node without an address and one with a mistyped field: counted, never a crash.
            await c.load(files(config(api, "node")))
            await until(lambda: len(node.exports.targets) == 2)
            await asyncio.to_thread(api.inject_malformed, "nodes", {
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": "bare", "labels": ["x"]},
                "status": {"addresses": []},
            })
            await until(lambda: 'reason="node_without_address"' in metrics_text(c))
            text = metrics_text(c)
            assert 'shoal_discovery_kubernetes_object_problems_total{component_id="discovery.kubernetes.k",reason="malformed_field",role="node"} 1.0' in text
            assert len(node.exports.targets) == 2

    run(go())


def test_validation_messages(tmp_path: Path, api: APIServer) -> None:
    c = controller(tmp_path, Informers())
    cases = {
        'role = "pods"': 'invalid role "pods"',
        'role = "pod"\n  api_server = "https://x"\n  kubeconfig_file = "/k"': "cannot use 'kubeconfig_file' and 'api_server' simultaneously",
        'role = "pod"\n  bearer_token = "t"': "to use custom HTTP client configuration please provide the 'api_server' URL explicitly",
        'role = "service"\n  selectors {\n    role = "pod"\n  }': "service role supports only service selectors",
        'role = "pod"\n  selectors {\n    role = "pod"\n  }\n  selectors {\n    role = "pod"\n  }': "duplicated selector role: pod",
        'role = "pod"\n  api_server = "https://x"\n  namespaces {\n    own_namespace = true\n  }': "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously",
        'role = "pod"\n  selectors {\n    role = "pod"\n    label = "app in (web"\n  }': 'invalid label selector "app in (web": unbalanced',
        'role = "pod"\n  selectors {\n    role = "pod"\n    field = "spec.nodeName"\n  }': 'invalid field selector "spec.nodeName": cannot understand',
    }
    for body, message in cases.items():
        with pytest.raises(Exception) as exc:
            c.check(files(f'discovery.kubernetes "k" {{\n  {body}\n}}\n'))
        assert message in str(exc.value), (body, str(exc.value))


def test_forced_410_relists_without_losing_targets(tmp_path: Path, api: APIServer) -> None:
    objs = load()

    async def go() -> None:
        async with running(tmp_path, config(api, "pod")) as (c, informers):
            old = expected("pod", objs)
            await until(lambda: exported(c) == old)
            # While the informer cannot watch, history moves on and is compacted: its resumed
            # watch gets 410 Gone and it lists again.
            await asyncio.to_thread(api.stop)
            pod = copy.deepcopy(named(objs, "Pod", "static-web-worker-a"))
            pod["metadata"]["name"] = "static-web-2"
            pod["status"]["podIP"] = "10.244.1.41"
            await asyncio.to_thread(api.apply, pod)
            await asyncio.to_thread(api.delete, "pods", "coredns-7db6d8ff4d-x2k9p", "kube-system")
            await asyncio.to_thread(api.compact)
            objs["Pod"] = [p for p in objs["Pod"] if p["metadata"]["name"] != "coredns-7db6d8ff4d-x2k9p"] + [pod]
            new = expected("pod", objs)
            lists = len(api.requests(verb="list", resource="pods"))
            seen = []
            await asyncio.to_thread(api.start)
            deadline = time.monotonic() + 10
            while exported(c) != new and time.monotonic() < deadline:
                seen.append(exported(c))
                await asyncio.sleep(0.005)
            assert exported(c) == new
            assert len(api.requests(verb="list", resource="pods")) > lists
            assert informers.running()[0].errors["gone"] >= 1
            # Never an empty or partial set: the old targets until the relist, then the new.
            assert all(s == old for s in seen)

    run(go())


def test_in_cluster_own_namespace(tmp_path: Path, api: APIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    (sa / "namespace").write_text("shop\n")
    monkeypatch.setattr(DiscoveryKubernetes, "in_cluster", InCluster(
        token_file=sa / "token", ca_file=api.certs.ca, namespace_file=sa / "namespace", host=api.url))
    objs = load()
    objs["Pod"] = [p for p in objs["Pod"] if p["metadata"]["namespace"] == "shop"]

    async def go() -> None:
        async with running(tmp_path, 'discovery.kubernetes "k" {\n  role = "pod"\n  namespaces {\n    own_namespace = true\n  }\n}\n') as (c, informers):
            await until(lambda: exported(c) == expected("pod", objs))
            assert {r.path for r in api.requests(verb="list", resource="pods")} == {"/api/v1/namespaces/shop/pods"}

    run(go())


def test_kubeconfig_file_and_reload_to_other_arguments(tmp_path: Path, api: APIServer) -> None:
    objs = load()
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig", TOKEN)

    def src(role: str, extra: str = "") -> str:
        return f'discovery.kubernetes "k" {{\n  role = "{role}"\n  kubeconfig_file = "{kubeconfig}"\n  {extra}\n}}\n'

    async def go() -> None:
        async with running(tmp_path, src("ingress")) as (c, informers):
            await until(lambda: exported(c) == expected("ingress", objs))
            # New arguments: the same component, new informers; the old ones are released.
            await c.load(files(src("service", 'namespaces {\n    names = ["kube-system"]\n  }')))
            kube_system = {**objs, "Service": [s for s in objs["Service"]
                                               if s["metadata"]["namespace"] == "kube-system"]}
            await until(lambda: exported(c) == expected("service", kube_system))
            assert [str(i.key) for i in informers.running()] == ["services ns=kube-system"]

    run(go())


def test_components_share_one_informer_per_resource(tmp_path: Path, api: APIServer) -> None:
    objs = load()
    src = "\n".join([
        config(api, "pod").replace('"k"', '"a"'),
        config(api, "pod").replace('"k"', '"b"'),
        # Endpoints reads pods and services too: the same pods informer serves it.
        config(api, "endpoints").replace('"k"', '"c"'),
    ])

    async def go() -> None:
        async with running(tmp_path, src) as (c, informers):
            def targets(name: str) -> list[tuple]:
                return sorted(_key(t) for t in c.node(f"discovery.kubernetes.{name}").exports.targets)
            await until(lambda: targets("a") == targets("b") == expected("pod", objs)
                        and targets("c") == expected("endpoints", objs))
            assert sorted(str(i.key) for i in informers.running()) == [
                "endpoints ns=*", "pods ns=*", "services ns=*"]
            assert len(api.requests(verb="list", resource="pods")) == 1

    run(go())


def test_attach_metadata_namespace_follows_the_namespace(tmp_path: Path, api: APIServer) -> None:
    objs = load()
    attach = "attach_metadata {\n    namespace = true\n  }"

    async def go() -> None:
        async with running(tmp_path, config(api, "service", attach)) as (c, informers):
            await until(lambda: exported(c) == expected("service", objs, attach_namespace=True))
            ns = copy.deepcopy(named(objs, "Namespace", "shop"))
            ns["metadata"]["labels"]["team"] = "checkout"
            await asyncio.to_thread(api.apply, ns)
            named(objs, "Namespace", "shop")["metadata"] = ns["metadata"]
            assert await until(lambda: exported(c) == expected("service", objs, attach_namespace=True), 1.0) < 1.0
            assert "namespaces ns=*" in {str(i.key) for i in informers.running()}

    run(go())


def test_shoal_convert_output_for_kubernetes_sd_configs_loads(tmp_path: Path) -> None:
    """What `shoal convert` writes for kubernetes_sd_configs is what discovery.kubernetes takes."""
    prom = """
scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: endpointslice
        api_server: https://kubernetes.example:6443
        bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token
        tls_config:
          ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
        namespaces:
          names: [shop, kube-system]
        selectors:
          - role: pod
            label: app.kubernetes.io/name=checkout
          - role: service
            field: metadata.name=checkout
        attach_metadata:
          node: true
          namespace: true
remote_write:
  - url: http://127.0.0.1:9/api/v1/write
"""
    alloy, _diags = convert(prom)
    assert 'discovery.kubernetes "pods"' in alloy, alloy
    assert "attach_metadata {" in alloy and "namespace = true" in alloy
    c = controller(tmp_path, Informers())
    c.check(files(alloy))  # raises with every error if any


def test_pods_of_one_node_by_field_selector(tmp_path: Path, api: APIServer) -> None:
    """The DaemonSet's shape: only the pods on its own node, selected by the API server."""
    objs = load()
    selector = 'selectors {\n    role  = "pod"\n    field = "spec.nodeName=worker-b"\n  }'

    async def go() -> None:
        async with running(tmp_path, config(api, "pod", selector)) as (c, _):
            on_b = {**objs, "Pod": [p for p in objs["Pod"] if p["spec"]["nodeName"] == "worker-b"]}
            await until(lambda: exported(c) == expected("pod", on_b))
            assert {r.query.get("fieldSelector") for r in api.requests(resource="pods")} == {"spec.nodeName=worker-b"}
            # A pod that comes to worker-b appears; one deleted there leaves.
            moved = copy.deepcopy(named(objs, "Pod", "static-web-worker-a"))
            moved["spec"]["nodeName"] = "worker-b"
            await asyncio.to_thread(api.apply, moved)
            await until(lambda: any(t[M + "pod_name"] == "static-web-worker-a"
                                    for t in c.node("discovery.kubernetes.k").exports.targets), 1.0)
            await asyncio.to_thread(api.delete, "pods", CHECKOUT_A_NAME, "shop")
            await until(lambda: not any(t[M + "pod_name"] == CHECKOUT_A_NAME
                                        for t in c.node("discovery.kubernetes.k").exports.targets), 1.0)

    run(go())


CHECKOUT_A_NAME = "checkout-5d8f7b9c6-abcde"
