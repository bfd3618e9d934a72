"""An endpoint's series table keys its caches by the WAL's own ref objects, and sends the same bytes.

A ref read back from a WAL record is a fresh int; keyed by it, every cache
entry would hold an int of its own next to the WAL's. The table asks the WAL
for its object (``WAL.ref_of``) and falls back to the ref it was given for a
series the WAL no longer has in its current generation.
"""

from __future__ import annotations

from pathlib import Path

from agent.remote.codec import encode_labels, sample_prefix
from agent.remote.series import SeriesTable
from agent.wal import WAL

A = (("__name__", "up"), ("instance", "a:1"), ("job", "j"))
B = (("__name__", "up"), ("instance", "b:1"), ("job", "j"))


def open_wal(tmp_path: Path) -> WAL:
    wal = WAL(tmp_path / "wal")
    wal.open()
    # Past the refs CPython keeps one shared int object for (up to 256).
    filler = [(("__name__", "filler"), ("n", str(i))) for i in range(300)]
    wal.append([*filler, A, B], [1_700_000_000_000] * 302, [1.0] * 302)
    return wal


def fresh(n: int) -> int:
    return int(str(n))  # an equal int that is a different object, as a record's column gives


def test_tables_hold_the_wals_ref_objects(tmp_path: Path) -> None:
    wal = open_wal(tmp_path)
    own = wal.ref_of(A)
    assert own is not None
    t = SeriesTable(wal.labels_by_ref, {"cluster": "c"}, None, wal.ref_of)
    r = fresh(own)
    assert r is not own
    sent = (A[0], ("cluster", "c"), *A[1:])  # external labels joined in name order
    assert t.resolve_prefix(r) == sample_prefix(encode_labels(sent))
    assert t.resolve_bytes(fresh(own)) == encode_labels(sent)
    t.series_v2(fresh(own))
    for table in (t.prefix, t.lbytes, t.v2):
        (key,) = table
        assert key is own
    wal.close()


def test_retired_series_resolve_under_the_ref_given(tmp_path: Path) -> None:
    wal = open_wal(tmp_path)
    ref_b = wal.ref_of(B)
    assert ref_b is not None
    wal.new_generation()  # nothing appended since: B (and A) are no longer current
    assert wal.ref_of(B) is None
    t = SeriesTable(wal.labels_by_ref, {}, None, wal.ref_of)
    r = fresh(ref_b)
    assert t.resolve_prefix(r) == sample_prefix(encode_labels(B))
    assert t.prefix[ref_b] == sample_prefix(encode_labels(B))
    assert t.resolve_prefix(fresh(ref_b) + 100) == b""  # unknown to the WAL
    wal.close()


def test_an_endpoint_sending_the_wals_labels_keeps_no_prefix_of_its_own(tmp_path: Path) -> None:
    """Without external labels or write relabeling the prefixes are the WAL's encoded label sets,
    read from its table: the very objects, unknown refs as b"", and nothing held per series."""
    wal = open_wal(tmp_path)
    own_a, own_b = wal.ref_of(A), wal.ref_of(B)
    assert own_a is not None and own_b is not None
    t = SeriesTable(wal.labels_by_ref, {}, None, wal.ref_of)
    assert t.resolve_prefix(fresh(own_a)) is wal.labels_by_ref[own_a]
    assert t.resolve_prefix(fresh(own_a)) == sample_prefix(encode_labels(A))
    assert t.resolve_prefix(own_b + 1000) == b""
    assert t.prefix.many([own_b, own_b + 1000, own_a]) == [t.prefix[own_b], b"", t.prefix[own_a]]
    assert t.resolve_bytes(own_b) == encode_labels(B)
    assert not t.prefix.keys()
    wal.close()


def test_an_empty_label_set_in_the_wal_is_not_sent(tmp_path: Path) -> None:
    wal = WAL(tmp_path / "wal")
    wal.open()
    wal.append([A, ()], [1_700_000_000_000] * 2, [1.0, 2.0])
    empty = wal.ref(())
    assert empty is not None
    t = SeriesTable(wal.labels_by_ref, {}, None, wal.ref_of)
    assert t.resolve_prefix(empty) is None  # dropped, as relabeling to nothing is
    assert t.prefix.many([empty, wal.ref(A)]) == [None, sample_prefix(encode_labels(A))]
    wal.close()
