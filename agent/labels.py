"""Label sets, the identity of a series everywhere in the agent.

A label set is a plain tuple of ``(name, value)`` pairs sorted by name, with
``__name__`` among them. A tuple is hashable, cheap to compare, and needs no
class of its own; keeping it sorted makes equal sets equal tuples, so every
stage (scrape cache, relabel cache, WAL series table, remote encoder) can use
it directly as a dictionary key. Stages that see the same series on every
scrape keep the tuple they made the first time and hand on that same object,
so downstream look-ups hash an object whose strings already have cached hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Labels = tuple[tuple[str, str], ...]

METRIC_NAME = "__name__"
ADDRESS = "__address__"
SCHEME = "__scheme__"
METRICS_PATH = "__metrics_path__"
SCRAPE_INTERVAL = "__scrape_interval__"
SCRAPE_TIMEOUT = "__scrape_timeout__"
PARAM_PREFIX = "__param_"
META_PREFIX = "__meta_"
RESERVED_PREFIX = "__"

EMPTY: Labels = ()


def from_pairs(pairs: Iterable[tuple[str, str]]) -> Labels:
    """Build a label set, dropping empty values as Prometheus does."""
    return tuple(sorted((n, v) for n, v in pairs if v != ""))


def from_dict(d: Mapping[str, str]) -> Labels:
    return from_pairs(d.items())


def to_dict(labels: Labels) -> dict[str, str]:
    return dict(labels)


def get(labels: Labels, name: str, default: str = "") -> str:
    for n, v in labels:
        if n == name:
            return v
    return default


def metric_name(labels: Labels) -> str:
    return get(labels, METRIC_NAME)


def without_reserved(labels: Labels) -> Labels:
    """Drop the ``__``-prefixed labels that only live during relabeling."""
    return tuple(p for p in labels if not p[0].startswith(RESERVED_PREFIX) or p[0] == METRIC_NAME)


def to_string(labels: Labels) -> str:
    """Prometheus' own rendering: ``name{a="1", b="2"}``."""
    name = get(labels, METRIC_NAME)
    rest = ", ".join(f'{n}="{_escape(v)}"' for n, v in labels if n != METRIC_NAME)
    return f"{name}{{{rest}}}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
