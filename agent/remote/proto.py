"""Remote-Write 1.0 message classes from the protobuf library, for decoding and for tests.

There is no protoc here and the schema is small, so the descriptors are built
in code, field for field as in prometheus/prompb (types.proto, remote.proto).
The encoder on the hot path (codec.py) does not use these classes; tests use
them to check that what we write is what the library reads.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="shoal_prompb.proto", package="prometheus", syntax="proto3")

    def msg(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name

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
    msg(
        "TimeSeries",
        [
            ("labels", 1, _F.TYPE_MESSAGE, rep, ".prometheus.Label"),
            ("samples", 2, _F.TYPE_MESSAGE, rep, ".prometheus.Sample"),
            ("exemplars", 3, _F.TYPE_MESSAGE, rep, ".prometheus.Exemplar"),
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


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_file())

WriteRequest = message_factory.GetMessageClass(_pool.FindMessageTypeByName("prometheus.WriteRequest"))
TimeSeries = message_factory.GetMessageClass(_pool.FindMessageTypeByName("prometheus.TimeSeries"))
