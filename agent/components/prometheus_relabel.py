"""``prometheus.relabel``: rewrite or drop series on their way to ``forward_to``; exports ``receiver``.

The receiver stays the same object for the component's lifetime, so a
reload that changes the rules does not re-evaluate the scrapers that forward
to it. Results are cached per input label set (the same tuple objects arrive
on every scrape), so the steady state costs one dict lookup per sample.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent import labels as L
from agent import relabel
from agent.components._common import RuleBlock, rules
from agent.labels import METRIC_NAME, AnyLabels
from agent.runtime.component import Component, Options
from agent.runtime.registry import register
from agent.storage import Appendable, Fanout, Metadata, SampleBatch
from agent.syntax.decode import attr, block

_MISS = object()


@dataclass
class Arguments:
    forward_to: list[Appendable] = attr(required=True)
    rule: list[RuleBlock] = block()
    max_cache_size: int = attr(default=100_000)

    def validate(self) -> None:
        if self.max_cache_size <= 0:
            raise ValueError(f"max_cache_size must be greater than 0 and is {self.max_cache_size}")


class Receiver:
    """Relabels each batch, then hands the kept samples to every ``forward_to`` receiver.

    Float samples, native histograms and exemplars of one series share one
    cache entry, so a histogram or an exemplar is relabeled exactly like the
    float samples of its series (Alloy's append, histogram and exemplar hooks
    all call the same cached relabel). Metadata is keyed by family name: it
    follows a family whose ``__name__`` the rules rewrote and is left out when
    every series of the family was dropped.
    """

    __slots__ = (
        "rules",
        "fanout",
        "cache",
        "max_cache",
        "processed",
        "written",
        "hits",
        "misses",
        "names",
        "_names_ver",
        "_md_in",
        "_md_ver",
        "_md_out",
        "__weakref__",
    )

    def __init__(self) -> None:
        self.rules: list[relabel.Rule] = []
        self.fanout = Fanout([])
        self.cache: dict[AnyLabels, bytes | None] = {}  # input -> output, encoded (None: dropped)
        self.max_cache = 100_000
        self.processed = 0
        self.written = 0
        self.hits = 0
        self.misses = 0
        # Input metric name -> the output names its series got (empty: all dropped),
        # learned on cache misses; what metadata relabeling is derived from.
        self.names: dict[str, set[str]] = {}
        self._names_ver = 0
        self._md_in: dict[str, Metadata] | None = None  # kept alive so identity is meaningful
        self._md_ver = -1
        self._md_out: dict[str, Metadata] = {}

    def configure(self, rs: list[relabel.Rule], forward_to: list[Appendable], max_cache: int) -> None:
        if rs != self.rules:
            self.cache = {}
            self.names = {}
            self._md_ver = -1
        self.rules = rs
        self.fanout = Fanout(list(forward_to))
        self.max_cache = max_cache

    def admission(self) -> float:
        """Back-pressure passes through: the share the receivers downstream ask for."""
        return self.fanout.admission()

    def _miss(self, given: AnyLabels) -> bytes | None:
        cache = self.cache
        labels = L.as_labels(given)  # a scrape hands on encoded label sets: decoded once per series
        new = relabel.process(labels, self.rules) or None
        if len(cache) >= self.max_cache:
            for k in list(itertools.islice(cache, max(1, self.max_cache // 10))):
                del cache[k]
        # Handed on encoded, as a scrape does: the WAL keys the series by this very object.
        cache[given] = None if new is None else L.encode(new)
        name = L.get(labels, METRIC_NAME)
        outs = self.names.get(name)
        if outs is None:
            outs = self.names[name] = set()
            self._names_ver += 1
        if new is not None:
            out_name = L.get(new, METRIC_NAME)
            if out_name not in outs:
                outs.add(out_name)
                self._names_ver += 1
        return cache[given]

    def append(self, batch: SampleBatch) -> None:
        n = len(batch.values)
        nh = len(batch.histograms)
        self.processed += n + nh
        if not self.rules:
            self.written += n + nh
            self.fanout.append(batch)
            return
        cache = self.cache
        out = SampleBatch()
        ol, ot, ov = out.labels, out.timestamps, out.values
        misses = 0
        for labels, ts, v in zip(batch.labels, batch.timestamps, batch.values, strict=True):
            new = cache.get(labels, _MISS)
            if new is _MISS:
                misses += 1
                new = self._miss(labels)
            if new is not None:
                ol.append(new)  # type: ignore[arg-type]
                ot.append(ts)
                ov.append(v)
        oh = out.histograms
        for labels, ts, h in batch.histograms:
            new = cache.get(labels, _MISS)
            if new is _MISS:
                misses += 1
                new = self._miss(labels)
            if new is not None:
                oh.append((new, ts, h))  # type: ignore[arg-type]
        oe = out.exemplars
        for labels, ts, v, elabels in batch.exemplars:
            new = cache.get(labels, _MISS)
            if new is _MISS:
                new = self._miss(labels)
            if new is not None:
                oe.append((new, ts, v, elabels))  # type: ignore[arg-type]
        if batch.metadata:
            out.metadata = self._metadata(batch.metadata)
        self.misses += misses
        self.hits += n + nh - misses
        self.written += len(ov) + len(oh)
        if ov or oh or oe or out.metadata:
            self.fanout.append(out)

    def _metadata(self, md: dict[str, Metadata]) -> dict[str, Metadata]:
        """The metadata under the families' output names; cached while ``md`` and ``names`` stay the same.

        A scrape loop hands on the same dict while a target's HELP/TYPE lines do
        not change, and ``names`` only grows on cache misses, so the steady state
        costs an identity check.
        """
        if md is self._md_in and self._md_ver == self._names_ver:
            return self._md_out
        names = self.names
        out: dict[str, Metadata] = {}
        for fam, m in md.items():
            seen = False
            for suffix in _SUFFIXES:
                outs = names.get(fam + suffix)
                if outs is None:
                    continue
                seen = True
                for o in outs:
                    base = o[: len(o) - len(suffix)] if suffix and o.endswith(suffix) else o
                    out.setdefault(base, m)
            if not seen:  # no series of it passed through yet: nothing says it was dropped
                out.setdefault(fam, m)
        self._md_in, self._md_ver, self._md_out = md, self._names_ver, out
        return out


# The series names a family's metadata covers (OpenMetrics and Prometheus suffixes).
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created", "_info", "_gcount", "_gsum")


@dataclass
class Exports:
    receiver: Appendable = attr(default_factory=Receiver)
    rules: list[Any] = attr(default=[])


class _Metrics(Collector):
    """Alloy's ``alloy_prometheus_relabel_*`` series, read from the receiver at scrape time.

    Registered in the component's own registry, which adds ``component_id``.
    """

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        r = self.receiver
        yield CounterMetricFamily(
            "alloy_prometheus_relabel_metrics_processed", "Total number of metrics processed.", value=r.processed
        )
        yield CounterMetricFamily(
            "alloy_prometheus_relabel_metrics_written", "Total number of metrics written.", value=r.written
        )
        yield CounterMetricFamily("alloy_prometheus_relabel_cache_hits", "Total number of cache hits.", value=r.hits)
        yield CounterMetricFamily(
            "alloy_prometheus_relabel_cache_misses", "Total number of cache misses.", value=r.misses
        )
        yield GaugeMetricFamily("alloy_prometheus_relabel_cache_size", "Total size of relabel cache.", value=len(r.cache))


@register("prometheus.relabel", Arguments, Exports)
class PrometheusRelabel(Component):
    def __init__(self, opts: Options, args: Arguments) -> None:
        super().__init__(opts, args)
        self.receiver = Receiver()
        opts.registry.register(_Metrics(self.receiver))
        self._configure(args)

    async def update(self, args: Arguments) -> None:
        self.args = args
        self._configure(args)

    def _configure(self, args: Arguments) -> None:
        rs = rules(args.rule)
        self.receiver.configure(rs, args.forward_to, args.max_cache_size)
        self.opts.set_exports(Exports(receiver=self.receiver, rules=rs))

    def debug_info(self) -> dict[str, Any]:
        r = self.receiver
        return {
            "metrics_processed": r.processed,
            "metrics_written": r.written,
            "cache_hits": r.hits,
            "cache_misses": r.misses,
            "cache_size": len(r.cache),
        }
