"""Each role's targets and meta labels for realistic objects, as Prometheus' Kubernetes discovery builds them.

The expectations are written out label by label from Prometheus'
discovery/kubernetes/*.go, quirks included (an endpointslice target takes the
matching container port's protocol, an endpoints target the endpoint port's).
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.discovery.roles import build
from tests.discovery.fixtures import load, lookups, named

M = "__meta_kubernetes_"
OBJS = load()


def meta(kind: str, name: str, labels: dict[str, str] = {}, annotations: dict[str, str] = {}) -> dict:  # noqa: B006
    out = {f"{M}{kind}_name": name}
    for k, v in labels.items():
        out[f"{M}{kind}_label_{k}"] = v
        out[f"{M}{kind}_labelpresent_{k}"] = "true"
    for k, v in annotations.items():
        out[f"{M}{kind}_annotation_{k}"] = v
        out[f"{M}{kind}_annotationpresent_{k}"] = "true"
    return out


def by_address(targets: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(targets, key=lambda t: sorted(t.items()))


WORKER_A_META = meta(
    "node",
    "worker-a",
    {
        "kubernetes_io_hostname": "worker-a",
        "kubernetes_io_os": "linux",
        "node_role_kubernetes_io_worker": "",
        "topology_kubernetes_io_zone": "eu-west-1a",
    },
    {
        "node_alpha_kubernetes_io_ttl": "0",
        "volumes_kubernetes_io_controller_managed_attach_detach": "true",
    },
)
WORKER_B_META = meta(
    "node",
    "worker-b",
    {"kubernetes_io_hostname": "worker-b", "kubernetes_io_os": "linux", "topology_kubernetes_io_zone": "eu-west-1b"},
)


def test_node_address_by_prometheus_order_and_kubelet_port() -> None:
    tg = build("node", named(OBJS, "Node", "worker-a"))
    assert tg.source == "node/worker-a"
    assert tg.send and not tg.problems
    assert tg.labels == {
        M + "node_provider_id": "aws:///eu-west-1a/i-0a1b2c3d4e5f60001",
        M + "node_condition_memorypressure": "false",
        M + "node_condition_diskpressure": "false",
        M + "node_condition_pidpressure": "false",
        M + "node_condition_ready": "true",
        **WORKER_A_META,
    }
    # InternalIP first; the first address of each type labels it.
    assert tg.targets == [{
        "__address__": "10.0.1.10:10250",
        "instance": "worker-a",
        M + "node_address_Hostname": "worker-a",
        M + "node_address_ExternalIP": "203.0.113.10",
        M + "node_address_InternalIP": "10.0.1.10",
        M + "node_address_InternalDNS": "worker-a.eu-west-1.compute.internal",
    }]


def test_node_falls_back_to_external_dns_before_hostname() -> None:
    tg = build("node", named(OBJS, "Node", "worker-b"))
    assert tg.targets[0]["__address__"] == "worker-b.example.net:10250"
    assert tg.labels[M + "node_condition_ready"] == "unknown"
    assert tg.labels[M + "node_provider_id"] == ""


def test_node_without_address_sends_nothing_and_says_why() -> None:
    node = copy.deepcopy(named(OBJS, "Node", "worker-a"))
    node["status"]["addresses"] = []
    tg = build("node", node)
    assert not tg.send
    assert tg.problems == ["node has no address"]


def test_node_ipv6_address_is_bracketed() -> None:
    node = copy.deepcopy(named(OBJS, "Node", "worker-b"))
    node["status"]["addresses"] = [{"type": "InternalIP", "address": "fd00::1"}]
    assert build("node", node).targets[0]["__address__"] == "[fd00::1]:10250"


CHECKOUT_A = "checkout-5d8f7b9c6-abcde"
CHECKOUT_A_LABELS = {
    M + "pod_ip": "10.244.2.17",
    M + "pod_ready": "false",
    M + "pod_phase": "Running",
    M + "pod_node_name": "worker-b",
    M + "pod_host_ip": "10.0.2.10",
    M + "pod_uid": "7c1e0000-0000-4000-8000-0000000d0001",
    M + "pod_controller_kind": "ReplicaSet",
    M + "pod_controller_name": "checkout-5d8f7b9c6",
    **meta(
        "pod",
        CHECKOUT_A,
        {"app_kubernetes_io_name": "checkout", "app_kubernetes_io_version": "1.4.2", "pod_template_hash": "5d8f7b9c6"},
        {
            "prometheus_io_scrape": "true",
            "prometheus_io_path": "/internal/metrics",
            "kubectl_kubernetes_io_restartedAt": "2026-12-01T10:00:00Z",
        },
    ),
}


def container(name: str, image: str, cid: str, init: bool, port: tuple[str, str, str] | None = None) -> dict:
    out = {
        M + "pod_container_name": name,
        M + "pod_container_image": image,
        M + "pod_container_init": "true" if init else "false",
    }
    if cid is not None:
        out[M + "pod_container_id"] = cid
    if port is not None:
        out[M + "pod_container_port_name"] = port[0]
        out[M + "pod_container_port_number"] = port[1]
        out[M + "pod_container_port_protocol"] = port[2]
    return out


CHECKOUT_IMAGE = "ghcr.io/example/checkout:1.4.2"


def test_pod_one_target_per_port_one_per_portless_container_and_init_containers() -> None:
    tg = build("pod", named(OBJS, "Pod", CHECKOUT_A), lookups(OBJS))
    assert tg.source == f"pod/shop/{CHECKOUT_A}"
    assert tg.labels == {**CHECKOUT_A_LABELS, M + "namespace": "shop"}
    ip = "10.244.2.17"
    assert tg.targets == [
        {"__address__": f"{ip}:8080", **container("checkout", CHECKOUT_IMAGE, "containerd://bb11", False, ("http", "8080", "TCP"))},
        {"__address__": f"{ip}:9090", **container("checkout", CHECKOUT_IMAGE, "containerd://bb11", False, ("metrics", "9090", "TCP"))},
        # No ports, no status: the pod IP alone and an empty container ID.
        {"__address__": ip, **container("log-shipper", "docker.io/fluent/fluent-bit:3.0", "", False)},
        {"__address__": ip, **container("migrate", "ghcr.io/example/checkout-migrate:1.4.2", "containerd://aa11", True)},
        {"__address__": f"{ip}:15090", **container("istio-init", "docker.io/istio/proxyv2:1.22.0", "containerd://aa22", True, ("http-envoy-prom", "15090", "TCP"))},
    ]


def test_pod_without_ip_gives_an_empty_group() -> None:
    tg = build("pod", named(OBJS, "Pod", "report-28911230-q7w8e"), lookups(OBJS))
    assert tg.source == "pod/shop/report-28911230-q7w8e"
    assert tg.send and tg.targets == [] and tg.labels == {}
    assert tg.problems == ["pod has no IP"]


def test_pod_owner_that_is_not_a_controller_and_port_without_name() -> None:
    tg = build("pod", named(OBJS, "Pod", "static-web-worker-a"), lookups(OBJS))
    assert M + "pod_controller_kind" not in tg.labels
    assert tg.labels[M + "pod_ready"] == "unknown"
    assert tg.targets == [{
        "__address__": "10.244.1.40:80",
        **container("web", "nginx:1.27", "", False, ("", "80", "")),
    }]


def test_pod_attach_metadata_node() -> None:
    tg = build("pod", named(OBJS, "Pod", CHECKOUT_A), lookups(OBJS, attach_node=True))
    assert tg.labels == {**CHECKOUT_A_LABELS, M + "namespace": "shop", **WORKER_B_META}
    # A pod on a node the node informer does not hold (filtered by selectors) is dropped.
    pod = copy.deepcopy(named(OBJS, "Pod", CHECKOUT_A))
    pod["spec"]["nodeName"] = "worker-z"
    tg = build("pod", pod, lookups(OBJS, attach_node=True))
    assert tg.targets == [] and tg.labels == {}


def test_service_load_balancer_and_external_name() -> None:
    tg = build("service", named(OBJS, "Service", "checkout"))
    assert tg.source == "svc/shop/checkout"
    assert tg.labels == {M + "namespace": "shop", **meta("service", "checkout", {"app_kubernetes_io_name": "checkout"})}
    assert tg.targets == [{
        "__address__": "checkout.shop.svc:80",
        M + "service_port_name": "http",
        M + "service_port_number": "80",
        M + "service_port_protocol": "TCP",
        M + "service_type": "LoadBalancer",
        M + "service_cluster_ip": "10.96.14.2",
        M + "service_loadbalancer_ip": "198.51.100.7,198.51.100.8",
    }]
    tg = build("service", named(OBJS, "Service", "payments-gateway"))
    assert tg.targets == [{
        "__address__": "payments-gateway.shop.svc:443",
        M + "service_port_name": "",
        M + "service_port_number": "443",
        M + "service_port_protocol": "TCP",
        M + "service_type": "ExternalName",
        M + "service_external_name": "gw.payments.example.com",
    }]


def test_service_ports_of_cluster_ip_service() -> None:
    tg = build("service", named(OBJS, "Service", "kube-dns"))
    assert [t["__address__"] for t in tg.targets] == ["kube-dns.kube-system.svc:53"] * 2 + ["kube-dns.kube-system.svc:9153"]
    assert {t[M + "service_cluster_ip"] for t in tg.targets} == {"10.96.0.10"}
    assert M + "service_loadbalancer_ip" not in tg.targets[0]


CHECKOUT_SVC = {M + "namespace": "shop", **meta("service", "checkout", {"app_kubernetes_io_name": "checkout"})}
CHECKOUT_B = "checkout-5d8f7b9c6-fghij"
CHECKOUT_B_LABELS = {
    M + "pod_ip": "10.244.1.23",
    M + "pod_ready": "true",
    M + "pod_phase": "Running",
    M + "pod_node_name": "worker-a",
    M + "pod_host_ip": "10.0.1.10",
    M + "pod_uid": "7c1e0000-0000-4000-8000-0000000d0002",
    M + "pod_controller_kind": "ReplicaSet",
    M + "pod_controller_name": "checkout-5d8f7b9c6",
    **meta("pod", CHECKOUT_B, {"app_kubernetes_io_name": "checkout", "pod_template_hash": "5d8f7b9c6"}),
}


def test_endpoints_ready_and_not_ready_with_pod_and_service_metadata() -> None:
    tg = build("endpoints", named(OBJS, "Endpoints", "checkout"), lookups(OBJS))
    assert tg.source == "endpoints/shop/checkout"
    assert tg.labels == {**CHECKOUT_SVC, **meta("endpoints", "checkout", {"app_kubernetes_io_name": "checkout"})}

    def ep(ip: str, ready: str, node: str, pod: str) -> dict:
        return {
            "__address__": f"{ip}:8080",
            M + "endpoint_port_name": "http",
            M + "endpoint_port_protocol": "TCP",
            M + "endpoint_ready": ready,
            M + "endpoint_address_target_kind": "Pod",
            M + "endpoint_address_target_name": pod,
            M + "endpoint_node_name": node,
        }

    # Targets behind an endpoint port carry no container ID; uncovered ports do not either.
    assert by_address(tg.targets) == by_address([
        {**ep("10.244.1.23", "true", "worker-a", CHECKOUT_B), **CHECKOUT_B_LABELS,
         **container("checkout", CHECKOUT_IMAGE, None, False, ("http", "8080", "TCP"))},
        {**ep("10.244.2.17", "false", "worker-b", CHECKOUT_A), **CHECKOUT_A_LABELS,
         **container("checkout", CHECKOUT_IMAGE, None, False, ("http", "8080", "TCP"))},
        {"__address__": "10.244.1.23:9090", **CHECKOUT_B_LABELS,
         **container("checkout", CHECKOUT_IMAGE, None, False, ("metrics", "9090", "TCP"))},
        {"__address__": "10.244.2.17:9090", **CHECKOUT_A_LABELS,
         **container("checkout", CHECKOUT_IMAGE, None, False, ("metrics", "9090", "TCP"))},
        {"__address__": "10.244.2.17:15090", **CHECKOUT_A_LABELS,
         **container("istio-init", "docker.io/istio/proxyv2:1.22.0", None, True, ("http-envoy-prom", "15090", "TCP"))},
    ])


def test_endpoints_without_service_or_pods() -> None:
    tg = build("endpoints", named(OBJS, "Endpoints", "external-db"), lookups(OBJS))
    assert tg.labels == {M + "namespace": "shop", M + "endpoints_name": "external-db"}
    base = {M + "endpoint_port_name": "", M + "endpoint_port_protocol": "TCP", M + "endpoint_ready": "true"}
    assert tg.targets == [
        {"__address__": "192.0.2.50:5432", **base, M + "endpoint_hostname": "db-0"},
        {"__address__": "[2001:db8::50]:5432", **base},
    ]


def test_endpoints_container_port_match_takes_the_first_port_and_the_endpoint_protocol() -> None:
    tg = build("endpoints", named(OBJS, "Endpoints", "kube-dns"), lookups(OBJS, attach_node=True))
    assert [(t["__address__"], t[M + "endpoint_port_name"], t[M + "pod_container_port_name"],
             t[M + "pod_container_port_protocol"]) for t in tg.targets] == [
        ("10.244.1.5:53", "dns", "dns", "UDP"),
        ("10.244.1.5:53", "dns-tcp", "dns", "TCP"),
        ("10.244.1.5:9153", "metrics", "metrics", "TCP"),
    ]
    # attach_metadata node: by the address's node name.
    assert all(t[M + "node_name"] == "worker-a" for t in tg.targets)
    assert tg.targets[0][M + "node_label_topology_kubernetes_io_zone"] == "eu-west-1a"


def test_endpointslice_with_conditions_zone_topology_and_container_protocol() -> None:
    tg = build("endpointslice", named(OBJS, "EndpointSlice", "kube-dns-7xq2m"), lookups(OBJS))
    assert tg.source == "endpointslice/kube-system/kube-dns-7xq2m"
    assert tg.labels == {
        M + "namespace": "kube-system",
        M + "endpointslice_address_type": "IPv4",
        **meta("endpointslice", "kube-dns-7xq2m", {
            "kubernetes_io_service_name": "kube-dns",
            "endpointslice_kubernetes_io_managed_by": "endpointslice-controller.k8s.io",
        }),
        **meta("service", "kube-dns",
               {"k8s_app": "kube-dns", "kubernetes_io_cluster_service": "true", "kubernetes_io_name": "CoreDNS"},
               {"prometheus_io_port": "9153", "prometheus_io_scrape": "true"}),
    }
    coredns = build("pod", named(OBJS, "Pod", "coredns-7db6d8ff4d-x2k9p"), lookups(OBJS)).labels
    pod_labels = {k: v for k, v in coredns.items() if k != M + "namespace"}
    common = {
        M + "endpointslice_endpoint_conditions_ready": "true",
        M + "endpointslice_endpoint_conditions_serving": "true",
        M + "endpointslice_endpoint_conditions_terminating": "false",
        M + "endpointslice_address_target_kind": "Pod",
        M + "endpointslice_address_target_name": "coredns-7db6d8ff4d-x2k9p",
        M + "endpointslice_endpoint_node_name": "worker-a",
        M + "endpointslice_endpoint_zone": "eu-west-1a",
        **pod_labels,
    }
    image = "registry.k8s.io/coredns/coredns:v1.11.1"
    assert tg.targets == [
        {"__address__": "10.244.1.5:53", M + "endpointslice_port_name": "dns-tcp",
         M + "endpointslice_port_protocol": "TCP", M + "endpointslice_port": "53", **common,
         # The first container port 53 is the UDP one, and its protocol is taken.
         **container("coredns", image, None, False, ("dns", "53", "UDP"))},
        {"__address__": "10.244.1.5:9153", M + "endpointslice_port_name": "metrics",
         M + "endpointslice_port_protocol": "TCP", M + "endpointslice_port": "9153",
         M + "endpointslice_port_app_protocol": "http", **common,
         **container("coredns", image, None, False, ("metrics", "9153", "TCP"))},
    ]


def test_endpointslice_topology_hostname_and_uncovered_ports() -> None:
    tg = build("endpointslice", named(OBJS, "EndpointSlice", "checkout-r5t6y"), lookups(OBJS, attach_node=True))
    terminating = next(t for t in tg.targets if t["__address__"] == "10.244.2.17:8080")
    assert terminating[M + "endpointslice_endpoint_hostname"] == "checkout-b"
    assert terminating[M + "endpointslice_endpoint_conditions_terminating"] == "true"
    assert terminating[M + "endpointslice_endpoint_topology_topology_kubernetes_io_zone"] == "eu-west-1b"
    assert terminating[M + "endpointslice_endpoint_topology_present_topology_kubernetes_io_zone"] == "true"
    assert terminating[M + "node_name"] == "worker-b"
    assert sorted(t["__address__"] for t in tg.targets) == [
        "10.244.1.23:8080", "10.244.1.23:9090", "10.244.2.17:15090", "10.244.2.17:8080", "10.244.2.17:9090",
    ]


def test_endpointslice_of_the_second_family_of_a_dual_stack_service_has_no_targets() -> None:
    objs = copy.deepcopy(OBJS)
    svc = named(objs, "Service", "kube-dns")
    svc["spec"]["ipFamilyPolicy"] = "PreferDualStack"
    svc["spec"]["ipFamilies"] = ["IPv6", "IPv4"]
    tg = build("endpointslice", named(objs, "EndpointSlice", "kube-dns-7xq2m"), lookups(objs))
    assert tg.targets == []
    assert tg.labels[M + "service_name"] == "kube-dns"


def test_ingress_per_rule_path_with_tls_scheme() -> None:
    tg = build("ingress", named(OBJS, "Ingress", "storefront"))
    assert tg.source == "ingress/shop/storefront"
    assert tg.labels == {
        M + "namespace": "shop",
        M + "ingress_class_name": "nginx",
        **meta("ingress", "storefront", {"app_kubernetes_io_name": "storefront"},
               {"nginx_ingress_kubernetes_io_rewrite_target": "/"}),
    }

    def t(host: str, scheme: str, path: str) -> dict:
        return {"__address__": host, M + "ingress_scheme": scheme, M + "ingress_host": host, M + "ingress_path": path}

    assert tg.targets == [
        t("shop.example.com", "https", "/"),
        t("shop.example.com", "https", "/cart"),
        t("v2.api.example.com", "https", "/"),  # *.api.example.com; an empty path is "/"
        t("status.example.com", "http", "/healthz"),
    ]
    tg = build("ingress", named(OBJS, "Ingress", "default-backend"))
    assert M + "ingress_class_name" not in tg.labels
    assert tg.targets == [t("www.example.org", "http", "/")]


@pytest.mark.parametrize("role,kind,name", [
    ("pod", "Pod", CHECKOUT_A), ("service", "Service", "checkout"), ("endpoints", "Endpoints", "checkout"),
    ("endpointslice", "EndpointSlice", "checkout-r5t6y"), ("ingress", "Ingress", "storefront"),
])
def test_attach_metadata_namespace(role: str, kind: str, name: str) -> None:
    """The namespace's labels and annotations on the group; its name is already there."""
    without = build(role, named(OBJS, kind, name), lookups(OBJS))
    tg = build(role, named(OBJS, kind, name), lookups(OBJS, attach_namespace=True))
    assert tg.labels == {
        **without.labels,
        M + "namespace_label_kubernetes_io_metadata_name": "shop",
        M + "namespace_labelpresent_kubernetes_io_metadata_name": "true",
        M + "namespace_label_team": "payments",
        M + "namespace_labelpresent_team": "true",
    }
    assert tg.targets == without.targets
    # Nodes are not namespaced; an unknown namespace adds nothing.
    node = named(OBJS, "Node", "worker-a")
    assert build("node", node, lookups(OBJS, attach_namespace=True)) == build("node", node, lookups(OBJS))
    objs = {**OBJS, "Namespace": []}
    assert build(role, named(OBJS, kind, name), lookups(objs, attach_namespace=True)).labels == without.labels


def test_flatten_target_labels_win_over_group_labels() -> None:
    tg = build("service", named(OBJS, "Service", "checkout"))
    tg.labels["__address__"] = "group"
    flat = tg.flatten()
    assert flat[0]["__address__"] == "checkout.shop.svc:80"
    assert flat[0][M + "service_name"] == "checkout"


@pytest.mark.parametrize("role,kind", [
    ("node", "Node"), ("pod", "Pod"), ("service", "Service"), ("endpoints", "Endpoints"),
    ("endpointslice", "EndpointSlice"), ("ingress", "Ingress"),
])
def test_mistyped_fields_read_as_zero_values_and_are_reported(role: str, kind: str) -> None:
    obj = copy.deepcopy(OBJS[kind][0])
    obj["metadata"]["labels"] = ["not", "a", "map"]
    obj["metadata"]["annotations"] = {"ok": "yes", "bad": 3}
    tg = build(role, obj, lookups(OBJS))
    assert "field 'labels': expected object, got list" in tg.problems
    assert "field 'annotations.bad': expected string, got int" in tg.problems
    flat = {k for t in tg.flatten() for k in t} | set(tg.labels)
    assert f"{M}{role}_annotation_ok" in flat
    assert not any(k.startswith(f"{M}{role}_label_") for k in flat)


def test_mistyped_port_reads_as_zero() -> None:
    pod = copy.deepcopy(named(OBJS, "Pod", "static-web-worker-a"))
    pod["spec"]["containers"][0]["ports"][0]["containerPort"] = "80"
    tg = build("pod", pod, lookups(OBJS))
    assert tg.targets[0]["__address__"] == "10.244.1.40:0"
    assert tg.problems == ["field 'containerPort': expected int32, got str"]


@pytest.mark.parametrize("role", ["node", "pod", "service", "endpoints", "endpointslice", "ingress"])
@pytest.mark.parametrize("obj", [{}, {"metadata": None}, {"metadata": "x", "spec": [], "status": 7},
                                 {"subsets": [None, {"ports": "x"}]}, {"endpoints": [{"addresses": [1]}], "ports": [{}]}])
def test_garbage_never_raises(role: str, obj: dict) -> None:
    tg = build(role, obj, lookups(OBJS, attach_node=True))
    assert isinstance(tg.targets, list)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
ROLE_KINDS = [("node", "Node"), ("pod", "Pod"), ("service", "Service"), ("endpoints", "Endpoints"),
              ("endpointslice", "EndpointSlice"), ("ingress", "Ingress")]


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ROLE_KINDS), st.data(), json_values)
def test_any_field_replaced_by_any_json_never_raises(role_kind: tuple[str, str], data: st.DataObject, value: object) -> None:
    role, kind = role_kind
    obj = copy.deepcopy(data.draw(st.sampled_from(OBJS[kind])))
    path = data.draw(st.sampled_from(_paths(obj)))
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = value
    tg = build(role, obj, lookups(OBJS, attach_node=True, attach_namespace=True))
    assert all(isinstance(v, str) for t in tg.flatten() for v in t.values())
