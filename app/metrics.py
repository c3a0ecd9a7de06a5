"""Prometheus metrics: HTTP, in-flight requests, export streams, rate-limit refusals, both
database pools, the process and the garbage collector, with correct totals across workers.

With `--workers N` (N > 1) `kenes serve` sets PROMETHEUS_MULTIPROC_DIR to a fresh directory:
prometheus_client's multiprocess mode keeps each worker's values in files there and /metrics,
whichever worker answers, adds them up (counters and histograms summed, gauges as their mode
says). Its stock process and GC collectors do not work in that mode (they would describe only
the worker that answers), so the same figures are kept here as ordinary metrics: CPU seconds
and GC counts are counters (summed over workers), memory and descriptors gauges summed over
live workers, and each worker refreshes its own every few seconds and before it answers a
scrape. Without the variable (one worker, the tests) everything stays in the app's registry.
"""

import asyncio
import gc
import os
import time
from contextlib import suppress
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from sqlalchemy.ext.asyncio import AsyncEngine

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REFRESH_SECONDS = 5.0
EXPORT_SUFFIX = "/responses/export"
__all__ = ["CONTENT_TYPE_LATEST", "HttpMetrics", "multiprocess_dir"]


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class HttpMetrics:
    """The app's metrics, in an app-owned registry (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "kenes_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "kenes_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "kenes_http_requests_in_flight",
            "Requests being handled now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.export_streams = Gauge(
            "kenes_export_streams_open",
            "Response exports being streamed now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.rate_limited = Counter(
            "kenes_rate_limit_refusals",
            "Requests refused with 429, by route template",
            ["route"],
            registry=registry,
        )
        pool_labels = ["pool"]
        self.pool_size = Gauge(
            "kenes_db_pool_size",
            "Connections the pool may hold (sqlalchemy: the ORM's; asyncpg: submissions')",
            pool_labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_in_use = Gauge(
            "kenes_db_pool_in_use",
            "Connections handed out now",
            pool_labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_waiting = Gauge(
            "kenes_db_pool_waiting",
            "Requests waiting for a connection now",
            pool_labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.cpu = Counter(
            "process_cpu_seconds",
            "CPU time of the server's processes (user and system), seconds",
            registry=registry,
        )
        self.memory = Gauge(
            "process_resident_memory_bytes",
            "Resident memory of the server's processes, bytes",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.virtual_memory = Gauge(
            "process_virtual_memory_bytes",
            "Virtual memory of the server's processes, bytes",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.open_fds = Gauge(
            "process_open_fds",
            "Open file descriptors of the server's processes",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.max_fds = Gauge(
            "process_max_fds",
            "Per-process limit of open file descriptors",
            registry=registry,
            multiprocess_mode="max",
        )
        self.start_time = Gauge(
            "process_start_time_seconds",
            "Start of the oldest live server process, Unix time",
            registry=registry,
            multiprocess_mode="min",
        )
        self.gc_collections = Counter(
            "python_gc_collections",
            "Garbage collections, by generation",
            ["generation"],
            registry=registry,
        )
        self.gc_collected = Counter(
            "python_gc_objects_collected",
            "Objects the garbage collector freed, by generation",
            ["generation"],
            registry=registry,
        )
        self.gc_uncollectable = Counter(
            "python_gc_objects_uncollectable",
            "Objects the garbage collector found but could not free, by generation",
            ["generation"],
            registry=registry,
        )
        self.gc_seconds = Histogram(
            "python_gc_duration_seconds",
            "Time spent in garbage collections, by generation",
            ["generation"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        # /proc readings, parsed by prometheus_client's own collector (not registered).
        self._process = ProcessCollector(registry=None)
        self._cpu_seen = 0.0
        self._gc_started = 0.0
        self._pools: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    # --- per request (RequestContextMiddleware) ------------------------------------------

    def finished(self, method: str, route: str, status: int, elapsed: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            # labels() checks and joins its values on every call; the children it hands out are
            # kept here, one pair per (method, route template, status) seen, as the metrics
            # themselves keep them.
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(elapsed)
        if status == 429:
            self.rate_limited.labels(route).inc()

    @staticmethod
    def is_export(route: str) -> bool:
        return route.endswith(EXPORT_SUFFIX)

    # --- pools, process, garbage collector -------------------------------------------------

    def watch_pools(self, **pools: Any) -> None:
        """Pools to report by name: a SQLAlchemy engine, an asyncpg pool (or None).

        The engine rather than its pool: engine.dispose() puts a new pool in place.
        """
        self._pools = {name: pool for name, pool in pools.items() if pool is not None}

    def refresh(self) -> None:
        """This process's pool, process and memory figures, as of now."""
        for name, source in self._pools.items():
            pool = source.pool if isinstance(source, AsyncEngine) else source
            size, in_use, waiting = _pool_figures(pool)
            self.pool_size.labels(name).set(size)
            self.pool_in_use.labels(name).set(in_use)
            self.pool_waiting.labels(name).set(waiting)
        readings = {
            sample.name: sample.value
            for family in self._process.collect()
            for sample in family.samples
        }
        cpu = readings.get("process_cpu_seconds_total")
        if cpu is not None and cpu > self._cpu_seen:
            self.cpu.inc(cpu - self._cpu_seen)
            self._cpu_seen = cpu
        for name, gauge in (
            ("process_resident_memory_bytes", self.memory),
            ("process_virtual_memory_bytes", self.virtual_memory),
            ("process_open_fds", self.open_fds),
            ("process_max_fds", self.max_fds),
            ("process_start_time_seconds", self.start_time),
        ):
            if name in readings:
                gauge.set(readings[name])

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        generation = str(info["generation"])
        self.gc_collections.labels(generation).inc()
        self.gc_collected.labels(generation).inc(info["collected"])
        self.gc_uncollectable.labels(generation).inc(info["uncollectable"])
        self.gc_seconds.labels(generation).observe(time.perf_counter() - self._gc_started)

    def start(self, **pools: Any) -> None:
        """From the lifespan: watch these pools and keep the figures fresh until stop()."""
        self.watch_pools(**pools)
        self._task = asyncio.create_task(self._run(), name="kenes-metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        """While the app runs: count collections, refresh the figures every few seconds."""
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                self.refresh()
                await asyncio.sleep(REFRESH_SECONDS)
        finally:
            with suppress(ValueError):
                gc.callbacks.remove(self._on_gc)
            directory = multiprocess_dir()
            if directory:
                # This worker's live gauges leave the sums (counters stay counted).
                multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

    def exposition(self) -> bytes:
        """The text /metrics answers: every worker's values when there are several."""
        self.refresh()
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def _waiters(queue: Any) -> int:
    # Neither pool counts its waiters publicly; both wait on an asyncio.Queue, whose
    # `_getters` holds one future per waiting task.
    return len(getattr(queue, "_getters", None) or ())


def _pool_figures(pool: Any) -> tuple[int, int, int]:
    """(size, in use, waiting) of a SQLAlchemy QueuePool or an asyncpg Pool."""
    if hasattr(pool, "get_max_size"):  # asyncpg
        queue = getattr(pool, "_queue", None)
        idle = pool.get_idle_size()
        return pool.get_max_size(), pool.get_size() - idle, _waiters(queue)
    if hasattr(pool, "checkedout"):  # SQLAlchemy QueuePool
        queue = getattr(getattr(pool, "_pool", None), "_queue", None)
        return pool.size() + max(pool.overflow(), 0), pool.checkedout(), _waiters(queue)
    return 0, 0, 0  # NullPool and the like: nothing held
