"""The operator components at run time against the API server stand-in and real targets:
monitors created, edited and deleted change what is scraped within seconds; a bearer token
from a Secret authenticates to a target that checks it and a rotated Secret is used; bad
monitors are rejected with the reason while the others are scraped; credentials never show;
the ClusterRole of manifests/ is exactly what the components read."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agent.runtime.controller import Controller
from agent.runtime.health import State
from agent.syntax.diag import DiagnosticsError
from tests.components.helpers import files, metrics_text, run
from tests.components.test_scrape_clustering import TwoAgents
from tests.discovery.test_informer import until
from tests.kube import APIServer
from tests.operator.harness import component, config, first_health, running, scraped, secret
from tests.operator.target import TokenTarget


def app(name: str, ip: str, port: int, labels: dict[str, str]) -> list[dict[str, Any]]:
    """A Service, its Endpoints and the Pod behind it, serving on ip:port."""
    ports = [{"name": "web", "port": port, "protocol": "TCP"}]
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "default", "labels": labels},
         "spec": {"clusterIP": "10.0.0.1", "ports": [dict(ports[0], targetPort=port)]}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"{name}-0", "namespace": "default", "labels": labels},
         "spec": {"nodeName": "n1", "containers": [
             {"name": "app", "ports": [{"name": "web", "containerPort": port, "protocol": "TCP"}]}]},
         "status": {"phase": "Running", "podIP": ip, "hostIP": "10.1.0.1",
                    "conditions": [{"type": "Ready", "status": "True"}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": "default"},
         "subsets": [{"addresses": [{"ip": ip, "targetRef": {"kind": "Pod", "name": f"{name}-0",
                                                             "namespace": "default"}}],
                      "ports": ports}]},
    ]


def service_monitor(name: str, match: dict[str, str], **endpoint: Any) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": match},
                     "endpoints": [{"port": "web", "interval": "1s", **endpoint}]}}


def sink_jobs(c: Controller) -> set[str]:
    sink = c.node("test.sink.s").component.sink
    return {s[0].get("job", "") for s in sink.samples() if s[0].get("__name__") == "app_up"}


def test_monitors_added_edited_deleted_change_what_is_scraped(tmp_path: Path, api: APIServer) -> None:
    with api, TokenTarget("127.0.0.2") as t:
        for o in app("shop", "127.0.0.2", t.port, {"app": "shop"}):
            api.apply(o)

        async def go() -> None:
            async with running(tmp_path, config(api, "ServiceMonitor")) as c:
                await until(lambda: component(c, "ServiceMonitor").manager is not None)
                api.apply(service_monitor("shop", {"app": "shop"}))
                await until(lambda: "shop" in sink_jobs(c))  # within until's 5 s
                job = "serviceMonitor/default/shop/0"
                assert scraped(c, "ServiceMonitor")[job] == [{
                    "container": "app", "endpoint": "web", "instance": f"127.0.0.2:{t.port}",
                    "job": "shop", "namespace": "default", "pod": "shop-0", "service": "shop"}]
                # Edit: a relabeling adds a label, a path changes where it is scraped.
                edited = service_monitor("shop", {"app": "shop"}, path="/other", relabelings=[
                    {"targetLabel": "team", "replacement": "checkout"}])
                api.apply(edited)
                await until(lambda: scraped(c, "ServiceMonitor").get(job, [{}])[0].get("team") == "checkout")
                await until(lambda: t.paths[-1] == "/other")
                # Delete: nothing is scraped for it any more.
                api.delete("servicemonitors", "shop")
                await until(lambda: scraped(c, "ServiceMonitor") == {})
                n = len(t.paths)
                await asyncio.sleep(1.5)
                assert len(t.paths) == n
                assert c.node("prometheus.operator.servicemonitors.m").health().state == State.HEALTHY

        run(go())


def test_bearer_token_from_a_secret_and_its_rotation(tmp_path: Path, api: APIServer) -> None:
    with api, TokenTarget("127.0.0.3", token="first-s3cret") as t:
        for o in app("vault", "127.0.0.3", t.port, {"app": "vault"}):
            api.apply(o)
        api.apply(secret("vault-token", {"token": "first-s3cret"}))
        api.apply(service_monitor("vault", {"app": "vault"},
                                  bearerTokenSecret={"name": "vault-token", "key": "token"}))

        async def go() -> None:
            async with running(tmp_path, config(api, "ServiceMonitor")) as c:
                comp = component(c, "ServiceMonitor")

                await until(lambda: first_health(comp) == "up")
                assert "Bearer first-s3cret" in t.seen
                # Rotate: the target now wants the new token, the Secret changes after it.
                t.token = "second-s3cret"
                api.apply(secret("vault-token", {"token": "second-s3cret"}))
                await until(lambda: t.seen and t.seen[-1] == "Bearer second-s3cret")
                await until(lambda: first_health(comp) == "up")
                shown = json.dumps(comp.debug_info()) + str(comp.current_health()) + metrics_text(c)
                assert "s3cret" not in shown

        run(go())


def test_bad_monitors_rejected_with_the_reason_others_scraped(tmp_path: Path, api: APIServer) -> None:
    with api, TokenTarget("127.0.0.4") as t:
        for o in app("good", "127.0.0.4", t.port, {"app": "good"}):
            api.apply(o)
        api.apply(secret("no-key", {"other": "x"}))
        bad = {
            "bad-regex": service_monitor("bad-regex", {"app": "good"}, relabelings=[
                {"sourceLabels": ["a"], "regex": "(unclosed", "targetLabel": "b"}]),
            "bad-port": service_monitor("bad-port", {"app": "good"}, port="nope"),
            "bad-selector": service_monitor("bad-selector", {"app": "nothing-has-this"}),
            "no-secret": service_monitor("no-secret", {"app": "good"},
                                         bearerTokenSecret={"name": "absent", "key": "token"}),
            "no-key": service_monitor("no-key", {"app": "good"},
                                      bearerTokenSecret={"name": "no-key", "key": "token"}),
            "unknown-field": service_monitor("unknown-field", {"app": "good"}, colour="blue"),
        }
        for m in bad.values():
            api.inject_malformed("servicemonitors", m)
        api.apply(service_monitor("good", {"app": "good"}))
        reasons = {
            "bad-regex": "invalid regex '(unclosed'", "bad-port": 'port "nope" matches no port',
            "bad-selector": "the selector matches nothing", "no-secret": "Secret default/absent does not exist",
            "no-key": 'Secret default/no-key has no key "token"',
            "unknown-field": 'unknown field "colour"',
        }

        async def go() -> None:
            async with running(tmp_path, config(api, "ServiceMonitor")) as c:
                comp = component(c, "ServiceMonitor")

                def states() -> dict[str, dict[str, Any]]:
                    info = comp.debug_info() or {"monitors": []}
                    return {m["name"]: m for m in info["monitors"]}

                await until(lambda: len(states()) == 7 and all(
                    states()[n]["state"] == "rejected" for n in bad))
                got = states()
                for name, why in reasons.items():
                    assert why in got[name]["reason"], (name, got[name]["reason"])
                assert got["good"]["state"] == "accepted"
                await until(lambda: "good" in sink_jobs(c))
                h = comp.current_health()
                assert h is not None and h.state == State.UNHEALTHY
                assert "6 of 7 ServiceMonitors rejected" in h.message
                text = metrics_text(c)
                assert 'shoal_operator_monitors{component_id="prometheus.operator.servicemonitors.m",kind="ServiceMonitor",state="rejected"} 6.0' in text
                assert 'reason="missing_secret"' in text and 'reason="unknown_field"' in text
                # A fixed monitor is accepted and scraped without a reload.
                fixed = copy.deepcopy(bad["bad-port"])
                fixed["spec"]["endpoints"][0]["port"] = "web"
                api.apply(fixed)
                await until(lambda: states()["bad-port"]["state"] == "accepted"
                            and bool(states()["bad-port"]["targets"]))

        run(go())


def test_monitor_reaching_into_a_namespace_the_agent_may_not_read(tmp_path: Path, api: APIServer) -> None:
    """An agent bound to the ClusterRole in "default" only: a monitor there that selects
    kube-system is rejected with the API server's reason; the others are scraped."""
    api.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "limited", "namespace": "default"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "shoal"},
               "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": "shoal"}]})
    api.add_token("limited-token", "shoal/limited")
    with api, TokenTarget("127.0.0.8") as t:
        for o in app("mine", "127.0.0.8", t.port, {"app": "mine"}):
            api.apply(o)
        api.apply(service_monitor("mine", {"app": "mine"}))
        elsewhere = service_monitor("elsewhere", {"app": "mine"})
        elsewhere["spec"]["namespaceSelector"] = {"matchNames": ["kube-system"]}
        api.apply(elsewhere)
        src = config(api, "ServiceMonitor", 'namespaces = ["default"]', token="limited-token")

        async def go() -> None:
            async with running(tmp_path, src) as c:
                comp = component(c, "ServiceMonitor")

                def state(name: str) -> dict[str, Any]:
                    info = comp.debug_info() or {"monitors": []}
                    return next((m for m in info["monitors"] if m["name"] == name), {})

                await until(lambda: state("elsewhere").get("state") == "rejected")
                assert "ns=kube-system cannot be read: forbidden" in state("elsewhere")["reason"]
                await until(lambda: "mine" in sink_jobs(c))
                assert state("mine")["state"] == "accepted"

        run(go())


def test_pod_monitors_and_probes_scrape_real_targets(tmp_path: Path, api: APIServer) -> None:
    with api, TokenTarget("127.0.0.5") as t, TokenTarget("127.0.0.6") as prober:
        for o in app("worker", "127.0.0.5", t.port, {"app": "worker"}):
            api.apply(o)
        api.apply({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
                   "metadata": {"name": "workers", "namespace": "default"},
                   "spec": {"selector": {"matchLabels": {"app": "worker"}}, "jobLabel": "app",
                            "podMetricsEndpoints": [{"port": "web", "interval": "1s"}]}})
        api.apply({"apiVersion": "monitoring.coreos.com/v1", "kind": "Probe",
                   "metadata": {"name": "sites", "namespace": "default"},
                   "spec": {"interval": "1s", "module": "http_2xx",
                            "prober": {"url": f"127.0.0.6:{prober.port}"},
                            "targets": {"staticConfig": {"static": ["https://example.org"],
                                                         "labels": {"env": "prod"}}}}})
        src = config(api, "PodMonitor", label="p") + config(api, "Probe", label="b").replace(
            'test.sink "s" { }', "")

        async def go() -> None:
            async with running(tmp_path, src) as c:
                await until(lambda: all(scraped(c, "PodMonitor", "p").values())
                            and all(scraped(c, "Probe", "b").values())
                            and bool(scraped(c, "PodMonitor", "p")))
                assert scraped(c, "PodMonitor", "p")["podMonitor/default/workers/0"] == [{
                    "container": "app", "endpoint": "web", "instance": f"127.0.0.5:{t.port}",
                    "job": "worker", "namespace": "default", "pod": "worker-0"}]
                assert scraped(c, "Probe", "b")["probe/default/sites"] == [{
                    "env": "prod", "instance": "https://example.org", "job": "probe/default/sites",
                    "namespace": "default"}]
                await until(lambda: any(p.startswith("/probe?") for p in prober.paths))
                probe = next(p for p in prober.paths if p.startswith("/probe?"))
                assert "module=http_2xx" in probe and "target=https%3A%2F%2Fexample.org" in probe

        run(go())


def test_rbac_grants_what_the_components_read(tmp_path: Path, api: APIServer) -> None:
    """No request of the three components is refused, and they use the monitoring,
    Secret and ConfigMap grants (reads of one Secret by name, not all of them)."""
    with api, TokenTarget("127.0.0.7") as t:
        for o in app("tls", "127.0.0.7", t.port, {"app": "tls"}):
            api.apply(o)
        api.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ca", "namespace": "default"},
                   "data": {"ca.crt": "not used for http"}})
        api.apply(secret("tok", {"t": "x"}))
        api.apply(service_monitor("tls", {"app": "tls"}, bearerTokenSecret={"name": "tok", "key": "t"},
                                  tlsConfig={"ca": {"configMap": {"name": "ca", "key": "ca.crt"}}}))
        src = (config(api, "ServiceMonitor") + config(api, "PodMonitor", label="p").replace('test.sink "s" { }', "")
               + config(api, "Probe", label="b").replace('test.sink "s" { }', ""))

        async def go() -> None:
            async with running(tmp_path, src) as c:
                await until(lambda: any(scraped(c, "ServiceMonitor").values()))
                for res in ("servicemonitors", "podmonitors", "probes"):
                    await until(lambda r=res: bool(api.requests(resource=r, verb="watch")))

        run(go())
        refused = [r for r in api.requests() if r.status in (401, 403)]
        assert refused == []
        used = {(r.resource, r.verb) for r in api.requests()}
        for res in ("servicemonitors", "podmonitors", "probes", "secrets", "configmaps"):
            assert (res, "list") in used and (res, "watch") in used, res
        ours = {"servicemonitors", "podmonitors", "probes", "secrets", "configmaps"}
        assert [g for g in api.auth.unused_grants("shoal") if g.resource in ours] == []
        secret_lists = [r for r in api.requests(resource="secrets", verb="list")]
        assert secret_lists and all(r.path == "/api/v1/namespaces/default/secrets" for r in secret_lists)


def test_clustering_scrapes_only_owned_targets(tmp_path: Path, api: APIServer) -> None:
    with api, TokenTarget("127.0.0.9") as t1, TokenTarget("127.0.0.10") as t2:
        for o in app("one", "127.0.0.9", t1.port, {"tier": "web"}) + app("two", "127.0.0.10", t2.port, {"tier": "web"}):
            api.apply(o)
        api.apply(service_monitor("web", {"tier": "web"}))
        a, b = f"127.0.0.9:{t1.port}", f"127.0.0.10:{t2.port}"
        cluster = TwoAgents({a})
        src = config(api, "ServiceMonitor", "clustering {\n    enabled = true\n  }")

        def instances(c: Controller) -> set[str]:
            return {x["instance"] for ts in scraped(c, "ServiceMonitor").values() for x in ts}

        async def go() -> None:
            async with running(tmp_path, src, cluster) as c:
                await until(lambda: instances(c) == {a})
                info = component(c, "ServiceMonitor").debug_info()
                assert [x["labels"]["instance"] for x in info["monitors"][0]["targets"]] == [a]
                cluster.move({b})
                await until(lambda: instances(c) == {b})

        run(go())


@pytest.mark.parametrize("extra,message", [
    ('kubernetes_role = "pod"', "only endpoints and endpointslice are supported"),
    ('scrape_class {\n    name = "a"\n    default = true\n  }\n  scrape_class {\n    name = "b"\n'
     '    default = true\n  }', "only one scrape_class may be marked as default"),
    ('scrape_class {\n    name = "a"\n  }\n  scrape_class {\n    name = "a"\n  }',
     'found multiple scrape_class blocks with name "a"'),
    ('selector {\n    match_expression {\n      key = "a"\n      operator = "Near"\n    }\n  }',
     'operator "Near" is not one of'),
])
def test_argument_checks(tmp_path: Path, api: APIServer, extra: str, message: str) -> None:
    async def go() -> None:
        with pytest.raises(DiagnosticsError, match=message):
            async with running(tmp_path, config(api, "ServiceMonitor", extra)):
                pass

    run(go())


def test_reload_applies_rules_and_clustering_without_restarting(tmp_path: Path, api: APIServer) -> None:
    with api, TokenTarget("127.0.0.12") as t1, TokenTarget("127.0.0.13") as t2:
        for o in app("one", "127.0.0.12", t1.port, {"tier": "db"}) + app("two", "127.0.0.13", t2.port, {"tier": "db"}):
            api.apply(o)
        api.apply(service_monitor("db", {"tier": "db"}))
        a = f"127.0.0.12:{t1.port}"
        cluster = TwoAgents({a})

        def targets(c: Controller) -> list[dict[str, str]]:
            return [x for ts in scraped(c, "ServiceMonitor").values() for x in ts]

        async def go() -> None:
            async with running(tmp_path, config(api, "ServiceMonitor"), cluster) as c:
                await until(lambda: len(targets(c)) == 2)
                manager = component(c, "ServiceMonitor").manager
                extra = 'rule {\n    target_label = "site"\n    replacement = "eu"\n  }\n' \
                        '  clustering {\n    enabled = true\n  }'
                await c.load(files(config(api, "ServiceMonitor", extra)))
                await until(lambda: [(x["instance"], x.get("site")) for x in targets(c)] == [(a, "eu")])
                assert component(c, "ServiceMonitor").manager is manager

        run(go())


class _NodeOne(TwoAgents):
    """As TwoAgents, and this agent is node "n1", where the test's pods run."""

    def owns(self, key: bytes, node: str = "", at: float | None = None) -> bool:
        if node:
            self.nodes_asked.add(node)
            return node == "n1"
        return super().owns(key)


def test_clustering_reports_every_wanted_target_and_honours_node_affinity(
        tmp_path: Path, api: APIServer) -> None:
    """The cluster is told every target the monitors want, owned or not (the peers compare
    digests of them); with node_affine a target on this agent's node is scraped here
    whatever the ring says; without clustering nothing is reported."""
    with api, TokenTarget("127.0.0.16") as t1, TokenTarget("127.0.0.17") as t2:
        for o in app("one", "127.0.0.16", t1.port, {"tier": "q"}) + app("two", "127.0.0.17", t2.port, {"tier": "q"}):
            api.apply(o)
        api.apply(service_monitor("q", {"tier": "q"}))
        a, b = f"127.0.0.16:{t1.port}", f"127.0.0.17:{t2.port}"
        cluster = _NodeOne({a})
        cid = "prometheus.operator.servicemonitors.m"

        def instances(c: Controller) -> set[str]:
            return {x["instance"] for ts in scraped(c, "ServiceMonitor").values() for x in ts}

        def reported() -> set[str]:
            return {addr for addr in (a, b) for k in cluster.reported.get(cid, set())
                    if addr.encode() in k.split(b"\xff")}

        async def go() -> None:
            on = "clustering {\n    enabled = true\n  }"
            async with running(tmp_path, config(api, "ServiceMonitor", on), cluster) as c:
                await until(lambda: instances(c) == {a} and reported() == {a, b})
                assert cluster.nodes_asked == set()
                affine = "clustering {\n    enabled = true\n    node_affine = true\n  }"
                await c.load(files(config(api, "ServiceMonitor", affine)))
                await until(lambda: instances(c) == {a, b})  # both pods run on n1
                assert cluster.nodes_asked == {"n1"} and reported() == {a, b}
                await c.load(files(config(api, "ServiceMonitor")))
                await until(lambda: cid not in cluster.reported)

        run(go())
