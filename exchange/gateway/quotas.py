"""Quotas at the provider: how much one client subsystem may ask of one service.

An access right may declare :class:`~exchange.gateway.access.Limits`: requests per second (the
burst), requests per UTC day, and distinct persons asked about per UTC day (the enumeration
limit). The provider checks them after the access right and before the release policy, so a
refused request never reaches the registry; it is answered ``429 QuotaExceeded`` with
``Retry-After``, audited like every refusal and counted in ``exchange_quota_refusals_total``.
A grant without limits costs nothing here: :meth:`Quotas.admit` is not even called.

**Shared by every process, without an fsync per exchange.** The counts live in the gateway's
database (``gw_quota_counts``), which all replicas and worker processes share. A process does
not go there per request: it *leases* a few units of a window at once (one conditional
``UPDATE ... WHERE used < limit``) and spends them from memory. A lease is committed without
waiting for the disk (the unflushed engine); the audit record of any request admitted under it
is committed flushed after it, and the database's log is written in order, so a lease that
admitted an answered request is on disk. A power loss can take only leases whose requests were
never answered.

**The bound.** Leases never add up to more than the limit, so no window ever admits more than
its limit, whatever the number of processes. The price is the other way round: units leased by
one process and not yet spent cannot be used by another, so with ``N`` processes a client can
be refused early by at most ``(N - 1) x lease`` units in a window (and units leased by a
process that stops are lost for the rest of that window). Leases are small for that reason: a
tenth of a per-second limit, a hundredth of a per-day limit (at most 50), at least 1.

Distinct persons are kept as the audit log's keyed hash (``gw_quota_persons``; never the code
itself), one row per client, service, day and person. A person this process has admitted
today is admitted again from memory; a new one takes one unit of the day's persons limit, in
the same transaction that adds the row, so two processes cannot both count the same person or
both take the last unit.

Once a window is found used up, the process refuses from memory until it ends: a flood of
refused requests costs the database nothing. For the persons limit that fails closed: once the
day's persons are used up, a person first admitted today by another process is refused by this
one too (each process still admits again the persons it admitted itself).

Windows are UTC seconds and UTC days of the gateway's clock; a burst may reach twice
``per_second`` across a second's boundary. Rows of ended windows are pruned with the replay
guard's.

Requests count as they are admitted past each limit in turn (per second, per day, persons):
one refused by a later limit has used the earlier ones. Answers replayed for an
``Idempotency-Key`` are not counted again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import Connection, Engine, delete, update

from exchange.db.batch import GroupCommit
from exchange.db.engine import insert_or_skip
from exchange.errors import QuotaExceeded, ServiceUnavailable
from exchange.gateway.access import Limits
from exchange.gateway.models import QuotaCount, QuotaPerson

log = structlog.get_logger(__name__)
DAY = 86400
PER_SECOND, PER_DAY, PERSONS = "per-second", "per-day", "persons-per-day"
KINDS = (PER_SECOND, PER_DAY, PERSONS)
MAX_DAY_LEASE = 50

Key = tuple[str, str, str, int]  # client, service, kind, window


@dataclass(frozen=True, slots=True)
class _Lease:
    key: Key
    limit: int
    want: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class _Person:
    key: Key  # kind PERSONS, window the day
    subject: str
    limit: int
    expires_at: datetime


def lease_size(kind: str, limit: int) -> int:
    if kind == PER_SECOND:
        return max(1, limit // 10)
    return max(1, min(limit // 100, MAX_DAY_LEASE))


class Quotas:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime],
        subject_hash: Callable[[str | None], str | None],
        refused: Callable[[str, str, str], None] = lambda client, service, kind: None,
    ) -> None:
        """``engine``: the unflushed one (see the module docstring); ``refused(client, service,
        limit)`` is told of every refusal (the metrics)."""
        self._engine = engine
        self.clock = clock
        self._subject_hash = subject_hash
        self._refused = refused
        self._new_count = insert_or_skip(engine, QuotaCount)
        self._new_person = insert_or_skip(engine, QuotaPerson).returning(
            QuotaPerson.subject, sort_by_parameter_order=True
        )
        self._writer: GroupCommit[_Lease | _Person, int] = GroupCommit(self._claim, name="quotas")
        # In memory, on the event loop only: units leased and not spent, windows found used up
        # (with the limit they were used up under), persons admitted today.
        self._pool: dict[Key, int] = {}
        self._spent: dict[Key, int] = {}
        self._persons: dict[Key, set[str]] = {}
        self._second = 0

    async def admit(self, *, client: str, service: str, limits: Limits, person: str | None) -> None:
        """Count one request of ``client`` to ``service`` (``SUBSYSTEM/SERVICE``) about
        ``person`` against ``limits``; raise :class:`QuotaExceeded` if one is used up."""
        now = self.clock().timestamp()
        second, day = int(now), int(now // DAY)
        if second != self._second:
            self._forget(second, day)
        if limits.per_second is not None:
            await self._take(client, service, PER_SECOND, second, limits.per_second, now)
        if limits.per_day is not None:
            await self._take(client, service, PER_DAY, day, limits.per_day, now)
        if limits.persons_per_day is not None:
            if not person:
                # The service names no person (no subject parameter): the limit cannot be
                # kept, so nothing is released under it (fail closed), and the operator is told.
                log.error("quota.persons_uncountable", client=client, service=service)
                raise ServiceUnavailable(
                    "this access right limits the persons asked about per day, but the service"
                    " names no person to count",
                    detail="persons-per-day",
                )
            await self._person(client, service, day, limits.persons_per_day, person, now)

    async def _take(
        self, client: str, service: str, kind: str, window: int, limit: int, now: float
    ) -> None:
        key = (client, service, kind, window)
        left = self._pool.get(key, 0)
        if left:
            self._pool[key] = left - 1
            return
        if self._spent.get(key) != limit:
            lease = _Lease(key, limit, lease_size(kind, limit), _ends(kind, window))
            granted = await self._writer.submit(lease)
            if granted:
                self._pool[key] = self._pool.get(key, 0) + granted - 1
                return
            self._spent[key] = limit
        self._refuse(key, limit, now)

    async def _person(
        self, client: str, service: str, day: int, limit: int, person: str, now: float
    ) -> None:
        key = (client, service, PERSONS, day)
        subject = self._subject_hash(person) or ""
        known = self._persons.setdefault(key, set())
        if subject in known:
            return
        if self._spent.get(key) != limit:
            admitted = await self._writer.submit(_Person(key, subject, limit, _ends(PERSONS, day)))
            if admitted:
                known.add(subject)
                return
            self._spent[key] = limit
        self._refuse(key, limit, now)

    def _refuse(self, key: Key, limit: int, now: float) -> None:
        client, service, kind, window = key
        self._refused(client, service, kind)
        ends = _ends(kind, window).timestamp()
        what = {
            PER_SECOND: f"{limit} requests per second",
            PER_DAY: f"{limit} requests per day",
            PERSONS: f"{limit} distinct persons per day",
        }[kind]
        raise QuotaExceeded(
            f"{client} has used its quota of {what} for {service}; try again later",
            detail=kind,
            retry_after=math.ceil(ends - now),
        )

    def _forget(self, second: int, day: int) -> None:
        """Drop what this process holds of windows that have ended."""
        self._second = second
        for held in (self._pool, self._spent, self._persons):
            for key in [k for k in held if k[3] < (second if k[2] == PER_SECOND else day)]:
                del held[key]

    def _claim(self, batch: Sequence[_Lease | _Person]) -> list[int]:
        """One transaction for the batch. Rows are locked in one order (persons, then counts,
        each sorted), so that processes claiming at once cannot deadlock."""
        leases: dict[Key, list[int]] = {}
        persons: dict[Key, dict[str, list[int]]] = {}
        limits: dict[Key, tuple[int, datetime]] = {}
        for index, item in enumerate(batch):
            limits[item.key] = (item.limit, item.expires_at)
            if isinstance(item, _Lease):
                leases.setdefault(item.key, []).append(index)
            else:
                persons.setdefault(item.key, {}).setdefault(item.subject, []).append(index)
        outcomes = [0] * len(batch)
        with self._engine.begin() as connection:
            fresh: dict[Key, list[str]] = {}
            for key in sorted(persons):
                client, service, _, day = key
                asked = sorted(persons[key])
                rows = [
                    {
                        "client": client,
                        "service": service,
                        "day": day,
                        "subject": subject,
                        "expires_at": limits[key][1],
                    }
                    for subject in asked
                ]
                added = set(connection.execute(self._new_person, rows).scalars())
                fresh[key] = [subject for subject in asked if subject in added]
                for subject in asked:
                    if subject not in added:  # counted already, by some process
                        for index in persons[key][subject]:
                            outcomes[index] = 1
            for key in sorted({*leases, *fresh}):
                limit, expires_at = limits[key]
                if key in leases:
                    want = max(len(leases[key]), lease_size(key[2], limit))
                    granted = self._lease(connection, key, limit, want, expires_at)
                    waiting = leases[key]
                    for index in waiting[:granted]:
                        outcomes[index] = 1
                    if granted > len(waiting):
                        outcomes[waiting[0]] += granted - len(waiting)  # the rest to the pool
                else:
                    new = fresh[key]
                    granted = self._lease(connection, key, limit, len(new), expires_at)
                    for subject in new[:granted]:
                        for index in persons[key][subject]:
                            outcomes[index] = 1
                    refused = new[granted:]
                    if refused:  # not counted: their rows go again
                        connection.execute(
                            delete(QuotaPerson).where(
                                QuotaPerson.client == key[0],
                                QuotaPerson.service == key[1],
                                QuotaPerson.day == key[3],
                                QuotaPerson.subject.in_(refused),
                            )
                        )
        return outcomes

    def _lease(
        self, connection: Connection, key: Key, limit: int, want: int, expires_at: datetime
    ) -> int:
        """Up to ``want`` units of ``key``'s window, as many as its limit has left."""
        if want <= 0:
            return 0
        client, service, kind, window = key
        connection.execute(
            self._new_count,
            {
                "client": client,
                "service": service,
                "kind": kind,
                "window": window,
                "used": 0,
                "expires_at": expires_at,
            },
        )
        used = connection.execute(
            update(QuotaCount)
            .where(
                QuotaCount.client == client,
                QuotaCount.service == service,
                QuotaCount.kind == kind,
                QuotaCount.window == window,
                QuotaCount.used < limit,
            )
            .values(used=QuotaCount.used + want)
            .returning(QuotaCount.used)
        ).scalar()
        if used is None:
            return 0
        # ``used`` counts what was asked for and may pass the limit; what is granted never does.
        return min(want, limit - (used - want))

    def prune(self, *, at: datetime) -> int:
        with self._engine.begin() as connection:
            counts = connection.execute(delete(QuotaCount).where(QuotaCount.expires_at < at))
            people = connection.execute(delete(QuotaPerson).where(QuotaPerson.expires_at < at))
        return int(getattr(counts, "rowcount", 0) or 0) + int(getattr(people, "rowcount", 0) or 0)

    async def close(self) -> None:
        await self._writer.close()


def _ends(kind: str, window: int) -> datetime:
    seconds = window + 1 if kind == PER_SECOND else (window + 1) * DAY
    return datetime.fromtimestamp(seconds, UTC)
