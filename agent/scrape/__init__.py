"""The scrape engine: targets, scheduling, HTTP, exposition parsers, scrape cache, staleness.

Knows nothing of the component runtime; ``prometheus.scrape`` builds a
ScrapeConfig and a ScrapePool, calls ``sync`` with discovered targets and reads
``targets()`` for its debug info.
"""

from agent.scrape.cache import ScrapeCache
from agent.scrape.config import (
    DEFAULT_PROTOCOLS,
    PROTOCOL_HEADERS,
    ScrapeConfig,
    format_duration,
    parse_duration,
)
from agent.scrape.openmetrics import parse_openmetrics
from agent.scrape.pool import DroppedTarget, ScrapePool
from agent.scrape.target import Target, TargetStatus, populate_labels
from agent.scrape.textparse import Exposition, ParseError, Sample, parse_text

__all__ = [
    "DEFAULT_PROTOCOLS",
    "PROTOCOL_HEADERS",
    "DroppedTarget",
    "Exposition",
    "ParseError",
    "Sample",
    "ScrapeCache",
    "ScrapeConfig",
    "ScrapePool",
    "Target",
    "TargetStatus",
    "format_duration",
    "parse_duration",
    "parse_openmetrics",
    "parse_text",
    "populate_labels",
]
