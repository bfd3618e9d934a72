"""The per-target scrape cache: raw series text -> final label set, and staleness.

A target exposes mostly the same lines every scrape, so the work of turning a
line's series text into the label set we forward (parse, attach target labels
with honor_labels, metric relabeling, validation, limits) is done once per
series and remembered under the raw bytes. A hit costs one dict look-up; the
label set handed on is the same object every scrape, so downstream stages
compare by identity and hash bytes whose hash is already cached.

Staleness follows Prometheus' scrape cache: the set of series (raw keys) seen in
the last successful scrape is kept; a key absent from the next one gets a stale
marker unless its label set is still produced by another line. Entries unseen
in a successful scrape are evicted after staleness has been written. A failed
scrape marks every previously seen series stale and keeps the entries.

That set is usually not stored: after a successful scrape the entries are
exactly its keys, so ``prev`` is None and means "the entries, less the keys
resolved since" (``new_keys``). Keeping a set of the scrape's own key objects
instead held a second copy of every raw series text (~170-260 B a series).

A kept series is held in its encoded form (agent/labels.py ``encode``), not
as a tuple: the WAL keys it by that object and an endpoint that sends it
unchanged uses the same bytes as its prefix, so the series' labels are held
once from scrape to send.

Replicas of one exporter expose the same series text (a pod's identity comes
from its target labels, not from its lines), so the raw keys are held once
per process, not once per target (``SHARED_KEYS``); a key
only one target exposes is let go of by the table after a while, so a target
whose lines are its own pays nothing for the sharing.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

from agent.labels import METRIC_NAME, AnyLabels, Labels, encode
from agent.relabel import process
from agent.scrape.config import ScrapeConfig
from agent.scrape.textparse import ScanState, Shape, is_steady, labels_of, new_shape, parse_series
from agent.scrape.typeunit import Families
from agent.storage import Histogram, Metadata

DROPPED: Labels = ()
_intern = sys.intern
_refcount = sys.getrefcount
SWEEP_MIN = 4096  # entries added before the table first looks at who still holds them
SWEEP_SECONDS = 300.0  # how often entries only one target holds are let go of


class Interner:
    """One object for each equal raw series key or label pair, however many targets hold one.

    A table ``value -> value`` in two generations. Entries added since the last
    sweep (``young``) are kept while anything holds them, so a replica scraped
    later in the interval still finds its sibling's keys. Every
    ``SWEEP_SECONDS`` (``tick``, from each scrape's commit), entries that had
    already survived a sweep (``old``) are kept only while two holders share
    them: an entry only one cache holds costs the table's slot (~50 B) and
    saves nothing, so a target whose lines are its own pays nothing for the
    sharing once it has been scraped for a while. Growth alone (the young
    generation outgrowing the old one) sweeps only entries nobody holds, so
    the table stays within about twice what is in use. Who holds an entry is
    its reference count less the table's own references.

    Safe to call from a parse worker thread: each step is one dict operation
    under the GIL, and a race can at worst leave a key unshared, never wrong.
    """

    __slots__ = ("young", "old", "last")

    def __init__(self) -> None:
        self.young: dict = {}
        self.old: dict = {}
        self.last = time.monotonic()

    def get(self, value: object) -> object:
        """The shared object equal to ``value`` (``value`` itself the first time)."""
        got = self.old.get(value)
        if got is None:
            young = self.young
            got = young.setdefault(value, value)
            if len(young) > SWEEP_MIN and len(young) > len(self.old):
                self.sweep(keep=1)
        return got

    def tick(self, now: float) -> None:
        if now - self.last > SWEEP_SECONDS:
            self.last = now
            self.sweep(keep=2)

    def sweep(self, keep: int) -> None:
        """Let go of old entries with fewer than ``keep`` holders and young ones nobody holds."""
        base = _TABLE_REFS
        old = self.old
        top = len(old)
        for v in list(old):
            if _refcount(v) < base + keep:
                old.pop(v, None)
        if len(old) * 4 < top:  # a dict keeps its table as entries go: 52 B per entry it once held
            self.old = old = dict(old)
        young, self.young = self.young, {}
        for v in list(young):
            if _refcount(v) > base:
                old[v] = v
        young.clear()

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


def _table_refs() -> int:
    """References ``sweep`` sees on an entry nobody else holds (5 on CPython 3.11).

    The table's key and value, the list swept over, the loop variable and
    getrefcount's own argument; measured rather than assumed, since what the
    interpreter counts for locals differs between versions. A miscount would
    only change what is shared, never which object a key maps to.
    """
    probe = object()
    table = {probe: probe}
    for v in list(table):
        return _refcount(v) - 1  # less ``probe`` itself
    return 5


_TABLE_REFS = _table_refs()
SHARED_KEYS = Interner()  # raw series text of every scrape cache in the process


class ScrapeError(Exception):
    """A scrape that failed after the body arrived (limits, invalid series)."""


class ScrapeCache:
    """State that survives from one scrape of a target to the next."""

    __slots__ = (
        "entries",
        "prev",
        "comments",
        "metas",
        "last_meta_items",
        "last_metadata",
        "lock",
        "records",
        "fresh",
        "aliased",
        "new_keys",
        "shape",
    )

    def __init__(self) -> None:
        self.entries: dict[bytes, AnyLabels] = {}  # encoded label sets; DROPPED if dropped
        # Keys tracked for staleness at the last scrape; None: every entry but new_keys.
        self.prev: set[bytes] | None = set()
        # Keys resolved since the last successful scrape (not in ``prev``).
        self.new_keys: list[bytes] = []
        self.comments: dict[bytes, tuple] = {}
        self.metas: dict[tuple[str, str, str, str], Metadata] = {}
        # An unchanged set of HELP/TYPE lines hands on the previous metadata dict.
        self.last_meta_items: list[tuple[str, str, str]] = []
        self.last_metadata: dict[str, Metadata] = {}
        # Held while a scrape uses the cache: a loop restarted on reload may
        # share it with a predecessor whose worker thread is still parsing.
        self.lock = threading.Lock()
        # Protobuf: per summary/histogram metric, the keys and label sets of its series
        # (see protoparse); replaced by the records seen in each successful scrape.
        self.records: dict[bytes, tuple] = {}
        # Two spellings of one series (label order, an empty label) resolve to one
        # label set: ``fresh`` says a miss was resolved this scrape, so commit()
        # looks for that; once seen, ``aliased`` makes every scrape dedupe by label set.
        self.fresh = False
        self.aliased = False
        # The text body's layout at the last successful scrape (textparse.Shape): the next
        # scrape laid out alike is checked against the entries in order, not looked up.
        self.shape: Shape | None = None


class SeriesBuilder:
    """Builds the final label set for a cache miss; one per scrape loop (its target + config)."""

    __slots__ = (
        "cache",
        "target",
        "target_names",
        "honor",
        "rules",
        "label_limit",
        "name_len",
        "value_len",
        "added",
        "parse",
        "families",
    )

    def __init__(self, cache: ScrapeCache, target_labels: Labels, cfg: ScrapeConfig) -> None:
        self.cache = cache
        self.target = tuple((_intern(n), _intern(v)) for n, v in target_labels)
        self.target_names = frozenset(n for n, _ in target_labels)
        self.honor = cfg.honor_labels
        self.rules = list(cfg.metric_relabel_rules)
        self.label_limit = cfg.label_limit
        self.name_len = cfg.label_name_length_limit
        self.value_len = cfg.label_value_length_limit
        self.added = 0  # cache misses that produced a kept series, this scrape
        self.parse = parse_series
        # With type-and-unit labels: the scrape's families (agent/scrape/typeunit.py), set per scrape.
        self.families: Families | None = None

    def resolve(self, key: bytes) -> AnyLabels:
        name, pairs = self.parse(key)
        return self.resolve_pairs(key, name, pairs)

    def resolve_pairs(self, key: bytes, name: str, pairs: list[tuple[str, str]]) -> AnyLabels:
        """Build, check and remember the final label set of an exposed series under ``key`` (encoded)."""
        if self.families is not None:
            extra = self.families.labels_for(name)
            if extra:
                given = {n for n, _ in extra}
                pairs = [p for p in pairs if p[0] not in given] + extra
        items = [(METRIC_NAME, _intern(name))]
        items += [(_intern(n), v) for n, v in pairs if v]
        if not self.honor:
            items += self.target
        items.sort()
        if len({p[0] for p in items}) == len(items):
            lab: Labels = tuple(items)
            if self.honor:
                lab = self.with_target_labels(lab)
        else:  # a repeated exposed label (an error) or a clash with a target label
            lab = self.with_target_labels(labels_of(name, pairs))
        if self.rules:
            lab = process(lab, self.rules) or DROPPED
        if lab:
            if lab[0][0] != METRIC_NAME and not any(n == METRIC_NAME for n, _ in lab):
                raise ValueError("missing metric name (__name__ label)")
            if self.label_limit or self.name_len or self.value_len:
                self.check_limits(lab)
            # Held and handed on in the encoded form (agent/labels.py): the WAL keys the
            # series by it and an endpoint sending it unchanged uses it as its prefix.
            out: AnyLabels = encode(lab)
            self.added += 1
            self.cache.fresh = True
        else:
            out = DROPPED
        key = SHARED_KEYS.get(key)  # type: ignore[assignment]
        self.cache.entries[key] = out
        self.cache.new_keys.append(key)
        return out

    def with_target_labels(self, lab: Labels) -> Labels:
        """Attach target labels; on a clash the exposed label wins (honor) or becomes exported_<name>."""
        tl = self.target
        if not tl:
            return lab
        names = self.target_names
        if self.honor:
            have = {n for n, _ in lab}
            extra = tuple(p for p in tl if p[0] not in have)
            return tuple(sorted(lab + extra)) if extra else lab
        clashes = [p for p in lab if p[0] in names]
        if not clashes:
            return tuple(sorted(lab + tl))
        d = {n: v for n, v in lab if n not in names}
        d.update(tl)
        for n, v in sorted(clashes, key=lambda p: len(p[0])):
            new = n
            while True:
                new = "exported_" + new
                if not d.get(new):
                    d[new] = v
                    break
        return tuple(sorted(d.items()))

    def check_limits(self, lab: Labels) -> None:
        met = dict(lab).get(METRIC_NAME, "")[:50]
        if self.label_limit and len(lab) > self.label_limit:
            raise ValueError(
                f"label_limit exceeded (metric: {met}, number of labels: {len(lab)}, "
                f"limit: {self.label_limit})"
            )
        for n, v in lab:
            if self.name_len and len(n.encode()) > self.name_len:
                raise ValueError(
                    f"label_name_length_limit exceeded (metric: {met}, label name: {n[:50]}, "
                    f"length: {len(n.encode())}, limit: {self.name_len})"
                )
            if self.value_len and len(v.encode()) > self.value_len:
                raise ValueError(
                    f"label_value_length_limit exceeded (metric: {met}, label name: {n[:50]}, "
                    f'value: "{v[:50]}", length: {len(v.encode())}, limit: {self.value_len})'
                )


@dataclass(slots=True)
class Committed:
    """The outcome of a successful scrape's samples, ready for the batch."""

    labels: list[AnyLabels]
    timestamps: list[int]
    values: list[float]
    stale: list[AnyLabels]
    duplicates: int
    histograms: list[tuple[AnyLabels, int, Histogram]] = field(default_factory=list)


def commit(cache: ScrapeCache, st: ScanState, ts: int, cfg: ScrapeConfig) -> Committed:
    """Finish a successful parse: duplicates, sample_limit, timestamps, staleness, eviction.

    Native histogram samples (protobuf) count as one sample each and go stale
    like any series. Raises ScrapeError (sample limit) before touching the
    cache, so a failed scrape leaves it as it was.
    """
    if not (cache.fresh or cache.aliased or cache.prev or st.hkeys) and is_steady(st):
        return _commit_steady(cache, st, ts, cfg)
    keys = st.keys
    cur_all = set(keys)
    now = time.monotonic()
    SHARED_KEYS.tick(now)
    labels, values, explicit = st.labels, st.values, st.explicit
    honor_ts = cfg.honor_timestamps
    dups = 0
    if cache.fresh:
        cache.fresh = False
        if not cache.aliased:
            kept = sum(1 for k in cur_all if cache.entries.get(k))
            cache.aliased = len(set(labels)) < kept
    if len(cur_all) != len(keys) or cache.aliased:
        labels, values, explicit, dups = _dedupe(cache, st, honor_ts)
    hists: list[tuple[AnyLabels, int, Histogram]] = []
    hist_explicit: set[bytes] = set()
    if st.hkeys:
        cur_all.update(st.hkeys)
        seen: set[bytes] = set()
        for lab, h, hts, key in st.hists:
            if key in seen and not (hts and honor_ts):
                dups += 1
                continue
            seen.add(key)
            if hts and honor_ts:
                hists.append((lab, hts, h))
                hist_explicit.add(key)
            else:
                hists.append((lab, ts, h))
    # Repeats count, as in Prometheus' limitAppender: every append is one sample.
    if cfg.sample_limit and len(values) + len(hists) + dups > cfg.sample_limit:
        raise ScrapeError("sample limit exceeded")
    timestamps = [ts] * len(values)
    tracked = cur_all
    if (explicit or hist_explicit) and honor_ts:
        for idx, t, _ in explicit:
            timestamps[idx] = t
        if not cfg.track_timestamps_staleness:
            tracked = cur_all - {k for _, _, k in explicit} - hist_explicit
    stale: list[AnyLabels] = []
    entries = cache.entries
    prev = cache.prev
    if prev is None:
        # The entries are the last scrape's keys plus keys resolved since, all of them in cur_all.
        gone = entries.keys() - cur_all
        if tracked is not cur_all:  # keys now carrying a timestamp leave staleness tracking
            new = set(cache.new_keys)
            gone.update(k for k in cur_all - tracked if k not in new)
    else:
        gone = prev - tracked
    if gone:
        cand = {entries[k] for k in gone if entries.get(k)}
        if cand:
            present = set(labels)
            present.update(h[0] for h in hists)
            stale = [lab for lab in cand if lab not in present]
    cache.prev = None if tracked is cur_all else tracked
    cache.new_keys = []
    if len(entries) > len(cur_all):
        for k in entries.keys() - cur_all:
            del entries[k]
    cache.shape = new_shape(st)
    cache.records = st.seen_records
    if len(cache.comments) > 2 * len(st.meta_items) + 1024:
        cache.comments.clear()
    if len(cache.metas) > 2 * len(st.meta_items) + 1024:
        cache.metas.clear()
    return Committed(labels, timestamps, values, stale, dups, hists)


def _commit_steady(cache: ScrapeCache, st: ScanState, ts: int, cfg: ScrapeConfig) -> Committed:
    """``commit`` for a body that matched its shape: its keys are the entries, once each, in order.

    So nothing repeats, nothing went stale, nothing is evicted, and the keys need
    no set (hashing a scrape's fresh keys is most of what ``commit`` costs).
    """
    values = st.values
    if cfg.sample_limit and len(values) > cfg.sample_limit:
        raise ScrapeError("sample limit exceeded")
    cache.prev = None
    cache.new_keys = []
    cache.records = st.seen_records
    if len(cache.comments) > 2 * len(st.meta_items) + 1024:
        cache.comments.clear()
    if len(cache.metas) > 2 * len(st.meta_items) + 1024:
        cache.metas.clear()
    return Committed(st.labels, [ts] * len(values), values, [], 0)


def fail(cache: ScrapeCache) -> list[AnyLabels]:
    """A failed (or final) scrape: every series of the last good scrape goes stale."""
    entries = cache.entries
    prev = cache.prev
    if prev is None:
        new = set(cache.new_keys)
        stale = list({lab for k, lab in entries.items() if lab and k not in new})
    else:
        stale = list({entries[k] for k in prev if entries.get(k)})
    cache.prev = set()
    cache.new_keys = []
    return stale


def last_series(cache: ScrapeCache) -> list[AnyLabels]:
    """The series of the last good scrape, as ``fail`` finds them, leaving the cache as it is.

    Safe while an ingest of a cancelled scrape may still run in a worker thread:
    the containers are copied by single C calls before they are read.
    """
    entries = cache.entries
    prev = cache.prev
    if prev is None:
        new = set(cache.new_keys)
        return list({lab for k, lab in list(entries.items()) if lab and k not in new})
    get = entries.get
    return list({lab for k in list(prev) if (lab := get(k))})


def _dedupe(
    cache: ScrapeCache, st: ScanState, honor_ts: bool
) -> tuple[list[AnyLabels], list[float], list[tuple[int, int, bytes]], int]:
    """Keep the first sample of a series repeated within one scrape, as Prometheus does.

    A repeat is the same line again or another spelling of the same label set
    (labels in another order, an empty label): Prometheus' TSDB keeps the first
    of two samples of one series at one timestamp. Forwarding both would make
    the backend refuse the second, and with it whatever shares its request.
    A repeat that carries its own (honored) timestamp is a different sample and kept.
    """
    explicit_at = {idx: (t, k) for idx, t, k in st.explicit} if honor_ts else {}
    entries = cache.entries
    seen: set[AnyLabels] = set()
    labels: list[AnyLabels] = []
    values: list[float] = []
    explicit: list[tuple[int, int, bytes]] = []
    dups = 0
    j = 0
    for key in st.keys:
        if not entries.get(key):
            continue
        idx = j
        j += 1
        lab = st.labels[idx]
        e = explicit_at.get(idx)
        if lab in seen and e is None:
            dups += 1
            continue
        seen.add(lab)
        if e is not None:
            explicit.append((len(values), e[0], e[1]))
        labels.append(lab)
        values.append(st.values[idx])
    return labels, values, explicit, dups
