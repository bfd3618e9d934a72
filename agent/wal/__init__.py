"""The write-ahead log: segments of checksummed, snappy-compressed records.

A library with no knowledge of components or of its readers: ``WAL`` writes
and replays, ``Cursor`` follows, ``Watcher`` follows for one reader and hands
it decoded records through the ``WriteTo`` protocol, ``read_segment`` /
``read_all`` read. docs/wal.md has the format and the fsync policy.
"""

from agent.wal.reader import Cursor, Record, read_all, read_segment
from agent.wal.watcher import Watcher, WriteTo
from agent.wal.writer import WAL, ReplayReport, WALWriteError

__all__ = [
    "WAL", "Cursor", "Record", "ReplayReport", "WALWriteError", "Watcher", "WriteTo", "read_all", "read_segment",
]
