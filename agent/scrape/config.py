"""A scrape job's settings, with Prometheus' defaults and its duration spelling.

Field names follow Alloy's ``prometheus.scrape`` arguments (durations are float
seconds here; the component converts). ``validate`` rejects what Prometheus
rejects, with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.httpconfig import HTTPClientConfig
from agent.relabel import Rule, validate_all

# Accept header values, as Prometheus' config.ScrapeProtocolsHeaders.
PROTOCOL_HEADERS = {
    "PrometheusProto": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
    "PrometheusText0.0.4": "text/plain;version=0.0.4",
    "PrometheusText1.0.0": "text/plain;version=1.0.0",
    "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
    "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
}
DEFAULT_PROTOCOLS = ("OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText0.0.4")
PROTOBUF_FIRST_PROTOCOLS = ("PrometheusProto", *DEFAULT_PROTOCOLS)
# Formats this engine can parse (all of Prometheus' scrape protocols).
SUPPORTED_PROTOCOLS = set(PROTOCOL_HEADERS)


@dataclass(slots=True)
class ScrapeConfig:
    job_name: str = ""
    scrape_interval: float = 60.0
    scrape_timeout: float = 10.0
    metrics_path: str = "/metrics"
    scheme: str = "http"
    params: dict[str, list[str]] = field(default_factory=dict)
    honor_labels: bool = False
    honor_timestamps: bool = True
    # Hand each scrape's TYPE/HELP/UNIT downstream in the batch (Alloy's honor_metadata;
    # the component defaults it off as Alloy does, the engine on as Prometheus sends it).
    honor_metadata: bool = True
    # Prometheus 3's type-and-unit-labels: __type__ and __unit__ from the family's metadata.
    type_and_unit_labels: bool = False
    # Dropped targets kept for the debug info (Prometheus' keep_dropped_targets; 0: all).
    keep_dropped_targets: int = 0
    track_timestamps_staleness: bool = False
    sample_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0
    body_size_limit: int = 0
    target_limit: int = 0
    extra_metrics: bool = False
    scrape_protocols: list[str] = field(default_factory=lambda: list(DEFAULT_PROTOCOLS))
    # Alloy's deprecated switch: proto-first protocols and native histograms on.
    enable_protobuf_negotiation: bool = False
    # Ingest native histograms (protobuf); with the default protocols, asks for protobuf first.
    scrape_native_histograms: bool = False
    # Also keep the classic series of a histogram that has native buckets.
    scrape_classic_histograms: bool = False
    # More buckets than this in a native histogram: resolution reduced until it fits (0: no limit).
    native_histogram_bucket_limit: int = 0
    # Native histograms finer than this bucket growth factor are reduced to it (0: schema 8).
    native_histogram_min_bucket_factor: float = 0.0
    http: HTTPClientConfig = field(default_factory=HTTPClientConfig)
    metric_relabel_rules: list[Rule] = field(default_factory=list)
    # Additions beyond Alloy's argument list:
    # target relabeling inside the pool (Prometheus' relabel_configs; Alloy does it in discovery.relabel).
    relabel_rules: list[Rule] = field(default_factory=list)
    # parser for a response with no usable Content-Type (Prometheus' fallback_scrape_protocol).
    scrape_fallback_protocol: str = "PrometheusText0.0.4"
    enable_compression: bool = True
    user_agent: str = "Shoal/0.1"

    def validate(self) -> None:
        """Raise ValueError with the reason when Prometheus would refuse this job."""
        if self.scrape_interval <= 0:
            raise ValueError("scrape_interval must be greater than 0")
        if self.scrape_timeout <= 0:
            raise ValueError("scrape_timeout must be greater than 0")
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError(
                f"scrape_timeout ({format_duration(self.scrape_timeout)}) greater than "
                f"scrape_interval ({format_duration(self.scrape_interval)})"
            )
        if self.scheme not in ("http", "https"):
            raise ValueError(f"invalid scheme {self.scheme!r}: must be http or https")
        if self.enable_protobuf_negotiation and tuple(self.scrape_protocols) != DEFAULT_PROTOCOLS:
            raise ValueError(
                "both enable_protobuf_negotiation and scrape_protocols are set, "
                "only one can be set at a time"
            )
        if self.scrape_native_histograms and "PrometheusProto" not in self.protocols():
            raise ValueError(
                "scrape_native_histograms is set to true, but PrometheusProto is not in "
                "scrape_protocols"
            )
        if self.native_histogram_min_bucket_factor < 0:
            raise ValueError("native_histogram_min_bucket_factor cannot be negative")
        for p in self.scrape_protocols:
            if p not in PROTOCOL_HEADERS:
                raise ValueError(f"unknown scrape protocol {p!r}")
        if len(set(self.scrape_protocols)) != len(self.scrape_protocols):
            raise ValueError("duplicated protocol in scrape_protocols")
        if self.scrape_fallback_protocol and self.scrape_fallback_protocol not in PROTOCOL_HEADERS:
            raise ValueError(f"unknown fallback protocol {self.scrape_fallback_protocol!r}")
        for name in (
            "sample_limit",
            "label_limit",
            "label_name_length_limit",
            "label_value_length_limit",
            "body_size_limit",
            "target_limit",
            "keep_dropped_targets",
            "native_histogram_bucket_limit",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")
        validate_all(self.metric_relabel_rules)
        validate_all(self.relabel_rules)

    def protocols(self) -> list[str]:
        """The negotiated order: Alloy swaps the default list for the proto-first one
        when native histograms are wanted (or the deprecated switch is on)."""
        wants_proto = self.enable_protobuf_negotiation or self.scrape_native_histograms
        if wants_proto and tuple(self.scrape_protocols) == DEFAULT_PROTOCOLS:
            return list(PROTOBUF_FIRST_PROTOCOLS)
        return list(self.scrape_protocols)

    def native_histograms(self) -> bool:
        """Whether native histograms are ingested (else a histogram is read as classic)."""
        return self.scrape_native_histograms or self.enable_protobuf_negotiation

    def accept_header(self) -> str:
        """Prometheus' weighted Accept header for the protocols we can parse."""
        vals = []
        weight = len(PROTOCOL_HEADERS) + 1
        for p in self.protocols():
            if p not in SUPPORTED_PROTOCOLS:
                continue
            vals.append(f"{PROTOCOL_HEADERS[p]};q=0.{weight}")
            weight -= 1
        vals.append(f"*/*;q=0.{weight}")
        return ",".join(vals)


# ---------------------------------------------------------------- durations

_UNITS = (
    ("y", 365 * 24 * 3600 * 1000, True),
    ("w", 7 * 24 * 3600 * 1000, True),
    ("d", 24 * 3600 * 1000, False),
    ("h", 3600 * 1000, False),
    ("m", 60 * 1000, False),
    ("s", 1000, False),
    ("ms", 1, False),
)
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)


def format_duration(seconds: float) -> str:
    """Prometheus' model.Duration.String(): 60 -> "1m", 90 -> "1m30s", 0.5 -> "500ms"."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    out = []
    for unit, mult, exact in _UNITS:
        if exact and ms % mult != 0:
            continue
        v = ms // mult
        if v > 0:
            out.append(f"{v}{unit}")
            ms -= v * mult
    return "".join(out)


def parse_duration(s: str) -> float:
    """Prometheus' model.ParseDuration, in seconds; ValueError on a bad string."""
    if s == "0":
        return 0.0
    m = _DURATION.match(s)
    if not s or m is None:
        raise ValueError(f"not a valid duration string: {s!r}")
    ms = 0
    for g, (_, mult, _) in zip(m.groups(), _UNITS, strict=True):
        if g:
            ms += int(g) * mult
    return ms / 1000
