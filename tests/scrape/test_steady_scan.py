"""A body laid out as at the last scrape takes the steady path and gives exactly what the bulk scan gives.

``scan_text`` checks a body against the shape of the target's last one (the
cache's keys in line order, comment lines whole) instead of looking every line
up, and ``commit`` then skips its set work. Random sequences of bodies, each a
small change from the last or none (values only, a series added in the middle,
one removed, lines reordered, a comment reworded, a line repeated, a
timestamp, a series dropped by relabeling, a bad value), run through two real
scrape loops: one as shipped, one with the steady path switched off. Every
scrape must give the same samples, stale markers, metadata and errors, in
bodies of one chunk and of several.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from agent import labels as L
from agent.relabel import Rule
from agent.scrape import cache as cache_mod
from agent.scrape import loop as loop_mod
from agent.scrape import textparse
from agent.scrape.config import ScrapeConfig
from agent.scrape.loop import ScrapeLoop
from agent.scrape.target import Target, populate_labels
from agent.storage import SampleBatch

CTYPE = "text/plain; version=0.0.4"


class Sink:
    def append(self, batch: SampleBatch) -> None:
        pass


def _loop() -> ScrapeLoop:
    rules = [Rule(source_labels=["__name__"], regex="drop_.*", action="drop")]
    cfg = ScrapeConfig(job_name="steady", metric_relabel_rules=rules)
    disc = L.from_dict({"__address__": "10.0.0.1:9100"})
    final = populate_labels(disc, cfg)
    assert final is not None
    return ScrapeLoop(Target(disc, final, cfg.params), cfg, Sink(), seed=0)


def _series(rnd: random.Random, i: int) -> bytes:
    name = rnd.choice([b"http_requests_total", b"drop_me", b"queue_depth"])
    return name + b'{pod="p-%d",route="/a b",code="%d"}' % (i, 200 + i % 3)


def _bodies(seed: int, n: int) -> list[bytes]:
    """``n`` bodies, most laid out as the last one, some with a lasting or a one-off change."""
    rnd = random.Random(seed)
    layout = [b"# HELP http_requests_total Requests."]  # comments whole, series as their text
    layout += [_series(rnd, i) for i in range(rnd.randint(5, 40))]
    layout.insert(rnd.randint(1, len(layout)), b"# TYPE queue_depth gauge")
    nxt = 1000
    out = []
    for _ in range(n):
        kind = rnd.random()
        samples = [i for i, x in enumerate(layout) if not x.startswith(b"#")]
        if kind < 0.06:  # a new series among the others, from now on
            layout.insert(rnd.randint(0, len(layout)), _series(rnd, nxt))
            nxt += 1
        elif kind < 0.12 and len(samples) > 2:  # a series goes away
            del layout[rnd.choice(samples)]
        elif kind < 0.14:
            rnd.shuffle(layout)
        elif kind < 0.17:
            layout[0] = b"# HELP http_requests_total Requests, reworded %d." % rnd.randint(0, 9)
        lines = [x if x.startswith(b"#") else x + b" %d" % rnd.randint(0, 10**6) for x in layout]
        samples = [i for i, x in enumerate(layout) if not x.startswith(b"#")]
        once = rnd.random()
        if once < 0.05:  # this body only: a line repeated
            lines.append(lines[rnd.choice(samples)])
        elif once < 0.1:  # this body only: a sample with its own timestamp
            lines[rnd.choice(samples)] += b" 1700000000000"
        elif once < 0.13:  # this body only: a value that is not one
            j = rnd.choice(samples)
            lines[j] = lines[j].rsplit(b" ", 1)[0] + b" oops"
        out.append(b"\n".join(lines) + b"\n")
    return out


async def _run(bodies: list[bytes]) -> list[tuple]:
    lp = _loop()
    got = []
    for k, body in enumerate(bodies):
        batch = SampleBatch()
        err, scraped, added, new = await lp.ingest(body, CTYPE, 10_000 + k, batch)
        got.append((err, scraped, added, new, list(zip(batch.labels, batch.timestamps,
                                                       map(repr, batch.values), strict=True)),
                    sorted(batch.metadata.items())))
    return got


@pytest.mark.parametrize("chunk", [256 * 1024, 300])
@pytest.mark.parametrize("seed", range(8))
def test_steady_path_gives_what_the_bulk_scan_gives(monkeypatch: pytest.MonkeyPatch, seed: int,
                                                     chunk: int) -> None:
    monkeypatch.setattr(loop_mod, "CHUNK_BYTES", chunk)
    bodies = _bodies(seed, 60)
    steady = textparse._scan_steady
    taken: list[bool] = []
    monkeypatch.setattr(textparse, "_scan_steady", lambda *a: taken.append(steady(*a)) or taken[-1])
    got = asyncio.run(_run(bodies))
    monkeypatch.setattr(textparse, "_scan_steady", lambda *a: False)
    monkeypatch.setattr(cache_mod, "new_shape", lambda st: None)
    want = asyncio.run(_run(bodies))
    assert sum(taken) > len(bodies) // 3, "most bodies repeat the last one's layout: take the steady path"
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"scrape {k}"
