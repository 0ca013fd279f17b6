"""Figures of a time window from the operational records (``gw_exchanges``): exchanges per
minute, errors by type, latency percentiles, per service and client.

Latency is the gateway's whole handling of an exchange, from the request's arrival to the
response leaving (``response_out - request_in``), in milliseconds. Percentiles are nearest-rank
over the window's records. A window holds at most :data:`MAX_RECORDS` records (the oldest
first); a figure built from fewer than the window had says so (``truncated``).

Operational records are written in batches off the request path and a crash may lose the last
few (see :mod:`exchange.gateway.records`): for what was released, the audit log is the record.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from exchange.gateway import models
from exchange.web.languages import N_

MAX_RECORDS = 200_000
# The stored side (X-Road's names) as the console and the audit log name it.
SIDES = {"client": N_("consumer"), "producer": N_("provider")}


def percentile(ordered: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of ``ordered`` (ascending), None if empty."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Latency:
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: list[float]) -> Latency:
        ordered = sorted(values)
        return cls(
            percentile(ordered, 50),
            percentile(ordered, 90),
            percentile(ordered, 99),
            ordered[-1] if ordered else None,
        )


@dataclass(frozen=True, slots=True)
class Pair:
    side: str  # consumer | provider
    service: str
    client: str
    exchanges: int
    failed: int
    latency: Latency


@dataclass
class Figures:
    since: datetime
    until: datetime
    exchanges: int = 0
    failed: int = 0
    truncated: bool = False
    per_minute: list[tuple[datetime, int, int]] = field(default_factory=list)  # start, all, failed
    errors: list[tuple[str, int]] = field(default_factory=list)  # fault code, count
    latency: Latency = field(default_factory=lambda: Latency(None, None, None, None))
    pairs: list[Pair] = field(default_factory=list)

    def document(self) -> dict[str, object]:
        """The figures as the query API answers them (JSON)."""

        def latency(value: Latency) -> dict[str, float | None]:
            return {"p50": value.p50, "p90": value.p90, "p99": value.p99, "max": value.max}

        return {
            "from": self.since.isoformat(),
            "to": self.until.isoformat(),
            "exchanges": self.exchanges,
            "succeeded": self.exchanges - self.failed,
            "failed": self.failed,
            "truncated": self.truncated,
            "latency_ms": latency(self.latency),
            "per_minute": [
                {"minute": at.isoformat(), "exchanges": count, "failed": failed}
                for at, count, failed in self.per_minute
            ],
            "errors": [{"type": code, "count": count} for code, count in self.errors],
            "by_service_and_client": [
                {
                    "side": pair.side,
                    "service": pair.service,
                    "client": pair.client,
                    "exchanges": pair.exchanges,
                    "failed": pair.failed,
                    "latency_ms": latency(pair.latency),
                }
                for pair in self.pairs
            ],
        }


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def figures(engine: Engine, *, since: datetime, until: datetime) -> Figures:
    """The figures of records whose response left in ``[since, until)``."""
    table = models.Exchange
    query = (
        select(
            table.side,
            table.service,
            table.client,
            table.succeeded,
            table.fault_code,
            table.status,
            table.request_in,
            table.response_out,
        )
        .where(table.response_out >= since, table.response_out < until)
        .order_by(table.response_out, table.id)
        .limit(MAX_RECORDS + 1)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    shown = Figures(since=since, until=until, truncated=len(rows) > MAX_RECORDS)
    rows = rows[:MAX_RECORDS]
    minutes: dict[datetime, list[int]] = {}
    start = _minute(since)
    while start < until and len(minutes) < 24 * 60:  # every minute of the window, even idle
        minutes[start] = [0, 0]
        start += timedelta(minutes=1)
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    by_pair: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    failed_by_pair: Counter[tuple[str, str, str]] = Counter()
    for side, service, client, succeeded, fault, status, request_in, response_out in rows:
        elapsed = (response_out - request_in).total_seconds() * 1000
        latencies.append(elapsed)
        key = (SIDES.get(side, side), service, client)
        by_pair[key].append(elapsed)
        slot = minutes.setdefault(_minute(response_out), [0, 0])
        slot[0] += 1
        if not succeeded:
            shown.failed += 1
            slot[1] += 1
            failed_by_pair[key] += 1
            errors[fault or f"HTTP {status}"] += 1
    shown.exchanges = len(rows)
    shown.per_minute = [(at, counts[0], counts[1]) for at, counts in sorted(minutes.items())]
    shown.errors = errors.most_common()
    shown.latency = Latency.of(latencies)
    shown.pairs = sorted(
        (
            Pair(
                side,
                service,
                client,
                len(values),
                failed_by_pair[(side, service, client)],
                Latency.of(values),
            )
            for (side, service, client), values in by_pair.items()
        ),
        key=lambda pair: (-pair.exchanges, pair.service, pair.client),
    )
    return shown
