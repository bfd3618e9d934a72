"""Back-pressure from remote write to the scrapes that feed it: the share of scrapes to make.

On one core, scraping and sending share the CPU. Scrapes start on a clock, so
when the agent is short of CPU they take what they need and the remote-write
queues get the rest: at 450k samples/s offered Shoal scraped everything and
sent 61 % of it, and the WAL grew without bound. Scraping what cannot be sent
only turns CPU into disk. ``Admission`` watches each queue's backlog once a
second and asks the scrapes upstream to make only a share of their ticks
(agent/scrape/loop.py skips the rest fairly and counts them as
``reason="backpressure"``), so what is scraped is sent.

It sheds only when the sender itself cannot keep up while the backend answers
fine. An endpoint that is failing, or recovering from a failure (its send
rate limited while it catches up), is left out of the judgement: the WAL
exists to buffer outages, and the catch-up after one (issue 10) must not be
throttled by this.

The rule, per healthy endpoint, with ``bound`` twice its batch send deadline
(what a healthy queue may hold back by design):

- backlog over the bound and growing over the last ``WINDOW`` seconds: the
  share is cut by ``CUT`` (multiplicative: it reaches the sender's pace in a
  few seconds; at most once a ``WINDOW``, the time a cut takes to show);
- backlog between ``NUDGE_AT`` of the bound and the bound, growing: cut by
  ``NUDGE``;
- backlog under half the bound: the share grows by ``STEP`` a second, back
  to 1 (everything scraped);
- otherwise it holds, and the backlog drains.

While an endpoint is failing and no healthy one is falling behind, the share
is 1 at once: everything is scraped and the WAL buffers the outage.

The share never goes below ``FLOOR``: every target is still scraped at least
once every 1 / FLOOR ticks, and nothing already scraped is dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

FLOOR = 0.1
CUT = 0.9
NUDGE = 0.97
STEP = 0.02
NUDGE_AT = 0.75  # of the bound: a growing backlog past it is nudged down
WINDOW = 2.0  # seconds over which "growing" is judged, and the least time between two cuts


@dataclass(frozen=True, slots=True)
class Backlog:
    """One queue's read-only view of how far behind the WAL's writer it is."""

    lag: float  # seconds the newest acknowledged sample trails the newest appended
    bound: float  # seconds of lag a healthy queue holds back by design (twice its send deadline)
    healthy: bool  # no failure being retried, no recovery from one under way
    pending: int  # samples read from the WAL and waiting in the shards


class Admission:
    """The share of scrape ticks the producers of one RemoteWrite are asked to make."""

    def __init__(self) -> None:
        self.share = 1.0
        self.reason = ""  # why shedding, for the status page; "" when everything is scraped
        self.worst = ""  # the endpoint judged last
        self._history: dict[str, deque[tuple[float, float]]] = {}
        self._cut_at = -WINDOW  # a cut shows in the backlog only after the scrapes and sends in flight

    @property
    def shedding(self) -> bool:
        return self.share < 1.0

    def tick(self, now: float, backlogs: dict[str, Backlog]) -> float:
        """Judge the backlogs at monotonic time ``now``; the new share."""
        for name in list(self._history):
            if name not in backlogs:
                del self._history[name]
        verdict = 0  # -2 cut, -1 nudge, 0 hold (or grow, when every backlog is small)
        why = ""
        small = True
        outage = False
        for name, b in backlogs.items():
            hist = self._history.setdefault(name, deque())
            hist.append((now, b.lag))
            while len(hist) > 1 and now - hist[1][0] >= WINDOW:
                hist.popleft()
            if not b.healthy:
                hist.clear()  # an outage's backlog is no evidence of a slow sender
                outage = True
                continue
            small = small and b.lag <= b.bound / 2
            span = now - hist[0][0]
            growth = b.lag - hist[0][1] if span >= WINDOW and now - self._cut_at >= WINDOW else 0.0
            v = 0 if growth <= 0 else -2 if b.lag > b.bound else -1 if b.lag > NUDGE_AT * b.bound else 0
            if v < verdict:
                verdict = v
                self.worst = name
                why = (
                    f"remote write to {name} is {b.lag:.1f} s behind the WAL (bound {b.bound:.1f} s) "
                    f"and fell {growth:.1f} s further behind in {span:.0f} s while the backend "
                    "answers: the sender cannot keep up, so fewer scrapes are made"
                )
        if verdict < 0:
            self.share = max(FLOOR, self.share * (CUT if verdict == -2 else NUDGE))
            self._cut_at = now
        elif outage:
            self.share = 1.0  # buffering an outage is the WAL's job: scrape everything
        elif small:
            self.share = min(1.0, self.share + STEP)
        if why:
            self.reason = why
        elif not self.shedding:
            self.reason = ""
        return self.share

    def status(self) -> dict[str, object]:
        return {"share": round(self.share, 3), "shedding": self.shedding, "reason": self.reason}
