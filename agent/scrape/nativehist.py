"""Native histograms as a scrape ingests them: wire buckets to ``storage.Histogram``, checks, limits.

The exposition carries integer buckets as deltas (each bucket relative to the
previous one) and float buckets as absolute counts; ``storage.Histogram`` holds
absolute counts, so ``build`` turns deltas into counts once, drops empty
buckets (Prometheus' ``Compact(0)``) and checks what Prometheus'
``Histogram.Validate`` checks, so a bad histogram fails the scrape with a
reason instead of reaching the WAL.

``limit`` applies ``native_histogram_min_bucket_factor`` (a maximum schema) and
then ``native_histogram_bucket_limit`` (halve the resolution until the bucket
count fits, or fail at schema -4), in the order Prometheus' appenders apply
them. Reducing resolution merges neighbouring buckets exactly as Prometheus'
``reduceResolution`` does, so the result is the same histogram Prometheus stores.
"""

from __future__ import annotations

import math

from agent.storage import Histogram

SCHEMA_MIN = -4
SCHEMA_MAX = 8
SCHEMA_RESERVED_MAX = 52  # schemas 9..52 are finer than we store: reduced to 8 on ingest
GAUGE_HINT = 3

Spans = tuple[tuple[int, int], ...]


class HistogramError(ValueError):
    """A native histogram that cannot be stored (or does not fit the bucket limit)."""


def pick_schema(bucket_factor: float) -> int:
    """The largest schema whose bucket growth factor is at least ``bucket_factor`` (Prometheus' pickSchema)."""
    if bucket_factor <= 1:
        bucket_factor = 1.00271
    floor = math.floor(-math.log2(math.log2(bucket_factor)))
    return max(SCHEMA_MIN, min(SCHEMA_MAX, floor))


def _absolute(
    spans: list[tuple[int, int]], buckets: list, deltas: bool, side: str
) -> tuple[Spans, tuple]:
    """Absolute counts with empty buckets and empty spans removed; checks spans against buckets."""
    need = 0
    for i, (off, length) in enumerate(spans):
        if i and off < 0:
            raise HistogramError(f"{side} side: span number {i + 1} with offset {off}")
        need += length
    if need != len(buckets):
        raise HistogramError(
            f"{side} side: spans need {need} buckets, have {len(buckets)} buckets"
        )
    out_spans: list[list[int]] = []
    out: list = []
    idx = 0
    count = 0
    last = None  # bucket index of the last kept bucket
    k = 0
    for s, (off, length) in enumerate(spans):
        idx = off if s == 0 else idx + off
        for _ in range(length):
            c = buckets[k]
            if deltas:
                count += c
                c = count
            if c < 0:
                raise HistogramError(f"{side} side: bucket number {k + 1} has observation count of {c}")
            if c:
                if last is not None and idx == last + 1:
                    out_spans[-1][1] += 1
                else:
                    gap = idx if last is None else idx - last - 1
                    out_spans.append([gap, 1])
                out.append(c)
                last = idx
            k += 1
            idx += 1
    return tuple((a, b) for a, b in out_spans), tuple(out)


def build(
    *,
    count_int: int,
    count_float: float,
    total: float,
    schema: int,
    zero_threshold: float,
    zero_int: int,
    zero_float: float,
    pos_spans: list[tuple[int, int]],
    pos_deltas: list[int],
    pos_counts: list[float],
    neg_spans: list[tuple[int, int]],
    neg_deltas: list[int],
    neg_counts: list[float],
    gauge: bool,
) -> Histogram:
    """A ``storage.Histogram`` from the fields of a protobuf Histogram message (raises HistogramError).

    As in Prometheus, a positive float count or float zero count makes it a
    float histogram (absolute ``*_count`` buckets); otherwise an integer one
    (``*_delta`` buckets).
    """
    is_float = count_float > 0 or zero_float > 0
    if not (SCHEMA_MIN <= schema <= SCHEMA_RESERVED_MAX):
        raise HistogramError(f"unsupported native histogram schema {schema}")
    if zero_threshold < 0 or zero_threshold != zero_threshold:
        raise HistogramError(f"invalid zero threshold {zero_threshold}")
    if is_float:
        ps, pc = _absolute(pos_spans, pos_counts, False, "positive")
        ns, nc = _absolute(neg_spans, neg_counts, False, "negative")
        count, zero = count_float, zero_float
    else:
        ps, pc = _absolute(pos_spans, pos_deltas, True, "positive")
        ns, nc = _absolute(neg_spans, neg_deltas, True, "negative")
        count, zero = count_int, zero_int
        found = sum(pc) + sum(nc) + zero
        if total != total:
            if found > count:
                raise HistogramError(
                    f"{found} observations found in buckets, but the Count field is {count}: "
                    "histogram's observation count should be at least the number of "
                    "observations found in the buckets"
                )
        elif found != count:
            raise HistogramError(
                f"{found} observations found in buckets, but the Count field is {count}: "
                "histogram's observation count should equal the number of observations "
                "found in the buckets (in absence of NaN)"
            )
    h = Histogram(
        count=float(count) if is_float else count,
        sum=total,
        schema=schema,
        zero_threshold=zero_threshold,
        zero_count=zero,
        positive_spans=ps,
        positive_counts=pc,
        negative_spans=ns,
        negative_counts=nc,
        counter_reset_hint=GAUGE_HINT if gauge else 0,
        is_float=is_float,
    )
    if schema > SCHEMA_MAX:
        h = reduce_resolution(h, SCHEMA_MAX)
    return h


def _reduce(spans: Spans, counts: tuple, origin: int, target: int) -> tuple[Spans, tuple]:
    """Merge buckets into the coarser schema: bucket i goes to ((i - 1) >> delta) + 1."""
    shift = origin - target
    out_spans: list[list[int]] = []
    out: list = []
    idx = 0
    k = 0
    last = 0
    for s, (off, length) in enumerate(spans):
        idx = off if s == 0 else idx + off
        for _ in range(length):
            t = ((idx - 1) >> shift) + 1
            if not out_spans:
                out_spans.append([t, 1])
                out.append(counts[k])
            elif t == last:
                out[-1] += counts[k]
            elif t == last + 1:
                out_spans[-1][1] += 1
                out.append(counts[k])
            else:
                out_spans.append([t - last - 1, 1])
                out.append(counts[k])
            last = t
            idx += 1
            k += 1
    return tuple((a, b) for a, b in out_spans), tuple(out)


def reduce_resolution(h: Histogram, target: int) -> Histogram:
    """``h`` at the coarser ``target`` schema (Prometheus' ReduceResolution)."""
    ps, pc = _reduce(h.positive_spans, h.positive_counts, h.schema, target)
    ns, nc = _reduce(h.negative_spans, h.negative_counts, h.schema, target)
    return Histogram(
        count=h.count,
        sum=h.sum,
        schema=target,
        zero_threshold=h.zero_threshold,
        zero_count=h.zero_count,
        positive_spans=ps,
        positive_counts=pc,
        negative_spans=ns,
        negative_counts=nc,
        counter_reset_hint=h.counter_reset_hint,
        is_float=h.is_float,
        custom_values=h.custom_values,
    )


def limit(h: Histogram, max_schema: int, bucket_limit: int) -> Histogram:
    """Apply the maximum schema, then the bucket limit (raises HistogramError when it cannot fit)."""
    if h.schema > max_schema and h.schema >= SCHEMA_MIN:
        h = reduce_resolution(h, max_schema)
    if bucket_limit:
        while len(h.positive_counts) + len(h.negative_counts) > bucket_limit:
            if h.schema <= SCHEMA_MIN:
                raise HistogramError("histogram bucket limit exceeded")
            h = reduce_resolution(h, h.schema - 1)
    return h
