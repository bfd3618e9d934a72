"""From a discovered label set to a scrape target, as Prometheus' ``PopulateLabels`` does.

A target's final labels keep the reserved ``__address__``, ``__scheme__``,
``__metrics_path__``, ``__scrape_interval__``, ``__scrape_timeout__`` and
``__param_*`` labels (they define where and how often to scrape); the labels
attached to its series are the ones without the ``__`` prefix.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from agent import labels as L
from agent.labels import Labels
from agent.relabel import process
from agent.scrape.config import ScrapeConfig, format_duration, parse_duration


def populate_labels(discovered: Labels, cfg: ScrapeConfig) -> Labels | None:
    """The target's final label set, or None when target relabeling dropped it.

    Raises ValueError (with Prometheus' reason) for a target that cannot be scraped.
    """
    d = dict(discovered)
    defaults = (
        ("job", cfg.job_name),
        (L.SCRAPE_INTERVAL, format_duration(cfg.scrape_interval)),
        (L.SCRAPE_TIMEOUT, format_duration(cfg.scrape_timeout)),
        (L.METRICS_PATH, cfg.metrics_path),
        (L.SCHEME, cfg.scheme),
    )
    for name, value in defaults:
        if not d.get(name):
            d[name] = value
    for k, v in cfg.params.items():
        name = L.PARAM_PREFIX + k
        if v and not d.get(name):
            d[name] = v[0]
    lab: Labels | None = L.from_dict(d)
    if cfg.relabel_rules:
        lab = process(lab, cfg.relabel_rules)
        if lab is None:
            return None
    d = dict(lab)
    addr = d.get(L.ADDRESS, "")
    if not addr:
        raise ValueError("no address")
    if "/" in addr:
        raise ValueError(f'"{addr}" is not a valid hostname')
    interval_s = d.get(L.SCRAPE_INTERVAL, "")
    timeout_s = d.get(L.SCRAPE_TIMEOUT, "")
    try:
        interval = parse_duration(interval_s)
    except ValueError as exc:
        raise ValueError(f"error parsing scrape interval: {exc}") from None
    try:
        timeout = parse_duration(timeout_s)
    except ValueError as exc:
        raise ValueError(f"error parsing scrape timeout: {exc}") from None
    if interval == 0:
        raise ValueError("scrape interval cannot be 0")
    if timeout == 0:
        raise ValueError("scrape timeout cannot be 0")
    if timeout > interval:
        raise ValueError(
            f'scrape timeout cannot be greater than scrape interval ("{timeout_s}" > "{interval_s}")'
        )
    out = {n: v for n, v in d.items() if not n.startswith(L.META_PREFIX)}
    if not out.get("instance"):
        out["instance"] = addr
    return L.from_dict(out)


@dataclass(slots=True)
class Target:
    """One scrape target: where, how often, and the labels its series get."""

    discovered: Labels
    labels: Labels  # final, with the reserved __ labels
    params: dict[str, list[str]] = field(default_factory=dict)  # the job's params
    public: Labels = field(init=False)  # attached to every series
    url: str = field(init=False)
    interval: float = field(init=False)
    timeout: float = field(init=False)

    def __post_init__(self) -> None:
        self.public = tuple(p for p in self.labels if not p[0].startswith(L.RESERVED_PREFIX))
        self.url = target_url(self.labels, self.params)
        self.interval = parse_duration(L.get(self.labels, L.SCRAPE_INTERVAL))
        self.timeout = parse_duration(L.get(self.labels, L.SCRAPE_TIMEOUT))


def target_url(labels: Labels, config_params: dict[str, list[str]] | None = None) -> str:
    """scheme://address/path?params; ``__param_x`` labels override the first value of ``x``."""
    params: dict[str, list[str]] = {k: list(v) for k, v in (config_params or {}).items()}
    for n, v in labels:
        if n.startswith(L.PARAM_PREFIX):
            k = n[len(L.PARAM_PREFIX) :]
            if params.get(k):
                params[k][0] = v
            else:
                params[k] = [v]
    scheme = L.get(labels, L.SCHEME) or "http"
    path = L.get(labels, L.METRICS_PATH) or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = urllib.parse.urlencode(sorted(params.items()), doseq=True)
    url = (
        f"{scheme}://{L.get(labels, L.ADDRESS)}{urllib.parse.quote(path, safe='/:@!$&()*+,;=-._~')}"
    )
    return url + ("?" + query if query else "")


@dataclass(slots=True)
class TargetStatus:
    """What the debug UI and the component's health show for one target."""

    discovered_labels: Labels
    labels: Labels
    scrape_url: str
    health: str = "unknown"  # "up" | "down" | "unknown"
    last_error: str = ""
    last_scrape: float = 0.0  # unix seconds
    last_scrape_duration: float = 0.0
    series: int = 0
    interval: float = 0.0
    timeout: float = 0.0
