"""Prometheus metrics of one gateway, in a registry of its own (several gateways may share a
process in tests and in the demo), or, for a gateway's worker processes, written to a folder
they share and read back across all of them (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import re
from collections.abc import Container
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

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
    # Labelled series of the per-exchange metrics kept at hand (prometheus_client's labels()
    # checks and looks up its labels on every call); the labels come from closed sets. The
    # bound is this copy's only (prometheus_client keeps every series it was asked for).
    KEPT = 1024

    def __init__(self, *, folder: Path | None = None) -> None:
        """``folder``: the workers' shared metrics folder. prometheus_client decides where
        values live when it is imported, from ``PROMETHEUS_MULTIPROC_DIR``: the process must
        have been started with it naming this folder."""
        if folder is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR") != str(folder):
            raise RuntimeError(f"start this process with PROMETHEUS_MULTIPROC_DIR={folder}")
        self.folder = folder
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
        self.quota_refusals = Counter(
            "exchange_quota_refusals",
            "Requests refused because a quota of the client's access right was used up",
            ["client", "service", "limit"],
            registry=self.registry,
        )
        self.witness = Counter(
            "exchange_witness_submissions",
            "Tree heads sent to the witness, by outcome (refused: the witness saw a fork)",
            ["outcome"],
            registry=self.registry,
        )
        self.peer_witness = Counter(
            "exchange_peer_witness_heads",
            "Other gateways' tree heads this gateway was shown as a peer witness, by outcome"
            " (forked: a log contradicted a head seen before)",
            ["outcome"],
            registry=self.registry,
        )
        self.peer_witnessing = Counter(
            "exchange_peer_witness_submissions",
            "Tree heads sent to peer witnesses, by peer and outcome",
            ["peer", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "exchange_request_seconds",
            "Time from request in to response out",
            ["side"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.kept: dict[tuple[Any, ...], Any] = {}

    def _series(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (metric, *labels)
        series = self.kept.get(key)
        if series is None:
            if len(self.kept) >= self.KEPT:
                self.kept.clear()
            series = self.kept[key] = metric.labels(*labels)
        return series

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
        shown = service if service in known else "other"
        self._series(self.requests, side, shown, str(status)).inc()
        if error_type:
            match = _TYPE.fullmatch(error_type)
            label = error_type if match and match.group(2) in _CODES else "other"
            self._series(self.errors, side, label).inc()
        self._series(self.latency, side).observe(seconds)

    def refused(self, client: str, service: str, limit: str) -> None:
        """A quota refusal. The labels are bounded: only a client holding an access right that
        declares a quota, a service provided here and one of three limits reach this."""
        self.quota_refusals.labels(client, service, limit).inc()

    def exposition(self) -> bytes:
        """The text format for ``/metrics``: this process's, or every worker's summed."""
        if self.folder is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(self.folder))  # type: ignore[no-untyped-call]
        return generate_latest(merged)
