"""Run an engine built from a component's arguments; rebuild it on request, retry it on failure.

discovery.kubernetes and the prometheus.operator.* components hold an engine
(a Discoverer, a Manager) that is built from their arguments and runs until
cancelled. New arguments rebuild it; a failure to build or run it is reported
(the component's health reads it) and retried after a pause, or at once when
new arguments arrive. One loop for both, so they cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

RETRY = 5.0  # seconds before a failed engine is built again


class Engine(Protocol):
    async def run(self) -> Any: ...


async def run_restartable(
    start: Callable[[], Awaitable[Engine]],
    stop: Callable[[], Awaitable[None]],
    restart: asyncio.Event,
    on_error: Callable[[str], None],
    retry: float = RETRY,
) -> None:
    """Until cancelled: ``start()`` an engine and run it until it fails or ``restart`` is set,
    then ``stop()`` it; a failure goes to ``on_error`` and is retried after ``retry`` seconds."""
    while True:
        restart.clear()
        task = waiter = None
        try:
            task = asyncio.ensure_future((await start()).run())
            waiter = asyncio.ensure_future(restart.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # a failed engine is reported below
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is reported and retried
            on_error(str(exc) or type(exc).__name__)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(restart.wait(), retry)
        finally:
            for t in (waiter, task):
                if t is not None:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            await stop()
