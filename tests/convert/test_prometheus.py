"""The converter on inputs the conformance corpus does not cover, spelled as Alloy's converter would."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.convert.diag import Severity
from agent.convert.prometheus import convert

# Keys of every section, so generated documents reach deep into the converter.
_KEYS = [
    "global", "scrape_configs", "remote_write", "job_name", "static_configs", "targets",
    "labels", "relabel_configs", "metric_relabel_configs", "source_labels", "regex", "action",
    "target_label", "file_sd_configs", "files", "kubernetes_sd_configs", "role", "selectors",
    "namespaces", "names", "basic_auth", "username", "password", "authorization",
    "bearer_token", "tls_config", "ca_file", "url", "queue_config", "max_shards",
    "external_labels", "scrape_interval", "scrape_timeout", "params", "headers",
    "refresh_interval", "sigv4", "azuread", "managed_identity", "consul_sd_configs",
]


def _ok(yml: str) -> str:
    text, diags = convert(yml)
    assert not diags.has(Severity.ERROR) and not diags.has(Severity.CRITICAL), diags.text()
    return text


def test_kubernetes_with_every_argument() -> None:
    out = _ok(
        "scrape_configs:\n"
        "  - job_name: pods\n"
        "    kubernetes_sd_configs:\n"
        "      - role: pod\n"
        "        api_server: https://k8s:6443\n"
        "        namespaces:\n          own_namespace: true\n          names: [a, b]\n"
        "        selectors:\n          - role: pod\n            label: app=web\n"
        "        attach_metadata:\n          node: true\n"
        "        tls_config:\n          ca_file: /ca\n"
        "        bearer_token_file: /token\n"
        "      - role: node\n"
        "        follow_redirects: false\n"
    )
    assert out == (
        'discovery.kubernetes "pods" {\n'
        '\tapi_server = "https://k8s:6443"\n'
        '\trole       = "pod"\n'
        "\n"
        "\tauthorization {\n"
        '\t\ttype             = "Bearer"\n'
        '\t\tcredentials_file = "/token"\n'
        "\t}\n"
        "\n"
        "\ttls_config {\n"
        '\t\tca_file = "/ca"\n'
        "\t}\n"
        "\n"
        "\tnamespaces {\n"
        "\t\town_namespace = true\n"
        '\t\tnames         = ["a", "b"]\n'
        "\t}\n"
        "\n"
        "\tselectors {\n"
        '\t\trole  = "pod"\n'
        '\t\tlabel = "app=web"\n'
        "\t}\n"
        "\n"
        "\tattach_metadata {\n"
        "\t\tnode = true\n"
        "\t}\n"
        "}\n"
        "\n"
        'discovery.kubernetes "pods_2" {\n'
        '\trole             = "node"\n'
        "\tfollow_redirects = false\n"
        "}\n"
        "\n"
        'prometheus.scrape "pods" {\n'
        "\ttargets = array.concat(\n"
        "\t\tdiscovery.kubernetes.pods.targets,\n"
        "\t\tdiscovery.kubernetes.pods_2.targets,\n"
        "\t)\n"
        "\tforward_to = [prometheus.remote_write.default.receiver]\n"
        '\tjob_name   = "pods"\n'
        "}\n"
    )


def test_labels_sanitized_and_duplicates_are_critical() -> None:
    out = _ok("scrape_configs:\n  - job_name: 1st-job.x\n    static_configs: [{targets: []}]\n")
    assert out.startswith('prometheus.scrape "_1st_job_x" {\n\ttargets    = []\n')
    _, diags = convert("scrape_configs:\n  - job_name: a-b\n  - job_name: a_b\n")
    assert [d.summary for d in diags if d.severity == Severity.CRITICAL] == [
        'duplicate label after conversion "prometheus.scrape.a_b". this is due to how valid '
        "Alloy labels are assembled and can be avoided by updating named properties in the "
        "source config."
    ]


def test_global_values_reach_jobs_and_go_spelling() -> None:
    """Scalars in string fields keep their text, as Go reads them (1.10 is not 1.1)."""
    # scrape_timeout larger than the interval is refused by Prometheus, hence critical.
    _, diags = convert("global:\n  scrape_interval: 90s\n  scrape_timeout: 2m\n")
    assert diags.has(Severity.CRITICAL)
    out = _ok(
        "global:\n  scrape_interval: 90s\n  scrape_timeout: 1m\n"
        "  scrape_protocols: [PrometheusProto, PrometheusText0.0.4]\n"
        "  external_labels: {\"on\": true, n: 3}\n"
        "scrape_configs:\n  - job_name: j\n    static_configs:\n"
        "      - targets: [h:1]\n        labels: {flag: yes, version: 1.10}\n"
        "remote_write:\n  - url: http://rw\n    send_exemplars: false\n"
        "    queue_config: {retry_on_http_429: false, sample_age_limit: 1h30m, capacity: 10000}\n"
        "    metadata_config: {send: false, send_interval: 2m}\n"
        "    write_relabel_configs:\n      - {action: Drop, source_labels: [x], regex: 'a|b'}\n"
    )
    assert out == (
        'prometheus.scrape "j" {\n'
        "\ttargets = [{\n"
        '\t\t__address__ = "h:1",\n'
        '\t\tflag        = "yes",\n'
        '\t\tversion     = "1.10",\n'
        "\t}]\n"
        "\tforward_to       = [prometheus.remote_write.default.receiver]\n"
        '\tjob_name         = "j"\n'
        '\tscrape_interval  = "1m30s"\n'
        '\tscrape_timeout   = "1m0s"\n'
        '\tscrape_protocols = ["PrometheusProto", "PrometheusText0.0.4"]\n'
        "}\n"
        "\n"
        'prometheus.remote_write "default" {\n'
        "\texternal_labels = {\n"
        '\t\tn  = "3",\n'
        '\t\ton = "true",\n'
        "\t}\n"
        "\n"
        "\tendpoint {\n"
        '\t\turl            = "http://rw"\n'
        "\t\tsend_exemplars = false\n"
        "\n"
        "\t\tqueue_config {\n"
        "\t\t\tretry_on_http_429 = false\n"
        '\t\t\tsample_age_limit  = "1h30m0s"\n'
        "\t\t}\n"
        "\n"
        "\t\tmetadata_config {\n"
        "\t\t\tsend          = false\n"
        '\t\t\tsend_interval = "2m0s"\n'
        "\t\t}\n"
        "\n"
        "\t\twrite_relabel_config {\n"
        '\t\t\tsource_labels = ["x"]\n'
        '\t\t\tregex         = "a|b"\n'
        '\t\t\taction        = "drop"\n'
        "\t\t}\n"
        "\t}\n"
        "}\n"
    )


def test_unknown_and_shoal_missing_discoveries_have_paths() -> None:
    _, diags = convert(
        "scrape_configs:\n  - job_name: a\n  - job_name: b\n"
        "    consul_sd_configs: [{server: 'c:8500'}]\n"
        "    uyuni_sd_configs: [{server: 'u'}]\n"
        "    file_sd_configs: [{files: [x.json]}]\n"
    )
    errors = [(d.summary, d.path) for d in diags if d.severity == Severity.ERROR]
    assert errors == [
        (
            "Shoal has no discovery.consul component: the provided consul service discovery "
            "was not converted.",
            "scrape_configs[1].consul_sd_configs[0]",
        ),
        (
            "The converter does not support converting the provided uyuni service discovery.",
            "scrape_configs[1].uyuni_sd_configs[0]",
        ),
    ]


def test_null_settings_keep_their_defaults() -> None:
    out = _ok(
        "scrape_configs:\n  - job_name: j\n    metrics_path:\n    scheme: ~\n"
        "    relabel_configs:\n      - {target_label: t, regex: null, replacement: x}\n"
        "    static_configs:\n      - targets: [h:1]\n        labels:\n"
    )
    assert "None" not in out and "metrics_path" not in out and "scheme" not in out
    assert 'target_label = "t"' in out and "regex" not in out


def test_hostile_yaml_is_critical_not_a_crash() -> None:
    for text in ("[" * 50_000, "a: &x [*x]\n", "\x00\x01", "scrape_configs: 3\n", "- 1\n",
                 "scrape_configs:\n - job_name: a\n   static_configs:\n   - labels: [x]\n",
                 "scrape_configs:\n - job_name: a\n   params: 7\n"):
        _, diags = convert(text)
        assert diags.has(Severity.CRITICAL), text[:20]


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100), st.text(max_size=6), st.just("1m")
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _values, max_size=5))
def test_any_shape_converts_or_is_refused_never_raises(doc: dict) -> None:
    """Whatever the shapes and values, convert() answers with text or diagnostics."""
    text, diags = convert(yaml.safe_dump(doc))
    assert text or diags or not doc.get("scrape_configs")
