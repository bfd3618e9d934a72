"""A batch to an uncompressed request body, in Remote-Write 1.0 or 2.0, when it is sent.

Batches are encoded at send time, not while dispatching: a batch waiting to
be sent holds its samples as references into the WAL record's columns
(~30 B/sample), not as ~150 B/sample of encoded body. The work is the same,
done once per attempt (and again after a fallback from 2.0 to 1.0, or when
a retry dropped samples past ``sample_age_limit``).
"""

from __future__ import annotations

from agent.remote.codec import (
    encode_exemplar_timeseries,
    encode_histogram_timeseries,
    encode_timeseries,
    pack_double,
    ts_field,
)
from agent.remote.codec_v2 import V1, SeriesV2, encode_v2
from agent.remote.fastpath import encode_part
from agent.remote.series import SeriesTable
from agent.remote.shards import Batch


def encode_batch(series: SeriesTable, batch: Batch, proto: str) -> bytes:
    """The body of ``batch`` in ``proto`` (V1 or V2)."""
    return encode_v1(series, batch) if proto == V1 else encode_v2_batch(series, batch)


def encode_v1(series: SeriesTable, batch: Batch) -> bytes:
    out = bytearray()
    prefixes = series.prefix
    for part in batch.parts:
        if encode_part(out, part, prefixes):
            continue
        refs, ts, vs, ix, _ = part
        rs = [refs[i] for i in ix]
        # several timestamps, or series the dispatch did not resolve: one at a time
        for i, r, p in zip(ix, rs, prefixes.many(rs), strict=True):
            tf = ts_field(ts[i])
            p = p or series.resolve_prefix(r)
            if tf and p:
                out += p
                out += pack_double(vs[i])
                out += tf
            elif p:
                out += encode_timeseries(series.label_bytes(r), ts[i], vs[i])
            # else: the series left the WAL's tables while the batch waited; no labels to send
    for r, t, h in batch.hparts:
        out += encode_histogram_timeseries(series.label_bytes(r), t, h)
    for r, t, v, lb in batch.eparts:
        out += encode_exemplar_timeseries(series.label_bytes(r), t, v, lb)
    return bytes(out)


def encode_v2_batch(series: SeriesTable, batch: Batch) -> bytes:
    sv: list[SeriesV2] = []
    tss: list[int] = []
    vals: list[float] = []
    get = series.series_v2
    for refs, ts, vs, ix, _ in batch.parts:
        for i in ix:
            sv.append(get(refs[i]))
            tss.append(ts[i])
            vals.append(vs[i])
    hists = [(get(r), t, h) for r, t, h in batch.hparts]
    exs = [(get(r), t, v, lb) for r, t, v, lb in batch.eparts]
    return encode_v2(sv, tss, vals, histograms=hists, exemplars=exs)
