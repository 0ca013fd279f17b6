"""Prometheus metrics of one gateway, in a registry of its own (several gateways may share a
process in tests and in the demo)."""

from __future__ import annotations

import re
from collections.abc import Container

from prometheus_client import CollectorRegistry, Counter, Histogram

from exchange import errors

# Label values come from a closed set, never from what a caller sent: otherwise every made-up
# service id or error type would create a new time series.
_CODES = frozenset(
    cls.code
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.Error)
)
_TYPE = re.compile(r"(Client|Server(?:\.ClientProxy|\.ServerProxy)?)\.([A-Za-z]+)")


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

    def observe(
        self,
        *,
        side: str,
        service: str,
        known: Container[str],
        status: int,
        error_type: str | None,
        seconds: float,
    ) -> None:
        self.requests.labels(side, service if service in known else "other", str(status)).inc()
        if error_type:
            match = _TYPE.fullmatch(error_type)
            label = error_type if match and match.group(2) in _CODES else "other"
            self.errors.labels(side, label).inc()
        self.latency.labels(side).observe(seconds)
