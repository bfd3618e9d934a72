"""Remote-Write 1.0 and 2.0 message classes from the protobuf library, for decoding and for tests.

There is no protoc here and the schema is small, so the descriptors are built
in code, field for field as in prometheus/prompb (types.proto, remote.proto)
and prompb/io/prometheus/write/v2/types.proto (the 2.0 ``Request``, with
``created_timestamp`` as TimeSeries field 6, as in the spec's rc.3; histograms
are left out: Shoal does not write native histograms yet).
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


def _file_v2() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="shoal_writev2.proto", package="io.prometheus.write.v2",
                                           syntax="proto3")
    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    p = ".io.prometheus.write.v2."

    def msg(name: str, fields: list[tuple[str, int, int, int, str]]) -> descriptor_pb2.DescriptorProto:
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name
        return m

    msg("Sample", [("value", 1, _F.TYPE_DOUBLE, opt, ""), ("timestamp", 2, _F.TYPE_INT64, opt, "")])
    msg("Exemplar", [("labels_refs", 1, _F.TYPE_UINT32, rep, ""), ("value", 2, _F.TYPE_DOUBLE, opt, ""),
                     ("timestamp", 3, _F.TYPE_INT64, opt, "")])
    md = msg("Metadata", [("type", 1, _F.TYPE_ENUM, opt, p + "Metadata.MetricType"),
                          ("help_ref", 3, _F.TYPE_UINT32, opt, ""), ("unit_ref", 4, _F.TYPE_UINT32, opt, "")])
    et = md.enum_type.add(name="MetricType")
    for i, n in enumerate(["UNSPECIFIED", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO",
                           "STATESET"]):
        et.value.add(name=f"METRIC_TYPE_{n}", number=i)
    msg("TimeSeries", [
        ("labels_refs", 1, _F.TYPE_UINT32, rep, ""),
        ("samples", 2, _F.TYPE_MESSAGE, rep, p + "Sample"),
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
RequestV2 = message_factory.GetMessageClass(_pool.FindMessageTypeByName("io.prometheus.write.v2.Request"))
