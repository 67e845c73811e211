"""`/metrics` (Prometheus) and the access log.

Requests are labelled by route *template* (`/v1/users/{user_id}/feed`), never by raw path: a
reader's id must not reach a metric label or a log line. Every label takes a bounded set of
values (methods outside the standard ones are `OTHER`), so no client can grow `/metrics`. The
access log is one JSON object per request with method, route, status and milliseconds;
uvicorn's own access log (raw paths) is off.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("newsroom.access")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# The client picks the method: any other than these is labelled (and logged) `OTHER`, or every
# new one would add a series to /metrics (and 8 KB to a log line) until restart.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


class Metrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "newsroom_http_request_seconds",
            "HTTP request latency by route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.work = Histogram(
            "newsroom_work_seconds",
            "Model work latency: feed/rank scoring and generation jobs, by pool and job.",
            ["pool", "job"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ServiceCollector(Collector):
    """Gauges read at scrape time from the live service."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = getattr(self.app.state, "service", None)
        if service is None:
            return
        yield GaugeMetricFamily(
            "newsroom_index_vectors",
            "Vectors in this process's FAISS index.",
            value=len(service.articles.index),
        )
        stats = service.follower.stats
        yield GaugeMetricFamily(
            "newsroom_log_entries_applied",
            "Change-log entries (events and changes) this process has applied.",
            value=stats.events_applied + stats.changes_applied,
        )
        writing = service.writing
        if writing is None:
            return
        try:  # in shared mode these are Redis reads: a scrape must not fail when Redis does
            depth, hits, misses = writing.queue.depth, *writing.cache.counts()
        except Exception:
            return
        yield GaugeMetricFamily(
            "newsroom_generation_queue_depth", "Generation jobs running or waiting.", value=depth
        )
        yield GaugeMetricFamily(
            "newsroom_generation_cache_hit_ratio",
            "Share of generation cache lookups answered from cache.",
            value=hits / (hits + misses) if hits + misses else 0.0,
        )
        yield GaugeMetricFamily(
            "newsroom_generation_cache_lookups",
            "Generation cache lookups since start.",
            value=hits + misses,
        )


class AccessLog:
    """ASGI middleware: latency histogram + one JSON log line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            method = method_label(scope["method"])
            self.metrics.requests.labels(method, route, str(status)).observe(seconds)
            if route != "/metrics":
                access_log.info(
                    json.dumps(
                        {
                            "method": method,
                            "route": route,
                            "status": status,
                            "ms": round(seconds * 1000, 2),
                        }
                    )
                )
