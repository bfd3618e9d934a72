"""The protobuf wire format by hand: the one varint, zigzag, tag and length helper of the agent.

Scrape (the protobuf exposition), the WAL (native histograms stored as their
remote-write message body) and remote write (requests built from cached
bytes) all read or write protobuf without message objects, because building
objects per sample costs far more than joining bytes. They share these
primitives so that there is one place that knows how a varint ends, how
negative numbers are spread over ten bytes and how sint fields fold their
sign. Field keys are written by callers as byte literals (``b"\\x0a"`` is
field 1, length-delimited): that is the cheapest form and reads as the wire.

Reading trusts nothing: a varint that runs past the end of the buffer or past
ten bytes raises ``DecodeError`` (a ``ValueError``), never ``IndexError``.
"""

from __future__ import annotations

import struct

VARINT, I64, LEN, I32 = 0, 1, 2, 5  # wire types

pack_double = struct.Struct("<d").pack
unpack_double = struct.Struct("<d").unpack_from


class DecodeError(ValueError):
    """Bytes that are not the protobuf wire format; the message says what was wrong."""


# Ready varints of 0 .. 16383 (every one- and two-byte varint): lengths, symbol
# indexes and bucket deltas are almost always below, and a list index is several
# times cheaper than the loop.
SMALL: list[bytes] = [bytes((i,)) if i < 0x80 else bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(1 << 14)]


def varint(n: int) -> bytes:
    """``n`` as a varint; negative numbers as their 64-bit two's complement (int64, enum)."""
    if 0 <= n < 16384:
        return SMALL[n]
    if n < 0:
        n += 1 << 64  # always ten bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def zigzag(n: int) -> int:
    """A signed 64-bit number folded for a sint32/sint64 field (0, -1, 1, -2 ... to 0, 1, 2, 3 ...)."""
    return (n << 1) ^ (n >> 63)


def unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def int64(n: int) -> int:
    """An int64 field read as an unsigned varint back to its signed value."""
    return n - (1 << 64) if n >= 1 << 63 else n


def field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: its key, the varint length, the bytes."""
    return tag + varint(len(data)) + data


def read_varint(buf: bytes | memoryview, i: int) -> tuple[int, int]:
    """The varint at ``buf[i]`` as ``(value, next position)``, unsigned (see ``int64``)."""
    try:
        b = buf[i]
        if b < 0x80:  # one byte: tags, most lengths
            return b, i + 1
        result = b & 0x7F
        shift = 7
        while True:
            i += 1
            b = buf[i]
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, i + 1
            shift += 7
            if shift > 63:
                raise DecodeError("varint longer than 10 bytes")
    except IndexError:
        raise DecodeError("varint runs past the end") from None


def skip(buf: bytes | memoryview, i: int, wire_type: int) -> int:
    """The position after a field's value whose key has been read; checks only varint ends."""
    if wire_type == VARINT:
        return read_varint(buf, i)[1]
    if wire_type == I64:
        return i + 8
    if wire_type == LEN:
        n, i = read_varint(buf, i)
        return i + n
    if wire_type == I32:
        return i + 4
    raise DecodeError(f"unsupported wire type {wire_type}")
