"""Access rights on the provider side: deny unless a grant allows.

A grant names a service (``INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE``), a subject (a client id or
``group:NAME``), optionally a REST method and a path pattern, and optionally the legal basis the
client holds for it (which services with the ``legal-basis`` policy require), and optionally
the quotas of each client it covers (:class:`Limits`, enforced by
:mod:`exchange.gateway.quotas`). Grants and groups live in the gateway's database and are
changed by ``exchange gateway access ...`` or the console (possibly from another process); the
provider reloads them at most ``cache_ttl`` seconds after a change. Every change names its
actor and goes to the change log (:mod:`exchange.gateway.changes`) in the same transaction.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange.errors import AccessDenied, Conflict, InvalidRequest, NotFound
from exchange.gateway import changes, models
from exchange.identifiers import ServiceId, check_segment, parse_client

GROUP_PREFIX = "group:"
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


@dataclass(frozen=True, slots=True)
class Limits:
    """Quotas of one client subsystem on one service; ``None`` is no limit.

    ``per_second``: requests in one second (the burst); ``per_day``: requests in one UTC day;
    ``persons_per_day``: distinct persons asked about in one UTC day (the enumeration limit).
    """

    per_second: int | None = None
    per_day: int | None = None
    persons_per_day: int | None = None

    def __bool__(self) -> bool:
        return (self.per_second, self.per_day, self.persons_per_day) != (None, None, None)

    def checked(self) -> Limits:
        for name in ("per_second", "per_day", "persons_per_day"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1_000_000_000:
                raise InvalidRequest(
                    f"a limit is a whole number from 1 to 10^9 ({name})", detail=name
                )
        return self

    def shown(self) -> dict[str, int]:
        """The limits that are set, as the change log keeps them."""
        names = ("per_second", "per_day", "persons_per_day")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


NO_LIMITS = Limits()


def _the_right(
    service: str, subject: str, method: str, path: str
) -> tuple[ColumnElement[bool], ...]:
    """The conditions naming one access right exactly as it was granted."""
    return (
        models.AccessRight.service == service,
        models.AccessRight.subject == subject,
        models.AccessRight.method == method.upper(),
        models.AccessRight.path == path,
    )


@dataclass(frozen=True, slots=True)
class Grant:
    service: str
    subject: str
    method: str
    path: str
    legal_basis: str | None = None
    limits: Limits = NO_LIMITS

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method:
            return False
        return not self.path or _pattern(self.path).fullmatch(path or "/") is not None


@functools.lru_cache(maxsize=1024)
def _pattern(glob: str) -> re.Pattern[str]:
    """``**`` matches across segments, ``*`` within one; everything else literally."""
    wildcards = {"**": ".*", "*": "[^/]*"}
    return re.compile(
        "".join(wildcards.get(t) or re.escape(t) for t in re.split(r"(\*\*|\*)", glob))
    )


def _grant(row: models.AccessRight) -> Grant:
    limits = Limits(row.per_second, row.per_day, row.persons_per_day)
    return Grant(
        row.service, row.subject, row.method, row.path, row.legal_basis, limits or NO_LIMITS
    )


def _subjects(client: str, groups: dict[str, frozenset[str]]) -> set[str]:
    """What grants may name to cover ``client``: itself and every group it is in."""
    return {client} | {GROUP_PREFIX + name for name, members in groups.items() if client in members}


def check_subject(subject: str) -> str:
    if subject.startswith(GROUP_PREFIX):
        check_segment(subject.removeprefix(GROUP_PREFIX), "group name")
    else:
        parse_client(subject)
    return subject


class AccessRights:
    def __init__(self, engine: Engine, *, cache_ttl: float, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded_at = -1.0
        self._grants: dict[str, list[Grant]] = {}
        self._groups: dict[str, frozenset[str]] = {}

    @property
    def stale(self) -> bool:
        """Whether the next check would reload from the database (callers on an event loop
        call :meth:`reload` in a worker thread first, so the loop never waits on the database)."""
        return time.monotonic() - self._loaded_at > self._cache_ttl

    def reload(self) -> None:
        self._snapshot()

    def _snapshot(self) -> tuple[dict[str, list[Grant]], dict[str, frozenset[str]]]:
        now = time.monotonic()
        if now - self._loaded_at > self._cache_ttl:
            with self._lock, Session(self._engine) as session:
                grants: dict[str, list[Grant]] = {}
                for row in session.scalars(select(models.AccessRight)):
                    grants.setdefault(row.service, []).append(_grant(row))
                groups: dict[str, set[str]] = {}
                for member in session.scalars(select(models.GroupMember)):
                    groups.setdefault(member.group, set()).add(member.client)
                self._grants = grants
                self._groups = {name: frozenset(clients) for name, clients in groups.items()}
                self._loaded_at = now
        return self._grants, self._groups

    def check(self, *, client: str, service: ServiceId, method: str, path: str) -> Grant:
        """The grant that lets ``client`` call ``method path`` of ``service`` (one naming a
        legal basis if there is such); else raise AccessDenied."""
        grants, groups = self._snapshot()
        mine = _subjects(client, groups)
        found = [
            grant
            for grant in grants.get(f"{service.subsystem}/{service.service_code}", [])
            if grant.subject in mine and grant.matches(method, path)
        ]
        if found:
            return next((g for g in found if g.legal_basis), found[0])
        raise AccessDenied(
            f"{client} has no access right to {service.subsystem}/{service.service_code}",
            detail=str(service),
        )

    def allowed_services(self, client: str) -> set[str]:
        grants, groups = self._snapshot()
        mine = _subjects(client, groups)
        return {service for service, rows in grants.items() if any(g.subject in mine for g in rows)}

    def invalidate(self) -> None:
        self._loaded_at = -1.0

    # Administration (CLI and admin API)

    def grant(
        self,
        *,
        service: str,
        subject: str,
        method: str = "",
        path: str = "",
        legal_basis: str | None = None,
        limits: Limits = NO_LIMITS,
        actor: str,
    ) -> None:
        limits.checked()
        if ServiceId.parse(service).version is not None:
            raise InvalidRequest(
                "access rights name a service without its version", detail="service"
            )
        check_subject(subject)
        method = method.upper()
        if method and method not in METHODS:
            raise InvalidRequest(f"unknown HTTP method {method!r}", detail="method")
        if path and not path.startswith("/"):
            raise InvalidRequest("a path pattern starts with '/'", detail="path")
        if legal_basis is not None and not (
            0 < len(legal_basis) <= 500 and legal_basis.isprintable()
        ):
            raise InvalidRequest(
                "a legal basis is 1-500 printable characters", detail="legal_basis"
            )
        at = self._clock()
        with Session(self._engine) as session:
            session.add(
                models.AccessRight(
                    service=service,
                    subject=subject,
                    method=method,
                    path=path,
                    legal_basis=legal_basis or None,
                    granted_at=at,
                    per_second=limits.per_second,
                    per_day=limits.per_day,
                    persons_per_day=limits.persons_per_day,
                )
            )
            changes.record(
                session,
                at=at,
                actor=actor,
                action="access.grant",
                target=service,
                detail={
                    "subject": subject,
                    "method": method,
                    "path": path,
                    "legal_basis": legal_basis or None,
                    **limits.shown(),
                },
            )
            try:
                session.commit()
            except IntegrityError as exc:
                raise Conflict("that access right exists already") from exc
        self.invalidate()

    def limit(
        self,
        *,
        service: str,
        subject: str,
        limits: Limits,
        method: str = "",
        path: str = "",
        actor: str,
    ) -> None:
        """Set the quotas of an access right (named exactly as granted); :data:`NO_LIMITS`
        lifts them. Every process applies them at its next reload of the rights."""
        limits.checked()
        with Session(self._engine) as session:
            result = session.execute(
                update(models.AccessRight)
                .where(*_the_right(service, subject, method, path))
                .values(
                    per_second=limits.per_second,
                    per_day=limits.per_day,
                    persons_per_day=limits.persons_per_day,
                )
            )
            if not getattr(result, "rowcount", 0):
                raise NotFound("no such access right")
            changes.record(
                session,
                at=self._clock(),
                actor=actor,
                action="access.limit",
                target=service,
                detail={
                    "subject": subject,
                    "method": method.upper(),
                    "path": path,
                    **limits.shown(),
                },
            )
            session.commit()
        self.invalidate()

    def revoke(
        self, *, service: str, subject: str, method: str = "", path: str = "", actor: str
    ) -> None:
        with Session(self._engine) as session:
            result = session.execute(
                delete(models.AccessRight).where(*_the_right(service, subject, method, path))
            )
            if not getattr(result, "rowcount", 0):
                raise NotFound("no such access right")
            changes.record(
                session,
                at=self._clock(),
                actor=actor,
                action="access.revoke",
                target=service,
                detail={"subject": subject, "method": method.upper(), "path": path},
            )
            session.commit()
        self.invalidate()

    def grants(self) -> list[Grant]:
        with Session(self._engine) as session:
            rows = session.scalars(
                select(models.AccessRight).order_by(
                    models.AccessRight.service, models.AccessRight.subject
                )
            )
            return [_grant(row) for row in rows]

    def add_group(self, name: str, description: str = "", *, actor: str) -> None:
        check_segment(name, "group name")
        with Session(self._engine) as session:
            session.add(models.Group(name=name, description=description))
            changes.record(
                session,
                at=self._clock(),
                actor=actor,
                action="group.add",
                target=name,
                detail={"description": description},
            )
            try:
                session.commit()
            except IntegrityError as exc:
                raise Conflict(f"group {name} exists already") from exc

    def add_to_group(self, name: str, client: str, *, actor: str) -> None:
        parse_client(client)
        with Session(self._engine) as session:
            if session.get(models.Group, name) is None:
                raise NotFound(f"no group {name}")
            session.add(models.GroupMember(group=name, client=client))
            changes.record(
                session,
                at=self._clock(),
                actor=actor,
                action="group.add-member",
                target=name,
                detail={"client": client},
            )
            try:
                session.commit()
            except IntegrityError as exc:
                raise Conflict(f"{client} is in group {name} already") from exc
        self.invalidate()

    def remove_from_group(self, name: str, client: str, *, actor: str) -> None:
        with Session(self._engine) as session:
            result = session.execute(
                delete(models.GroupMember).where(
                    models.GroupMember.group == name, models.GroupMember.client == client
                )
            )
            if not getattr(result, "rowcount", 0):
                raise NotFound(f"{client} is not in group {name}")
            changes.record(
                session,
                at=self._clock(),
                actor=actor,
                action="group.remove-member",
                target=name,
                detail={"client": client},
            )
            session.commit()
        self.invalidate()

    def groups(self) -> dict[str, list[str]]:
        with Session(self._engine) as session:
            names: dict[str, list[str]] = {
                g.name: []
                for g in session.scalars(select(models.Group).order_by(models.Group.name))
            }
            for member in session.scalars(
                select(models.GroupMember).order_by(models.GroupMember.client)
            ):
                names.setdefault(member.group, []).append(member.client)
            return names
