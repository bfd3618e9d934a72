"""prometheus.yml to Alloy components, as ``alloy convert --source-format=prometheus`` does.

Each scrape job becomes a ``prometheus.scrape`` (label: the job name made an
identifier), its discoveries ``discovery.<name>`` components, its
``relabel_configs`` a ``discovery.relabel`` and its
``metric_relabel_configs`` a ``prometheus.relabel``; all remote_write
entries become one ``prometheus.remote_write "default"``. An argument is
written only where Prometheus' value (after its defaults) differs from
Alloy's default, in the order of Alloy's argument structs, so the output
equals Alloy's byte for byte.

What cannot be carried over is reported with its YAML path: settings Alloy
itself has no place for (with Alloy's wording), and discoveries Alloy has a
component for but Shoal does not (those are left out, never emitted into a
file Shoal would refuse to run).
"""

from __future__ import annotations

from typing import Any

from agent import relabel
from agent.convert.builder import Block, GoDuration, Raw, render, targets
from agent.convert.diag import Diagnostics, Severity
from agent.convert.promyaml import LoadError, apply_defaults, duration_ns, load, text
from agent.syntax.scanner import is_valid_identifier

# Discoveries Shoal has a component for, by Prometheus' YAML key.
SUPPORTED_SD = {"file_sd_configs": "file", "kubernetes_sd_configs": "kubernetes"}

_SCRAPE_DEFAULT_PROTOCOLS = [
    "OpenMetricsText1.0.0",
    "OpenMetricsText0.0.1",
    "PrometheusText1.0.0",
    "PrometheusText0.0.4",
]


def convert(source: str | bytes) -> tuple[str, Diagnostics]:
    """The Alloy text (empty when nothing could be generated) and the diagnostics."""
    diags = Diagnostics()
    decoded = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    try:
        conv = _Converter(apply_defaults(load(decoded)))
        blocks = conv.build()
    except LoadError as exc:
        diags.add(Severity.CRITICAL, f"failed to parse Prometheus config: {exc}")
        return "", diags
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a value of the wrong shape
        reason = f"{type(exc).__name__}: {exc}"
        diags.add(Severity.CRITICAL, f"failed to parse Prometheus config: {reason}")
        return "", diags
    diags.extend(conv.diags)
    seen: set[str] = set()
    for b in blocks:
        ident = f"{b.name}.{b.label}" if b.label else b.name
        if ident in seen:
            diags.add(
                Severity.CRITICAL,
                f'duplicate label after conversion "{ident}". this is due to how valid Alloy '
                "labels are assembled and can be avoided by updating named properties in the "
                "source config.",
            )
        seen.add(ident)
    return render(blocks), diags


def sanitize(name: str) -> str:
    """Alloy's ``scanner.SanitizeIdentifier``: invalid characters become ``_``."""
    if is_valid_identifier(name):
        return name
    out = "".join(c if (c.isalnum() or c == "_") else "_" for c in name)
    if not out or out[0].isdigit() or not is_valid_identifier(out):
        out = "_" + out
    return out


def _label_with_index(index: int, label: str) -> str:
    return label if index == 0 else f"{label}_{index + 1}"


class _Converter:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.diags = Diagnostics()
        self.discovery: list[Block] = []
        self.discovery_relabel: list[Block] = []
        self.scrapes: list[tuple[Block, str, str]] = []
        self.relabels: list[Block] = []

    def build(self) -> list[Block]:
        remote = self._remote_write()
        receiver = Raw("prometheus.remote_write.default.receiver")
        for i, sc in enumerate(self.cfg["scrape_configs"]):
            self._scrape(i, sc, receiver)
        self._validate()
        self._scrape_info(remote)
        blocks = self.discovery + self.discovery_relabel + [b for b, _, _ in self.scrapes]
        blocks += self.relabels
        if remote is not None:
            blocks.append(remote)
        return blocks

    # -- scrape jobs -------------------------------------------------------

    def _scrape(self, i: int, sc: dict[str, Any], receiver: Raw) -> None:
        job = sc["job_name"]
        label = sanitize(job)
        forward = receiver
        if sc["metric_relabel_configs"]:
            b = Block("prometheus.relabel", label)
            b.attr("forward_to", [receiver])
            _rules(b, "rule", sc["metric_relabel_configs"])
            self.relabels.append(b)
            forward = Raw(f"prometheus.relabel.{label}.receiver")

        items: list[Raw | dict[str, str]] = []
        counts: dict[str, int] = {}
        sd_keys = sorted(k for k in sc if k.endswith("_sd_configs"))
        for key in sd_keys:
            for j, sd in enumerate(sc.get(key) or []):
                path = f"scrape_configs[{i}].{key}[{j}]"
                kind = SUPPORTED_SD.get(key)
                if kind is None:
                    self._unsupported_sd(key, path)
                    continue
                counts[kind] = counts.get(kind, 0) + 1
                sd_label = _label_with_index(counts[kind] - 1, label)
                if kind == "file":
                    self.discovery.append(_file_sd(sd_label, sd or {}))
                else:
                    self.discovery.append(self._kubernetes_sd(sd_label, sd or {}, path))
                items.append(Raw(f"discovery.{kind}.{sd_label}.targets"))
        items.extend(_static_targets(sc.get("static_configs") or []))

        target_expr = targets(items)
        if sc["relabel_configs"]:
            b = Block("discovery.relabel", label)
            b.attr("targets", target_expr)
            _rules(b, "rule", sc["relabel_configs"])
            self.discovery_relabel.append(b)
            target_expr = Raw(f"discovery.relabel.{label}.output")

        b = Block("prometheus.scrape", label)
        b.attr("targets", target_expr)
        b.attr("forward_to", [forward])
        b.attr("job_name", job)
        _scrape_args(b, sc)
        self._http_client(b, sc, f"scrape_configs[{i}]", follow=True, http2=True)
        _scrape_tail(b, sc)
        self.scrapes.append((b, job, label))

    def _unsupported_sd(self, key: str, path: str) -> None:
        name = key.removesuffix("_sd_configs")
        if name in _ALLOY_SD:
            self.diags.add(
                Severity.ERROR,
                f"Shoal has no discovery.{_ALLOY_SD[name]} component: the provided {name} "
                "service discovery was not converted.",
                path,
            )
        else:
            self.diags.add(
                Severity.ERROR,
                f"The converter does not support converting the provided {name} service "
                "discovery.",
                path,
            )

    def _kubernetes_sd(self, label: str, sd: dict[str, Any], path: str) -> Block:
        b = Block("discovery.kubernetes", label)
        if sd.get("api_server"):
            b.attr("api_server", str(sd["api_server"]))
        b.attr("role", str(sd["role"]))
        if sd.get("kubeconfig_file"):
            b.attr("kubeconfig_file", str(sd["kubeconfig_file"]))
        self._http_client(b, sd, path, follow=True, http2=True)
        ns = sd.get("namespaces") or {}
        if ns.get("own_namespace") or ns.get("names"):
            nb = b.block("namespaces")
            if ns.get("own_namespace"):
                nb.attr("own_namespace", True)
            if ns.get("names"):
                nb.attr("names", [str(n) for n in ns["names"]])
        for sel in sd.get("selectors") or []:
            sb = b.block("selectors")
            sb.attr("role", str(sel.get("role", "")))
            for key in ("label", "field"):
                if sel.get(key):
                    sb.attr(key, str(sel[key]))
        meta = sd.get("attach_metadata") or {}
        if meta.get("node") or meta.get("namespace"):
            mb = b.block("attach_metadata")
            for key in ("node", "namespace"):
                if meta.get(key):
                    mb.attr(key, True)
        return b

    # -- remote write ------------------------------------------------------

    def _remote_write(self) -> Block | None:
        writes = self.cfg["remote_write"]
        if not writes:
            return None
        b = Block("prometheus.remote_write", "default")
        ext = self.cfg["global"].get("external_labels") or {}
        if ext:
            b.attr("external_labels", {text(k): text(v) for k, v in ext.items()})
        for i, rw in enumerate(writes):
            path = f"remote_write[{i}]"
            e = b.block("endpoint")
            if rw.get("name"):
                e.attr("name", str(rw["name"]))
            e.attr("url", str(rw["url"]))
            _duration_attr(e, rw, "remote_timeout", 30 * 10**9, path)
            if rw.get("headers"):
                e.attr("headers", {str(k): str(v) for k, v in rw["headers"].items()})
            if rw.get("send_exemplars") is False:
                e.attr("send_exemplars", False)
            if rw.get("send_native_histograms"):
                e.attr("send_native_histograms", True)
            msg = rw.get("protobuf_message")
            if msg and msg != "prometheus.WriteRequest":
                e.attr("protobuf_message", str(msg))
            self._http_client(e, rw, path, follow=True, http2=False)
            _queue(e.block("queue_config"), rw.get("queue_config") or {}, path)
            _metadata(e.block("metadata_config"), rw.get("metadata_config") or {}, path)
            _rules(e, "write_relabel_config", rw["write_relabel_configs"])
            for key in ("sigv4", "azuread", "google_iam"):
                if key in rw:
                    _cloud_auth(e, key, rw[key] or {})
            if rw.get("round_robin_dns"):
                e.attr("round_robin_dns", True)
        return b

    # -- HTTP client settings shared by scrape, discovery and remote write ---

    def _http_client(
        self, b: Block, sec: dict[str, Any], path: str, follow: bool, http2: bool
    ) -> None:
        for name, fields in (
            ("basic_auth", ("username", "password", "password_file")),
            ("authorization", ("type", "credentials", "credentials_file")),
        ):
            given = sec.get(name)
            if given:
                sub = b.block(name)
                for f in fields:
                    if given.get(f):
                        sub.attr(f, str(given[f]))
        oauth = sec.get("oauth2")
        if oauth:
            _oauth2(b.block("oauth2"), oauth)
        _proxy(b, sec)
        tls = sec.get("tls_config") or {}
        _tls(b, tls)
        if tls.get("max_version"):
            self.diags.unsupported("HTTP Client max_version", f"{path}.tls_config.max_version")
        if sec.get("follow_redirects", True) != follow:
            b.attr("follow_redirects", bool(sec.get("follow_redirects", True)))
        if sec.get("enable_http2", http2) != http2:
            b.attr("enable_http2", bool(sec.get("enable_http2")))
        if sec.get("http_headers"):
            self.diags.unsupported("http_headers", f"{path}.http_headers")

    # -- what Alloy's converter reports ----------------------------------------

    def _validate(self) -> None:
        """Alloy's report order: global, alerting, rule_files, each job (its own checks,
        then its discoveries), storage, tracing, remote_write, remote_read."""
        cfg, built = self.cfg, Diagnostics(self.diags)
        d = self.diags
        d.clear()
        glob = cfg["global"]
        if glob["evaluation_interval"] != 60 * 10**9:
            d.unsupported("global evaluation_interval", "global.evaluation_interval")
        if glob.get("query_log_file"):
            d.unsupported("global query_log_file", "global.query_log_file")
        alerting = cfg.get("alerting") or {}
        if alerting.get("alertmanagers") or alerting.get("alert_relabel_configs"):
            d.unsupported("alerting", "alerting")
        if cfg.get("rule_files"):
            d.unsupported("rule_files", "rule_files")
        for i, sc in enumerate(cfg["scrape_configs"]):
            path = f"scrape_configs[{i}]"
            for key in ("track_timestamps_staleness", "native_histogram_bucket_limit",
                        "keep_dropped_targets"):
                if sc.get(key):
                    d.unsupported(f"scrape_configs {key}", f"{path}.{key}")
            mine = [x for x in built if x.path.startswith(path + ".")]
            d.extend(x for x in mine if "_sd_configs[" not in x.path)
            d.extend(x for x in mine if "_sd_configs[" in x.path)
        if cfg.get("scrape_config_files"):
            d.unsupported("scrape_config_files", "scrape_config_files")
        if cfg.get("storage"):
            d.unsupported("storage", "storage")
        if cfg.get("tracing"):
            d.unsupported("tracing", "tracing")
        d.extend(x for x in built if x.path.startswith("remote_write["))
        if cfg.get("remote_read"):
            d.unsupported("remote_read", "remote_read")

    def _scrape_info(self, remote: Block | None) -> None:
        for _block, job, label in self.scrapes:
            detail = f"\tA prometheus.scrape.{label} component"
            for group in (self.discovery, self.discovery_relabel, self.relabels):
                for other in group:
                    if other.label.startswith(label):
                        detail += f"\n\tA {other.name}.{other.label} component"
            self.diags.add(
                Severity.INFO, f'Converted scrape_configs job_name "{job}" into...', detail=detail
            )
        if remote is not None:
            names = ",".join(str(rw.get("name") or "") for rw in self.cfg["remote_write"])
            n = len(self.cfg["remote_write"])
            self.diags.add(
                Severity.INFO,
                f'Converted {n} remote_write[s] "{names}" into...',
                detail="\tA prometheus.remote_write.default component",
            )


# Alloy's component for each Prometheus discovery it converts (Shoal: file, kubernetes).
_ALLOY_SD = {
    "azure": "azure", "consul": "consul", "digitalocean": "digitalocean", "dns": "dns",
    "docker": "docker", "dockerswarm": "dockerswarm", "ec2": "ec2", "gce": "gce",
    "http": "http", "ionos": "ionos", "kuma": "kuma", "lightsail": "lightsail",
    "linode": "linode", "marathon": "marathon", "nerve": "nerve", "openstack": "openstack",
    "ovhcloud": "ovhcloud", "scaleway": "scaleway", "serverset": "serverset",
    "triton": "triton",
}


def _static_targets(groups: list[Any]) -> list[Raw | dict[str, str]]:
    """One target per address, the group's labels on each (Alloy's getScrapeTargets)."""
    out: list[Raw | dict[str, str]] = []
    for group in groups:
        group = group or {}
        base = {text(k): text(v) for k, v in (group.get("labels") or {}).items()}
        for addr in group.get("targets") or []:
            out.append({**base, "__address__": text(addr)})
    return out


def _file_sd(label: str, sd: dict[str, Any]) -> Block:
    b = Block("discovery.file", label)
    b.attr("files", [str(f) for f in sd.get("files") or []])
    refresh = duration_ns(sd.get("refresh_interval", "5m"), "file_sd_configs")
    if refresh != 5 * 60 * 10**9:
        b.attr("refresh_interval", GoDuration(refresh))
    return b


def _scrape_args(b: Block, sc: dict[str, Any]) -> None:
    if sc.get("honor_labels"):
        b.attr("honor_labels", True)
    if sc.get("honor_timestamps", True) is False:
        b.attr("honor_timestamps", False)
    if sc.get("track_timestamps_staleness"):
        b.attr("track_timestamps_staleness", True)
    if sc.get("params"):
        b.attr("params", {str(k): [str(v) for v in vs] for k, vs in sc["params"].items()})
    if sc.get("always_scrape_classic_histograms") or sc.get("scrape_classic_histograms"):
        b.attr("scrape_classic_histograms", True)
    if sc.get("scrape_failure_log_file"):
        b.attr("scrape_failure_log_file", str(sc["scrape_failure_log_file"]))
    if sc["scrape_interval"] != 60 * 10**9:
        b.attr("scrape_interval", GoDuration(sc["scrape_interval"]))
    if sc["scrape_timeout"] != 10 * 10**9:
        b.attr("scrape_timeout", GoDuration(sc["scrape_timeout"]))
    protocols = sc.get("scrape_protocols")
    if protocols and list(protocols) != _SCRAPE_DEFAULT_PROTOCOLS:
        b.attr("scrape_protocols", [str(p) for p in protocols])
    if sc.get("metrics_path", "/metrics") != "/metrics":
        b.attr("metrics_path", str(sc["metrics_path"]))
    if sc.get("scheme", "http") != "http":
        b.attr("scheme", str(sc["scheme"]))
    for limit in ("body_size_limit", "sample_limit", "target_limit", "label_limit",
                  "label_name_length_limit", "label_value_length_limit"):
        if sc.get(limit):
            b.attr(limit, int(sc[limit]))


def _scrape_tail(b: Block, sc: dict[str, Any]) -> None:
    fallback = sc.get("scrape_fallback_protocol")
    if fallback and fallback != "PrometheusText0.0.4":
        b.attr("scrape_fallback_protocol", str(fallback))
    if sc.get("convert_classic_histograms_to_nhcb"):
        b.attr("convert_classic_histograms_to_nhcb", True)
    if sc.get("enable_compression", True) is False:
        b.attr("enable_compression", False)
    if sc.get("native_histogram_bucket_limit"):
        b.attr("native_histogram_bucket_limit", int(sc["native_histogram_bucket_limit"]))
    if sc.get("native_histogram_min_bucket_factor"):
        b.attr("native_histogram_min_bucket_factor", float(sc["native_histogram_min_bucket_factor"]))


def _rules(b: Block, name: str, rules: list[relabel.Rule]) -> None:
    for r in rules:
        rb = b.block(name)
        if r.source_labels:
            rb.attr("source_labels", list(r.source_labels))
        if r.separator != relabel.DEFAULT_SEPARATOR:
            rb.attr("separator", r.separator)
        if r.regex != relabel.DEFAULT_REGEX:
            rb.attr("regex", r.regex)
        if r.modulus:
            rb.attr("modulus", r.modulus)
        if r.target_label:
            rb.attr("target_label", r.target_label)
        if r.replacement != relabel.DEFAULT_REPLACEMENT:
            rb.attr("replacement", r.replacement)
        if r.action != "replace":
            rb.attr("action", r.action)


def _duration_attr(b: Block, sec: dict[str, Any], key: str, default: int, path: str) -> None:
    if key in sec:
        ns = duration_ns(sec[key], f"{path}.{key}")
        if ns != default:
            b.attr(key, GoDuration(ns))


def _queue(b: Block, q: dict[str, Any], path: str) -> None:
    for key, default in (("capacity", 10000), ("max_shards", 50), ("min_shards", 1),
                         ("max_samples_per_send", 2000)):
        if key in q and int(q[key]) != default:
            b.attr(key, int(q[key]))
    for key, dflt in (("batch_send_deadline", 5 * 10**9), ("min_backoff", 30 * 10**6),
                      ("max_backoff", 5 * 10**9)):
        _duration_attr(b, q, key, dflt, f"{path}.queue_config")
    if q.get("retry_on_http_429") is False:
        b.attr("retry_on_http_429", False)
    _duration_attr(b, q, "sample_age_limit", 0, f"{path}.queue_config")


def _metadata(b: Block, m: dict[str, Any], path: str) -> None:
    if m.get("send") is False:
        b.attr("send", False)
    _duration_attr(b, m, "send_interval", 60 * 10**9, f"{path}.metadata_config")
    if "max_samples_per_send" in m and int(m["max_samples_per_send"]) != 2000:
        b.attr("max_samples_per_send", int(m["max_samples_per_send"]))


def _proxy(b: Block, sec: dict[str, Any]) -> None:
    if sec.get("proxy_url"):
        b.attr("proxy_url", str(sec["proxy_url"]))
    if sec.get("no_proxy"):
        b.attr("no_proxy", str(sec["no_proxy"]))
    if sec.get("proxy_from_environment"):
        b.attr("proxy_from_environment", True)
    if sec.get("proxy_connect_header"):
        b.attr(
            "proxy_connect_header",
            {str(k): [str(v) for v in vs or []] for k, vs in sec["proxy_connect_header"].items()},
        )


def _tls(b: Block, tls: dict[str, Any]) -> None:
    pairs = (("ca", "ca_pem"), ("ca_file", "ca_file"), ("cert", "cert_pem"),
             ("cert_file", "cert_file"), ("key", "key_pem"), ("key_file", "key_file"),
             ("server_name", "server_name"))
    attrs: list[tuple[str, Any]] = [(out, str(tls[src])) for src, out in pairs if tls.get(src)]
    if tls.get("insecure_skip_verify"):
        attrs.append(("insecure_skip_verify", True))
    if tls.get("min_version"):
        attrs.append(("min_version", str(tls["min_version"])))
    if attrs:
        tb = b.block("tls_config")
        for name, value in attrs:
            tb.attr(name, value)


def _oauth2(b: Block, o: dict[str, Any]) -> None:
    for key in ("client_id", "client_secret", "client_secret_file"):
        if o.get(key):
            b.attr(key, str(o[key]))
    if o.get("scopes"):
        b.attr("scopes", [str(s) for s in o["scopes"]])
    if o.get("token_url"):
        b.attr("token_url", str(o["token_url"]))
    if o.get("endpoint_params"):
        b.attr("endpoint_params", {str(k): str(v) for k, v in o["endpoint_params"].items()})
    _proxy(b, o)
    _tls(b, o.get("tls_config") or {})


def _cloud_auth(e: Block, key: str, raw: dict[str, Any]) -> None:
    """Written as Alloy writes it (``shoal convert`` warns that Shoal cannot run it yet)."""
    b = e.block(key)
    if key == "sigv4":
        for f in ("region", "access_key", "secret_key", "profile", "role_arn",
                  "external_id", "use_fips_sts_endpoint", "service_name"):
            if raw.get(f):
                b.attr(f, raw[f] if isinstance(raw[f], bool) else str(raw[f]))
    elif key == "azuread":
        sub = {
            "managed_identity": ("client_id",),
            "workload_identity": ("client_id", "tenant_id", "token_file_path"),
            "oauth": ("client_id", "client_secret", "tenant_id"),
            "sdk": ("tenant_id",),
        }
        for name, fields in sub.items():
            if name in raw:
                sb = b.block(name)
                for f in fields:
                    if (raw[name] or {}).get(f):
                        sb.attr(f, str(raw[name][f]))
        if raw.get("cloud") and raw["cloud"] != "AzurePublic":
            b.attr("cloud", str(raw["cloud"]))
        if raw.get("scope"):
            b.attr("scope", str(raw["scope"]))
    else:
        if raw.get("credentials_file"):
            b.attr("credentials_file", str(raw["credentials_file"]))
