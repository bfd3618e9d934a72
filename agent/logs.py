"""Structured logs for the whole agent: logfmt or JSON, as the ``logging`` block says.

structlog renders our own events; the standard library's ``logging`` (uvicorn,
aiohttp, kubernetes-asyncio, any engine that uses it) goes through the same renderer, so one process
writes one format. Calling :func:`setup` again (on reload) swaps level and
format in place.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
FORMATS = ("logfmt", "json")


def _renderer(fmt: str) -> Any:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.processors.LogfmtRenderer(key_order=["ts", "level", "msg"], drop_missing=True)


def _alloy_level(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Alloy writes ``level=warn``, and alerting rules match on it."""
    if event.get("level") == "warning":
        event["level"] = "warn"
    return event


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        _alloy_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.format_exc_info,
        structlog.processors.EventRenamer("msg"),
    ]


def setup(level: str = "info", fmt: str = "logfmt", stream: TextIO | None = None) -> None:
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    stream = stream or sys.stderr
    structlog.configure(
        processors=[*_shared(), _renderer(fmt)],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(fmt)],
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                *_shared(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # Per-request access logs would drown the agent's own.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
