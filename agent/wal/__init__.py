"""The write-ahead log: segments of checksummed, snappy-compressed records.

A library with no knowledge of components: ``WAL`` writes and replays,
``Cursor`` follows, ``read_segment`` / ``read_all`` read. docs/wal.md has the
format and the fsync policy.
"""

from agent.wal.reader import Cursor, Record, read_all, read_segment
from agent.wal.writer import WAL, ReplayReport, WALWriteError

__all__ = ["WAL", "Cursor", "Record", "ReplayReport", "WALWriteError", "read_all", "read_segment"]
