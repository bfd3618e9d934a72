from __future__ import annotations

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.remote import codec
from agent.storage import STALE_NAN, is_stale_nan
from tests.protobuf.prompb import WriteRequest, decode_write_request, decompress

label_text = st.text(min_size=1, max_size=20)
labelsets = st.dictionaries(label_text, label_text, min_size=1, max_size=6).map(
    lambda d: tuple(sorted(d.items()))
)
timestamps = st.one_of(
    st.integers(min_value=1_600_000_000_000, max_value=1_900_000_000_000),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
values = st.floats(allow_nan=False) | st.just(STALE_NAN)


def _encode(samples):
    out = bytearray()
    cache: dict = {}
    for labels, ts, v in samples:
        lb = cache.setdefault(labels, codec.encode_labels(labels))
        tsf = codec.ts_field(ts)
        if tsf is None:
            out += codec.encode_timeseries(lb, ts, v)
        else:
            out += codec.sample_prefix(lb)
            out += codec.pack_double(v)
            out += tsf
    return codec.compress(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(labelsets, timestamps, values), min_size=1, max_size=30))
def test_protobuf_library_reads_back_what_we_encode(samples):
    body = _encode(samples)
    got = decode_write_request(body)
    assert len(got) == len(samples)
    for (labels, ts, v), (glabels, gsamples) in zip(samples, got, strict=True):
        assert glabels == labels
        assert len(gsamples) == 1 and gsamples[0][0] == ts
        gv = gsamples[0][1]
        assert struct.pack("<d", gv) == struct.pack("<d", v)


def test_stale_marker_bits_survive_the_wire():
    body = _encode([((("__name__", "up"),), 1_700_000_000_000, STALE_NAN)])
    req = WriteRequest()
    req.ParseFromString(decompress(body))
    v = req.timeseries[0].samples[0].value
    assert math.isnan(v) and is_stale_nan(v)


def test_fast_path_equals_general_path():
    lb = codec.encode_labels((("__name__", "x" * 300), ("a", "b")))  # multi-byte length varints
    for ts in (2**35, 1_700_000_000_000, 2**42 - 1):
        fast = codec.sample_prefix(lb) + codec.pack_double(0.25) + codec.ts_field(ts)
        assert fast == codec.encode_timeseries(lb, ts, 0.25)
    assert codec.ts_field(2**42) is None and codec.ts_field(5) is None
