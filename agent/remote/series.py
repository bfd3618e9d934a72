"""The series table of one endpoint: a WAL ref to the labels this endpoint sends, and their encodings.

The WAL knows a series by its ref and its labels as scraped. An endpoint
sends something else: external labels added where the series lacks them,
then write relabeling (as Prometheus does), empty values removed; a series
relabeling drops is not sent at all. That is worked out once per ref and
endpoint and kept, in the encoded form each protocol wants, until the WAL's
owner says the ref is gone (``forget``). The metadata the WAL recorded per
metric family lives here too: Remote-Write 2.0 attaches it to each series.

The WAL holds each series' labels encoded as a 1.0 sample prefix
(agent/labels.py ``encode``). An endpoint without external labels and write
relabeling (the common case) sends them unchanged: its prefix is that very
object, so the endpoint keeps no prefix table at all and reads the WAL's
(``WalPrefixes``): a dict of references cost ~52 B a series (~10 MiB at the
seed workload's 200,000 series). Its look-ups are binary searches, done in
bulk once per target's series list by the dispatch's routes
(agent/remote/fastpath.py), not per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, KeysView, Mapping, Sequence
from typing import Any

from agent import relabel
from agent.labels import EMPTY_LEN, AnyLabels, Labels, as_encoded, as_labels, fields_of, is_empty
from agent.remote.codec import encode_labels, sample_prefix
from agent.remote.codec_v2 import METRIC_TYPES, SeriesV2, family_of
from agent.wal.reftable import RefTable

_MISSING: Any = object()


class OwnPrefixes(dict[int, bytes | None]):
    """Prefixes an endpoint works out itself (external labels, write relabeling), per ref."""

    def many(self, refs: Sequence[int]) -> list[bytes | None]:
        """The prefix of each of ``refs`` as ``get`` gives it, for a route built at once."""
        return list(map(self.get, refs))


class WalPrefixes:
    """The prefixes of an endpoint that sends the WAL's labels unchanged: the WAL's table, read.

    Nothing is kept per series here; the WAL forgets a ref when the queue does (at
    truncation), so the two cannot disagree. ``get`` is a binary search (~1 us), which
    only the general loop does per sample; the fast path's routes take a target's
    prefixes at once with ``many``.
    """

    __slots__ = ("_table",)

    def __init__(self, table: RefTable) -> None:
        self._table = table

    def get(self, ref: int, default: Any = None) -> bytes | None:
        p = self._table.get(ref)
        if p is None:
            return default  # type: ignore[no-any-return]
        return None if len(p) <= EMPTY_LEN else p

    def __getitem__(self, ref: int) -> bytes | None:
        p = self.get(ref, _MISSING)
        if p is _MISSING:
            raise KeyError(ref)
        return p

    def many(self, refs: Sequence[int]) -> list[bytes | None]:
        got = self._table.get_many(refs)
        if None in got or min(map(len, got), default=EMPTY_LEN + 1) <= EMPTY_LEN:  # type: ignore[arg-type]
            return [None if p is not None and len(p) <= EMPTY_LEN else p or b"" for p in got]
        return got

    def keys(self) -> KeysView[int]:
        """No ref is held here (see the class docstring)."""
        return {}.keys()

    def pop(self, ref: int, default: Any = None) -> Any:
        return default


class SeriesTable:
    """Per ref, cached: the 1.0 sample prefix, the encoded labels, the 2.0 series.

    ``prefix`` and ``lbytes`` are read directly by the dispatch hot loops: a
    prefix is bytes for a series to send, ``b""`` for a ref the WAL does not
    know (yet), None for a series relabeling dropped; ``lbytes`` holds only
    series to send.
    """

    def __init__(self, wal_labels: Mapping[int, AnyLabels], external_labels: Mapping[str, str],
                 rules: list[relabel.Rule] | None,
                 ref_of: Callable[[AnyLabels], int | None] | None = None) -> None:
        self._wal_labels = wal_labels  # the WAL writer's table: every ref a segment on disk can mention
        # The WAL's own int object for a series (WAL.ref_of): keyed by it, the tables here hold
        # no int of their own (~30 B a series); a ref read back from a record is a fresh int.
        self._ref_of = ref_of
        self._ext: Labels = tuple(sorted((k, v) for k, v in external_labels.items() if v != ""))
        self._rules = list(rules or [])
        self._same = not self._ext and not self._rules  # sends the WAL's labels as they are
        self.prefix: OwnPrefixes | WalPrefixes = (
            WalPrefixes(wal_labels) if self._same and isinstance(wal_labels, RefTable) else OwnPrefixes()
        )
        self.lbytes: dict[int, bytes] = {}  # for histograms, exemplars and the general 1.0 encoder
        self.v2: dict[int, SeriesV2] = {}
        self.meta: dict[str, tuple[str, str, str]] = {}  # family -> (type, help, unit), from the WAL

    def labels(self, ref: int) -> Labels | None:
        """The series as this endpoint sends it: None if unknown, () if relabeling dropped it."""
        raw = self._wal_labels.get(ref)
        return self._send_labels(None if raw is None else as_labels(raw))

    def _key(self, ref: int, raw: AnyLabels | None) -> int:
        """``ref`` as the WAL's own int object when it has it (see ``ref_of``)."""
        if raw is not None and self._ref_of is not None:
            own = self._ref_of(raw)
            if own == ref:
                return own  # type: ignore[return-value]
        return ref

    def _send_labels(self, labels: Labels | None) -> Labels | None:
        if labels is None:
            return None
        if self._ext:
            have = {n for n, _ in labels}
            extra = tuple(p for p in self._ext if p[0] not in have)
            if extra:
                labels = tuple(sorted(labels + extra))
        if self._rules:
            out = relabel.process(labels, self._rules)
            if not out:
                return ()
            labels = out
        return tuple(p for p in labels if p[1] != "")

    def resolve_prefix(self, ref: int) -> bytes | None:
        """Work out and keep ``prefix[ref]`` (see the class docstring for its three kinds of value)."""
        prefix = self.prefix
        if isinstance(prefix, WalPrefixes):
            return prefix.get(ref, b"")
        raw = self._wal_labels.get(ref)
        key = self._key(ref, raw)
        if raw is None:
            prefix[key] = b""
            return b""
        if self._same:
            p: bytes | None = as_encoded(raw)
            if is_empty(p):  # type: ignore[arg-type]
                p = None
        else:
            labels = self._send_labels(as_labels(raw))
            p = sample_prefix(encode_labels(labels)) if labels else None
        prefix[key] = p
        return p

    def resolve_bytes(self, ref: int) -> bytes | None:
        """Encoded labels of a series to send, kept in ``lbytes``: b"" if unknown, None if dropped."""
        p = self.prefix.get(ref) or self.resolve_prefix(ref)
        if not p:
            return p
        lb = self.lbytes[self._key(ref, self._wal_labels.get(ref))] = fields_of(p)
        return lb

    def label_bytes(self, ref: int) -> bytes:
        """Encoded labels, kept or not; empty for a series that cannot be sent."""
        return self.lbytes.get(ref) or encode_labels(self.labels(ref) or ())

    def series_v2(self, ref: int) -> SeriesV2:
        sv = self.v2.get(ref)
        if sv is not None:
            return sv
        raw = self._wal_labels.get(ref)
        labels = self._send_labels(None if raw is None else as_labels(raw)) or ()
        ref = self._key(ref, raw)
        strings = tuple(x for pair in labels for x in pair)
        meta = None
        name = next((v for k, v in labels if k == "__name__"), "")
        fam = family_of(name, self.meta) if self.meta else None
        if fam is not None:
            mtype, help_, unit = self.meta[fam]
            meta = (METRIC_TYPES.get(mtype, 0), help_, unit)
        sv = self.v2[ref] = SeriesV2(strings, meta)
        return sv

    def learn_metadata(self, items: list[tuple[str, str, str, str]]) -> None:
        for name, mtype, help_, unit in items:
            self.meta[name] = (mtype, help_, unit)
        if items:
            self.v2.clear()  # 2.0 carries metadata per series: resolve again

    def forget(self, refs: Iterable[int]) -> None:
        for r in refs:
            self.prefix.pop(r, None)
            self.v2.pop(r, None)
            self.lbytes.pop(r, None)
