"""The WAL's ref -> labels table behaves as the dict it replaced, under any mix of operations.

Refs mostly arrive in increasing order (new series), sometimes out of order
(replay of an unusual WAL), are removed in bulk at truncation and may be
set again; every read must agree with a plain dict's.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.wal.reftable import RefTable

ops = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.integers(1, 5)),  # that many refs past the largest so far
        st.tuples(st.just("set"), st.integers(1, 400)),  # any ref, maybe out of order or again
        st.tuples(st.just("pop"), st.integers(1, 400)),
        st.tuples(st.just("get"), st.integers(0, 401)),
    ),
    max_size=300,
)


def labels(ref: int, gen: int = 0) -> tuple[tuple[str, str], ...]:
    return (("__name__", "m"), ("ref", f"{ref}/{gen}"))


@settings(max_examples=300, deadline=None)
@given(ops)
def test_same_answers_as_a_dict(script: list[tuple[str, int]]) -> None:
    t, d = RefTable(), {}
    top = 0
    for step, (op, n) in enumerate(script):
        if op == "new":
            for _ in range(n):
                top += 1
                t[top] = d[top] = labels(top)
        elif op == "set":
            t[n] = d[n] = labels(n, step)
            top = max(top, n)
        elif op == "pop":
            assert t.pop(n, None) == d.pop(n, None)
        else:
            assert t.get(n) == d.get(n)
            assert (n in t) == (n in d)
        assert len(t) == len(d)
    assert t == d
    assert t.items() == sorted(d.items())
    assert list(t) == sorted(d)
    for r in range(0, 402):
        assert t.get(r) == d.get(r)
    probe = [*range(0, 402), 7, 3, 10**12]  # every ref, known or not, repeats, out of order, past the end
    assert t.get_many(probe) == [d.get(r) for r in probe]
    for run in (range(1, top + 1), range(top // 2, top + 1), range(top, top // 3, -1)):  # runs of refs
        if run:
            assert t.get_many(run) == [d.get(r) for r in run]


def test_get_many_of_an_empty_table() -> None:
    assert RefTable().get_many([1, 2]) == [None, None]


def test_holes_are_compacted_away() -> None:
    t = RefTable()
    for r in range(1, 1001):
        t[r] = labels(r)
    for r in range(1, 900):
        t.pop(r)
    assert len(t) == 101
    assert len(t._refs) < 300  # the columns shrank with the live series
    assert t[950] == labels(950)
