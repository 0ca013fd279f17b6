"""The public figures service: what a provider's registers answered, month by month.

Every provider gateway offers the built-in service ``figures`` on each of its subsystems, called
like any X-Road service by any member's system (the portal that publishes them)::

    GET /r1/{provider subsystem}/figures/v1/months?from=2026-01&to=2026-12

The answer is computed from this gateway's operational records (``gw_exchanges``), provider
side only, so each exchange is counted once, by the gateway that answered it. Those records are
read for these columns only: time, service, client, purpose, whether a consent was named, legal
basis, status and fault code; the person (``user_id``), message ids, sizes and signatures are
never read. Exchanges (by consumer and purpose), their basis, timing and the documents released
count releases; refusals (by reason, previews among them) count the rest. Built-in services
(usage, figures, X-Road metaservices) are not counted.

Every count leaves already disclosure-controlled (:func:`exchange.disclosure.published`): small
counts are withheld and the rest rounded here, so no caller ever holds a raw small count. Each
figure is keyed by service (which names the provider), so figures of different providers never
need to be added to be shown.

Only a purpose checked against a consent is shown: under a legal basis or for public data the
purpose header is the caller's word, checked against nothing, and could carry a person code;
those releases share one cell with the purpose ``""``. No table of an answer has more than
:data:`MAX_CELLS` cells: the smallest beyond that are summed, per month and service, into one
cell whose other keys are :data:`OTHER`.

A month is read with one range query on the records' time index and aggregated here; a month
that has ended is kept once computed (its records no longer change, but for the few an
unclean stop may lose), and the current month for :data:`KEEP_CURRENT`, so that repeated asks
cost little.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from audit.log import USAGE_SERVICE
from exchange.disclosure import Month, Months, median_of, published
from exchange.errors import NotFound
from exchange.gateway import models
from exchange.gateway.node import Gateway
from exchange.gateway.xroad import METASERVICES
from exchange.identifiers import SubsystemId, unversioned

SERVICE = "figures"
NOT_COUNTED = frozenset({SERVICE, USAGE_SERVICE, *METASERVICES})
KEEP_CURRENT = timedelta(seconds=60)
MAX_CELLS = 500  # per table in one answer; the rest are summed into OTHER
OTHER = "other"
PREVIEW_KINDS = {"PreviewRequired": "held-for-preview", "PreviewRefused": "refused-after-preview"}


@dataclass
class Tally:
    """One month of one subsystem, before any disclosure control."""

    exchanges: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    basis: Counter[tuple[str, str]] = field(default_factory=Counter)
    refusals: Counter[tuple[str, str]] = field(default_factory=Counter)
    durations: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def basis_of(consent: str | None, legal_basis: str | None) -> str:
    """On what ground a release was made: a consent, a legal basis, or neither (public)."""
    if consent:
        return "consent"
    if legal_basis:
        return "legal-basis"
    return "public"


def reason_of(fault_code: str | None, status: int) -> str:
    """A refusal's reason: the X-Road error type's last part (``AccessDenied``)."""
    if fault_code:
        return fault_code.rsplit(".", 1)[-1]
    return f"HTTP{status}"


class Figures:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._closed: dict[tuple[str, Month], Tally] = {}
        self._current: dict[tuple[str, Month], tuple[datetime, Tally]] = {}
        self._lock = threading.Lock()  # months are computed on worker threads

    async def answer(
        self, *, subsystem: SubsystemId, rest_path: str, parameters: dict[str, str]
    ) -> bytes:
        if rest_path != "/v1/months":
            raise NotFound(f"{subsystem}/figures has no {rest_path or '/'}")
        if subsystem.subsystem_code not in self._gateway.settings.subsystems:
            raise NotFound(f"{subsystem} is not served by this gateway", detail=str(subsystem))
        months = Months.parse(
            parameters.get("from"), parameters.get("to"), now=self._gateway.clock()
        )
        found = await self._gateway.in_thread(self.publish, str(subsystem), months)
        return json.dumps(found, separators=(",", ":")).encode()

    def publish(self, subsystem: str, months: Months) -> dict[str, Any]:
        """The disclosure-controlled figures of ``subsystem`` over ``months``."""
        shown: dict[str, Any] = {
            "subsystem": subsystem,
            **months.query(),
            "exchanges": [],
            "basis": [],
            "refusals": [],
            "previews": [],
            "timing": [],
            "documents": [],
        }
        tallies = [(str(month), self.tally(subsystem, month)) for month in months]
        exchanges = _capped({(m, *k): n for m, t in tallies for k, n in t.exchanges.items()})
        for (name, service, consumer, purpose), n in exchanges:
            shown["exchanges"].append(
                _cell(n, month=name, service=service, consumer=consumer, purpose=purpose)
            )
        refusals = _capped({(m, *k): n for m, t in tallies for k, n in t.refusals.items()})
        for (name, service, reason), n in refusals:
            shown["refusals"].append(_cell(n, month=name, service=service, reason=reason))
            if reason in PREVIEW_KINDS:
                kind = PREVIEW_KINDS[reason]
                shown["previews"].append(_cell(n, month=name, service=service, kind=kind))
        for name, tally in tallies:
            released: Counter[str] = Counter()
            for (service, basis), n in sorted(tally.basis.items()):
                released[service] += n
                shown["basis"].append(_cell(n, month=name, service=service, basis=basis))
            for service, n in sorted(released.items()):
                shown["documents"].append(_cell(n, month=name, service=service))
            for service, durations in sorted(tally.durations.items()):
                median = median_of(durations)
                shown["timing"].append(
                    {
                        "month": name,
                        "service": service,
                        "released": published(len(durations)),
                        "median_ms": None if median is None else round(median),
                    }
                )
        return shown

    def tally(self, subsystem: str, month: Month) -> Tally:
        key = (subsystem, month)
        with self._lock:
            kept = self._closed.get(key)
        if kept is not None:
            return kept
        now = self._gateway.clock()
        if month < Month.of(now):
            tally = self._count(subsystem, month)
            with self._lock:
                self._closed[key] = tally
            return tally
        with self._lock:
            recent = self._current.get(key)
        if recent is not None and recent[0] > now:
            return recent[1]
        tally = self._count(subsystem, month)
        with self._lock:
            # Only this month's entries are ever kept here, one per subsystem.
            self._current = {k: v for k, v in self._current.items() if k[1] == month}
            self._current[key] = (now + KEEP_CURRENT, tally)
        return tally

    def _count(self, subsystem: str, month: Month) -> Tally:
        exchange = models.Exchange
        query = (
            select(
                exchange.service,
                exchange.client,
                exchange.purpose,
                exchange.consent.is_not(None),
                exchange.legal_basis,
                exchange.status,
                exchange.succeeded,
                exchange.fault_code,
                exchange.request_in,
                exchange.response_out,
            )
            .where(exchange.response_out >= month.start)
            .where(exchange.response_out < month.next().start)
            .where(exchange.side == "producer")
            .where(exchange.service.startswith(f"{subsystem}/", autoescape=True))
        )
        tally = Tally()
        with self._gateway.engine.connect() as connection:
            rows: Iterable[Any] = connection.execute(query)
            for service_id, client, purpose, consented, basis, status, ok, fault, into, out in rows:
                parts = str(service_id).split("/")
                if len(parts) < 5 or parts[4] in NOT_COUNTED:
                    continue
                service = unversioned(service_id)
                if ok:
                    # Only a purpose checked against a consent is shown; a refused request's
                    # purpose, or one under a legal basis or of public data, is the caller's
                    # word (it could name a person) and shares one cell, "".
                    shown_purpose = (purpose or "") if consented else ""
                    tally.exchanges[(service, client, shown_purpose)] += 1
                    tally.basis[(service, basis_of("x" if consented else None, basis))] += 1
                    tally.durations[service].append((out - into).total_seconds() * 1000)
                else:
                    tally.refusals[(service, reason_of(fault, status))] += 1
        return tally


def _capped(counts: dict[tuple[str, ...], int]) -> list[tuple[tuple[str, ...], int]]:
    """``counts`` (keyed by month, service, then the table's own keys), sorted; past
    :data:`MAX_CELLS` keys the smallest are summed per month and service into :data:`OTHER`."""
    if len(counts) <= MAX_CELLS:
        return sorted(counts.items())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    # Room for the summed cells: at most one per month and service.
    groups = {key[:2] for key in counts}
    kept = dict(ranked[: max(MAX_CELLS - len(groups), 0)])
    rest: Counter[tuple[str, ...]] = Counter()
    for key, n in ranked[len(kept) :]:
        rest[(*key[:2], *(OTHER for _ in key[2:]))] += n
    for key, n in rest.items():
        kept[key] = kept.get(key, 0) + n
    return sorted(kept.items())


def _cell(count: int, **keys: str) -> dict[str, Any]:
    return {**keys, "count": published(count)}
