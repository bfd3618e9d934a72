"""Reading a prometheus.yml the way Prometheus' loader does, as far as conversion needs.

Alloy's converter loads the file with Prometheus' own ``config.Load``, so a
file Prometheus refuses is refused (a critical diagnostic, no output) and
every omitted setting takes Prometheus' default before it is compared with
Alloy's. This module is that loader for Python: YAML with line numbers,
unknown fields reported as go-yaml words them, Prometheus' duration and
byte-size syntax, and the defaults and cross-field checks the conversion
depends on (scrape interval and timeout from ``global``, bearer tokens
folded into ``authorization``).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from agent import relabel


class LoadError(Exception):
    """A file Prometheus would refuse; the message is Prometheus' (or go-yaml's)."""


_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNITS_NS = (
    365 * 86400 * 10**9,
    7 * 86400 * 10**9,
    86400 * 10**9,
    3600 * 10**9,
    60 * 10**9,
    10**9,
    10**6,
)
_BYTES = re.compile(r"^(\d+)\s*([KMGTPE]i?B|B)?$")
_BYTE_UNITS = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def duration_ns(value: Any, what: str) -> int:
    """Prometheus' ``model.ParseDuration`` (``1h30m``, ``5m``, ``0``), in nanoseconds."""
    text = str(value)
    if text == "0":
        return 0
    m = _DURATION.match(text) if text else None
    if m is None or not any(m.groups()):
        raise LoadError(f"not a valid duration string: {text!r} ({what})")
    return sum(int(g) * u for g, u in zip(m.groups(), _UNITS_NS, strict=True) if g)


def byte_size(value: Any, what: str) -> int:
    """``body_size_limit`` as Prometheus reads it (base-2 units: ``10MB`` is 10 MiB)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _BYTES.match(str(value).strip())
    if m is None:
        raise LoadError(f"invalid byte size {value!r} ({what})")
    unit = m.group(2) or "B"
    return int(m.group(1)) * 1024 ** _BYTE_UNITS[unit[0]]


# Fields Prometheus accepts, per section; a section maps to None when its
# content is not checked here (it is either converted verbatim or reported),
# and to STR when Prometheus reads it into strings: those keep the scalars'
# source text, as go-yaml hands it over (``1.10`` stays ``1.10``, ``yes``
# stays ``yes``), where PyYAML would have made numbers and booleans of them.
STR = "str"
_HTTP_CLIENT = {
    "basic_auth": {
        "username": STR, "username_file": STR, "username_ref": None,
        "password": STR, "password_file": STR, "password_ref": None,
    },
    "authorization": {
        "type": STR, "credentials": STR, "credentials_file": STR, "credentials_ref": None,
    },
    "oauth2": None,
    "bearer_token": STR,
    "bearer_token_file": STR,
    "tls_config": {
        "ca": None, "ca_file": None, "ca_ref": None, "cert": None, "cert_file": None,
        "cert_ref": None, "key": None, "key_file": None, "key_ref": None,
        "server_name": None, "insecure_skip_verify": None, "min_version": None,
        "max_version": None,
    },
    "follow_redirects": None,
    "enable_http2": None,
    "proxy_url": None,
    "no_proxy": None,
    "proxy_from_environment": None,
    "proxy_connect_header": None,
    "http_headers": None,
}
_RELABEL = {
    "source_labels": STR, "separator": STR, "regex": STR, "modulus": None,
    "target_label": STR, "replacement": STR, "action": STR,
}
_SCRAPE = {
    "job_name": STR, "honor_labels": None, "honor_timestamps": None,
    "track_timestamps_staleness": None, "params": STR, "scrape_interval": None,
    "scrape_timeout": None, "scrape_protocols": None, "scrape_fallback_protocol": None,
    "scrape_classic_histograms": None, "always_scrape_classic_histograms": None,
    "convert_classic_histograms_to_nhcb": None, "scrape_native_histograms": None,
    "metrics_path": STR, "scheme": STR, "enable_compression": None,
    "body_size_limit": None, "sample_limit": None, "target_limit": None, "label_limit": None,
    "label_name_length_limit": None, "label_value_length_limit": None,
    "native_histogram_bucket_limit": None, "native_histogram_min_bucket_factor": None,
    "keep_dropped_targets": None, "metric_name_validation_scheme": None,
    "metric_name_escaping_scheme": None, "scrape_failure_log_file": None,
    "extra_scrape_metrics": None,
    "relabel_configs": [_RELABEL], "metric_relabel_configs": [_RELABEL],
    "static_configs": [{"targets": STR, "labels": STR}],
    "file_sd_configs": [{"files": STR, "refresh_interval": None}],
    "kubernetes_sd_configs": [{
        "api_server": None, "role": None, "kubeconfig_file": None,
        "namespaces": {"own_namespace": None, "names": None},
        "selectors": [{"role": None, "label": None, "field": None}],
        "attach_metadata": {"node": None, "namespace": None},
        **_HTTP_CLIENT,
    }],
    **_HTTP_CLIENT,
}
_QUEUE = {
    "capacity": None, "max_shards": None, "min_shards": None, "max_samples_per_send": None,
    "batch_send_deadline": None, "min_backoff": None, "max_backoff": None,
    "retry_on_http_429": None, "sample_age_limit": None,
}
_REMOTE_WRITE = {
    "url": STR, "name": STR, "remote_timeout": None, "headers": STR,
    "send_exemplars": None, "send_native_histograms": None, "protobuf_message": None,
    "round_robin_dns": None,
    "write_relabel_configs": [_RELABEL],
    "queue_config": _QUEUE,
    "metadata_config": {"send": None, "send_interval": None, "max_samples_per_send": None},
    "sigv4": None, "azuread": None, "google_iam": None,
    **_HTTP_CLIENT,
}
_GLOBAL = {
    "scrape_interval": None, "scrape_timeout": None, "scrape_protocols": None,
    "evaluation_interval": None, "rule_query_offset": None, "external_labels": STR,
    "query_log_file": None, "scrape_failure_log_file": None, "body_size_limit": None,
    "sample_limit": None, "target_limit": None, "label_limit": None,
    "label_name_length_limit": None, "label_value_length_limit": None,
    "keep_dropped_targets": None, "metric_name_validation_scheme": None,
    "metric_name_escaping_scheme": None, "convert_classic_histograms_to_nhcb": None,
    "always_scrape_classic_histograms": None, "extra_scrape_metrics": None,
    "scrape_native_histograms": None,
}
_TOP = {
    "global": _GLOBAL, "runtime": None, "alerting": None, "rule_files": None,
    "scrape_config_files": None, "scrape_configs": [_SCRAPE], "storage": None,
    "tracing": None, "remote_write": [_REMOTE_WRITE], "remote_read": None, "otlp": None,
}


# libyaml when PyYAML was built with it: go-yaml is a port of libyaml, so its error
# wording comes for free, and it reads a large file about 10x faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> dict[str, Any]:
    """The parsed file, or LoadError with go-yaml's or Prometheus' message."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        raise LoadError(_yaml_message(exc)) from None
    except yaml.YAMLError as exc:
        raise LoadError(f"yaml: {exc}") from None
    except RecursionError:
        raise LoadError("yaml: nesting too deep") from None
    finally:
        loader.dispose()
    if data is None or node is None:
        return {}
    problems: list[str] = []
    _check(node, _TOP, problems)
    if problems:
        raise LoadError("yaml: unmarshal errors:\n" + "\n".join(f"  {p}" for p in problems))
    if not isinstance(data, dict):
        raise LoadError("yaml: unmarshal errors:\n  line 1: cannot unmarshal into config.plain")
    return _without_nulls(_restring(node, data, _TOP))


def _without_nulls(data: Any) -> Any:
    """A null leaves a Go field at its default, so a null setting is as good as absent."""
    if isinstance(data, dict):
        return {k: _without_nulls(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_without_nulls(v) for v in data]
    return data


def raw(node: yaml.Node) -> Any:
    """A YAML node with every scalar as its source text (null stays None), as Go reads strings."""
    if isinstance(node, yaml.MappingNode):
        return {raw(k): raw(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [raw(v) for v in node.value]
    if node.tag == "tag:yaml.org,2002:null":
        return None
    return node.value


def _restring(node: yaml.Node, data: Any, schema: Any) -> Any:
    if schema == STR:
        return raw(node)
    if isinstance(schema, list) and isinstance(node, yaml.SequenceNode):
        return [_restring(n, d, schema[0]) for n, d in zip(node.value, data, strict=True)]
    if isinstance(schema, dict) and isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        out = dict(data)
        for key, value in node.value:
            sub = schema.get(key.value)
            if sub is not None and key.value in out:
                out[key.value] = _restring(value, out[key.value], sub)
        return out
    return data


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    """go-yaml's wording: libyaml's problem text and its (parser: 0-based) line."""
    mark = exc.problem_mark
    problem = exc.problem or "invalid YAML"
    if isinstance(exc, yaml.parser.ParserError) or isinstance(exc, yaml.composer.ComposerError):
        line = mark.line if mark else 0
        if problem.startswith("expected <block end>"):
            problem = "did not find expected key"
        elif problem.startswith("expected ',' or ']'"):
            problem = "did not find expected ',' or ']'"
    else:
        line = (mark.line + 1) if mark else 0
        if "mapping values are not allowed" in problem:
            problem = "mapping values are not allowed in this context"
    return f"yaml: line {line}: {problem}"


def _check(node: yaml.Node, schema: Any, problems: list[str]) -> None:
    if schema is None or schema == STR or node.tag == "tag:yaml.org,2002:null":
        return
    want = yaml.SequenceNode if isinstance(schema, list) else yaml.MappingNode
    if not isinstance(node, want):
        kind = "a list" if want is yaml.SequenceNode else "a mapping"
        tag = node.tag.rsplit(":", 1)[-1]
        shown = node.value if isinstance(node, yaml.ScalarNode) else "..."
        problems.append(
            f"line {node.start_mark.line + 1}: cannot unmarshal !!{tag} `{shown}` into {kind}"
        )
        return
    if isinstance(schema, list):
        for item in node.value:
            _check(item, schema[0], problems)
        return
    for key, value in node.value:
        name = key.value
        if schema is _SCRAPE and str(name).endswith("_sd_configs") and name not in schema:
            continue  # a discovery: reported (or converted) by the converter, not refused
        if name not in schema:
            problems.append(
                f"line {key.start_mark.line + 1}: field {name} not found in type config.plain"
            )
            continue
        _check(value, schema[name], problems)


def apply_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """Prometheus' defaults and checks for the parts the converter reads."""
    glob = dict(cfg.get("global") or {})
    glob["scrape_interval"] = duration_ns(glob.get("scrape_interval", "1m"), "global")
    glob["scrape_timeout"] = duration_ns(glob.get("scrape_timeout", "10s"), "global")
    glob["evaluation_interval"] = duration_ns(glob.get("evaluation_interval", "1m"), "global")
    if glob["scrape_timeout"] > glob["scrape_interval"]:
        raise LoadError("global scrape timeout greater than scrape interval")
    out = dict(cfg)
    out["global"] = glob

    jobs: set[str] = set()
    scrapes = []
    for sc in cfg.get("scrape_configs") or []:
        sc = dict(sc or {})
        job = sc.get("job_name")
        if not job:
            raise LoadError("job_name is empty")
        if job in jobs:
            raise LoadError(f"found multiple scrape configs with job name {job!r}")
        jobs.add(job)
        what = f"scrape config {job!r}"
        interval = sc.get("scrape_interval")
        sc["scrape_interval"] = (
            duration_ns(interval, what) if interval is not None else glob["scrape_interval"]
        )
        timeout = sc.get("scrape_timeout")
        if timeout is not None:
            sc["scrape_timeout"] = duration_ns(timeout, what)
        else:
            sc["scrape_timeout"] = min(glob["scrape_timeout"], sc["scrape_interval"])
        if sc["scrape_timeout"] > sc["scrape_interval"]:
            raise LoadError(
                "scrape timeout greater than scrape interval for scrape config with job name "
                f'"{job}"'
            )
        if "body_size_limit" in sc or "body_size_limit" in glob:
            sc["body_size_limit"] = byte_size(
                sc.get("body_size_limit", glob.get("body_size_limit", 0)), what
            )
        for limit in ("sample_limit", "target_limit", "label_limit", "label_name_length_limit",
                      "label_value_length_limit", "keep_dropped_targets"):
            sc.setdefault(limit, glob.get(limit, 0))
        # Settings a job inherits from global when it does not set them (Prometheus 3).
        for key in ("scrape_protocols", "scrape_failure_log_file",
                    "always_scrape_classic_histograms", "convert_classic_histograms_to_nhcb"):
            if key not in sc and key in glob:
                sc[key] = glob[key]
        for key in ("relabel_configs", "metric_relabel_configs"):
            sc[key] = [relabel_rule(r, f"{what} {key}") for r in sc.get(key) or []]
        _http_client(sc)
        for kube in sc.get("kubernetes_sd_configs") or []:
            _kubernetes(kube or {})
        for fsd in sc.get("file_sd_configs") or []:
            for f in (fsd or {}).get("files") or []:
                if not re.search(r"\.(json|yml|yaml)$", f.rsplit("/", 1)[-1]):
                    raise LoadError(f"path name {f!r} is not valid for file discovery")
        scrapes.append(sc)
    out["scrape_configs"] = scrapes

    names: set[str] = set()
    writes = []
    for rw in cfg.get("remote_write") or []:
        rw = dict(rw or {})
        if not rw.get("url"):
            raise LoadError("url for remote_write is empty")
        name = rw.get("name") or ""
        if name:
            if name in names:
                raise LoadError(f"found multiple remote write configs with job name {name!r}")
            names.add(name)
        rw["write_relabel_configs"] = [
            relabel_rule(r, "remote_write write_relabel_configs")
            for r in rw.get("write_relabel_configs") or []
        ]
        _http_client(rw)
        writes.append(rw)
    out["remote_write"] = writes
    return out


_KUBE_ROLES = ("pod", "service", "endpoints", "endpointslice", "node", "ingress")


def _kubernetes(sd: dict[str, Any]) -> None:
    """Prometheus' checks of a ``kubernetes_sd_configs`` entry."""
    role = sd.get("role")
    if not role:
        raise LoadError("role missing (one of: " + ", ".join(_KUBE_ROLES) + ")")
    if role not in _KUBE_ROLES:
        raise LoadError(f"unknown Kubernetes SD role {role!r}")
    if sd.get("api_server") and sd.get("kubeconfig_file"):
        raise LoadError("cannot use 'kubeconfig_file' and 'api_server' simultaneously")
    for sel in sd.get("selectors") or []:
        if (sel or {}).get("role") not in _KUBE_ROLES:
            raise LoadError(f"invalid selector role {(sel or {}).get('role')!r} in kubernetes_sd_config")
    _http_client(sd)


def text(value: Any) -> str:
    """A scalar as Go's YAML decoder hands it to a string field (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def relabel_rule(raw: dict[str, Any] | None, what: str) -> relabel.Rule:
    raw = raw or {}
    rule = relabel.Rule(
        source_labels=[str(s) for s in raw.get("source_labels") or []],
        separator=str(raw.get("separator", relabel.DEFAULT_SEPARATOR)),
        regex=str(raw.get("regex", relabel.DEFAULT_REGEX)),
        modulus=int(raw.get("modulus", 0)),
        target_label=str(raw.get("target_label", "")),
        replacement=str(raw.get("replacement", relabel.DEFAULT_REPLACEMENT)),
        action=str(raw.get("action", "replace")).lower(),
    )
    try:
        rule.validate()
    except ValueError as exc:
        raise LoadError(f"{exc} ({what})") from None
    return rule


def _http_client(section: dict[str, Any]) -> None:
    """Prometheus' ``HTTPClientConfig.Validate``: bearer tokens become ``authorization``."""
    token, token_file = section.get("bearer_token"), section.get("bearer_token_file")
    auth = section.get("authorization")
    basic = section.get("basic_auth")
    if token and token_file:
        raise LoadError("at most one of bearer_token & bearer_token_file must be configured")
    if (token or token_file) and (auth or basic):
        raise LoadError(
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"
        )
    if basic and auth:
        raise LoadError("at most one of basic_auth, oauth2 & authorization must be configured")
    if basic and basic.get("password") and basic.get("password_file"):
        raise LoadError("at most one of basic_auth password & password_file must be configured")
    if token or token_file:
        auth = {"credentials": token} if token else {"credentials_file": token_file}
        section.pop("bearer_token", None)
        section.pop("bearer_token_file", None)
    if auth is not None:
        auth = dict(auth)
        if auth.get("credentials") and auth.get("credentials_file"):
            raise LoadError(
                "at most one of authorization credentials & credentials_file must be configured"
            )
        auth["type"] = str(auth.get("type") or "Bearer")
        if auth["type"].lower() == "basic":
            raise LoadError('authorization type cannot be set to "basic", use "basic_auth" instead')
        section["authorization"] = auth
