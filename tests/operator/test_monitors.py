"""The monitor-to-scrape-job translation on its own: the semantics the goldens do not
cover (selector operators, targetPort, jobLabel, defaults, limits, HTTP settings, Probes,
the component's rules after the monitor's), checked on the role builders' targets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import labels as L
from agent.discovery.operator.monitors import (
    Defaults,
    Job,
    Rejected,
    ScrapeClass,
    references,
    translate,
)
from agent.discovery.roles import Lookups, build
from agent.httpconfig import Authorization, TLSConfig
from agent.relabel import Rule, process
from agent.scrape.target import populate_labels
from tests.operator.harness import objects

OBJS = objects()
LOOKUPS = Lookups(
    pods={f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in OBJS if o["kind"] == "Pod"},
    services={f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in OBJS
              if o["kind"] == "Service"},
)
SECRETS = {("secrets", "default", "auth", "user"): "alice", ("secrets", "default", "auth", "pass"): "pw"}


def lookup(kind: str, ns: str, name: str, key: str) -> str:
    try:
        return SECRETS[(kind, ns, name, key)]
    except KeyError:
        raise Rejected(f"{kind} {ns}/{name} has no key {key}", "missing_key") from None


def sm(spec: dict[str, Any], **endpoint: Any) -> dict[str, Any]:
    return {"kind": "ServiceMonitor", "metadata": {"name": "m", "namespace": "default"},
            "spec": {"endpoints": [{"port": "web", **endpoint}], **spec}}


def targets(job: Job, objs: list[dict[str, Any]] | None = None) -> list[dict[str, str]]:
    kind = {"endpoints": "Endpoints", "endpointslice": "EndpointSlice", "pod": "Pod",
            "ingress": "Ingress"}[job.role]
    out = []
    for o in objs if objs is not None else OBJS:
        if o["kind"] != kind:
            continue
        for t in build(job.role, o, LOOKUPS).flatten():
            final = populate_labels(L.from_dict(t), job.config)
            if final is not None:
                out.append(dict(final))
    return out


@pytest.mark.parametrize("expr,services", [
    ({"key": "alpha", "operator": "NotIn", "values": ["beta"]}, {"other"}),
    ({"key": "foo", "operator": "Exists"}, {"svc"}),
    ({"key": "foo", "operator": "DoesNotExist"}, {"other"}),
    ({"key": "alpha", "operator": "In", "values": ["delta", "beta"]}, {"svc", "other"}),
])
def test_selector_operators(expr: dict[str, Any], services: set[str]) -> None:
    (job,) = translate(sm({"selector": {"matchExpressions": [expr]}}), lookup)
    assert {t["service"] for t in targets(job)} == services


def test_target_port_by_number_and_name_and_job_label() -> None:
    mon = sm({"jobLabel": "app.kubernetes.io/name"})
    mon["spec"]["endpoints"] = [{"targetPort": 10250}, {"targetPort": "web"}]
    by_number, by_name = translate(mon, lookup)
    assert [(t["endpoint"], t["job"], t["__address__"]) for t in targets(by_number)] == [
        ("10250", "svc-app", "127.0.0.2:10250")]
    assert {(t["endpoint"], t["job"]) for t in targets(by_name)} == {("web", "svc-app"), ("web", "other")}
    assert by_number.name == "serviceMonitor/default/m/0" and by_name.name == "serviceMonitor/default/m/1"


def test_defaults_limits_and_http_settings() -> None:
    (job,) = translate(sm({"sampleLimit": 5, "targetLimit": 3, "labelLimit": 7, "bodySizeLimit": "2MB"},
                          path="/m", scheme="HTTPS", params={"x": ["1"]}, honorTimestamps=False,
                          followRedirects=False, enableHttp2=False, proxyUrl="http://proxy:3128",
                          basicAuth={"username": {"name": "auth", "key": "user"},
                                     "password": {"name": "auth", "key": "pass"}}),
                       lookup, Defaults(scrape_interval=20, scrape_timeout=30))
    c = job.config
    assert (c.scrape_interval, c.scrape_timeout) == (20, 20)  # timeout capped at the interval
    assert (c.sample_limit, c.target_limit, c.label_limit, c.body_size_limit) == (5, 3, 7, 2 << 20)
    assert (c.metrics_path, c.scheme, c.params, c.honor_timestamps) == ("/m", "https", {"x": ["1"]}, False)
    assert (c.http.follow_redirects, c.http.enable_http2, c.http.proxy_url) == (False, False, "http://proxy:3128")
    assert c.http.basic_auth is not None and c.http.basic_auth.header() == "Basic YWxpY2U6cHc="
    assert "'pw'" not in repr(job)  # a job may be logged: its credentials are not in its repr


def test_component_rules_come_after_the_monitors() -> None:
    mon = sm({}, relabelings=[{"targetLabel": "team", "replacement": "a"}])
    (job,) = translate(mon, lookup, extra_rules=[
        Rule(source_labels=["team"], target_label="owner"), Rule(target_label="team", replacement="b")])
    t = targets(job)[0]
    assert (t["owner"], t["team"]) == ("a", "b")


@pytest.mark.parametrize("mon,reason,text", [
    (sm({}, interval="5s", scrapeTimeout="10s"), "invalid", "greater than the interval"),
    (sm({}, oauth2={"clientId": {}}), "invalid", "oauth2.clientId: a secret or configMap reference"),
    (sm({}, oauth2={"clientId": {"secret": {"name": "auth", "key": "user"}},
                    "clientSecret": {"name": "auth", "key": "gone"}, "tokenUrl": "http://t/"}),
     "missing_key", "has no key gone"),
    (sm({}, oauth2={"clientId": {"secret": {"name": "auth", "key": "user"}},
                    "clientSecret": {"name": "auth", "key": "pass"}, "tokenUrl": "ftp://t"}),
     "invalid", "tokenUrl"),
    (sm({}, oauth2={"clientId": {"secret": {"name": "auth", "key": "user"}}},
        basicAuth={"username": {"name": "auth", "key": "user"}, "password": {"name": "auth", "key": "pass"}}),
     "invalid", "at most one of basicAuth, oauth2"),
    (sm({}, noProxy="10.0.0.0/8"), "invalid", "if no_proxy is configured, proxy_url must also be configured"),
    (sm({}, proxyFromEnvironment=True, proxyUrl="http://p:3128"), "invalid",
     "if proxy_from_environment is configured, proxy_url must not be configured"),
    (sm({}, proxyConnectHeader={"X-A": [{"name": "auth", "key": "pass"}]}), "invalid",
     "if proxy_connect_header is configured, proxy_url or proxy_from_environment"),
    (sm({}, proxyUrl="http://p:3128", proxyConnectHeader={"X-A": [{"name": "auth", "key": "zz"}]}),
     "missing_key", "has no key zz"),
    (sm({"keepDroppedTargets": -1}), "invalid", "keepDroppedTargets"),
    (sm({}, bearerTokenFile="/etc/passwd"), "unsupported", "bearerTokenFile"),
    (sm({}, relabelings=[{"action": "explode"}]), "invalid_relabeling", "unknown relabel action"),
    (sm({"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}), "invalid", "unknown operator"),
    (sm({"bodySizeLimit": "lots"}), "invalid", "is not a size"),
    (sm({}, basicAuth={"username": {"name": "auth", "key": "nope"}, "password": {"name": "auth", "key": "pass"}}),
     "missing_key", "has no key nope"),
    (sm({"serviceDiscoveryRole": "Pod"}), "invalid", "serviceDiscoveryRole"),
    (sm({"podTargetLabel": ["x"]}), "unknown_field", 'unknown field "podTargetLabel"'),
])
def test_rejections(mon: dict[str, Any], reason: str, text: str) -> None:
    with pytest.raises(Rejected) as exc:
        translate(mon, lookup)
    assert exc.value.reason == reason and text in str(exc.value)


def test_oauth2_proxy_and_keep_dropped_targets() -> None:
    """oauth2 with its credentials read through the lookup, the proxy settings with header
    values from Secrets, keepDroppedTargets, and the Secrets a monitor names for refresh."""
    mon = sm({"keepDroppedTargets": 3},
             oauth2={"clientId": {"configMap": {"name": "cm", "key": "id"}},
                     "clientSecret": {"name": "auth", "key": "pass"},
                     "tokenUrl": "https://idp.example/token", "scopes": ["a", "b"],
                     "endpointParams": {"audience": "x"}, "proxyUrl": "http://p:3128",
                     "noProxy": "idp.internal"},
             proxyUrl="http://proxy:3128", noProxy="10.0.0.0/8,.svc",
             proxyConnectHeader={"Proxy-Authorization": [{"name": "auth", "key": "user"}]})
    SECRETS[("configmaps", "default", "cm", "id")] = "client-1"
    try:
        job = translate(mon, lookup)[0]
    finally:
        del SECRETS[("configmaps", "default", "cm", "id")]
    h = job.config.http
    assert (h.proxy_url, h.no_proxy, h.proxy_connect_header) == (
        "http://proxy:3128", "10.0.0.0/8,.svc", {"Proxy-Authorization": ["alice"]})
    o = h.oauth2
    assert o is not None
    assert (o.client_id, o.client_secret, o.token_url, o.scopes, o.endpoint_params) == (
        "client-1", "pw", "https://idp.example/token", ["a", "b"], {"audience": "x"})
    assert (o.proxy_url, o.no_proxy) == ("http://p:3128", "idp.internal")
    assert "pw" not in repr(o) and "alice" not in repr(h)
    assert job.config.keep_dropped_targets == 3
    assert references(mon) == {("configmaps", "default", "cm"), ("secrets", "default", "auth")}
    probe = {"kind": "Probe", "metadata": {"name": "p", "namespace": "default"},
             "spec": {"prober": {"url": "bb:9115", "proxyUrl": "http://p:3128", "noProxy": "bb"},
                      "targets": {"staticConfig": {"static": ["a.example"]}}}}
    ph = translate(probe, lookup)[0].config.http
    assert (ph.proxy_url, ph.no_proxy) == ("http://p:3128", "bb")


def test_pod_monitor_port_number_and_finished_pods() -> None:
    mon = {"kind": "PodMonitor", "metadata": {"name": "p", "namespace": "default"},
           "spec": {"selector": {"matchLabels": {"group": "group1"}},
                    "podMetricsEndpoints": [{"portNumber": 8080}]}}
    (job,) = translate(mon, lookup)
    assert [(t["pod"], t["endpoint"], t["job"]) for t in targets(job)] == [("pod-a", "8080", "default/p")]


def test_probe_static_and_ingress() -> None:
    static = {"kind": "Probe", "metadata": {"name": "web", "namespace": "default"},
              "spec": {"jobName": "blackbox", "module": "http_2xx", "prober": {"url": "bb:9115"},
                       "targets": {"staticConfig": {"static": ["a.example"], "labels": {"env": "x"}}}}}
    (job,) = translate(static, lookup)
    t = populate_labels(L.from_dict(job.static[0]), job.config)
    assert t is not None
    d = dict(t)
    assert (d["__address__"], d["__param_target"], d["instance"], d["job"], d["env"], d["namespace"]) == (
        "bb:9115", "a.example", "a.example", "blackbox", "x", "default")
    assert job.config.params == {"module": ["http_2xx"]} and job.config.metrics_path == "/probe"
    ingress_probe = {"kind": "Probe", "metadata": {"name": "ing", "namespace": "default"},
                     "spec": {"prober": {"url": "bb:9115"},
                              "targets": {"ingress": {"selector": {"matchLabels": {"probe": "yes"}}}}}}
    (job,) = translate(ingress_probe, lookup)
    ing = [{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": n, "namespace": "default", "labels": {"probe": p}},
            "spec": {"rules": [{"host": f"{n}.example", "http": {"paths": [{"path": "/x"}]}}]}}
           for n, p in (("shop", "yes"), ("admin", "no"))]
    got = targets(job, ing)
    assert [(t["__param_target"], t["instance"], t["ingress"], t["__address__"]) for t in got] == [
        ("http://shop.example/x", "http://shop.example/x", "shop", "bb:9115")]


def test_component_defaults_sample_limit_histograms_and_files() -> None:
    d = Defaults(sample_limit=100, native_histograms=True, allow_files=True)
    (job,) = translate(sm({}, bearerTokenFile="/var/run/token"), lookup, d)
    assert (job.config.sample_limit, job.config.scrape_native_histograms) == (100, True)
    assert job.config.http.bearer_token_file == "/var/run/token"
    (own,) = translate(sm({"sampleLimit": 0, "scrapeNativeHistograms": False,
                           "scrapeProtocols": ["PrometheusText0.0.4"]}), lookup, d)
    assert (own.config.sample_limit, own.config.scrape_native_histograms) == (0, False)
    assert own.config.scrape_protocols == ["PrometheusText0.0.4"]
    with pytest.raises(Rejected, match="not in scrape_protocols"):
        translate(sm({"scrapeNativeHistograms": True, "scrapeProtocols": ["PrometheusText0.0.4"]}),
                  lookup)


def test_scrape_classes() -> None:
    tls = TLSConfig(ca_pem="class-ca")
    auth = Authorization("Bearer", "class-token", "")
    classes = (
        ScrapeClass("plain", relabel_rules=(Rule(target_label="team", replacement="class"),),
                    metric_relabel_rules=(Rule(target_label="cls", replacement="yes"),)),
        ScrapeClass("secure", default=True, tls_config=tls, authorization=auth, attach_node=True),
    )
    d = Defaults(scrape_classes=classes)
    # The default class where the monitor names none; its TLS and authorization fill in.
    (job,) = translate(sm({}), lookup, d)
    assert (job.config.http.tls_config, job.config.http.authorization, job.attach_node) == (tls, auth, True)
    # The endpoint's own settings win; attachMetadata on the monitor wins.
    (own,) = translate(sm({"attachMetadata": {"node": False}},
                          basicAuth={"username": {"name": "auth", "key": "user"},
                                     "password": {"name": "auth", "key": "pass"}}), lookup, d)
    assert (own.config.http.authorization, own.attach_node) == (None, False)
    # A named class: its relabelings first (the monitor's may override), metric ones last.
    mon = sm({"scrapeClass": "plain"}, relabelings=[{"sourceLabels": ["team"], "targetLabel": "was"}])
    (named,) = translate(mon, lookup, d)
    t = targets(named)[0]
    assert (t["team"], t["was"]) == ("class", "class")
    assert L.get(process(L.from_dict({"__name__": "x"}), named.config.metric_relabel_rules) or (),
                 "cls") == "yes"
    with pytest.raises(Rejected, match='scrapeClass "gold" is not one of'):
        translate(sm({"scrapeClass": "gold"}), lookup, d)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70000) | st.sampled_from(["", "web", "30s", "(", "In"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["port", "interval", "selector", "matchLabels", "matchExpressions", "key",
                         "operator", "values", "endpoints", "relabelings", "sourceLabels",
                         "bearerTokenSecret", "name", "tlsConfig", "ca", "secret", "targets",
                         "staticConfig", "static", "prober", "url", "namespaceSelector"]),
        inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["ServiceMonitor", "PodMonitor", "Probe"]), spec=_JSON)
def test_malformed_monitors_are_rejected_never_raised(kind: str, spec: Any) -> None:
    """Whatever a monitor holds, translating it gives jobs or a Rejected, nothing else."""
    mon = {"kind": kind, "metadata": {"name": "x", "namespace": "default"}, "spec": spec}
    references(mon)
    try:
        translate(mon, lookup)
    except Rejected as exc:
        assert str(exc) and exc.reason
