"""Remote-Write 1.0 and 2.0 message classes from the protobuf library, and decoders built on them.

There is no protoc here and the schema is small, so the descriptors are built
in code, field for field as in prometheus/prompb (types.proto, remote.proto)
and prompb/io/prometheus/write/v2/types.proto (the 2.0 ``Request``, with
``created_timestamp`` as TimeSeries field 6, as in the spec's rc.3), native
histograms (``Histogram``, ``BucketSpan``) in both.
The agent's encoders (agent/remote/codec.py, codec_v2.py) do not use these
classes; tests and the test receiver decode our requests with them, so what
we write is checked against what the library reads.
"""

from __future__ import annotations

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from agent.labels import Labels

_F = descriptor_pb2.FieldDescriptorProto


def _histogram(f: descriptor_pb2.FileDescriptorProto, prefix: str) -> None:
    """``BucketSpan`` and ``Histogram``, the same in 1.0 (prometheus) and 2.0 (io.prometheus.write.v2)."""
    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    span = f.message_type.add(name="BucketSpan")
    span.field.add(name="offset", number=1, type=_F.TYPE_SINT32, label=opt)
    span.field.add(name="length", number=2, type=_F.TYPE_UINT32, label=opt)
    h = f.message_type.add(name="Histogram")
    h.oneof_decl.add(name="count")
    h.oneof_decl.add(name="zero_count")
    fields = [
        ("count_int", 1, _F.TYPE_UINT64, opt, "", 0),
        ("count_float", 2, _F.TYPE_DOUBLE, opt, "", 0),
        ("sum", 3, _F.TYPE_DOUBLE, opt, "", None),
        ("schema", 4, _F.TYPE_SINT32, opt, "", None),
        ("zero_threshold", 5, _F.TYPE_DOUBLE, opt, "", None),
        ("zero_count_int", 6, _F.TYPE_UINT64, opt, "", 1),
        ("zero_count_float", 7, _F.TYPE_DOUBLE, opt, "", 1),
        ("negative_spans", 8, _F.TYPE_MESSAGE, rep, prefix + "BucketSpan", None),
        ("negative_deltas", 9, _F.TYPE_SINT64, rep, "", None),
        ("negative_counts", 10, _F.TYPE_DOUBLE, rep, "", None),
        ("positive_spans", 11, _F.TYPE_MESSAGE, rep, prefix + "BucketSpan", None),
        ("positive_deltas", 12, _F.TYPE_SINT64, rep, "", None),
        ("positive_counts", 13, _F.TYPE_DOUBLE, rep, "", None),
        ("reset_hint", 14, _F.TYPE_ENUM, opt, prefix + "Histogram.ResetHint", None),
        ("timestamp", 15, _F.TYPE_INT64, opt, "", None),
        ("custom_values", 16, _F.TYPE_DOUBLE, rep, "", None),
    ]
    for name, number, ftype, label, type_name, oneof in fields:
        fd = h.field.add(name=name, number=number, type=ftype, label=label)
        if type_name:
            fd.type_name = type_name
        if oneof is not None:
            fd.oneof_index = oneof
    hint = h.enum_type.add(name="ResetHint")
    for i, n in enumerate(["UNKNOWN", "YES", "NO", "GAUGE"]):
        hint.value.add(name=n, number=i)


def _message(f: descriptor_pb2.FileDescriptorProto, name: str,
             fields: list[tuple[str, int, int, int, str]]) -> descriptor_pb2.DescriptorProto:
    """Add message ``name`` to ``f``: fields as (name, number, type, label, message or enum type)."""
    m = f.message_type.add(name=name)
    for fname, number, ftype, label, type_name in fields:
        fd = m.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            fd.type_name = type_name
    return m


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="shoal_prompb.proto", package="prometheus", syntax="proto3")

    def msg(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        _message(f, name, fields)

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    msg("Label", [("name", 1, _F.TYPE_STRING, opt, ""), ("value", 2, _F.TYPE_STRING, opt, "")])
    msg("Sample", [("value", 1, _F.TYPE_DOUBLE, opt, ""), ("timestamp", 2, _F.TYPE_INT64, opt, "")])
    msg(
        "Exemplar",
        [
            ("labels", 1, _F.TYPE_MESSAGE, rep, ".prometheus.Label"),
            ("value", 2, _F.TYPE_DOUBLE, opt, ""),
            ("timestamp", 3, _F.TYPE_INT64, opt, ""),
        ],
    )
    _histogram(f, ".prometheus.")
    msg(
        "TimeSeries",
        [
            ("labels", 1, _F.TYPE_MESSAGE, rep, ".prometheus.Label"),
            ("samples", 2, _F.TYPE_MESSAGE, rep, ".prometheus.Sample"),
            ("exemplars", 3, _F.TYPE_MESSAGE, rep, ".prometheus.Exemplar"),
            ("histograms", 4, _F.TYPE_MESSAGE, rep, ".prometheus.Histogram"),
        ],
    )
    mt = f.enum_type.add(name="MetricType")
    for i, n in enumerate(
        ["UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO", "STATESET"]
    ):
        mt.value.add(name=n, number=i)
    msg(
        "MetricMetadata",
        [
            ("type", 1, _F.TYPE_ENUM, opt, ".prometheus.MetricType"),
            ("metric_family_name", 2, _F.TYPE_STRING, opt, ""),
            ("help", 4, _F.TYPE_STRING, opt, ""),
            ("unit", 5, _F.TYPE_STRING, opt, ""),
        ],
    )
    msg(
        "WriteRequest",
        [
            ("timeseries", 1, _F.TYPE_MESSAGE, rep, ".prometheus.TimeSeries"),
            ("metadata", 3, _F.TYPE_MESSAGE, rep, ".prometheus.MetricMetadata"),
        ],
    )
    return f


def _file_v2() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="shoal_writev2.proto", package="io.prometheus.write.v2",
                                           syntax="proto3")
    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    p = ".io.prometheus.write.v2."

    def msg(name: str, fields: list[tuple[str, int, int, int, str]]) -> descriptor_pb2.DescriptorProto:
        return _message(f, name, fields)

    msg("Sample", [("value", 1, _F.TYPE_DOUBLE, opt, ""), ("timestamp", 2, _F.TYPE_INT64, opt, "")])
    msg("Exemplar", [("labels_refs", 1, _F.TYPE_UINT32, rep, ""), ("value", 2, _F.TYPE_DOUBLE, opt, ""),
                     ("timestamp", 3, _F.TYPE_INT64, opt, "")])
    md = msg("Metadata", [("type", 1, _F.TYPE_ENUM, opt, p + "Metadata.MetricType"),
                          ("help_ref", 3, _F.TYPE_UINT32, opt, ""), ("unit_ref", 4, _F.TYPE_UINT32, opt, "")])
    et = md.enum_type.add(name="MetricType")
    for i, n in enumerate(["UNSPECIFIED", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO",
                           "STATESET"]):
        et.value.add(name=f"METRIC_TYPE_{n}", number=i)
    _histogram(f, p)
    msg("TimeSeries", [
        ("labels_refs", 1, _F.TYPE_UINT32, rep, ""),
        ("samples", 2, _F.TYPE_MESSAGE, rep, p + "Sample"),
        ("histograms", 3, _F.TYPE_MESSAGE, rep, p + "Histogram"),
        ("exemplars", 4, _F.TYPE_MESSAGE, rep, p + "Exemplar"),
        ("metadata", 5, _F.TYPE_MESSAGE, opt, p + "Metadata"),
        ("created_timestamp", 6, _F.TYPE_INT64, opt, ""),
    ])
    msg("Request", [("symbols", 4, _F.TYPE_STRING, rep, ""), ("timeseries", 5, _F.TYPE_MESSAGE, rep, p + "TimeSeries")])
    return f


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_file())
_pool.Add(_file_v2())

WriteRequest = message_factory.GetMessageClass(_pool.FindMessageTypeByName("prometheus.WriteRequest"))
TimeSeries = message_factory.GetMessageClass(_pool.FindMessageTypeByName("prometheus.TimeSeries"))
MetricMetadata = message_factory.GetMessageClass(_pool.FindMessageTypeByName("prometheus.MetricMetadata"))
HistogramV1 = message_factory.GetMessageClass(_pool.FindMessageTypeByName("prometheus.Histogram"))
RequestV2 = message_factory.GetMessageClass(_pool.FindMessageTypeByName("io.prometheus.write.v2.Request"))


def decompress(body: bytes) -> bytes:
    """A request body as sent (raw snappy, agent/remote/codec.py ``compress``) back to protobuf."""
    return bytes(cramjam.snappy.decompress_raw(body))


def decode_write_request(body: bytes, compressed: bool = True) -> list[tuple[Labels, list[tuple[int, float]]]]:
    """A 1.0 request as ``[(labels, [(ts, value), ...]), ...]`` in wire order."""
    req = WriteRequest()
    req.ParseFromString(decompress(body) if compressed else body)
    return [
        (tuple((lb.name, lb.value) for lb in ts.labels), [(s.timestamp, s.value) for s in ts.samples])
        for ts in req.timeseries
    ]


def decode_v2(body: bytes, compressed: bool = True) -> list[tuple[Labels, list[tuple[int, float]], dict, int]]:
    """A 2.0 request as ``[(labels, samples, metadata, created), ...]``, symbols resolved."""
    req = RequestV2()
    req.ParseFromString(decompress(body) if compressed else body)
    sy = list(req.symbols)
    out = []
    for ts in req.timeseries:
        r = list(ts.labels_refs)
        labels = tuple((sy[r[i]], sy[r[i + 1]]) for i in range(0, len(r), 2))
        md = {}
        if ts.HasField("metadata"):
            md = {"type": ts.metadata.type, "help": sy[ts.metadata.help_ref], "unit": sy[ts.metadata.unit_ref]}
        out.append((labels, [(s.timestamp, s.value) for s in ts.samples], md, ts.created_timestamp))
    return out
