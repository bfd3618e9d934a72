"""Converted Kubernetes scrape jobs find the same targets as the original does in vmagent.

Prometheus' own Kubernetes discovery needs a cluster we do not have, so the
reference is vmagent (Debian's victoria-metrics), which implements it with the
same meta labels (tests/discovery/vmagent.py lists where 1.79 differs). Both read
objects.yaml from the API server stand-in over HTTPS with a token and the
manifests' RBAC: vmagent with the prometheus.yml as written, ``shoal run`` with
what ``shoal convert`` made of it. The targets after relabeling (scrape URL and
final labels) must be the same sets, and so must the targets the relabel rules
dropped (their discovered labels, mapped through vmagent 1.79's known differences).

The relabel rules are the ones people copy from Prometheus' example
configuration and Helm charts: keep on the prometheus.io/scrape annotation,
metrics path and port from annotations, labelmap of pod, service or node labels,
namespace/pod/service/node labels, drop on phase, a blackbox-style probe of
services, EndpointSlices with attach_metadata and the node's zone, namespaces and
label/field selectors (checked to reach the API server). None of them copies a meta label on vmagent 1.79's list of differences
into the final labels, so the kept targets compare label for label. What vmagent 1.79 reports
differently from Prometheus 3 (which Shoal follows) is mapped, each where it is done:
an address without a port gets 80 or 443 in vmagent (``_with_default_port``); a
label with an empty value is no label (``_key``); vmagent shows the job's params
among a dropped target's discovered labels, and lists a target whose labels after
relabeling duplicate another's as dropped (the comparison of dropped targets).
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import yaml

from agent import relabel
from agent.convert import promyaml
from agent.convert.prometheus import sanitize
from tests.discovery.fixtures import OBJECTS, load, lookups
from tests.discovery.vmagent import SCRAPE_LABELS, to_vmagent_1_79, vmagent_only
from tests.kube import RBAC_MANIFEST, APIServer
from tests.procs import Proc, agent, eventually, free_port, spawn, wait_http

pytestmark = pytest.mark.integration

TOKEN = "convert-differential-token"
# The stand-in's connection settings, as a kubernetes_sd_config spells them; SD is filled in.
SD = """
        api_server: API
        bearer_token_file: TOKEN
        tls_config:
          ca_file: CA"""

# The service's labels, namespace and name on its targets, as the Helm charts write it.
SERVICE_LABELS = """      - action: labelmap
        regex: __meta_kubernetes_service_label_(.+)
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_service_name]
        target_label: service"""

REMOTE_WRITE = """remote_write:
  # Nothing listens there: only the targets are compared.
  - url: http://127.0.0.1:9/api/v1/write"""

CONFIGS = {
    # Pods by annotation, and the nodes' kubelets through the API server proxy.
    "pods_nodes": f"""
global:
  scrape_interval: 1h
  scrape_timeout: 2s

scrape_configs:
  - job_name: kubernetes-pods
    kubernetes_sd_configs:
      - role: pod{SD}
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        action: keep
        regex: "true"
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        action: replace
        target_label: __metrics_path__
        regex: (.+)
      - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
        action: replace
        regex: ([^:]+)(?::\\d+)?;(\\d+)
        replacement: $1:$2
        target_label: __address__
      - action: labelmap
        regex: __meta_kubernetes_pod_label_(.+)
      - source_labels: [__meta_kubernetes_namespace]
        action: replace
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        action: replace
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_container_name]
        target_label: container
      - source_labels: [__meta_kubernetes_pod_phase]
        regex: Pending|Succeeded|Failed|Completed
        action: drop

  - job_name: kubernetes-nodes
    scheme: https
    tls_config:
      ca_file: CA
    bearer_token_file: TOKEN
    kubernetes_sd_configs:
      - role: node{SD}
    relabel_configs:
      - action: labelmap
        regex: __meta_kubernetes_node_label_(.+)
      - target_label: __address__
        replacement: APIHOSTPORT
      - source_labels: [__meta_kubernetes_node_name]
        regex: (.+)
        target_label: __metrics_path__
        replacement: /api/v1/nodes/$1/proxy/metrics/cadvisor

{REMOTE_WRITE}
""",
    # Service endpoints by annotation or port name, and services probed through blackbox.
    "services": f"""
global:
  scrape_interval: 1h
  scrape_timeout: 2s

scrape_configs:
  - job_name: kubernetes-service-endpoints
    kubernetes_sd_configs:
      - role: endpoints{SD}
    relabel_configs:
      - source_labels: [__meta_kubernetes_service_annotation_prometheus_io_scrape]
        action: keep
        regex: true
      - source_labels: [__meta_kubernetes_service_annotation_prometheus_io_scheme]
        action: replace
        target_label: __scheme__
        regex: (https?)
      - source_labels: [__address__, __meta_kubernetes_service_annotation_prometheus_io_port]
        action: replace
        target_label: __address__
        regex: (.+?)(?::\\d+)?;(\\d+)
        replacement: $1:$2
{SERVICE_LABELS}
      - source_labels: [__meta_kubernetes_pod_node_name]
        target_label: node

  - job_name: shop-http-endpoints
    kubernetes_sd_configs:
      - role: endpoints{SD}
        namespaces:
          names: [shop]
    relabel_configs:
      - source_labels: [__meta_kubernetes_endpoint_port_name]
        regex: http|metrics
        action: keep
      - source_labels: [__meta_kubernetes_endpoint_ready]
        regex: "false"
        action: drop
      - source_labels: [__meta_kubernetes_namespace, __meta_kubernetes_pod_name]
        separator: /
        target_label: instance
      - action: labeldrop
        regex: __meta_kubernetes_service_label_pod_template_hash

  - job_name: kubernetes-services
    metrics_path: /probe
    params:
      module: [http_2xx]
    kubernetes_sd_configs:
      - role: service{SD}
    relabel_configs:
      - source_labels: [__meta_kubernetes_service_type]
        regex: ExternalName
        action: drop
      - source_labels: [__address__]
        target_label: __param_target
      - target_label: __address__
        replacement: blackbox-exporter.monitoring.svc:9115
      - source_labels: [__param_target]
        target_label: instance
{SERVICE_LABELS}

{REMOTE_WRITE}
""",
    # EndpointSlices with their nodes' zones, and one app's pods picked by selectors.
    "slices_selectors": f"""
global:
  scrape_interval: 1h
  scrape_timeout: 2s

scrape_configs:
  - job_name: kubernetes-endpointslices
    kubernetes_sd_configs:
      - role: endpointslice{SD}
        attach_metadata:
          node: true
    relabel_configs:
      - source_labels: [__meta_kubernetes_endpointslice_endpoint_conditions_ready]
        regex: "true"
        action: keep
      - source_labels: [__meta_kubernetes_endpointslice_port_name]
        regex: dns-tcp
        action: drop
{SERVICE_LABELS}
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_node_label_topology_kubernetes_io_zone]
        target_label: zone

  - job_name: checkout-pods
    metrics_path: /internal/metrics
    kubernetes_sd_configs:
      - role: pod{SD}
        namespaces:
          names: [shop]
        selectors:
          - role: pod
            label: app.kubernetes.io/name=checkout
            field: status.phase=Running
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: metrics
        action: keep
      - source_labels: [__meta_kubernetes_pod_ready]
        target_label: ready
      - source_labels: [__meta_kubernetes_pod_node_name]
        target_label: node
      - target_label: app
        replacement: checkout
{REMOTE_WRITE}
""",
}

SCRAPE = "prometheus.scrape."
Target = tuple[str, frozenset[tuple[str, str]]]


def _convert(yml: Path, out: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "agent", "convert", "--source-format=prometheus", "-o", str(out),
         str(yml)],
        capture_output=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr.decode()


def _vmagent(workdir: Path, config: Path) -> Proc:
    """vmagent on the prometheus.yml as written; nothing listens at its remote write URL."""
    port = free_port()
    p = spawn([
        "vmagent",
        f"-promscrape.config={config}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-remoteWrite.url=http://127.0.0.1:9/api/v1/write",
        f"-remoteWrite.tmpDataPath={workdir / 'vmagent-queue'}",
        "-promscrape.kubernetesSDCheckInterval=1s",
        # vmagent takes remote_write from its flags; the file's is for the converter.
        "-promscrape.config.strictParse=false",
    ], workdir, "vmagent")
    p.url = f"http://127.0.0.1:{port}"
    return p


def _vmagent_targets(p: Proc) -> tuple[dict[str, set[Target]], dict[str, list[dict[str, str]]]]:
    """Kept targets (scrape URL, labels) and dropped targets' discovered labels, by job."""
    data = httpx.get(p.url + "/api/v1/targets", timeout=5).json()["data"]
    kept: dict[str, set[Target]] = {}
    for t in data["activeTargets"]:
        kept.setdefault(t["labels"]["job"], set()).add((t["scrapeUrl"], frozenset(t["labels"].items())))
    dropped: dict[str, list[dict[str, str]]] = {}
    for t in data["droppedTargets"]:
        labels = dict(t["discoveredLabels"])
        job = labels["job"]
        for k in SCRAPE_LABELS:
            labels.pop(k, None)
        # The job's params, which vmagent shows as __param_ labels before relabeling (as
        # Prometheus applies them); our discovered labels are discovery's output alone.
        labels = {k: v for k, v in labels.items() if not k.startswith("__param_")}
        dropped.setdefault(job, []).append(labels)
    return kept, dropped


def _shoal_targets(p: Proc) -> tuple[dict[str, set[Target]], dict[str, list[dict[str, str]]]]:
    rows = httpx.get(p.url + "/api/v0/web/targets", timeout=5).json()["data"]
    kept: dict[str, set[Target]] = {}
    dropped: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if r["health"] == "dropped":
            # The job is not a label before relabeling; the scrape component names it.
            dropped.setdefault(r["component_id"], []).append(dict(r["discovered_labels"]))
        else:
            kept.setdefault(r["job"], set()).add(_with_default_port(r["url"], r["labels"]))
    return kept, dropped


def _with_default_port(url: str, labels: dict[str, str]) -> Target:
    """Our target as vmagent 1.79 (and Prometheus 2) names it: an address without a port gets
    the scheme's (80 or 443) in the scrape URL and the instance label. Prometheus 3, which we
    follow, scrapes and labels the address as relabeling left it."""
    u = urlsplit(url)
    if u.port is None:
        address = u.netloc
        port = 443 if u.scheme == "https" else 80
        url = urlunsplit(u._replace(netloc=f"{address}:{port}"))
        if labels.get("instance") == address:
            labels = {**labels, "instance": f"{address}:{port}"}
    return url, frozenset(labels.items())


def _show(targets: set[Target]) -> list[tuple[str, dict[str, str]]]:
    return [(url, dict(labels)) for url, labels in sorted((u, sorted(ls)) for u, ls in targets)]


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A label set as Prometheus holds it: sorted, and a label with an empty value is no label
    (vmagent 1.79 sets a port's missing name or protocol as "", Prometheus leaves it off)."""
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_converted_kubernetes_jobs_find_what_vmagent_finds(tmp_path: Path, case: str) -> None:
    served = yaml.safe_load(OBJECTS.read_text())
    with APIServer(tmp_path / "api", objects=served, rbac_files=[RBAC_MANIFEST]) as api:
        api.add_token(TOKEN, "shoal/shoal")
        (tmp_path / "token").write_text(TOKEN)
        text = CONFIGS[case].replace("APIHOSTPORT", api.url.removeprefix("https://"))
        text = text.replace("API", api.url).replace("TOKEN", str(tmp_path / "token"))
        text = text.replace("CA", str(api.certs.ca))
        yml = tmp_path / "prometheus.yml"
        yml.write_text(text)
        converted = tmp_path / "converted.alloy"
        _convert(yml, converted)
        # Read as the converter reads it: `regex: true` is the string "true", not YAML's boolean.
        scrape_configs = promyaml.load(text)["scrape_configs"]
        jobs = [sc["job_name"] for sc in scrape_configs]

        vm = _vmagent(tmp_path, yml)
        shoal = agent(tmp_path, converted, "--config.watch-interval=0")
        try:
            wait_http(vm.url + "/health", proc=vm.popen)
            wait_http(shoal.url + "/-/ready", proc=shoal.popen)

            def settled() -> tuple:
                ours, theirs = _shoal_targets(shoal), _vmagent_targets(vm)
                assert set(theirs[0]) == set(jobs), theirs[0].keys()
                for job in jobs:
                    a, b = ours[0].get(job, set()), theirs[0][job]
                    assert a == b, f"{job}: only shoal {_show(a - b)}, only vmagent {_show(b - a)}"
                return ours, theirs

            # Eventually: each side lists its targets as its discovery catches up.
            (kept, ours_dropped), (_, vm_dropped) = eventually(settled, timeout=30)
        finally:
            vm.stop()
            assert shoal.stop() == 0, shoal.log_text()[-3000:]
        if case == "slices_selectors":
            # The converted selectors reach the API server as the original's do: every list of
            # shop's pods (one at least from each agent) carries both.
            lists = [r for r in api.requests(verb="list", resource="pods")
                     if r.path == "/api/v1/namespaces/shop/pods"]
            assert len(lists) >= 2
            assert all(r.query.get("labelSelector") == "app.kubernetes.io/name=checkout"
                       and r.query.get("fieldSelector") == "status.phase=Running" for r in lists)
    # Not a vacuous comparison: every job kept some targets.
    assert all(kept[job] for job in jobs)
    # The targets the rules dropped, by their discovered labels: ours mapped to what vmagent
    # 1.79 discovers (tests/discovery/vmagent.py), vmagent's without what Prometheus never sets.
    objs = load(OBJECTS)
    for sc in scrape_configs:
        job, sd = sc["job_name"], sc["kubernetes_sd_configs"][0]
        role, attach = sd["role"], sd.get("attach_metadata", {}).get("node", False)
        rules = [promyaml.relabel_rule(r, job) for r in sc["relabel_configs"]]
        lk = lookups(objs, attach_node=attach)
        mapped = (to_vmagent_1_79(role, t, lk) for t in ours_dropped.get(SCRAPE + sanitize(job), []))
        want = collections.Counter(_key(t) for t in mapped if t is not None)
        # vmagent also lists as dropped a target whose labels after relabeling duplicate another
        # one's (coredns' three ports all rewritten to :9153); Prometheus and Shoal scrape such
        # a target once and do not call the others dropped. Those are the ones the rules keep.
        got = collections.Counter(_key(vmagent_only(role, t)) for t in vm_dropped.get(job, [])
                                  if relabel.process(_key(t), rules) is None)
        assert got == want, f"{job} dropped: only vmagent {list(got - want)}, only ours {list(want - got)}"
        assert sum(want.values()) > 0 or job == "kubernetes-nodes"
