"""client_model's metrics.proto as protobuf-library classes, for tests, tools and benchmarks.

There is no protoc here, so the descriptor is built in code, field for field as
in prometheus/client_model ``io/prometheus/client/metrics.proto`` (proto2, so
repeated numbers are unpacked on the wire, as client_golang writes them; the
``packed`` flag makes a variant that packs them, as the proto3 copy does).
``Timestamp`` stands in for google.protobuf.Timestamp (same fields, same wire).
The scrape hot path (protoparse) does not use these classes; tests use them to
build real payloads and to check the decoder against the library.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from agent.protowire import read_varint, varint

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_D, _U64, _I64, _S32, _S64, _U32, _STR, _MSG, _ENUM, _I32 = (
    _F.TYPE_DOUBLE,
    _F.TYPE_UINT64,
    _F.TYPE_INT64,
    _F.TYPE_SINT32,
    _F.TYPE_SINT64,
    _F.TYPE_UINT32,
    _F.TYPE_STRING,
    _F.TYPE_MESSAGE,
    _F.TYPE_ENUM,
    _F.TYPE_INT32,
)


def _file(package: str, packed: bool) -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '_')}.proto", package=package, syntax="proto2"
    )
    p = f".{package}."

    def msg(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = p + type_name
            if packed and label == _REP and ftype in (_S64, _D):
                fd.options.packed = True

    mt = f.enum_type.add(name="MetricType")
    for i, n in enumerate(["COUNTER", "GAUGE", "SUMMARY", "UNTYPED", "HISTOGRAM", "GAUGE_HISTOGRAM"]):
        mt.value.add(name=n, number=i)
    msg("Timestamp", [("seconds", 1, _I64, _OPT, ""), ("nanos", 2, _I32, _OPT, "")])
    msg("LabelPair", [("name", 1, _STR, _OPT, ""), ("value", 2, _STR, _OPT, "")])
    msg("Gauge", [("value", 1, _D, _OPT, "")])
    msg(
        "Exemplar",
        [
            ("label", 1, _MSG, _REP, "LabelPair"),
            ("value", 2, _D, _OPT, ""),
            ("timestamp", 3, _MSG, _OPT, "Timestamp"),
        ],
    )
    msg(
        "Counter",
        [
            ("value", 1, _D, _OPT, ""),
            ("exemplar", 2, _MSG, _OPT, "Exemplar"),
            ("created_timestamp", 3, _MSG, _OPT, "Timestamp"),
        ],
    )
    msg("Quantile", [("quantile", 1, _D, _OPT, ""), ("value", 2, _D, _OPT, "")])
    msg(
        "Summary",
        [
            ("sample_count", 1, _U64, _OPT, ""),
            ("sample_sum", 2, _D, _OPT, ""),
            ("quantile", 3, _MSG, _REP, "Quantile"),
            ("created_timestamp", 4, _MSG, _OPT, "Timestamp"),
        ],
    )
    msg("Untyped", [("value", 1, _D, _OPT, "")])
    msg(
        "Bucket",
        [
            ("cumulative_count", 1, _U64, _OPT, ""),
            ("cumulative_count_float", 4, _D, _OPT, ""),
            ("upper_bound", 2, _D, _OPT, ""),
            ("exemplar", 3, _MSG, _OPT, "Exemplar"),
        ],
    )
    msg("BucketSpan", [("offset", 1, _S32, _OPT, ""), ("length", 2, _U32, _OPT, "")])
    msg(
        "Histogram",
        [
            ("sample_count", 1, _U64, _OPT, ""),
            ("sample_count_float", 4, _D, _OPT, ""),
            ("sample_sum", 2, _D, _OPT, ""),
            ("bucket", 3, _MSG, _REP, "Bucket"),
            ("created_timestamp", 15, _MSG, _OPT, "Timestamp"),
            ("schema", 5, _S32, _OPT, ""),
            ("zero_threshold", 6, _D, _OPT, ""),
            ("zero_count", 7, _U64, _OPT, ""),
            ("zero_count_float", 8, _D, _OPT, ""),
            ("negative_span", 9, _MSG, _REP, "BucketSpan"),
            ("negative_delta", 10, _S64, _REP, ""),
            ("negative_count", 11, _D, _REP, ""),
            ("positive_span", 12, _MSG, _REP, "BucketSpan"),
            ("positive_delta", 13, _S64, _REP, ""),
            ("positive_count", 14, _D, _REP, ""),
            ("exemplars", 16, _MSG, _REP, "Exemplar"),
        ],
    )
    msg(
        "Metric",
        [
            ("label", 1, _MSG, _REP, "LabelPair"),
            ("gauge", 2, _MSG, _OPT, "Gauge"),
            ("counter", 3, _MSG, _OPT, "Counter"),
            ("summary", 4, _MSG, _OPT, "Summary"),
            ("untyped", 5, _MSG, _OPT, "Untyped"),
            ("histogram", 7, _MSG, _OPT, "Histogram"),
            ("timestamp_ms", 6, _I64, _OPT, ""),
        ],
    )
    m = f.message_type.add(name="MetricFamily")
    for fname, number, ftype, label, type_name in [
        ("name", 1, _STR, _OPT, ""),
        ("help", 2, _STR, _OPT, ""),
        ("type", 3, _ENUM, _OPT, "MetricType"),
        ("metric", 4, _MSG, _REP, "Metric"),
        ("unit", 5, _STR, _OPT, ""),
    ]:
        fd = m.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            fd.type_name = p + type_name
    return f


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_file("io.prometheus.client", packed=False))
_pool.Add(_file("shoal.packed.client", packed=True))

MetricFamily: Any = message_factory.GetMessageClass(
    _pool.FindMessageTypeByName("io.prometheus.client.MetricFamily")
)
PackedMetricFamily: Any = message_factory.GetMessageClass(
    _pool.FindMessageTypeByName("shoal.packed.client.MetricFamily")
)
COUNTER, GAUGE, SUMMARY, UNTYPED, HISTOGRAM, GAUGE_HISTOGRAM = range(6)
CONTENT_TYPE = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)


def encode_delimited(families: Iterable[Any]) -> bytes:
    """The delimited exposition body: each message's varint length, then the message."""
    out = []
    for mf in families:
        data = mf.SerializeToString()
        out.append(varint(len(data)))
        out.append(data)
    return b"".join(out)


def decode_delimited(body: bytes) -> list[Any]:
    """The MetricFamily messages of a delimited body (the library's reading, for cross-checks)."""
    out = []
    pos = 0
    while pos < len(body):
        n, pos = read_varint(body, pos)
        out.append(MetricFamily.FromString(body[pos : pos + n]))
        pos += n
    return out
