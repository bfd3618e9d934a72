"""Scrape caches of replicas share one copy of each raw series text.

Two targets serving the same exposition (replicas of one exporter) hold the
same key objects, while their label sets stay their own (the target labels
differ; they are held encoded, agent/labels.py). The process-wide table lets go of what no cache holds
when it grows, and of what only one cache holds on its periodic sweep, so a
target with unique lines costs the table nothing in the long run.
"""

from __future__ import annotations

import asyncio
import gc
import sys

from agent import labels as L
from agent.scrape import cache as C
from agent.scrape.config import ScrapeConfig
from agent.scrape.loop import ScrapeLoop
from agent.scrape.target import Target, populate_labels
from agent.storage import SampleBatch

CTYPE = "text/plain; version=0.0.4"


class Keep:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def append(self, batch: SampleBatch) -> None:
        self.batches.append(batch)


def loop_for(address: str, sink: Keep) -> ScrapeLoop:
    cfg = ScrapeConfig(job_name="replicas")
    disc = L.from_dict({"__address__": address})
    final = populate_labels(disc, cfg)
    assert final is not None
    return ScrapeLoop(Target(disc, final, cfg.params), cfg, sink, seed=0)


def body(tag: str, n: int) -> bytes:
    lines = [f'{tag}_requests_total{{route="/r{i}",code="200"}} {i}' for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def scrape(loop: ScrapeLoop, data: bytes, ts: int) -> SampleBatch:
    batch = SampleBatch()
    err, _, _, _ = asyncio.run(loop.ingest(data, CTYPE, ts, batch))
    assert err is None, err
    return batch


def test_replicas_share_keys_but_not_label_sets() -> None:
    sink = Keep()
    a, b = loop_for("10.0.0.1:80", sink), loop_for("10.0.0.2:80", sink)
    # Bytes objects of their own (copies), as two HTTP responses would be.
    ba, bb = scrape(a, bytes(bytearray(body("rep", 50))), 1000), scrape(b, bytes(bytearray(body("rep", 50))), 1000)
    ka = {k: k for k in a.cache.entries}
    for k in b.cache.entries:
        assert ka[k] is k, "replicas hold one object per raw series text"
    assert ba.labels != bb.labels  # instance differs
    # Kept series are handed on encoded, and decode to the pairs they were built from.
    la = L.as_labels(ba.labels[0])
    assert type(ba.labels[0]) is bytes and L.encode(la) == ba.labels[0]
    assert dict(la)["instance"] == "10.0.0.1:80" and dict(L.as_labels(bb.labels[0]))["instance"] == "10.0.0.2:80"
    # The second scrape hands on the very same label sets (cache hits).
    again = scrape(a, body("rep", 50), 2000)
    assert all(x is y for x, y in zip(again.labels, ba.labels, strict=True))


def test_table_lets_go_of_what_no_cache_holds_and_of_single_holders_on_its_sweep() -> None:
    it = C.Interner()
    held = [it.get(b"held-%d" % i) for i in range(10)]
    shared = [it.get(b"shared-%d" % i) for i in range(10)]
    also = list(shared)  # a second holder, as a replica's cache
    for i in range(10):
        it.get(b"gone-%d" % i)  # resolved, then dropped by its cache
    gc.collect()
    it.sweep(keep=1)  # the growth sweep: nobody holds the "gone" ones
    assert len(it) == 20
    assert it.get(b"held-3") is held[3]
    it.tick(it.last + C.SWEEP_SECONDS / 2)  # not yet time
    assert len(it) == 20
    it.tick(it.last + C.SWEEP_SECONDS + 1)  # single holders are not worth a slot
    assert len(it) == 10
    assert it.get(b"shared-4") is shared[4] is also[4]
    fresh = it.get(b"held-3")
    assert fresh == held[3] and fresh is not held[3]  # not shared any more, still equal


def test_growth_sweeps_keep_young_entries_with_one_holder(monkeypatch) -> None:
    monkeypatch.setattr(C, "SWEEP_MIN", 8)
    it = C.Interner()
    first = [it.get(b"first-%d" % i) for i in range(40)]  # a first replica's keys, over several sweeps
    assert len(it) == 40
    second = [it.get(b"first-%d" % i) for i in range(40)]  # its sibling, scraped later
    assert all(x is y for x, y in zip(first, second, strict=True))


def test_a_sweep_that_lets_go_of_most_entries_frees_their_slots() -> None:
    """A dict keeps its table as entries are popped: targets whose lines are their own left
    the whole table (52 B per line they once had) held after the sweep that dropped them.
    Entries kept stay shared, and later sweeps still count their holders right."""
    it = C.Interner()
    held = [it.get(b"line-%d" % i) for i in range(50_000)]
    it.sweep(keep=1)  # all held: into the old generation
    big = sys.getsizeof(it.old)
    also = held[:1000]  # a replica shares the first thousand
    it.tick(it.last + C.SWEEP_SECONDS + 1)  # single holders go
    assert len(it) == 1000
    assert sys.getsizeof(it.old) * 20 < big
    assert it.get(b"line-7") is held[7] is also[7]
    del also
    it.tick(it.last + C.SWEEP_SECONDS + 1)
    assert len(it) == 0
