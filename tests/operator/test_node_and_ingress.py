"""End to end through the component, against the API server stand-in with real objects:
``attachMetadata.node`` gives ServiceMonitor and PodMonitor targets their Node's labels (and
follows a Node's change), and a Probe over an Ingress scrapes the prober with each rule's
URL as the target. The ClusterRole of manifests/ is what the stand-in enforces: nothing is
refused, and the node and ingress grants are used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.components.helpers import run
from tests.discovery.test_informer import until
from tests.kube import APIServer
from tests.operator.harness import config, running, scraped
from tests.operator.target import TokenTarget
from tests.operator.test_runtime import app

ZONE = "__meta_kubernetes_node_label_topology_kubernetes_io_zone"


def node(name: str, zone: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone,
                                                  "kubernetes.io/hostname": name}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.1.0.1"}]}}


def test_attach_metadata_node_labels_targets_and_follows_the_node(tmp_path: Path, api: APIServer) -> None:
    with api, TokenTarget("127.0.0.11") as t:
        api.apply(node("n1", "eu-1a"))
        objs = app("zoned", "127.0.0.11", t.port, {"app": "zoned"})
        objs[2]["subsets"][0]["addresses"][0]["nodeName"] = "n1"  # endpoints carry the node's name
        for o in objs:
            api.apply(o)
        zone = [{"sourceLabels": [ZONE], "targetLabel": "zone"}]
        api.apply({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                   "metadata": {"name": "zoned", "namespace": "default"},
                   "spec": {"selector": {"matchLabels": {"app": "zoned"}}, "attachMetadata": {"node": True},
                            "endpoints": [{"port": "web", "interval": "1s", "relabelings": zone}]}})
        api.apply({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
                   "metadata": {"name": "zoned", "namespace": "default"},
                   "spec": {"selector": {"matchLabels": {"app": "zoned"}}, "attachMetadata": {"node": True},
                            "podMetricsEndpoints": [{"port": "web", "interval": "1s", "relabelings": zone}]}})
        # Without attachMetadata the node's labels are not there to copy.
        api.apply({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
                   "metadata": {"name": "plain", "namespace": "default"},
                   "spec": {"selector": {"matchLabels": {"app": "zoned"}},
                            "podMetricsEndpoints": [{"port": "web", "interval": "1s", "relabelings": zone}]}})
        src = config(api, "ServiceMonitor") + config(api, "PodMonitor", label="p").replace(
            'test.sink "s" { }', "")

        def zones(c: Any) -> dict[str, list[str | None]]:
            got = {**scraped(c, "ServiceMonitor"), **scraped(c, "PodMonitor", "p")}
            return {job: [t.get("zone") for t in ts] for job, ts in got.items()}

        async def go() -> None:
            async with running(tmp_path, src) as c:
                want = {"serviceMonitor/default/zoned/0": ["eu-1a"], "podMonitor/default/zoned/0": ["eu-1a"],
                        "podMonitor/default/plain/0": [None]}
                await until(lambda: zones(c) == want)
                sm = scraped(c, "ServiceMonitor")["serviceMonitor/default/zoned/0"][0]
                assert sm == {"container": "app", "endpoint": "web", "instance": f"127.0.0.11:{t.port}",
                              "job": "zoned", "namespace": "default", "pod": "zoned-0",
                              "service": "zoned", "zone": "eu-1a"}
                # The Node is relabelled in place: its targets follow without a monitor change.
                api.apply(node("n1", "eu-1b"))
                await until(lambda: zones(c)["serviceMonitor/default/zoned/0"] == ["eu-1b"]
                            and zones(c)["podMonitor/default/zoned/0"] == ["eu-1b"])

        run(go())
        assert [r for r in api.requests() if r.status in (401, 403)] == []
        assert api.requests(resource="nodes", verb="watch")


def test_probe_over_an_ingress_scrapes_the_prober_for_each_rule(tmp_path: Path, api: APIServer) -> None:
    with api, TokenTarget("127.0.0.12") as prober:
        api.apply({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "shop", "namespace": "default", "labels": {"probe": "yes"}},
                   "spec": {"tls": [{"hosts": ["secure.example"]}],
                            "rules": [{"host": "shop.example", "http": {"paths": [
                                          {"path": "/cart", "pathType": "Prefix", "backend": {
                                              "service": {"name": "shop", "port": {"number": 80}}}}]}},
                                      {"host": "secure.example", "http": {"paths": [
                                          {"path": "/", "pathType": "Prefix", "backend": {
                                              "service": {"name": "shop", "port": {"number": 80}}}}]}}]}})
        api.apply({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "internal", "namespace": "default", "labels": {"probe": "no"}},
                   "spec": {"rules": [{"host": "internal.example"}]}})
        api.apply({"apiVersion": "monitoring.coreos.com/v1", "kind": "Probe",
                   "metadata": {"name": "shop", "namespace": "default"},
                   "spec": {"interval": "1s", "module": "http_2xx", "jobName": "blackbox",
                            "prober": {"url": f"127.0.0.12:{prober.port}"},
                            "targets": {"ingress": {"selector": {"matchLabels": {"probe": "yes"}}}}}})

        async def go() -> None:
            async with running(tmp_path, config(api, "Probe", label="b")) as c:
                job = "probe/default/shop"
                await until(lambda: len(scraped(c, "Probe", "b").get(job, [])) == 2)
                assert scraped(c, "Probe", "b")[job] == [
                    {"ingress": "shop", "instance": "http://shop.example/cart", "job": "blackbox",
                     "namespace": "default"},
                    {"ingress": "shop", "instance": "https://secure.example/", "job": "blackbox",
                     "namespace": "default"},
                ]
                await until(lambda: {p for p in prober.paths if p.startswith("/probe?")} >= {
                    "/probe?module=http_2xx&target=http%3A%2F%2Fshop.example%2Fcart",
                    "/probe?module=http_2xx&target=https%3A%2F%2Fsecure.example%2F"})

        run(go())
        assert [r for r in api.requests() if r.status in (401, 403)] == []
        assert api.requests(resource="ingresses", verb="watch")
