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

Two figures per healthy endpoint: its *lag* (how far, in seconds of
samples, the newest sample sent trails the newest appended) says whether it
is behind at all, and the samples appended and done with (sent, refused or
dropped) over the last ``WINDOW`` seconds say whether the backlog grows and
how fast the sender goes. The lag alone cannot steer: the sender works
through samples written a lag ago, so after a cut the lag goes on growing
for as long as the lag itself, and a rule that cut while it grew cut far too
deep (a first try: 450k/s offered, 32 % scraped). The sample rates answer
within a scrape interval. With ``bound`` twice the endpoint's batch send
deadline (what a healthy queue may hold back by design), at least
``MIN_BOUND`` (a 200 ms deadline made it 0.4 s, and the ordinary jitter of a
busy agent, or the catch-up after a SIGSTOP, was read as a slow sender: the
three-agent cluster test saw every target scraped every other second):

- lag over ``NUDGE_AT`` of the bound: the share becomes ``share * done /
  appended * MARGIN`` (the sender's pace over the window, a little under it so
  the backlog drains), moved by at most ``MAX_CUT`` down or ``MAX_RAISE`` up
  at once and at most once a ``WINDOW`` (a change shows in the rates after
  the scrapes in flight); when the sender sends more than is appended the
  same rule raises the share, so it settles near the sender's pace;
- lag under half the bound: the share grows by ``STEP`` a second, back to 1
  (everything scraped);
- otherwise it holds.

A queue that sent nothing over the window (starting, resharding) gives no
pace to judge, and neither does one in its first ``STARTUP`` seconds or
whose shard tuner still adds shards: more shards would send faster, so the
pace is not yet the sender's own. At heavy loads the tuner takes ~50 s to
reach its 50 shards (1 -> 2 -> 4 -> 8 -> 16 -> 32 -> 50), sending 27k of 329k
samples/s at 30 s: judged then, the share was halved for a backlog more
shards drained.

While an endpoint is failing and no healthy one is falling behind, the share
is 1 at once: everything is scraped and the WAL buffers the outage.

The share never goes below ``FLOOR``: every target is still scraped at least
once every 1 / FLOOR ticks, and nothing already scraped is dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

FLOOR = 0.1
MARGIN = 0.95
MAX_CUT = 0.5
MAX_RAISE = 1.25
STEP = 0.05
MIN_BOUND = 5.0  # seconds: the least lag bound, whatever the send deadline
STARTUP = 10.0  # seconds a new queue is left before it is judged (the tuner's first ticks)
NUDGE_AT = 0.75  # of the bound: past it, a backlog that grows is cut
WINDOW = 3.0  # seconds over which the rates are taken, and the least time between two cuts


@dataclass(frozen=True, slots=True)
class Backlog:
    """One queue's read-only view of how far behind the WAL's writer it is."""

    lag: float  # seconds the newest acknowledged sample trails the newest appended
    bound: float  # seconds of lag a healthy queue holds back by design (twice its send deadline)
    healthy: bool  # no failure being retried, no recovery from one under way
    appended: int  # samples appended to the WAL since the queue started (a counter)
    done: int  # samples since sent, refused or dropped (a counter)
    age: float = STARTUP  # seconds since the queue started
    ramping: bool = False  # the shard tuner still adds shards: the sender's pace is not its own yet


class Admission:
    """The share of scrape ticks the producers of one RemoteWrite are asked to make."""

    def __init__(self, startup: float = STARTUP) -> None:
        self.startup = startup
        self.share = 1.0
        self.reason = ""  # why shedding, for the status page; "" when everything is scraped
        self._history: dict[str, deque[tuple[float, Backlog]]] = {}
        self._cut_at = -WINDOW  # when the share was last set by the pace

    @property
    def shedding(self) -> bool:
        return self.share < 1.0

    def tick(self, now: float, backlogs: dict[str, Backlog]) -> float:
        """Judge the backlogs at monotonic time ``now``; the new share."""
        for name in list(self._history):
            if name not in backlogs:
                del self._history[name]
        behind: float | None = None  # the lowest done / appended over the endpoints that are behind
        why = ""
        small = True
        outage = False
        for name, b in backlogs.items():
            hist = self._history.setdefault(name, deque())
            hist.append((now, b))
            while len(hist) > 1 and now - hist[1][0] >= WINDOW:
                hist.popleft()
            if not b.healthy:
                hist.clear()  # an outage's backlog is no evidence of a slow sender
                outage = True
                continue
            small = small and b.lag <= b.bound / 2
            t0, b0 = hist[0]
            span = now - t0
            came, went = b.appended - b0.appended, b.done - b0.done
            if came < 0 or went < 0:  # the queue was rebuilt (a reload): its counters began again
                hist.clear()
                hist.append((now, b))
                continue
            if span < WINDOW or b.age < self.startup or b.ramping or b.lag <= NUDGE_AT * b.bound or came <= 0 or went <= 0:
                continue
            if behind is None or went / came < behind:
                behind = went / came
                why = (
                    f"remote write to {name} is {b.lag:.1f} s behind the WAL (bound {b.bound:.1f} s) "
                    f"and sent {went / span:,.0f} samples/s of the {came / span:,.0f}/s appended "
                    "while the backend answers: scrapes are paced to what the sender keeps up with"
                )
        if behind is not None:
            if now - self._cut_at >= WINDOW:
                factor = min(MAX_RAISE, max(MAX_CUT, behind * MARGIN))
                self.share = min(1.0, max(FLOOR, self.share * factor))
                self._cut_at = now
        elif outage:
            self.share = 1.0  # buffering an outage is the WAL's job: scrape everything
        elif small:
            self.share = min(1.0, self.share + STEP)
        if not self.shedding:
            self.reason = ""
        elif why:
            self.reason = why
        return self.share

    def status(self) -> dict[str, object]:
        return {"share": round(self.share, 3), "shedding": self.shedding, "reason": self.reason}
