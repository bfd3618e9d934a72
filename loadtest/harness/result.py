"""One agent's figures on one workload, and the rules that derive the table's columns.

The scraped count comes from the targets' side (requests nginx served times
the samples in each payload), so every agent is divided by the same number;
what the agent says about itself (scraped, sent) is kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KEEP_UP = 0.95  # an agent keeps up when scrapes and sends both reach 95% of the load
DISTURBED = 0.3  # cores used by other processes above which a window is not trusted


@dataclass
class RunResult:
    workload: str
    agent: str
    targets: int
    interval_s: float
    series_per_target: int
    status: str = "ok"  # "ok", "not yet runnable", or "failed: why"
    wall_s: float = 0.0
    cpu_s: float = 0.0
    scrapes: int = 0  # requests served by the targets in the window
    agent_scraped: float | None = None  # the agent's own count of samples scraped
    agent_sent: float | None = None  # the agent's own count of samples sent
    arrived: float | None = None  # samples the correctness sink stored (VictoriaMetrics)
    backlog: str = ""  # the agent's own backlog gauge at the end, when it has one
    rss_steady: int = 0
    rss_peak: int = 0
    load_cores: float = 0.0  # CPU the targets+sink nginx used, in cores
    other_cores: float = 0.0  # CPU used by anything else on the machine during the window
    # Responsiveness over the window (loadtest/harness/responsiveness.py): the agent's own
    # lag histogram when it has one, and the harness's once-a-second GET of probe_path.
    lag_metric: str = ""  # the histogram read, "" when the agent exports none
    lag_p99_s: float | None = None
    lag_max_bucket_s: float | None = None  # every lag observed was at most this (inf: past 10 s)
    lag_observations: float = 0.0
    probe_path: str = ""
    probe_p50_s: float | None = None
    probe_p99_s: float | None = None
    probe_max_s: float | None = None
    probe_n: int = 0
    probe_failed: int = 0
    # Shoal's overload figures: ticks not scraped in the window by reason (agent/scrape/loop.py)
    # and the share of ticks remote write asked for at its end (agent/remote/admission.py).
    skipped: dict[str, float] = field(default_factory=dict)
    admission_share: float | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def active_series(self) -> int:
        return self.targets * self.series_per_target

    @property
    def offered_rate(self) -> float:
        return self.active_series / self.interval_s

    @property
    def scraped_samples(self) -> int:
        return self.scrapes * self.series_per_target

    @property
    def scraped_rate(self) -> float:
        return self.scraped_samples / self.wall_s if self.wall_s else 0.0

    @property
    def sent_rate(self) -> float | None:
        return None if self.agent_sent is None or not self.wall_s else self.agent_sent / self.wall_s

    @property
    def agent_scraped_rate(self) -> float | None:
        return (
            None
            if self.agent_scraped is None or not self.wall_s
            else self.agent_scraped / self.wall_s
        )

    @property
    def arrived_rate(self) -> float | None:
        return None if self.arrived is None or not self.wall_s else self.arrived / self.wall_s

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_per_million(self) -> float | None:
        return self.cpu_s / (self.scraped_samples / 1e6) if self.scraped_samples else None

    @property
    def bytes_per_series(self) -> float | None:
        return (
            self.rss_steady / self.active_series if self.active_series and self.rss_steady else None
        )

    @property
    def scrape_ratio(self) -> float:
        """Scrapes served over scrapes due (targets / interval over the window)."""
        due = self.targets / self.interval_s * self.wall_s
        return self.scrapes / due if due else 0.0

    @property
    def send_ratio(self) -> float | None:
        """Samples the agent sent over samples the targets served."""
        rate = self.sent_rate if self.arrived is None else self.arrived_rate
        if rate is None or not self.scraped_rate:
            return None
        return rate / self.scraped_rate

    @property
    def backlog_growth(self) -> float | None:
        """Samples/s scraped and not sent in the window: what the backlog grew by (< 0: drained)."""
        rate = self.sent_rate if self.arrived is None else self.arrived_rate
        return None if rate is None or not self.wall_s else self.scraped_rate - rate

    @property
    def sent_share(self) -> float | None:
        """Samples sent over samples offered (every due scrape's payload)."""
        rate = self.sent_rate if self.arrived is None else self.arrived_rate
        return None if rate is None or not self.offered_rate else rate / self.offered_rate

    @property
    def disturbed(self) -> bool:
        return self.other_cores > DISTURBED

    @property
    def keeps_up(self) -> bool:
        if not self.ok:
            return False
        send = self.send_ratio
        return self.scrape_ratio >= KEEP_UP and (send is None or send >= KEEP_UP)
