"""What flows between components: batches of samples and those who accept them.

This is the one contract between the scrape engine, `prometheus.relabel` and
`prometheus.remote_write` (Alloy's ``storage.Appendable``, which is what
``forward_to`` lists hold). It is columnar on purpose: one scrape hands on one
batch with one call, so the per-sample cost of crossing a component boundary is
nothing; a receiver that filters or rewrites builds a new batch and never
mutates the one it was given, because a fan-out passes the same object to
every receiver.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agent.labels import AnyLabels, Labels

# The NaN Prometheus writes as a staleness marker: a specific bit pattern that
# no arithmetic produces, so it can be told apart from an exposed NaN.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def is_stale_nan(v: float) -> bool:
    return v != v and struct.pack("<d", v) == _STALE_BYTES


_STALE_BYTES = struct.pack("<d", STALE_NAN)
assert math.isnan(STALE_NAN)

# The handoff marker: a scrape pool appends one per series of a target that moved
# to another agent (clustering). It travels the normal path (relabeling carries it,
# the WAL records it, so it survives a crash) and tells a remote-write queue that
# its unsent samples of that series older than the marker's timestamp would reach
# the backend after the new owner's newer ones: they are dropped, counted
# (``reason="handed_off"``), and the marker itself is never sent. Another NaN
# payload than the stale marker's, so neither is mistaken for the other.
HANDOFF_NAN_BITS = 0x7FF00000000000A5
HANDOFF_NAN: float = struct.unpack("<d", struct.pack("<Q", HANDOFF_NAN_BITS))[0]
HANDOFF_BYTES = struct.pack("<d", HANDOFF_NAN)
assert math.isnan(HANDOFF_NAN)


def is_handoff_nan(v: float) -> bool:
    return v != v and struct.pack("<d", v) == HANDOFF_BYTES


@dataclass(slots=True)
class Metadata:
    """A metric family's TYPE/HELP/UNIT, as remote-write metadata carries them."""

    type: str = "unknown"
    help: str = ""
    unit: str = ""


@dataclass(slots=True, frozen=True)
class Histogram:
    """A native (sparse, exponential) histogram sample, as Prometheus models one.

    Bucket counts are absolute per bucket (not the deltas the wire formats use);
    encoders turn them into deltas. ``is_float`` says whether the counts came as
    floats (a FloatHistogram) or integers, which remote write keeps apart.
    ``custom_values`` holds the bucket bounds of a schema -53 histogram (NHCB).
    ``counter_reset_hint``: 0 unknown, 1 yes, 2 no, 3 gauge.
    """

    count: float
    sum: float
    schema: int
    zero_threshold: float = 0.0
    zero_count: float = 0.0
    positive_spans: tuple[tuple[int, int], ...] = ()
    positive_counts: tuple[float, ...] = ()
    negative_spans: tuple[tuple[int, int], ...] = ()
    negative_counts: tuple[float, ...] = ()
    counter_reset_hint: int = 0
    is_float: bool = False
    custom_values: tuple[float, ...] = ()


@dataclass(slots=True)
class SampleBatch:
    """Parallel columns: ``labels[i]`` had ``values[i]`` at ``timestamps[i]`` (ms).

    A label set is a tuple of pairs or its encoded form (agent/labels.py
    ``encode``, what a scrape hands on): both name the same series, and
    ``labels.as_labels`` gives the pairs of either.

    ``metadata`` maps a metric family name to its metadata, when the source knew it.
    ``histograms`` holds native histogram samples as ``(labels, timestamp_ms,
    Histogram)``; they are rare next to float samples, so they are not columnar.
    A native histogram series that goes stale gets a float ``STALE_NAN`` sample.
    ``exemplars`` holds ``(series labels, timestamp_ms, value, exemplar labels)``;
    rare too, and not columnar.
    """

    labels: list[AnyLabels] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    metadata: dict[str, Metadata] = field(default_factory=dict)
    histograms: list[tuple[AnyLabels, int, Histogram]] = field(default_factory=list)
    exemplars: list[tuple[AnyLabels, int, float, Labels]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    def add(self, labels: AnyLabels, ts: int, value: float) -> None:
        self.labels.append(labels)
        self.timestamps.append(ts)
        self.values.append(value)


@runtime_checkable
class Appendable(Protocol):
    """Accepts batches; what a ``forward_to`` list holds.

    ``append`` is called on the event loop and must not block it: buffer, and
    leave slow work (fsync, network) to a task of your own.
    """

    def append(self, batch: SampleBatch) -> None: ...


def admission(receiver: object) -> float:
    """The share of scrape ticks ``receiver`` asks its producers to make now (1.0: all of them).

    Back-pressure travels up the ``forward_to`` graph: a receiver that cannot
    pass on what it is given (remote write short of CPU, agent/remote/admission.py)
    answers below 1 from an optional ``admission()`` method, and those who only
    forward (a fan-out, ``prometheus.relabel``) answer their receivers' lowest.
    A receiver without the method takes everything.
    """
    ask = getattr(receiver, "admission", None)
    return 1.0 if ask is None else ask()


class Fanout:
    """Forwards each batch to every receiver, so one failing receiver cannot starve the rest."""

    __slots__ = ("receivers",)

    def __init__(self, receivers: list[Appendable]) -> None:
        self.receivers = receivers

    def admission(self) -> float:
        """The lowest share any receiver asks for: the same scrape feeds them all."""
        share = 1.0
        for r in self.receivers:
            share = min(share, admission(r))
        return share

    def append(self, batch: SampleBatch) -> None:
        first: BaseException | None = None
        for r in self.receivers:
            try:
                r.append(batch)
            except Exception as exc:  # noqa: BLE001 - reported after the others ran
                first = first or exc
        if first is not None:
            raise first
