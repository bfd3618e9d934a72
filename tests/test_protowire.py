"""agent/protowire.py against the protobuf library: same bytes out, same numbers back."""

from __future__ import annotations

import struct

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import protowire as pw

_F = descriptor_pb2.FieldDescriptorProto


def _message_class():  # noqa: ANN202 - a generated class
    f = descriptor_pb2.FileDescriptorProto(name="wire_test.proto", package="wiretest", syntax="proto3")
    m = f.message_type.add(name="Scalars")
    for name, number, ftype in [
        ("u", 1, _F.TYPE_UINT64),
        ("i", 2, _F.TYPE_INT64),
        ("s", 3, _F.TYPE_SINT64),
        ("b", 4, _F.TYPE_BYTES),
        ("d", 5, _F.TYPE_DOUBLE),
        ("s32", 6, _F.TYPE_SINT32),
        ("f32", 7, _F.TYPE_FIXED32),
    ]:
        m.field.add(name=name, number=number, type=ftype, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("wiretest.Scalars"))


Scalars = _message_class()
uint64s = st.integers(min_value=0, max_value=2**64 - 1)
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
int32s = st.integers(min_value=-(2**31), max_value=2**31 - 1)
# Bias towards the table's edge and the one/two/three-byte boundaries.
edges = st.sampled_from([0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**63 - 1, 2**64 - 1])


@settings(max_examples=300, deadline=None)
@given(uint64s | edges)
def test_varint_is_the_librarys_uint64_and_reads_back(n):
    enc = pw.varint(n)
    assert b"\x08" + enc == Scalars(u=n).SerializeToString() or n == 0  # proto3 omits zero
    assert pw.read_varint(enc, 0) == (n, len(enc))
    assert pw.read_varint(b"\xff" + enc + b"tail", 1) == (n, 1 + len(enc))


@settings(max_examples=300, deadline=None)
@given(int64s)
def test_negative_int64_takes_ten_bytes_as_the_library_writes_it(n):
    enc = pw.varint(n)
    if n:
        assert b"\x10" + enc == Scalars(i=n).SerializeToString()
    if n < 0:
        assert len(enc) == 10
    raw, end = pw.read_varint(enc, 0)
    assert end == len(enc) and pw.int64(raw) == n


@settings(max_examples=300, deadline=None)
@given(int64s, int32s)
def test_zigzag_is_the_librarys_sint64_and_sint32(n, n32):
    assert pw.unzigzag(pw.zigzag(n)) == n
    assert pw.zigzag(n) >= 0
    if n:
        assert b"\x18" + pw.varint(pw.zigzag(n)) == Scalars(s=n).SerializeToString()
    if n32:
        assert b"\x30" + pw.varint(pw.zigzag(n32)) == Scalars(s32=n32).SerializeToString()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=20_000), st.floats(allow_nan=False))
def test_length_delimited_and_double_fields_match_the_library(data, d):
    d = d or 1.5  # proto3 leaves zero out; the encoders here never write a default either
    ours = (pw.field(b"\x22", data) if data else b"") + b"\x29" + pw.pack_double(d)
    assert ours == Scalars(b=data, d=d).SerializeToString()


@settings(max_examples=200, deadline=None)
@given(uint64s, int64s, int64s, st.binary(max_size=300), st.floats(allow_nan=True), int32s,
       st.integers(min_value=0, max_value=2**32 - 1))
def test_a_library_message_walks_with_read_varint_and_skip(u, i, s, b, d, s32, f32):
    body = Scalars(u=u, i=i, s=s, b=b, d=d, s32=s32, f32=f32).SerializeToString()
    seen = {}
    pos = 0
    while pos < len(body):
        key, pos = pw.read_varint(body, pos)
        number, wt = key >> 3, key & 7
        if number == 5:
            seen[5] = pw.unpack_double(body, pos)[0]
        elif wt == pw.VARINT:
            seen[number] = pw.read_varint(body, pos)[0]
        pos = pw.skip(body, pos, wt)
    assert pos == len(body)
    assert seen.get(1, 0) == u
    assert pw.int64(seen.get(2, 0)) == i
    assert pw.unzigzag(seen.get(3, 0)) == s
    assert pw.unzigzag(seen.get(6, 0)) == s32
    if 5 in seen:
        assert struct.pack("<d", seen[5]) == struct.pack("<d", d)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=128, max_value=2**64 - 1))
def test_a_cut_varint_is_a_decode_error_never_an_index_error(n):
    enc = pw.varint(n)
    for cut in range(len(enc)):
        with pytest.raises(pw.DecodeError, match="past the end"):
            pw.read_varint(enc[:cut], 0)


def test_an_eleven_byte_varint_and_an_unknown_wire_type_are_refused():
    with pytest.raises(pw.DecodeError, match="longer than 10 bytes"):
        pw.read_varint(b"\xff" * 10 + b"\x01", 0)
    assert pw.read_varint(b"\xff" * 9 + b"\x01", 0) == (2**64 - 1, 10)
    with pytest.raises(pw.DecodeError, match="wire type 3"):
        pw.skip(b"\x00", 0, 3)
    with pytest.raises(ValueError):  # callers that catch ValueError see it
        pw.read_varint(memoryview(b"\x80"), 0)
