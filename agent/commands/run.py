"""``shoal run [flags] PATH``: run the components of a configuration until SIGTERM.

This module is the composition root: it reads the configuration, builds the
controller and the HTTP server in one event loop, and turns signals, the
reload endpoint and changes of the files on disk into reloads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import REGISTRY

from agent import logs
from agent.commands import clusterflags
from agent.components import registry as component_registry
from agent.discovery.informers import Informers
from agent.loopclock import LoopClock
from agent.runtime import looplag, services, sources
from agent.runtime.controller import Controller
from agent.runtime.metrics import RuntimeCollector
from agent.server.app import build_app
from agent.server.http import HTTPInfo, HTTPServer, bind
from agent.server.livefeed import LiveFeed
from agent.syntax.diag import DiagnosticsError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run the components of a configuration file or folder")
    p.add_argument("path", help="a configuration file, or a folder whose *.alloy files are loaded together")
    p.add_argument("--server.http.listen-addr", dest="listen_addr", default="127.0.0.1:12345",
                   help="address the HTTP server listens on (default %(default)s)")
    p.add_argument("--storage.path", dest="storage_path", default="data-shoal/",
                   help="folder for component state such as the WAL (default %(default)s)")
    p.add_argument("--config.watch-interval", dest="watch_interval", type=float, default=3.0,
                   help="seconds between checks of the configuration files for changes; 0 disables (default %(default)s)")
    clusterflags.add_flags(p)
    p.add_argument("--server.http.ui-path-prefix", dest="ui_path_prefix", default="/",
                   help="path the UI and /api/v0/web are served under, e.g. behind a reverse proxy (default %(default)s)")
    for flag in ("stability.level", "disable-reporting", "config.format", "config.bypass-conversion-errors",
                 "feature.community-components.enabled"):
        p.add_argument(f"--{flag}", dest="ignored_" + flag.replace(".", "_").replace("-", "_"), nargs="?",
                       const="true", default=None, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    logs.setup()
    tune_gc()
    try:
        agent = Agent(args)
    except clusterflags.FlagError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(agent.run())


def tune_gc() -> None:
    """Fewer, shorter collector pauses on the shared event loop.

    A scrape allocates tens of thousands of short-lived objects; with CPython's
    default thresholds the young generation is collected every 700 allocations
    and older generations often enough that a full pass over every cached
    series (100-120 ms at 200k series) stalls the loop, and with it scrapes,
    sends and the API. Measured under the heavy load test: collector time 3.2 s
    -> 0.35 s per run, loop-lag samples over 50 ms 9% -> 0.4%. The agent makes
    few reference cycles, so garbage does not pile up between the rarer passes.
    """
    gc.set_threshold(20_000, 20, 50)


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.path = Path(args.path)
        self.listen_addr: str = args.listen_addr
        self.watch_interval: float = args.watch_interval
        # The process' services, started before the first component and stopped after the last.
        self.ui_path_prefix: str = args.ui_path_prefix
        self.live = LiveFeed()
        # One clock for the loop's lag and stalls, started first: the cluster service (which
        # hands targets off after a stall) and the remote-write queues (which send only once
        # it has) share it, so they agree on what a stall was and in which order to act.
        self.lag = looplag.lag_histogram(REGISTRY)
        self.clock = LoopClock(on_lag=self.lag.observe)
        self.services = services.Services(**{
            services.LOOP_CLOCK: self.clock,
            services.HTTP: HTTPInfo(args.listen_addr),
            services.LIVE_DEBUGGING: self.live,
            # Informers connect only when a discovery.kubernetes component asks for one.
            services.KUBERNETES_INFORMERS: Informers(registry=REGISTRY),
        })
        # Clustering: the service starts before the first component and leaves after the last.
        if clusterflags.enabled(args):
            cluster, problems = clusterflags.build(args)
            self.clock.threshold = cluster.options.stall_threshold  # --cluster.tuning may set it
            cluster.clock = self.clock
            self.services.add(services.CLUSTER, cluster)
            for problem in problems:
                structlog.get_logger("run").warning("cluster join address skipped", reason=problem)
        for flag, why in clusterflags.ignored(args):
            structlog.get_logger("run").warning("cluster flag ignored", flag=flag, reason=why)
        self.controller = Controller(
            storage_path=Path(args.storage_path), registry=component_registry(), services=self.services
        )
        self.log = structlog.get_logger("run")
        self._sources: list[sources.Source] = []
        self._fingerprint = ""
        self._reload_lock = asyncio.Lock()
        self._stop = asyncio.Event()

    def render(self, exc: DiagnosticsError) -> str:
        return sources.render_all(exc, self._sources)

    def _read(self) -> Any:
        """Read, parse and check the configuration on disk; returns the checked graph."""
        self._fingerprint = sources.fingerprint(self.path)
        self._sources = sources.read(self.path)
        files = sources.parse(self._sources)
        return self.controller.check(files)

    def _apply_logging(self) -> None:
        settings = self.controller.settings.get("logging")
        if settings is not None:
            logs.setup(settings.level, settings.format)
        else:
            logs.setup()

    async def run(self) -> int:
        try:
            graph = self._read()
        except DiagnosticsError as exc:
            print(self.render(exc), file=sys.stderr)
            return 1
        try:
            sock = bind(self.listen_addr)
        except (OSError, ValueError) as exc:
            print(f"cannot listen on {self.listen_addr}: {exc}", file=sys.stderr)
            return 1
        # Signals are ours from here on: a SIGTERM while components start (a slow
        # start on a busy node) still ends in an orderly stop, not the default kill.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        REGISTRY.register(RuntimeCollector(self.controller))
        REGISTRY.register(self.controller.metrics)
        if clusterflags.enabled(self.args):  # the cluster's progress reads the scrape pools
            cluster = self.services.get(services.CLUSTER)
            cluster.scrape_progress = clusterflags.scrape_progress(self.controller)
            cluster.write_progress = clusterflags.write_progress(self.controller)
        self.controller.settings = graph.settings
        self._apply_logging()
        await self.services.start()
        try:
            await self.controller.apply(graph)
            self.controller.record_load(True)
        except DiagnosticsError as exc:
            self.controller.record_load(False)
            for d in exc.diagnostics:
                self.log.error("component failed to start", err=str(d))
        self._app = app = build_app(self.controller, self.reload, REGISTRY, self.render, self.ui_path_prefix, self.live)
        clustered = self.services.get(services.CLUSTER) if clusterflags.enabled(self.args) else None
        server = HTTPServer(app, sock, tls=clusterflags.server_tls(clustered))
        await server.start()
        app.state.shoal.ready = True
        self.log.info("now listening", addr=server.address, config=str(self.path))

        watcher = asyncio.create_task(self._watch(), name="config-watcher")
        slow = self._slow_callbacks()

        await self._stop.wait()
        app.state.shoal.ready = False
        for task in (watcher, *slow):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if clusterflags.enabled(self.args):
            # Our targets go to the others at an announced instant while we still scrape them.
            await self.services.get(services.CLUSTER).hand_over()
        await self.controller.stop()
        await self.services.stop()
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        self.log.info("stopped")
        return 0

    def _on_stop_signal(self, sig: int) -> None:
        if self._stop.is_set():
            self.log.warn("already shutting down", signal=signal.Signals(sig).name)
            return
        self.log.info("shutting down", signal=signal.Signals(sig).name)
        self._stop.set()

    def _on_reload_signal(self) -> None:
        async def go() -> None:
            with contextlib.suppress(DiagnosticsError):
                await self.reload()

        asyncio.get_running_loop().create_task(go(), name="reload-on-sighup")

    async def reload(self) -> None:
        """Apply the configuration on disk; a broken one is logged, raised, and changes nothing."""
        async with self._reload_lock:
            try:
                graph = self._read()
                await self.controller.apply(graph)
            except DiagnosticsError as exc:
                self.controller.record_load(False)
                self._app.state.shoal.config_error = self.render(exc)
                for d in exc.diagnostics:
                    self.log.error("failed to reload config", err=str(d))
                raise
            self.controller.record_load(True)
            self._app.state.shoal.config_error = ""
            self._apply_logging()
            self.log.info("config reloaded", config=str(self.path))

    def _slow_callbacks(self) -> list[asyncio.Task[None]]:
        """A profiling run's slow-callback finder (``SHOAL_SLOW_CALLBACKS=<seconds>``), or nothing."""
        raw = os.environ.get("SHOAL_SLOW_CALLBACKS")
        if not raw:
            return []
        try:
            threshold = float(raw)
        except ValueError:
            self.log.warning("SHOAL_SLOW_CALLBACKS ignored: not a number of seconds", value=raw)
            return []
        finder = looplag.SlowCallbacks(threshold)
        finder.install()
        return [asyncio.create_task(looplag.report_slow_callbacks(finder, self.log), name="slow-callbacks")]

    async def _watch(self) -> None:
        if self.watch_interval <= 0:
            return
        while True:
            await asyncio.sleep(self.watch_interval)
            if sources.fingerprint(self.path) != self._fingerprint:
                self.log.info("config changed on disk; reloading")
                with contextlib.suppress(DiagnosticsError):
                    await self.reload()
