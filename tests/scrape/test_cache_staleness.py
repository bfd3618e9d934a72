"""Staleness across scrape sequences, now that the last scrape's keys are the cache's entries (``prev`` None).

Each case is a sequence of bodies served by a real exporter; ``None`` is a
failed scrape (HTTP 500). The stale markers of every scrape are checked.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.scrape.server import Collector, Exporter
from tests.scrape.test_loop import T0, lab, make_loop, scrape


@pytest.fixture
def exp() -> Iterator[Exporter]:
    e = Exporter().start()
    yield e
    e.stop()


def run(exp: Exporter, bodies: list[str | None], **kw: object) -> tuple[Collector, list[set[str]]]:
    def serve(i: int) -> None:
        b = bodies[i]
        if b is None:
            exp.set(body="oops\n", status=500)
        else:
            exp.set(body=b)

    serve(0)
    coll = Collector()
    loop = make_loop(exp.address, coll, **kw)
    scrape(loop, *[T0 + 5 * i for i in range(len(bodies))], between=serve)
    names = [{dict(x)["__name__"] for x in coll.stale(i) if not dict(x)["__name__"].startswith(("up", "scrape_"))}
             for i in range(len(bodies))]
    return coll, names


def test_vanish_return_vanish(exp: Exporter) -> None:
    _, stale = run(exp, ["a 1\nb 1\n", "a 2\n", "a 3\nb 3\n", "b 4\n"])
    assert stale == [set(), {"b"}, set(), {"a"}]


def test_failure_marks_last_good_series_not_those_first_seen_in_the_failed_body(exp: Exporter) -> None:
    # The third body is refused by the parser after 'c' was resolved: c never had a sample.
    _, stale = run(exp, ["a 1\nb 1\n", "a 1\nb 1\n", "c 1\nbad{ 1\n", "a 1\n"])
    assert stale == [set(), set(), {"a", "b"}, set()]


def test_http_failure_then_recovery(exp: Exporter) -> None:
    _, stale = run(exp, ["a 1\nb 1\n", None, "a 1\n", "a 1\n", None])
    assert stale == [set(), {"a", "b"}, set(), set(), {"a"}]


def test_series_that_gains_then_loses_a_timestamp(exp: Exporter) -> None:
    # With honored timestamps (and no track_timestamps_staleness) a series with its own
    # timestamp leaves staleness tracking (no marker while its sample is there, none when
    # it vanishes timed), and is tracked again once untimed.
    _, stale = run(exp, ["a 1\nb 1\n", "a 1 1000\nb 1\n", "b 1\n", "a 1\nb 1\n", "b 1\n"],
                   honor_timestamps=True)
    assert stale == [set(), set(), set(), set(), {"a"}]


def test_new_timed_series_is_not_stale_and_untimed_newcomers_are_tracked(exp: Exporter) -> None:
    _, stale = run(exp, ["a 1\n", "a 1\nt 1 1000\nn 1\n", "a 1\n"], honor_timestamps=True)
    assert stale == [set(), set(), {"n"}]


def test_same_series_two_spellings_keeps_it_alive(exp: Exporter) -> None:
    coll, stale = run(exp, ['a{x="1",y="2"} 1\n', 'a{y="2",x="1"} 1\n'])
    assert stale == [set(), set()]
    assert lab(__name__="a", x="1", y="2", job="job1", instance=exp.address) in coll.samples(1)
