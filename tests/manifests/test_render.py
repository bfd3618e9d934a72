"""manifests/ as Kubernetes will see it: rendered by kubectl's Kustomize, valid for every
Kubernetes version our users run, and consistent with itself and with the agent.

Each object is validated with kubernetes-validate's bundled schemas (offline, strict, so a
misspelt field fails) for 1.29 and every newer version the package knows. The
prometheus-operator kinds have no bundled schema: their rules go through promtool and the
PodMonitor is checked against the DaemonSet it is meant to select.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from tests import procs

MANIFESTS = procs.ROOT / "manifests"
CONFIG = procs.ROOT / "config"
TREES = ["base", "overlays/lab", "overlays/prometheus-operator"]
VERSIONS = sorted(
    {v for v in kv_utils.all_versions() if tuple(map(int, v.split(".")[:2])) >= (1, 29)},
    key=lambda v: tuple(map(int, v.split("."))),
)
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}


def render(tree: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed (scripts/setup installs Debian's kubectl)"
    out = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / tree)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind]
    return obj


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = one(objs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return c


def test_schema_versions_cover_1_29_and_newer():
    assert VERSIONS[0] == "1.29.0" and len(VERSIONS) >= 2, VERSIONS


@pytest.mark.parametrize("tree", TREES)
def test_every_object_is_valid_for_every_supported_kubernetes(tree):
    objs = render(tree)
    checked = 0
    for obj in objs:
        if obj["kind"] in OPERATOR_KINDS:
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{tree}: {obj['kind']}/{obj['metadata']['name']} on {version}: {exc}")
        checked += 1
    assert checked >= 8


def test_the_validator_rejects_a_misspelt_field():
    ds = one(render("base"), "DaemonSet")
    ds["spec"]["template"]["spec"]["tolerations"][0]["opertor"] = "Exists"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, VERSIONS[0], strict=True)


# config/ files that are not for a cluster (the one-machine example of scripts/run-local).
NOT_IN_CONFIGMAP = {"local.alloy"}


def test_the_configmap_is_the_config_folder_and_loads_as_one(tmp_path):
    cm = one(render("base"), "ConfigMap")
    assert cm["metadata"]["name"] == "shoal-config"
    on_disk = {p.name: p.read_text() for p in sorted(CONFIG.glob("*.alloy"))}
    wanted = set(on_disk) - NOT_IN_CONFIGMAP
    missing = sorted(wanted - set(cm["data"]))
    assert not missing, f"add {missing} to config/kustomization.yaml's configMapGenerator files"
    assert cm["data"] == {name: on_disk[name] for name in wanted}
    # The agent reads the mounted ConfigMap as one folder: its files must load together.
    for name, text in cm["data"].items():
        (tmp_path / name).write_text(text)
    res = subprocess.run(
        [sys.executable, "-m", "agent", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr


def test_the_rendered_rbac_is_the_file_the_api_stand_in_enforces():
    objs = render("base")
    declared = {
        d["kind"]: d for d in yaml.safe_load_all((MANIFESTS / "base" / "rbac.yaml").read_text())
    }
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
        rendered = one(objs, kind)
        assert {k: v for k, v in rendered.items() if k != "metadata"} == {
            k: v for k, v in declared[kind].items() if k != "metadata"
        }
        assert rendered["metadata"]["name"] == declared[kind]["metadata"]["name"]


def test_the_daemonset_wires_together():
    objs = render("base")
    ds = one(objs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    c = container(objs)
    svc = one(objs, "Service")
    ns = one(objs, "Namespace")["metadata"]["name"]

    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == one(objs, "PriorityClass")["metadata"]["name"]
    assert pod["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] >= 30

    # Clustering joins through the headless Service, with identity from the downward API.
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    args = c["args"]
    assert "--cluster.enabled=true" in args
    join = f"--cluster.join-addresses={svc['metadata']['name']}.{ns}.svc.cluster.local:12345"
    assert join in args
    assert "--cluster.node-name=$(NODE_NAME)" in args
    assert "--cluster.advertise-address=$(POD_IP):12345" in args
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"] if "valueFrom" in e}
    assert env == {"NODE_NAME": "spec.nodeName", "POD_IP": "status.podIP"}
    # Every variable the shipped configuration reads and the DaemonSet must set is set.
    names = {e["name"] for e in c["env"]}
    config = "".join(one(objs, "ConfigMap")["data"].values())
    for var in ("NODE_NAME", "SHOAL_REMOTE_WRITE_URL"):
        assert f'sys.env("{var}")' in config and var in names

    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) & set(c["resources"]["limits"])

    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0

    # The config folder is the whole ConfigMap (a subPath mount never sees an edit) and the
    # folder the agent runs; the WAL is a volume, not the read-only root filesystem.
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "subPath" not in mounts["config"]
    assert volumes["config"]["configMap"]["name"] == one(objs, "ConfigMap")["metadata"]["name"]
    assert args[-1] == mounts["config"]["mountPath"]
    assert f"--storage.path={mounts['wal']['mountPath']}" in args
    assert "emptyDir" in volumes["wal"] or "hostPath" in volumes["wal"]


def test_the_daemonset_flags_are_ones_shoal_run_accepts(tmp_path):
    """`shoal run` with the DaemonSet's arguments gets past flag parsing to the config."""
    args = [
        a.replace("$(NODE_NAME)", "node-a").replace("$(POD_IP)", "127.0.0.1")
        for a in container(render("base"))["args"]
    ]
    args = [a for a in args if not a.startswith(("--server.http", "--storage.path"))]
    res = subprocess.run(
        [sys.executable, "-m", "agent", *args[:-1], str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert "no such file or folder" in res.stderr, res.stderr


def test_the_lab_overlay_runs_one_agent_without_clustering():
    args = container(render("overlays/lab"))["args"]
    assert not [a for a in args if a.startswith("--cluster.")]
    assert args[0] == "run" and args[-1] == "/etc/shoal"


def test_the_operator_overlay_selects_shoal_and_its_rules_load(tmp_path):
    objs = render("overlays/prometheus-operator")
    pm = one(objs, "PodMonitor")
    (url,) = [e["value"] for e in container(objs)["env"] if e["name"] == "SHOAL_REMOTE_WRITE_URL"]
    assert url.startswith("http://prometheus-operated.monitoring.svc:9090/")
    labels = one(objs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in pm["spec"]["selector"]["matchLabels"].items())
    ports = {p["name"] for p in container(objs)["ports"]}
    assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= ports
    assert pm["metadata"]["namespace"] == "shoal"

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": one(objs, "PrometheusRule")["spec"]["groups"]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/setup)"
    res = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alerted_metric_is_one_the_agent_exports():
    """A rule over a metric name the agent never exports would never fire."""
    rule_file = MANIFESTS / "overlays" / "prometheus-operator" / "prometheusrule.yaml"
    exprs = [
        r["expr"]
        for g in yaml.safe_load(rule_file.read_text())["spec"]["groups"]
        for r in g["rules"]
    ]
    source = "\n".join(p.read_text() for p in (procs.ROOT / "agent").rglob("*.py"))
    for expr in exprs:
        for word in expr.replace("(", " ").replace("{", " ").replace("[", " ").split():
            if word.startswith(("alloy_", "prometheus_", "shoal_")):
                base = word.removesuffix("_bucket").removeprefix("prometheus_remote_storage_")
                assert base in source, f"{word} in {rule_file.name} is not exported by agent/"
