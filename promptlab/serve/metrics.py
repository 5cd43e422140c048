"""Prometheus metrics: requests, latency, time to first token, tokens, errors, in flight.

With several workers, each process writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` (the
CLI sets it before the workers start) and ``/metrics`` sums them over the live processes.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The server's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        r = self.registry
        self.requests = Counter(
            "promptlab_serve_requests",
            "Requests answered, by route, flow and HTTP status.",
            ["route", "flow", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "promptlab_serve_request_duration_seconds",
            "Time from request to the end of the response.",
            ["route", "flow"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "promptlab_serve_time_to_first_token_seconds",
            "Streaming: time from request to the first token sent.",
            ["flow"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "promptlab_serve_tokens",
            "Model tokens of answered requests, by flow and direction (input, output).",
            ["flow", "direction"],
            registry=r,
        )
        self.errors = Counter(
            "promptlab_serve_errors",
            "Failed requests, by flow and error code.",
            ["flow", "code"],
            registry=r,
        )
        self.in_flight = Gauge(
            "promptlab_serve_requests_in_flight",
            "Requests being served now.",
            registry=r,
            multiprocess_mode="livesum",
        )

    def render(self) -> bytes:
        """The Prometheus text exposition (summed over workers in multiprocess mode)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
