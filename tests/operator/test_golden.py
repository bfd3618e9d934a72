"""prometheus-operator's golden configurations, as Shoal scrapes them.

For each golden in ../shared/conformance/operator-golden/ the test serves the monitors of
its inputs.yaml, with objects they select (objects.yaml), from the API server stand-in, and
runs the component. What the component's pools scrape must carry exactly the labels the
golden's relabel_configs give the targets Shoal's own Kubernetes discovery (the role
builders) produces for the same objects; metric relabelings must rewrite samples as the
golden's metric_relabel_configs do.

Prometheus-CR settings that Alloy spells differently are given as Alloy would:
``serviceDiscoveryRole: EndpointSlice`` is ``kubernetes_role``; ``scrapeClasses`` are
``scrape_class`` blocks (the endpoint's own TLS and authorization win over the class'); ``enforcedNamespaceLabel`` and
global ``podTargetLabels`` are ``rule`` blocks; ``overrideHonorLabels`` has no Alloy
equivalent (its golden is compared on labels only).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import labels as L
from agent.discovery.operator.monitors import Defaults, translate
from agent.discovery.roles import Lookups, build
from agent.relabel import Rule, process
from agent.scrape.config import ScrapeConfig
from agent.scrape.target import populate_labels
from tests.components.helpers import run
from tests.kube import RBAC_MANIFEST, APIServer
from tests.kube.certs import make_certs
from tests.operator.harness import (
    GOLDEN,
    TOKEN,
    component,
    config,
    objects,
    running,
    scraped,
    secret,
)

INPUTS = yaml.safe_load((GOLDEN / "inputs.yaml").read_text())["goldens"]
FRAGMENTS = {g["golden"] for g in INPUTS if "k8s-sd-test" in (GOLDEN / g["golden"]).read_text()}
FULL = [g for g in INPUTS if g["golden"] not in FRAGMENTS]
ROLE_KIND = {"endpoints": "Endpoints", "endpointslice": "EndpointSlice", "pod": "Pod"}
# Samples the metric relabelings are compared on.
SAMPLES = [
    {"__name__": "container_fs_reads_total", "job": "svc", "instance": "a"},
    {"__name__": "http_requests_total", "job": "svc", "pod_name": "my-job-pod-1"},
    {"__name__": "up", "job": "svc", "pod_name": "other"},
]


def golden_rules(items: list[dict[str, Any]] | None) -> list[Rule]:
    out = []
    for r in items or []:
        out.append(Rule(
            source_labels=list(r.get("source_labels", [])),
            separator=r.get("separator", ";"),
            regex=str(r.get("regex", "(.*)")).replace("$(SHARD)", "0"),
            modulus=int(r.get("modulus", 0)),
            target_label=r.get("target_label", ""),
            replacement=str(r.get("replacement", "$1")),
            action=r.get("action", "replace"),
        ))
    return out


def expected(job: dict[str, Any], objs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The golden job's relabel_configs over the role builders' targets for ``objs``."""
    sd = job["kubernetes_sd_configs"][0]
    names = set(sd.get("namespaces", {}).get("names", []))
    by = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs}
    lk = Lookups(pods={f"{n}/{m}": o for (k, n, m), o in by.items() if k == "Pod"},
                 services={f"{n}/{m}": o for (k, n, m), o in by.items() if k == "Service"})
    cfg = ScrapeConfig(job_name=job["job_name"], scrape_interval=30, scrape_timeout=10,
                       relabel_rules=golden_rules(job["relabel_configs"]))
    out = []
    for (kind, ns, _), o in by.items():
        if kind != ROLE_KIND[sd["role"]] or (names and ns not in names):
            continue
        for t in build(sd["role"], o, lk).flatten():
            final = populate_labels(L.from_dict(t), cfg)
            if final is not None:
                out.append({k: v for k, v in final if not k.startswith("__")})
    return sorted(out, key=lambda d: sorted(d.items()))


def alloy_arguments(case: dict[str, Any]) -> str:
    spec = (case.get("prometheus") or {}).get("spec") or {}
    extra = []
    if spec.get("serviceDiscoveryRole") == "EndpointSlice":
        extra.append('kubernetes_role = "endpointslice"')
    if spec.get("enforcedNamespaceLabel"):
        ns = next(m["metadata"]["namespace"] for m in monitors(case))
        extra.append(f'rule {{\n    target_label = "{spec["enforcedNamespaceLabel"]}"\n'
                     f'    replacement  = "{ns}"\n  }}')
    for sc in spec.get("scrapeClasses") or []:
        body = [f'name = "{sc["name"]}"']
        if sc.get("tlsConfig"):
            t = sc["tlsConfig"]
            body.append(f'tls_config {{\n      ca_file = "{t["caFile"]}"\n      cert_file = "{t["certFile"]}"\n'
                        f'      key_file = "{t["keyFile"]}"\n    }}')
        if sc.get("authorization"):
            body.append(f'authorization {{\n      credentials_file = "{sc["authorization"]["credentialsFile"]}"\n    }}')
        extra.append("scrape_class {\n    " + "\n    ".join(body) + "\n  }")
    for name in spec.get("podTargetLabels") or []:
        extra.append(f'rule {{\n    source_labels = ["__meta_kubernetes_pod_label_{name}"]\n'
                     f'    target_label  = "{name}"\n    regex = "(.+)"\n  }}')
    return "\n  ".join(extra)


def enforced_label(case: dict[str, Any], job: dict[str, Any]) -> str:
    """The Prometheus CR's enforcedNamespaceLabel; the scrape-class goldens were generated
    with one (``namespace``) that inputs.yaml leaves out, seen as the operator's last metric
    relabeling writing the monitor's namespace."""
    spec = (case.get("prometheus") or {}).get("spec") or {}
    if spec.get("enforcedNamespaceLabel"):
        return str(spec["enforcedNamespaceLabel"])
    last = (job.get("metric_relabel_configs") or [{}])[-1]
    ns = monitors(case)[0]["metadata"]["namespace"]
    if not last.get("source_labels") and last.get("replacement") == ns:
        return str(last.get("target_label", ""))
    return ""


def monitors(case: dict[str, Any]) -> list[dict[str, Any]]:
    return list(case.get("serviceMonitors") or []) + list(case.get("podMonitors") or [])


def tls_secret(tmp_path: Path) -> dict[str, Any]:
    certs = make_certs(tmp_path / "target-certs")
    return secret("tls", {"ca": certs.ca.read_text(), "cert": certs.cert.read_text(),
                          "private-key": certs.key.read_text()})


@pytest.mark.parametrize("case", FULL, ids=[g["golden"] for g in FULL])
def test_golden(tmp_path: Path, case: dict[str, Any]) -> None:
    golden = yaml.safe_load((GOLDEN / case["golden"]).read_text())
    objs = objects()
    extra_objs = [secret(s["metadata"]["name"], s.get("stringData", {})) for s in case.get("secrets") or []]
    if "TLSConfig" in case["golden"]:
        extra_objs.append(tls_secret(tmp_path))
    mons = monitors(case)
    kind = mons[0]["kind"]
    api = APIServer(tmp_path / "api", objects=objs + extra_objs + mons, rbac_files=[RBAC_MANIFEST])
    api.add_token(TOKEN, "shoal/shoal")
    jobs = {j["job_name"]: j for j in golden["scrape_configs"]}
    want = {name: expected(j, objs) for name, j in jobs.items()}
    assert any(want.values()), "the objects must give the golden some targets"

    async def go() -> None:
        async with running(tmp_path, config(api, kind, alloy_arguments(case))) as c:
            deadline = asyncio.get_running_loop().time() + 10
            while scraped(c, kind) != want:
                if asyncio.get_running_loop().time() > deadline:
                    assert scraped(c, kind) == want
                await asyncio.sleep(0.05)
            m = component(c, kind).manager
            assert m is not None
            for _, r in m.runners():
                g = jobs[r.job.name]
                assert r.job.config.scrape_interval == 30
                if "overrideHonorLabels" not in str(case.get("prometheus")):
                    assert r.job.config.honor_labels == g["honor_labels"]
                enforced = enforced_label(case, g)
                # enforcedNamespaceLabel: the operator drops the monitor's rules that write
                # the enforced label and appends its own; Alloy has neither, so both
                # sides are compared without rules on that label.
                grules = [x for x in golden_rules(g.get("metric_relabel_configs"))
                          if not enforced or x.target_label != enforced]
                ours = [x for x in r.job.config.metric_relabel_rules
                        if not enforced or x.target_label != enforced]
                for s in SAMPLES:
                    assert process(L.from_dict(s), ours) == process(L.from_dict(s), grules)
                if "authorization" in g:
                    auth = r.job.config.http.authorization
                    assert auth is not None
                    assert (auth.type, auth.credentials) == (
                        g["authorization"]["type"], g["authorization"]["credentials"])
                if "tls_config" in g:
                    assert r.job.config.http.tls_config is not None
                    assert r.job.config.http.tls_config.key_pem.startswith("-----BEGIN")

    with api:
        run(go())


@pytest.mark.parametrize("case", [g for g in INPUTS if g["golden"] in FRAGMENTS],
                         ids=sorted(FRAGMENTS))
def test_namespace_selector_goldens(case: dict[str, Any]) -> None:
    """The three kubernetes_sd_configs fragments: which namespaces a monitor's job watches."""
    sd = yaml.safe_load((GOLDEN / case["golden"]).read_text())["scrape_configs"][0]
    sd = sd["kubernetes_sd_configs"][0]
    mon = dict(monitors(case)[0])
    mon["spec"] = dict(mon["spec"], endpoints=[{"port": "web"}])
    (job,) = translate(mon, lambda *a: "", Defaults())
    assert job.role == sd["role"]
    assert job.namespaces == tuple(sd.get("namespaces", {}).get("names", ()))
    assert job.attach_node == bool(sd.get("attach_metadata", {}).get("node"))
