"""A scrape pool's targets in the shape the debug API and the UI read.

``prometheus.scrape`` and the prometheus-operator components both own scrape pools;
the Targets page, "why not scraped" and ``/api/v0/web/targets`` read every component's
targets through this one shape, so a monitor's targets show beside a scrape's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from agent import labels as lbl
from agent.scrape.pool import ScrapePool


def pool_targets(pool: ScrapePool, owner: str | None) -> dict[str, Any]:
    """``targets`` (scraped here), ``targets_dropped`` (by the pool's own checks, as many as
    it keeps) and, with clustering (``owner`` is this agent's name), ``targets_elsewhere``."""
    out = []
    for t in pool.targets():
        row = {
            "job": lbl.get(t.labels, "job"),
            "url": t.scrape_url,
            "health": t.health,
            "labels": dict(t.labels),
            "discovered_labels": dict(t.discovered_labels),
            "last_error": t.last_error,
            "last_scrape": dt.datetime.fromtimestamp(t.last_scrape, dt.UTC).isoformat()
            if t.last_scrape else "",
            "last_scrape_duration": f"{t.last_scrape_duration:.3f}s",
            "series": t.series,
        }
        if owner is not None:
            row["owner"] = owner
        out.append(row)
    info: dict[str, Any] = {"targets": out}
    dropped = pool.dropped_targets()
    if dropped:
        info["targets_dropped"] = [{"labels": dict(t.discovered_labels), "reason": t.reason}
                                   for t in dropped]
    if owner is not None:
        info["targets_elsewhere"] = [{"labels": dict(t.labels), "owner": t.owner}
                                     for t in pool.elsewhere_targets()]
    return info
