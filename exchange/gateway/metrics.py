"""Prometheus metrics of one gateway, in a registry of its own (several gateways may share a
process in tests and in the demo)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "exchange_requests",
            "Exchanges handled",
            ["side", "service", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "exchange_errors",
            "Exchanges that ended in an X-Road error",
            ["side", "type"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "exchange_request_seconds",
            "Time from request in to response out",
            ["side"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
