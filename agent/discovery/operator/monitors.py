"""ServiceMonitors, PodMonitors and Probes to scrape jobs, as prometheus-operator generates them.

Pure functions over the custom resources as plain dicts: one :class:`Job` per endpoint
(``serviceMonitor/<ns>/<name>/<i>``, ``podMonitor/...``, ``probe/<ns>/<name>``) with the
discovery role and namespaces to watch and the target relabeling the operator's
``promcfg.go`` emits (selector keep rules, port matching, the ``namespace``/``service``/
``pod``/``container``/``endpoint``/``job`` labels, targetLabels, podTargetLabels), then the
monitor's own relabelings; metricRelabelings go to the samples. The operator's sharding
rules are left out (a Shoal agent shards with ``clustering`` instead).

Credentials live in Secrets and ConfigMaps: :func:`references` names those a monitor needs,
and the translation reads them through a :data:`Lookup`, so a missing Secret or key is a
:class:`Rejected` with the reason. Values are never put in a reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.httpconfig import (
    Authorization,
    BasicAuth,
    HTTPClientConfig,
    OAuth2Config,
    ProxyConfig,
    TLSConfig,
)
from agent.relabel import Rule, validate_all
from agent.scrape.config import DEFAULT_PROTOCOLS, ScrapeConfig, parse_duration

KINDS = ("ServiceMonitor", "PodMonitor", "Probe")
# (kind, namespace, name): a Secret or ConfigMap a monitor reads.
Ref = tuple[str, str, str]
# Reads one key of a Secret or ConfigMap; raises Rejected when it cannot.
Lookup = Callable[[str, str, str, str], str]

# The fields each part of a monitor may have (monitoring.coreos.com/v1 CRDs at operator 0.93).
_HTTP_FIELDS = {
    "authorization", "basicAuth", "bearerTokenSecret", "enableHttp2", "followRedirects",
    "oauth2", "tlsConfig", "proxyUrl", "noProxy", "proxyConnectHeader", "proxyFromEnvironment",
}
_ENDPOINT_FIELDS = _HTTP_FIELDS | {
    "filterRunning", "honorLabels", "honorTimestamps", "interval", "metricRelabelings",
    "params", "path", "port", "relabelings", "scheme", "scrapeTimeout", "targetPort",
    "trackTimestampsStaleness",
}
_LIMIT_FIELDS = {
    "bodySizeLimit", "convertClassicHistogramsToNHCB", "fallbackScrapeProtocol", "keepDroppedTargets",
    "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit", "nativeHistogramBucketLimit",
    "nativeHistogramMinBucketFactor", "sampleLimit", "scrapeClass", "scrapeClassicHistograms",
    "scrapeNativeHistograms", "scrapeProtocols", "targetLimit",
}
FIELDS = {
    "ServiceMonitor": {
        "spec": _LIMIT_FIELDS | {"attachMetadata", "endpoints", "jobLabel", "namespaceSelector",
                                 "podTargetLabels", "selector", "selectorMechanism",
                                 "serviceDiscoveryRole", "targetLabels"},
        "endpoint": _ENDPOINT_FIELDS | {"bearerTokenFile"},
    },
    "PodMonitor": {
        "spec": _LIMIT_FIELDS | {"attachMetadata", "jobLabel", "namespaceSelector",
                                 "podMetricsEndpoints", "podTargetLabels", "selector",
                                 "selectorMechanism"},
        "endpoint": _ENDPOINT_FIELDS | {"portNumber"},
    },
    "Probe": {
        "spec": _LIMIT_FIELDS | _HTTP_FIELDS | {"interval", "jobName", "metricRelabelings",
                                                "module", "params", "prober", "scrapeTimeout",
                                                "targets"},
        "endpoint": set(),
    },
}
_PROXY_FIELDS = ("proxyUrl", "noProxy", "proxyFromEnvironment", "proxyConnectHeader")
_SANITIZE = re.compile(r"[^a-zA-Z0-9_]")
_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40,
          "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
M = "__meta_kubernetes_"


class Rejected(ValueError):
    """A monitor that cannot be scraped; ``reason`` is a short kind for the metric."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ScrapeClass:
    """Alloy's ``scrape_class``: settings a monitor takes by naming the class in
    ``scrapeClass`` (or from the default class), unless the endpoint sets its own."""

    name: str
    default: bool = False
    tls_config: TLSConfig | None = None
    authorization: Authorization | None = None
    relabel_rules: tuple[Rule, ...] = ()  # before the monitor's generated rules
    metric_relabel_rules: tuple[Rule, ...] = ()  # after the monitor's metricRelabelings
    attach_node: bool | None = None


@dataclass(frozen=True)
class Defaults:
    """The component's ``scrape`` block: what a monitor that says nothing gets."""

    scrape_interval: float = 60.0
    scrape_timeout: float = 10.0
    # The role of a ServiceMonitor that names none (Alloy's kubernetes_role).
    service_role: str = "endpoints"
    sample_limit: int = 0  # for monitors without sampleLimit
    native_histograms: bool = False  # for monitors without scrapeNativeHistograms
    honor_metadata: bool = False  # Alloy's scrape { honor_metadata }
    type_and_unit_labels: bool = False  # Alloy's scrape { enable_type_and_unit_labels }
    # Alloy's disallow_arbitrary_file_access = false: bearerTokenFile read from the agent's host.
    allow_files: bool = False
    scrape_classes: tuple[ScrapeClass, ...] = ()


DEFAULTS = Defaults()


@dataclass
class Job:
    """One scrape job: what to discover, how to relabel it and how to scrape it."""

    name: str
    role: str  # endpoints, endpointslice, pod, ingress, or "" for static targets
    namespaces: tuple[str, ...]  # () for all
    config: ScrapeConfig
    attach_node: bool = False
    static: list[dict[str, str]] = field(default_factory=list)
    # Where the selector rules and the port rules end in config.relabel_rules, to say why a
    # job has no targets (the selector matched nothing, or the port matched nothing).
    selector_end: int = 0
    port_end: int = 0
    port: str = ""


def sanitize(name: str) -> str:
    return _SANITIZE.sub("_", name)


def meta(obj: dict[str, Any]) -> tuple[str, str]:
    md = obj.get("metadata")
    if not isinstance(md, dict):
        return "", ""
    return str(md.get("namespace") or ""), str(md.get("name") or "")


# ---------------------------------------------------------------- reading the resource

def _map(d: Any, what: str) -> dict[str, Any]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise Rejected(f"{what}: expected an object, got {type(d).__name__}")
    return d


def _list(d: Any, what: str) -> list[Any]:
    if d is None:
        return []
    if not isinstance(d, list):
        raise Rejected(f"{what}: expected a list, got {type(d).__name__}")
    return d


def _check_fields(d: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise Rejected(f'{what}: unknown field "{unknown[0]}"', "unknown_field")


def _duration(v: Any, what: str) -> float | None:
    if v in (None, ""):
        return None
    try:
        d = parse_duration(str(v))
    except ValueError as exc:
        raise Rejected(f"{what}: {exc}") from None
    if d <= 0:
        raise Rejected(f"{what}: must be greater than 0")
    return d


def _int(v: Any, what: str) -> int:
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise Rejected(f"{what}: expected a non-negative integer, got {v!r}")
    return v


def _size(v: Any, what: str) -> int:
    if v in (None, ""):
        return 0
    m = re.fullmatch(r"(\d+)(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", str(v))
    if m is None:
        raise Rejected(f"{what}: {v!r} is not a size like 10MB")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _rules(items: Any, what: str) -> list[Rule]:
    out = []
    for i, r in enumerate(_list(items, what)):
        r = _map(r, f"{what}[{i}]")
        _check_fields(r, {"action", "modulus", "regex", "replacement", "separator",
                          "sourceLabels", "targetLabel"}, f"{what}[{i}]")
        rule = Rule(
            source_labels=[str(s) for s in _list(r.get("sourceLabels"), what)],
            separator=str(r.get("separator", ";")),
            regex=str(r.get("regex", "(.*)")),
            modulus=_int(r.get("modulus"), f"{what}[{i}].modulus"),
            target_label=str(r.get("targetLabel", "")),
            replacement=str(r.get("replacement", "$1")),
            action=str(r.get("action", "replace")).lower(),
        )
        try:
            rule.validate()
        except ValueError as exc:
            raise Rejected(f"{what}[{i}]: {exc}", "invalid_relabeling") from None
        out.append(rule)
    return out


def _namespaces(spec: dict[str, Any], own: str) -> tuple[str, ...]:
    sel = _map(spec.get("namespaceSelector"), "namespaceSelector")
    _check_fields(sel, {"any", "matchNames"}, "namespaceSelector")
    if sel.get("any"):
        return ()
    names = [str(n) for n in _list(sel.get("matchNames"), "namespaceSelector.matchNames")]
    return tuple(names) if names else (own,)


def selector_rules(sel: Any, kind: str) -> list[Rule]:
    """Keep/drop rules on ``__meta_kubernetes_<kind>_label_*`` for a label selector."""
    sel = _map(sel, "selector")
    _check_fields(sel, {"matchLabels", "matchExpressions"}, "selector")
    out: list[Rule] = []
    label, present = f"{M}{kind}_label_", f"{M}{kind}_labelpresent_"
    for k, v in sorted(_map(sel.get("matchLabels"), "selector.matchLabels").items()):
        out.append(Rule(action="keep", source_labels=[label + sanitize(k), present + sanitize(k)],
                        regex=f"({v});true"))
    for i, e in enumerate(_list(sel.get("matchExpressions"), "selector.matchExpressions")):
        e = _map(e, f"selector.matchExpressions[{i}]")
        key, op = str(e.get("key", "")), e.get("operator")
        values = [str(v) for v in _list(e.get("values"), "values")]
        s = sanitize(key)
        if op in ("In", "NotIn"):
            if not values:
                raise Rejected(f"selector.matchExpressions[{i}]: {op} needs values")
            out.append(Rule(action="keep" if op == "In" else "drop",
                            source_labels=[label + s, present + s],
                            regex=f"({'|'.join(values)});true"))
        elif op in ("Exists", "DoesNotExist"):
            out.append(Rule(action="keep" if op == "Exists" else "drop",
                            source_labels=[present + s], regex="true"))
        else:
            raise Rejected(f'selector.matchExpressions[{i}]: unknown operator "{op}"')
    return out


# ---------------------------------------------------------------- credentials

def _selector_ref(v: Any, what: str) -> tuple[str, str] | None:
    if v is None:
        return None
    v = _map(v, what)
    if not v.get("name") or not v.get("key"):
        raise Rejected(f"{what}: a Secret/ConfigMap reference needs name and key")
    return str(v["name"]), str(v["key"])


def _secret_or_configmap(v: Any, what: str) -> Ref | None:
    v = _map(v, what)
    for field_, kind in (("secret", "secrets"), ("configMap", "configmaps")):
        ref = _selector_ref(v.get(field_), f"{what}.{field_}")
        if ref is not None:
            return (kind, ref[0], ref[1])
    return None


def _cred_refs(e: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, name, key) of everything an endpoint's HTTP settings read."""
    out: list[tuple[str, str, str]] = []

    def add(kind: str, v: Any, what: str) -> None:
        ref = _selector_ref(v, what)
        if ref is not None:
            out.append((kind, *ref))

    add("secrets", e.get("bearerTokenSecret"), "bearerTokenSecret")
    ba = _map(e.get("basicAuth"), "basicAuth")
    add("secrets", ba.get("username"), "basicAuth.username")
    add("secrets", ba.get("password"), "basicAuth.password")
    add("secrets", _map(e.get("authorization"), "authorization").get("credentials"),
        "authorization.credentials")
    out += _tls_refs(_map(e.get("tlsConfig"), "tlsConfig"), "tlsConfig")
    o = _map(e.get("oauth2"), "oauth2")
    if o:
        r = _secret_or_configmap(o.get("clientId"), "oauth2.clientId")
        if r is not None:
            out.append(r)
        add("secrets", o.get("clientSecret"), "oauth2.clientSecret")
        out += _tls_refs(_map(o.get("tlsConfig"), "oauth2.tlsConfig"), "oauth2.tlsConfig")
        out += _header_refs(o.get("proxyConnectHeader"), "oauth2.proxyConnectHeader")
    out += _header_refs(e.get("proxyConnectHeader"), "proxyConnectHeader")
    return out


def _tls_refs(tls: dict[str, Any], what: str) -> list[tuple[str, str, str]]:
    out = []
    for f in ("ca", "cert"):
        r = _secret_or_configmap(tls.get(f), f"{what}.{f}")
        if r is not None:
            out.append(r)
    ref = _selector_ref(tls.get("keySecret"), f"{what}.keySecret")
    if ref is not None:
        out.append(("secrets", *ref))
    return out


def _header_refs(v: Any, what: str) -> list[tuple[str, str, str]]:
    """proxyConnectHeader: header name -> Secret key selectors."""
    out = []
    for name, sels in _map(v, what).items():
        for i, sel in enumerate(_list(sels, f"{what}.{name}")):
            ref = _selector_ref(sel, f"{what}.{name}[{i}]")
            if ref is not None:
                out.append(("secrets", *ref))
    return out


def _endpoints(obj: dict[str, Any]) -> list[dict[str, Any]]:
    kind = obj.get("kind")
    spec = _map(obj.get("spec"), "spec")
    if kind == "Probe":
        prober = _map(spec.get("prober"), "prober")
        return [dict(spec, **{k: prober[k] for k in _PROXY_FIELDS if k in prober})]
    key = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
    return [_map(e, f"{key}[{i}]") for i, e in enumerate(_list(spec.get(key), key))]


def references(obj: dict[str, Any]) -> set[Ref]:
    """The Secrets and ConfigMaps a monitor's endpoints read, as (plural, namespace, name)."""
    ns, _ = meta(obj)
    try:
        return {(kind, ns, name) for e in _endpoints(obj) for kind, name, _ in _cred_refs(e)}
    except (Rejected, TypeError, AttributeError, ValueError):
        return set()  # the translation reports it


def _http(e: dict[str, Any], ns: str, lookup: Lookup, what: str, allow_files: bool) -> HTTPClientConfig:
    def read(kind: str, v: Any, field_: str) -> str:
        ref = _selector_ref(v, f"{what}.{field_}")
        assert ref is not None
        return lookup(kind, ns, ref[0], ref[1])

    if e.get("bearerTokenFile") and not allow_files:
        raise Rejected(f"{what}.bearerTokenFile: reading files of the agent's host is refused "
                       "(disallow_arbitrary_file_access); use bearerTokenSecret", "unsupported")
    proxy = _proxy(e, ns, lookup, what)
    cfg = HTTPClientConfig(
        follow_redirects=bool(e.get("followRedirects", True)),
        enable_http2=bool(e.get("enableHttp2", True)),
        proxy_url=proxy.proxy_url,
        no_proxy=proxy.no_proxy,
        proxy_from_environment=proxy.proxy_from_environment,
        proxy_connect_header=proxy.proxy_connect_header,
    )
    cfg.bearer_token_file = str(e.get("bearerTokenFile") or "")
    used = [f for f in ("bearerTokenSecret", "bearerTokenFile", "basicAuth", "authorization",
                        "oauth2") if e.get(f)]
    if len(used) > 1:
        raise Rejected(f"{what}: at most one of {', '.join(used)} may be set")
    if e.get("bearerTokenSecret"):
        cfg.bearer_token = read("secrets", e["bearerTokenSecret"], "bearerTokenSecret")
    if e.get("basicAuth"):
        ba = _map(e["basicAuth"], f"{what}.basicAuth")
        cfg.basic_auth = BasicAuth(read("secrets", ba.get("username"), "basicAuth.username"),
                                   read("secrets", ba.get("password"), "basicAuth.password"), "")
    if e.get("authorization"):
        a = _map(e["authorization"], f"{what}.authorization")
        typ = str(a.get("type") or "Bearer")
        if typ.lower() == "basic":
            raise Rejected(f'{what}.authorization.type: "Basic" is not allowed, use basicAuth')
        cfg.authorization = Authorization(
            typ, read("secrets", a.get("credentials"), "authorization.credentials"), "")
    if e.get("tlsConfig"):
        cfg.tls_config = _tls(_map(e["tlsConfig"], f"{what}.tlsConfig"), ns, lookup, f"{what}.tlsConfig")
    if e.get("oauth2"):
        cfg.oauth2 = _oauth2(_map(e["oauth2"], f"{what}.oauth2"), ns, lookup, f"{what}.oauth2")
    return cfg


def _tls(t: dict[str, Any], ns: str, lookup: Lookup, what: str) -> TLSConfig:
    pem = {}
    for f in ("ca", "cert"):
        r = _secret_or_configmap(t.get(f), f"{what}.{f}")
        if r is not None:
            pem[f] = lookup(r[0], ns, r[1], r[2])
    ref = _selector_ref(t.get("keySecret"), f"{what}.keySecret")
    key = lookup("secrets", ns, *ref) if ref is not None else ""
    if bool(pem.get("cert")) != bool(key):
        raise Rejected(f"{what}: cert and keySecret go together")
    return TLSConfig(
        ca_pem=pem.get("ca", ""), cert_pem=pem.get("cert", ""), key_pem=key,
        server_name=str(t.get("serverName") or ""),
        insecure_skip_verify=bool(t.get("insecureSkipVerify", False)),
        min_version=str(t.get("minVersion") or ""),
    )


def _proxy(e: dict[str, Any], ns: str, lookup: Lookup, what: str) -> ProxyConfig:
    """proxyUrl, noProxy, proxyFromEnvironment and proxyConnectHeader (values from Secrets)."""
    headers: dict[str, list[str]] = {}
    for name, sels in _map(e.get("proxyConnectHeader"), f"{what}.proxyConnectHeader").items():
        for i, sel in enumerate(_list(sels, f"{what}.proxyConnectHeader.{name}")):
            ref = _selector_ref(sel, f"{what}.proxyConnectHeader.{name}[{i}]")
            assert ref is not None
            headers.setdefault(str(name), []).append(lookup("secrets", ns, *ref))
    proxy = ProxyConfig(str(e.get("proxyUrl") or ""), str(e.get("noProxy") or ""),
                        bool(e.get("proxyFromEnvironment", False)), headers)
    if proxy.proxy_url and not re.match(r"https?://[^/]", proxy.proxy_url):
        raise Rejected(f'{what}.proxyUrl: "{proxy.proxy_url}" is not an http(s) URL with a host')
    try:
        proxy.validate()
    except ValueError as exc:
        raise Rejected(f"{what}: {exc}") from None
    return proxy


def _oauth2(o: dict[str, Any], ns: str, lookup: Lookup, what: str) -> OAuth2Config:
    """The operator's OAuth2: clientId from a Secret or ConfigMap, clientSecret from a Secret."""
    _check_fields(o, {"clientId", "clientSecret", "tokenUrl", "scopes", "endpointParams",
                      "tlsConfig", *_PROXY_FIELDS}, what)
    cid = _secret_or_configmap(o.get("clientId"), f"{what}.clientId")
    if cid is None:
        raise Rejected(f"{what}.clientId: a secret or configMap reference is required")
    secret = _selector_ref(o.get("clientSecret"), f"{what}.clientSecret")
    if secret is None:
        raise Rejected(f"{what}.clientSecret: a Secret reference is required")
    token_url = str(o.get("tokenUrl") or "")
    if not re.match(r"https?://[^/]", token_url):
        raise Rejected(f'{what}.tokenUrl: "{token_url}" is not an http(s) URL with a host')
    proxy = _proxy(o, ns, lookup, what)
    return OAuth2Config(
        client_id=lookup(cid[0], ns, cid[1], cid[2]),
        client_secret=lookup("secrets", ns, *secret),
        scopes=[str(x) for x in _list(o.get("scopes"), f"{what}.scopes")],
        token_url=token_url,
        endpoint_params={str(k): str(v) for k, v in
                         _map(o.get("endpointParams"), f"{what}.endpointParams").items()},
        tls_config=_tls(_map(o["tlsConfig"], f"{what}.tlsConfig"), ns, lookup, f"{what}.tlsConfig")
        if o.get("tlsConfig") else None,
        proxy_url=proxy.proxy_url, no_proxy=proxy.no_proxy,
        proxy_from_environment=proxy.proxy_from_environment,
        proxy_connect_header=proxy.proxy_connect_header,
    )


# ---------------------------------------------------------------- translation

def _scrape_config(name: str, e: dict[str, Any], spec: dict[str, Any], ns: str, lookup: Lookup,
                   defaults: Defaults, what: str, default_path: str = "/metrics") -> ScrapeConfig:
    interval = _duration(e.get("interval"), f"{what}.interval") or defaults.scrape_interval
    timeout = _duration(e.get("scrapeTimeout"), f"{what}.scrapeTimeout")
    if timeout is None:
        timeout = min(defaults.scrape_timeout, interval)
    if timeout > interval:
        raise Rejected(f"{what}: scrapeTimeout {e.get('scrapeTimeout')} is greater than the "
                       f"interval {e.get('interval') or 'default'}")
    params = {str(k): [str(x) for x in _list(v, f"{what}.params.{k}")]
              for k, v in _map(e.get("params"), f"{what}.params").items()}
    scheme = str(e.get("scheme") or "http").lower()
    if scheme not in ("http", "https"):
        raise Rejected(f'{what}.scheme: "{scheme}" is not http or https')
    path = str(e.get("path") or default_path)
    if not path.startswith("/"):
        raise Rejected(f'{what}.path: "{path}" must start with "/"')
    return ScrapeConfig(
        job_name=name,
        scrape_interval=interval,
        scrape_timeout=timeout,
        metrics_path=path,
        scheme=scheme,
        params=params,
        honor_labels=bool(e.get("honorLabels", False)),
        honor_timestamps=bool(e.get("honorTimestamps", True)),
        track_timestamps_staleness=bool(e.get("trackTimestampsStaleness", False)),
        sample_limit=_int(spec["sampleLimit"], "sampleLimit") if spec.get("sampleLimit") is not None
        else defaults.sample_limit,
        target_limit=_int(spec.get("targetLimit"), "targetLimit"),
        label_limit=_int(spec.get("labelLimit"), "labelLimit"),
        label_name_length_limit=_int(spec.get("labelNameLengthLimit"), "labelNameLengthLimit"),
        label_value_length_limit=_int(spec.get("labelValueLengthLimit"), "labelValueLengthLimit"),
        body_size_limit=_size(spec.get("bodySizeLimit"), "bodySizeLimit"),
        keep_dropped_targets=_int(spec.get("keepDroppedTargets"), "keepDroppedTargets"),
        honor_metadata=defaults.honor_metadata,
        type_and_unit_labels=defaults.type_and_unit_labels,
        http=_http(e, ns, lookup, what, defaults.allow_files),
        scrape_native_histograms=bool(spec.get("scrapeNativeHistograms", defaults.native_histograms)),
        scrape_classic_histograms=bool(spec.get("scrapeClassicHistograms", False)),
        native_histogram_bucket_limit=_int(spec.get("nativeHistogramBucketLimit"),
                                           "nativeHistogramBucketLimit"),
        scrape_protocols=[str(p) for p in _list(spec.get("scrapeProtocols"), "scrapeProtocols")]
        or list(DEFAULT_PROTOCOLS),
        scrape_fallback_protocol=str(spec.get("fallbackScrapeProtocol") or "PrometheusText0.0.4"),
        metric_relabel_rules=_rules(e.get("metricRelabelings"), f"{what}.metricRelabelings"),
    )


def _copy(source: str, target: str) -> Rule:
    return Rule(source_labels=[source], target_label=target)


def _label_copies(names: Any, kind: str, what: str) -> list[Rule]:
    return [Rule(source_labels=[f"{M}{kind}_label_{sanitize(str(n))}"], target_label=sanitize(str(n)),
                 regex="(.+)", replacement="${1}") for n in _list(names, what)]


def _service_monitor(obj: dict[str, Any], lookup: Lookup, defaults: Defaults) -> list[Job]:
    ns, name = meta(obj)
    spec = _map(obj.get("spec"), "spec")
    role = str(spec.get("serviceDiscoveryRole") or defaults.service_role).lower()
    if role not in ("endpoints", "endpointslice"):
        raise Rejected(f'serviceDiscoveryRole: "{role}" is not Endpoints or EndpointSlice')
    p = f"{M}endpoint_" if role == "endpoints" else f"{M}endpointslice_"
    attach = _map(spec.get("attachMetadata"), "attachMetadata")
    jobs = []
    for i, e in enumerate(_endpoints(obj)):
        what = f"endpoints[{i}]"
        _check_fields(e, FIELDS["ServiceMonitor"]["endpoint"], what)
        rules = [_copy("job", "__tmp_prometheus_job_name")]
        rules += selector_rules(spec.get("selector"), "service")
        selector_end = len(rules)
        port, target_port = e.get("port"), e.get("targetPort")
        if port:
            rules.append(Rule(action="keep", source_labels=[p + "port_name"], regex=str(port)))
        elif target_port is not None:
            if isinstance(target_port, int):
                rules.append(Rule(action="keep", source_labels=[f"{M}pod_container_port_number"],
                                  regex=str(target_port)))
            else:
                rules.append(Rule(action="keep", source_labels=[f"{M}pod_container_port_name"],
                                  regex=str(target_port)))
        port_end = len(rules)
        for kind in ("Node", "Pod"):
            rules.append(Rule(source_labels=[p + "address_target_kind", p + "address_target_name"],
                              regex=f"{kind};(.*)", replacement="${1}", target_label=kind.lower()))
        rules += [_copy(f"{M}namespace", "namespace"), _copy(f"{M}service_name", "service"),
                  _copy(f"{M}pod_name", "pod"), _copy(f"{M}pod_container_name", "container")]
        if e.get("filterRunning", True):
            rules.append(Rule(action="drop", source_labels=[f"{M}pod_phase"],
                              regex="(Failed|Succeeded)"))
        rules += _label_copies(spec.get("targetLabels"), "service", "targetLabels")
        rules += _label_copies(spec.get("podTargetLabels"), "pod", "podTargetLabels")
        rules.append(Rule(source_labels=[f"{M}service_name"], target_label="job", replacement="${1}"))
        if spec.get("jobLabel"):
            rules.append(Rule(source_labels=[f"{M}service_label_{sanitize(str(spec['jobLabel']))}"],
                              target_label="job", regex="(.+)", replacement="${1}"))
        if port:
            rules.append(Rule(target_label="endpoint", replacement=str(port)))
        elif target_port is not None:
            rules.append(Rule(target_label="endpoint", replacement=str(target_port)))
        rules += _rules(e.get("relabelings"), f"{what}.relabelings")
        job = f"serviceMonitor/{ns}/{name}/{i}"
        cfg = _scrape_config(job, e, spec, ns, lookup, defaults, what)
        cfg.relabel_rules = rules
        jobs.append(Job(job, role, _namespaces(spec, ns), cfg, bool(attach.get("node")),
                        selector_end=selector_end, port_end=port_end,
                        port=str(port or target_port or "")))
    return jobs


def _pod_monitor(obj: dict[str, Any], lookup: Lookup, defaults: Defaults) -> list[Job]:
    ns, name = meta(obj)
    spec = _map(obj.get("spec"), "spec")
    attach = _map(spec.get("attachMetadata"), "attachMetadata")
    jobs = []
    for i, e in enumerate(_endpoints(obj)):
        what = f"podMetricsEndpoints[{i}]"
        _check_fields(e, FIELDS["PodMonitor"]["endpoint"], what)
        rules = [_copy("job", "__tmp_prometheus_job_name")]
        if e.get("filterRunning", True):
            rules.append(Rule(action="drop", source_labels=[f"{M}pod_phase"],
                              regex="(Failed|Succeeded)"))
        rules += selector_rules(spec.get("selector"), "pod")
        selector_end = len(rules)
        port = e.get("port") or ""
        if port:
            rules.append(Rule(action="keep", source_labels=[f"{M}pod_container_port_name"],
                              regex=str(port)))
        elif e.get("portNumber") is not None:
            rules.append(Rule(action="keep", source_labels=[f"{M}pod_container_port_number"],
                              regex=str(e["portNumber"])))
        elif e.get("targetPort") is not None:
            tp = e["targetPort"]
            label = "number" if isinstance(tp, int) else "name"
            rules.append(Rule(action="keep", source_labels=[f"{M}pod_container_port_{label}"],
                              regex=str(tp)))
        port_end = len(rules)
        rules += [_copy(f"{M}namespace", "namespace"), _copy(f"{M}pod_container_name", "container"),
                  _copy(f"{M}pod_name", "pod")]
        rules += _label_copies(spec.get("podTargetLabels"), "pod", "podTargetLabels")
        rules.append(Rule(target_label="job", replacement=f"{ns}/{name}"))
        if spec.get("jobLabel"):
            rules.append(Rule(source_labels=[f"{M}pod_label_{sanitize(str(spec['jobLabel']))}"],
                              target_label="job", regex="(.+)", replacement="${1}"))
        endpoint = port or e.get("portNumber") or e.get("targetPort")
        if endpoint:
            rules.append(Rule(target_label="endpoint", replacement=str(endpoint)))
        rules += _rules(e.get("relabelings"), f"{what}.relabelings")
        job = f"podMonitor/{ns}/{name}/{i}"
        cfg = _scrape_config(job, e, spec, ns, lookup, defaults, what)
        cfg.relabel_rules = rules
        jobs.append(Job(job, "pod", _namespaces(spec, ns), cfg, bool(attach.get("node")),
                        selector_end=selector_end, port_end=port_end, port=str(endpoint or "")))
    return jobs


def _probe(obj: dict[str, Any], lookup: Lookup, defaults: Defaults) -> list[Job]:
    ns, name = meta(obj)
    spec = _map(obj.get("spec"), "spec")
    prober = _map(spec.get("prober"), "prober")
    _check_fields(prober, {"noProxy", "path", "proxyConnectHeader", "proxyFromEnvironment",
                           "proxyUrl", "scheme", "url"}, "prober")
    if not prober.get("url"):
        raise Rejected("prober.url: required")
    targets = _map(spec.get("targets"), "targets")
    _check_fields(targets, {"ingress", "staticConfig"}, "targets")
    job = f"probe/{ns}/{name}"
    e = dict(spec, scheme=prober.get("scheme"), path=prober.get("path"),
             **{k: prober.get(k) for k in _PROXY_FIELDS})
    cfg = _scrape_config(job, e, spec, ns, lookup, defaults, "spec", default_path="/probe")
    if spec.get("module"):
        cfg.params.setdefault("module", [str(spec["module"])])
    rules = [_copy("job", "__tmp_prometheus_job_name")]
    if spec.get("jobName"):
        rules.append(Rule(target_label="job", replacement=str(spec["jobName"])))
    static = _map(targets.get("staticConfig"), "targets.staticConfig")
    ingress = _map(targets.get("ingress"), "targets.ingress")
    if static:
        _check_fields(static, {"static", "labels", "relabelingConfigs"}, "targets.staticConfig")
        labels = {str(k): str(v) for k, v in _map(static.get("labels"), "labels").items()}
        labels.setdefault("namespace", ns)
        found = [dict(labels, __address__=str(t)) for t in _list(static.get("static"), "static")]
        rules += [_copy("__address__", "__param_target"), _copy("__param_target", "instance"),
                  Rule(target_label="__address__", replacement=str(prober["url"]))]
        rules += _rules(static.get("relabelingConfigs"), "targets.staticConfig.relabelingConfigs")
        cfg.relabel_rules = rules
        return [Job(job, "", (), cfg, static=found, selector_end=1, port_end=1)]
    if ingress:
        _check_fields(ingress, {"selector", "namespaceSelector", "relabelingConfigs"},
                      "targets.ingress")
        rules += selector_rules(ingress.get("selector"), "ingress")
        end = len(rules)
        rules += [
            Rule(source_labels=[f"{M}ingress_scheme", "__address__", f"{M}ingress_path"],
                 separator=";", regex="(.+);(.+);(.+)", replacement="${1}://${2}${3}",
                 target_label="__param_target"),
            _copy(f"{M}namespace", "namespace"), _copy(f"{M}ingress_name", "ingress"),
            _copy("__param_target", "instance"),
            Rule(target_label="__address__", replacement=str(prober["url"])),
        ]
        rules += _rules(ingress.get("relabelingConfigs"), "targets.ingress.relabelingConfigs")
        cfg.relabel_rules = rules
        return [Job(job, "ingress", _namespaces(ingress, ns), cfg, selector_end=end, port_end=end)]
    raise Rejected("targets: neither staticConfig nor ingress is set")


def translate(obj: dict[str, Any], lookup: Lookup, defaults: Defaults = DEFAULTS,
              extra_rules: list[Rule] | None = None) -> list[Job]:
    """A monitor's scrape jobs, ``extra_rules`` (the component's ``rule`` blocks) applied
    after the monitor's own relabelings; raises :class:`Rejected` with the reason."""
    try:
        return _translate(obj, lookup, defaults, extra_rules)
    except Rejected:
        raise
    except (TypeError, AttributeError, ValueError) as exc:
        # A field of a type no check above foresaw: the monitor is malformed, the agent fine.
        raise Rejected(f"malformed monitor: {type(exc).__name__}: {exc}", "malformed") from None


def _translate(obj: dict[str, Any], lookup: Lookup, defaults: Defaults,
               extra_rules: list[Rule] | None) -> list[Job]:
    kind = obj.get("kind")
    if kind not in KINDS:
        raise Rejected(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    spec = _map(obj.get("spec"), "spec")
    _check_fields(spec, FIELDS[kind]["spec"], "spec")
    build = {"ServiceMonitor": _service_monitor, "PodMonitor": _pod_monitor, "Probe": _probe}[kind]
    jobs = build(obj, lookup, defaults)
    cls = _scrape_class(spec, defaults.scrape_classes)
    for job in jobs:
        if cls is not None:
            _apply_class(job, cls, spec)
        job.config.relabel_rules += list(extra_rules or [])
        try:
            job.config.validate()
            validate_all(job.config.relabel_rules)
        except ValueError as exc:
            raise Rejected(f"{job.name}: {exc}") from None
    return jobs


def _scrape_class(spec: dict[str, Any], classes: tuple[ScrapeClass, ...]) -> ScrapeClass | None:
    name = spec.get("scrapeClass")
    if not name:
        return next((c for c in classes if c.default), None)
    for c in classes:
        if c.name == name:
            return c
    raise Rejected(f'scrapeClass "{name}" is not one of the component\'s scrape_class blocks',
                   "unknown_scrape_class")


def _apply_class(job: Job, cls: ScrapeClass, spec: dict[str, Any]) -> None:
    """The class' relabelings right after the job-name rule, its metric relabelings after
    the monitor's, its TLS and authorization where the endpoint has none of its own."""
    c = job.config
    c.relabel_rules[1:1] = list(cls.relabel_rules)
    job.selector_end += len(cls.relabel_rules)
    job.port_end += len(cls.relabel_rules)
    c.metric_relabel_rules += list(cls.metric_relabel_rules)
    h = c.http
    if h.tls_config is None and cls.tls_config is not None:
        h.tls_config = cls.tls_config
    own_auth = h.authorization or h.basic_auth or h.bearer_token or h.bearer_token_file or h.oauth2
    if not own_auth and cls.authorization is not None:
        h.authorization = cls.authorization
    if spec.get("attachMetadata") is None and cls.attach_node is not None:
        job.attach_node = cls.attach_node
