"""The DaemonSet's configuration as shipped (config/kubernetes.alloy) run by `shoal run`
against a cluster made of stand-ins: the API server as a process with the manifests' RBAC,
one kubelet per node checking the service account's token, annotated pods serving
metrics, and a real Prometheus receiving the remote write. This is the proof that the
file a user deploys scrapes its own node, labelled as kube-prometheus-stack does, and
nothing of the other node, with no more rights than manifests/base/rbac.yaml grants.
The same file's relabelling is also run in this process over pod variants (annotations,
phases, ports) that would each need a server of their own as processes."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.discovery.informers import Informers
from tests.components.helpers import files, run
from tests.discovery.test_component import controller
from tests.discovery.test_informer import until
from tests.kube import RBAC_MANIFEST, APIServer
from tests.kube.certs import SERVER_NAMES, make_certs
from tests.kube.kubelet import Kubelet
from tests.kube.rbac import Auth, Request
from tests.procs import ROOT, Proc, eventually, free_port, prometheus, query, spawn, wait_http
from tests.targets import Target

pytestmark = pytest.mark.integration
CONFIG = ROOT / "config" / "kubernetes.alloy"
SA_USER = "system:serviceaccount:shoal:shoal"
SA_TOKEN = "e2e-service-account-token"
ADMIN_TOKEN = "e2e-admin-token"
THIS, OTHER = "node-1", "node-2"


def node(name: str, kubelet_port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "kubernetes.io/os": "linux"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                     {"type": "Hostname", "address": name}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, namespace: str, on: str, containers: list[dict[str, Any]],
        annotations: dict[str, str] | None = None, app: str = "") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "labels": {"app.kubernetes.io/name": app or name.rsplit("-", 1)[0]},
                         "annotations": annotations or {}},
            "spec": {"nodeName": on, "containers": containers},
            "status": {"phase": "Running", "podIP": "127.0.0.1", "hostIP": "127.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def container(name: str, port: int | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": f"registry.example/{name}:1.0"}
    if port is not None:
        c["ports"] = [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    return c


def scraped(port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics"}


def payload(metric: str) -> str:
    return f"# TYPE {metric} counter\n{metric} 42\n"


class Cluster:
    """Two nodes' worth of stand-ins; pods are kept here so the kubelets serve them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.certs = make_certs(tmp / "certs")
        self.auth = Auth()  # the kubelets' SubjectAccessReview answers, by the manifest
        self.auth.load_rbac_file(RBAC_MANIFEST)
        self.auth.add_service_account_token(SA_TOKEN, "shoal", "shoal")
        self.pods: list[dict[str, Any]] = []
        self.kubelets = {
            n: Kubelet(tmp, n, pods=lambda n=n: [p for p in self.pods
                                                 if p["spec"]["nodeName"] == n],
                       auth=self.auth,
                       certs=make_certs(tmp / "certs", SERVER_NAMES + (n,), prefix=f"kubelet-{n}"))
            for n in (THIS, OTHER)}
        self.api_port = free_port()
        self.api: Proc | None = None

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self, objects: list[dict[str, Any]]) -> None:
        for k in self.kubelets.values():
            k.start()
        self.pods = [o for o in objects if o["kind"] == "Pod"]
        nodes = [node(n, k.port) for n, k in self.kubelets.items()]
        (self.tmp / "objects.yaml").write_text(
            "\n---\n".join(json.dumps(o) for o in nodes + objects))
        (self.tmp / "tokens.csv").write_text(f"{SA_TOKEN},{SA_USER},u1\n"
                                             f'{ADMIN_TOKEN},admin,u2,"system:masters"\n')
        self.api = spawn([sys.executable, "-m", "tests.kube.apiserver",
                          "--objects", str(self.tmp / "objects.yaml"),
                          "--port", str(self.api_port), "--certs", str(self.tmp / "certs"),
                          "--token-file", str(self.tmp / "tokens.csv"),
                          "--rbac", str(RBAC_MANIFEST)],
                         self.tmp, "apiserver", env={"PYTHONPATH": str(ROOT)})
        eventually(lambda: "stand-in on" in self.api.log_text(), timeout=30)

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, self.api_url + path, json=body, verify=self.certs.client_context(),
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)

    def add_pod(self, p: dict[str, Any]) -> None:
        r = self.admin("POST", f"/api/v1/namespaces/{p['metadata']['namespace']}/pods", p)
        assert r.status_code == 201, r.text
        self.pods.append(p)

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        for k in self.kubelets.values():
            k.stop()


def service_account(tmp: Path, ca: Path) -> Path:
    """The folder Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    sa = tmp / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(SA_TOKEN)
    shutil.copy(ca, sa / "ca.crt")
    (sa / "namespace").write_text("shoal")
    return sa


@contextlib.contextmanager
def targets(n: int) -> Iterator[list[Target]]:
    ts = [Target(payload(f"app_{i}_requests_total")).start() for i in range(n)]
    try:
        yield ts
    finally:
        for t in ts:
            t.stop()


def series(prom: Proc, expr: str) -> list[dict[str, str]]:
    return [r["metric"] for r in query(prom.url, expr)]


def shoal_run(tmp: Path, cluster: Cluster, remote_write_url: str) -> Proc:
    """`shoal run config/kubernetes.alloy` with the environment a DaemonSet pod has,
    pointed at the stand-ins; ready to serve when returned."""
    sa = service_account(tmp, cluster.certs.ca)
    port = free_port()
    agent = spawn([sys.executable, "-m", "agent", "run",
                   f"--server.http.listen-addr=127.0.0.1:{port}",
                   f"--storage.path={tmp / 'data'}", str(CONFIG)],
                  tmp, "agent", env={
                      "NODE_NAME": THIS,
                      "SHOAL_KUBERNETES_API_SERVER": cluster.api_url,
                      "SHOAL_SERVICE_ACCOUNT_DIR": str(sa),
                      "SHOAL_SCRAPE_INTERVAL": "1s",
                      "SHOAL_REMOTE_WRITE_URL": remote_write_url})
    agent.url = f"http://127.0.0.1:{port}"
    wait_http(agent.url + "/-/ready", proc=agent.popen)
    return agent


def test_shipped_config_scrapes_this_node_as_kube_prometheus_stack(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    with targets(3) as (mine, theirs, added), prometheus(tmp_path / "prom") as prom:
        web = pod("shop-web-1", "shop", THIS,
                  [container("web", mine.port), container("istio-proxy", 15090)],
                  scraped(mine.port), app="shop-web")
        # An init container on the annotated port: never a second target.
        web["spec"]["initContainers"] = [container("migrate", mine.port)]
        # Annotated but not running yet: not scraped.
        pending = pod("shop-web-3", "shop", THIS, [container("web", theirs.port)],
                      scraped(theirs.port), app="shop-web")
        pending["status"] = {"phase": "Pending", "podIP": "127.0.0.1"}
        cluster.start([
            # This node: an annotated pod with a sidecar (scraped once, for its app
            # container), a pod that does not opt in, a pending one.
            web,
            pod("db-0", "shop", THIS, [container("postgres", 5432)]),
            pending,
            # The other node: annotated too, but not ours to scrape.
            pod("shop-web-2", "shop", OTHER, [container("web", theirs.port)],
                scraped(theirs.port), app="shop-web"),
            pod("coredns-1", "kube-system", OTHER, [container("coredns", 9153)]),
        ])
        agent = shoal_run(tmp_path, cluster, prom.url + "/api/v1/write")
        try:

            def kubelet_up() -> list[dict[str, str]]:
                got = series(prom, 'up{job="kubelet"} == 1')
                return got if len(got) == 4 else []
            ups = eventually(kubelet_up, timeout=30)
            assert {u["metrics_path"] for u in ups} == {
                "/metrics", "/metrics/cadvisor", "/metrics/probes", "/metrics/resource"}
            assert {u["node"] for u in ups} == {THIS}
            assert {u["instance"] for u in ups} == {THIS}  # the node role's instance label

            # cAdvisor's own namespace/pod/container labels, this node's pods only.
            cpu = eventually(lambda: series(
                prom, 'container_cpu_usage_seconds_total{metrics_path="/metrics/cadvisor"}'))
            assert {(s["namespace"], s["pod"], s["container"]) for s in cpu} == {
                ("shop", "shop-web-1", "web"), ("shop", "shop-web-1", "istio-proxy"),
                ("shop", "db-0", "postgres"), ("shop", "shop-web-3", "web")}
            assert all(s["job"] == "kubelet" and s["node"] == THIS for s in cpu)
            for path, metric in (("/metrics", "kubelet_running_pods"),
                                 ("/metrics/probes", "prober_probe_total"),
                                 ("/metrics/resource", "node_cpu_usage_seconds_total")):
                got = eventually(lambda p=path, m=metric: series(
                    prom, f'{m}{{job="kubelet",metrics_path="{p}"}}'))
                assert {s["node"] for s in got} == {THIS}, (path, got)

            # The annotated pod: once, for the container whose port is annotated.
            app = eventually(lambda: series(prom, "app_0_requests_total"))
            assert len(app) == 1
            assert {k: app[0][k] for k in ("job", "namespace", "pod", "container", "node")} == {
                "job": "shop-web", "namespace": "shop", "pod": "shop-web-1",
                "container": "web", "node": THIS}
            assert app[0]["instance"] == mine.address

            # A pod scheduled here while running is scraped.
            cluster.add_pod(pod("batch-7", "jobs", THIS, [container("worker", added.port)],
                                scraped(added.port)))
            new = eventually(lambda: series(prom, "app_2_requests_total"), timeout=20)
            assert (new[0]["namespace"], new[0]["pod"], new[0]["node"]) == (
                "jobs", "batch-7", THIS)

            # Nothing of the other node: its kubelet and its pod were never asked.
            assert series(prom, f'{{node="{OTHER}"}}') == []
            assert series(prom, '{pod=~"shop-web-2|coredns-1"}') == []
            assert list(cluster.kubelets[OTHER].hits) == []
            assert list(theirs.requests) == []  # node-2's pod and the pending one

            # The kubelet's token check passed: every scrape by the service account.
            hits = list(cluster.kubelets[THIS].hits)
            assert hits and {(h.user, h.status) for h in hits} == {(SA_USER, 200)}
        finally:
            assert agent.stop() == 0, agent.log_text()[-3000:]
            report = rbac_report(cluster)
            cluster.stop()
    # The manifests' RBAC was enough: no request was refused.
    assert report["refused"] == [], report
    assert {("list", "nodes"), ("watch", "nodes"), ("list", "pods"), ("watch", "pods"),
            ("get", "nodes/metrics")} <= report["used"]
    print("RBAC grants the shipped configuration never used:", sorted(report["unused"]))


def rbac_report(cluster: Cluster) -> dict[str, Any]:
    """What the API server process served (its apiserver_request_total) plus what the
    kubelets checked, replayed through the manifest's rules: refused requests and the
    grants nobody used."""
    text = cluster.admin("GET", "/metrics").text
    refused, used = [], set()
    user = cluster.auth.tokens[SA_TOKEN]
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.index("}")]
                      .split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        verb, res, code = labels["verb"].lower(), labels["resource"], labels["code"]
        if code in ("401", "403"):
            refused.append(line)
        if code == "200" and res in ("nodes", "pods"):  # the admin's POST is a 201
            cluster.auth.authorize(user, Request(verb, "", res))
            used.add((verb, res))
    for g in cluster.auth.used:
        used.add((g[2].verb, g[2].resource))
    return {"refused": refused, "used": used,
            "unused": [(g.verb, g.api_group, g.resource)
                       for g in cluster.auth.unused_grants("shoal")]}


def test_an_unset_remote_write_url_fails_loudly(tmp_path: Path) -> None:
    """Without SHOAL_REMOTE_WRITE_URL the samples go nowhere, and the log and the metrics
    say which variable to set (a .invalid host never resolves, RFC 6761)."""
    cluster = Cluster(tmp_path)
    cluster.start([])
    agent = shoal_run(tmp_path, cluster, "")
    try:
        def retried() -> float:
            text = httpx.get(agent.url + "/metrics", timeout=5).text
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("prometheus_remote_storage_samples_retried_total{")
                       and "shoal-remote-write-url-is-unset.invalid" in line)
        eventually(lambda: retried() > 0, timeout=30)
        warnings = [line for line in agent.log_text().splitlines()
                    if "level=warn" in line and "shoal-remote-write-url-is-unset" in line]
        assert warnings and "Cannot connect to host" in warnings[0], warnings
    finally:
        assert agent.stop() == 0, agent.log_text()[-3000:]
        cluster.stop()


def test_shipped_relabelling_of_pod_and_node_variants(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped file's discovery and relabelling in this process, over pods a process
    test would need a server each for: what each annotation does to the targets."""
    def web(name: str, ip: str, annotations: dict[str, str], on: str = THIS,
            ports: tuple[int, ...] = (8080,), labels: dict[str, str] | None = None,
            phase: str = "Running") -> dict[str, Any]:
        p = pod(name, "apps", on, [container(f"c{port}", port) for port in ports],
                annotations)
        p["metadata"]["labels"] = labels or {}
        p["status"].update(podIP=ip, phase=phase)
        return p

    opt_in = {"prometheus.io/scrape": "true"}
    objects = [
        node(THIS, 10250), node(OTHER, 10250),
        web("tls", "10.0.0.1", {**opt_in, "prometheus.io/port": "9443",
                                "prometheus.io/scheme": "https",
                                "prometheus.io/path": "/stats/prometheus"},
            ports=(8080, 9443), labels={"app": "envoy"}),
        web("every-port", "10.0.0.2", opt_in, ports=(8080, 9090),
            labels={"app": "legacy", "app.kubernetes.io/name": "shop"}),
        web("opted-out", "10.0.0.3", {"prometheus.io/scrape": "false"}),
        web("undeclared", "10.0.0.4", {**opt_in, "prometheus.io/port": "7777"}),
        web("failed", "10.0.0.5", opt_in, phase="Failed"),
        web("elsewhere", "10.0.0.6", opt_in, on=OTHER),
    ]
    with APIServer(tmp_path / "api", objects=objects, rbac_files=[RBAC_MANIFEST]) as api:
        api.add_token(SA_TOKEN, "shoal/shoal")
        sa = service_account(tmp_path, api.certs.ca)
        for k, v in {"NODE_NAME": THIS, "SHOAL_KUBERNETES_API_SERVER": api.url,
                     "SHOAL_SERVICE_ACCOUNT_DIR": str(sa), "SHOAL_SCRAPE_INTERVAL": "1h",
                     "SHOAL_REMOTE_WRITE_URL": "http://127.0.0.1:1/api/v1/write"}.items():
            monkeypatch.setenv(k, v)

        async def go() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
            informers = Informers(min_backoff=0.05, max_backoff=0.2)
            c = controller(tmp_path, informers)
            await c.load(files(CONFIG.read_text()))
            try:
                pods = c.node("discovery.relabel.pods")
                cadvisor = c.node("discovery.relabel.cadvisor")
                await until(lambda: len(pods.exports.output) >= 3
                            and len(cadvisor.exports.output) == 1, 10.0)
                return pods.exports.output, cadvisor.exports.output
            finally:
                await c.stop()
                await informers.stop()
        pods, cadvisor = run(go())

    def public(t: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in t.items() if not k.startswith("__meta_")}
    got = sorted((public(t) for t in pods), key=lambda t: t["__address__"])
    base = {"namespace": "apps", "node": THIS, "__tmp_port": ""}
    assert got == [
        {**base, "__address__": "10.0.0.1:9443", "__scheme__": "https",
         "__metrics_path__": "/stats/prometheus", "pod": "tls", "container": "c9443",
         "job": "envoy", "__tmp_port": "9443"},
        {**base, "__address__": "10.0.0.2:8080", "pod": "every-port", "container": "c8080",
         "job": "shop", "__tmp_port": "8080"},
        {**base, "__address__": "10.0.0.2:9090", "pod": "every-port", "container": "c9090",
         "job": "shop", "__tmp_port": "9090"},
    ]
    assert [public(t) for t in cadvisor] == [{
        "__address__": "127.0.0.1:10250", "instance": THIS, "node": THIS,
        "__metrics_path__": "/metrics/cadvisor", "metrics_path": "/metrics/cadvisor"}]
