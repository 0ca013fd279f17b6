"""Services declared while the gateway runs, from the console or ``exchange gateway service``.

A declaration is what a ``[[services]]`` entry of the settings file holds, checked by the same
model (:class:`~exchange.gateway.settings.ServiceSpec`) and the same gateway-wide rules
(:meth:`~exchange.gateway.settings.GatewaySettings.service_problem`), and then built as the
gateway would build it at start (its connector, its evidence schema) before anything is stored:
a declaration that cannot be served is refused whole, with a message that says why.

Declarations live in the gateway's database (``gw_declared_services``), each change with its
actor in the change log in the same transaction. The process that made a change installs it at
once; every other process of the gateway (workers, replicas on the same database) finds the
raised revision within :data:`SYNC_INTERVAL` and rebuilds that service. A disabled service is
withdrawn: asked for, it is an unknown service, like one never declared. Services of the
settings file cannot be changed here; they are managed in the file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.orm import Session

from exchange.errors import Conflict, Error, InvalidRequest, NotFound
from exchange.gateway import changes, models
from exchange.gateway.services import LocalService, ServiceTable
from exchange.gateway.settings import GatewaySettings, ServiceSpec
from exchange.identifiers import MemberId, SubsystemId

InThread = Callable[..., Awaitable[Any]]
log = structlog.get_logger(__name__)
SYNC_INTERVAL = 2.0  # seconds before another process of the gateway serves a change
HIDDEN = "***"  # a password in a connector URL, as pages and the change log show it


@dataclass(frozen=True, slots=True)
class Declared:
    spec: ServiceSpec
    enabled: bool
    revision: int
    changed_at: datetime
    changed_by: str

    @property
    def shown_url(self) -> str:
        return hide_password(self.spec.connector.url)


def hide_password(url: str | None) -> str:
    """A connector URL fit to show: any password replaced by :data:`HIDDEN`."""
    if not url:
        return ""
    try:
        parsed = make_url(url)
    except ArgumentError:  # not a database URL: an HTTP address carries no password here
        return url
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)  # as HIDDEN


def parse(document: Mapping[str, Any]) -> ServiceSpec:
    """A declaration checked by the settings file's model; every problem named in one message."""
    try:
        return ServiceSpec.model_validate(dict(document))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'service'}: {error['msg']}"
            for error in exc.errors()
        ]
        first = exc.errors()[0]["loc"] if exc.errors() else ()
        raise InvalidRequest("; ".join(problems), detail=".".join(map(str, first))) from exc


def stored(spec: ServiceSpec) -> str:
    return json.dumps(spec.model_dump(mode="json", exclude_none=True), sort_keys=True)


def shown(spec: ServiceSpec) -> dict[str, object]:
    """The declaration as the change log keeps it: without a connector URL's password."""
    document = spec.model_dump(mode="json", exclude_none=True)
    if spec.connector.url:
        document["connector"]["url"] = hide_password(spec.connector.url)
    return document


class DeclaredServices:
    def __init__(
        self,
        engine: Engine,
        *,
        settings: GatewaySettings,
        table: ServiceTable,
        clock: Callable[[], datetime],
        in_thread: InThread,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._member: MemberId = settings.gateway.member
        self._table = table
        self._clock = clock
        self._in_thread = in_thread
        self._installed: dict[str, int] = {}  # table key -> revision served (or withdrawn)

    def key(self, subsystem: str, code: str) -> str:
        """What the service table knows the service by: ``SUBSYSTEM-ID/SERVICE``."""
        return f"{SubsystemId(self._member, subsystem)}/{code}"

    # Reading

    def listed(self) -> list[Declared]:
        with Session(self._engine) as session:
            rows = session.scalars(
                select(models.DeclaredService).order_by(
                    models.DeclaredService.subsystem, models.DeclaredService.code
                )
            )
            return [_declared(row) for row in rows]

    def find(self, subsystem: str, code: str) -> Declared | None:
        with Session(self._engine) as session:
            row = session.scalar(_row(subsystem, code))
            return None if row is None else _declared(row)

    def enabled(self) -> list[ServiceSpec]:
        return [d.spec for d in self.listed() if d.enabled]

    # Changing

    def check(self, spec: ServiceSpec) -> LocalService:
        """``spec`` built as the gateway would serve it, or :class:`InvalidRequest` saying why
        not; the caller installs it or closes its connector."""
        if spec.subsystem not in self._settings.subsystems:
            raise InvalidRequest(
                f"this gateway serves no subsystem {spec.subsystem!r} (settings: subsystems)",
                detail="subsystem",
            )
        if self._table.fixed(self.key(spec.subsystem, spec.code)):
            raise Conflict(
                f"service {spec.subsystem}/{spec.code} is declared in the settings file; "
                "change it there",
                detail="code",
            )
        return self._build(spec)

    def _build(self, spec: ServiceSpec) -> LocalService:
        problem = self._settings.service_problem(spec)
        if problem is not None:
            raise InvalidRequest(problem, detail="service")
        if _same_database(spec.connector.url, self._settings.db_url):
            # Its audit records and access rights are not a registry: an operator must not
            # read them through a service (auditors hold the audit trail).
            raise InvalidRequest(
                "a connector cannot read the gateway's own database", detail="connector_url"
            )
        if spec.evidence_type not in self._table.evidence_types():
            raise InvalidRequest(
                f"unknown evidence type {spec.evidence_type!r}", detail="evidence_type"
            )
        try:
            return self._table.prepare(spec)
        except (ValueError, ArgumentError) as exc:  # e.g. a query binding other parameters
            raise InvalidRequest(f"connector: {exc}", detail="connector") from exc

    async def declare(self, spec: ServiceSpec, *, actor: str) -> Declared:
        return await self._change(spec, actor=actor, new=True)

    async def edit(self, spec: ServiceSpec, *, actor: str) -> Declared:
        """Replace a declaration; a URL whose password is shown hidden keeps the stored one."""
        return await self._change(spec, actor=actor, new=False)

    async def _change(self, spec: ServiceSpec, *, actor: str, new: bool) -> Declared:
        if not new:
            before = await self._in_thread(self.find, spec.subsystem, spec.code)
            if before is not None:
                spec = keep_password(spec, before.spec)
        built = self.check(spec)
        try:
            declared: Declared = await self._in_thread(self._store, spec, actor, new)
        except IntegrityError as exc:  # declared by someone else at the same moment
            await built.close()
            raise Conflict(
                f"service {spec.subsystem}/{spec.code} is declared already; edit it", detail="code"
            ) from exc
        except BaseException:
            await built.close()
            raise
        self._serve(declared, built)
        return declared

    async def switch(self, subsystem: str, code: str, *, enabled: bool, actor: str) -> Declared:
        """Enable or disable a declared service; a disabled one is refused as unknown."""
        current = await self._in_thread(self.find, subsystem, code)
        if current is None:
            raise NotFound(f"no service {subsystem}/{code} is declared here", detail="code")
        built = self.check(current.spec) if enabled else None
        try:
            declared: Declared = await self._in_thread(
                self._store_switch, subsystem, code, enabled, actor
            )
        except BaseException:
            if built is not None:
                await built.close()
            raise
        self._serve(declared, built)
        return declared

    def _serve(self, declared: Declared, built: LocalService | None) -> None:
        key = self.key(declared.spec.subsystem, declared.spec.code)
        if declared.enabled and built is not None:
            self._table.install(built)
        else:
            self._table.withdraw(key)
            if built is not None:  # declared disabled: built only to check it
                asyncio.get_running_loop().create_task(built.close())
        self._installed[key] = declared.revision

    def _store(self, spec: ServiceSpec, actor: str, new: bool) -> Declared:
        at = self._clock()
        with Session(self._engine) as session:
            row = session.scalar(_row(spec.subsystem, spec.code).with_for_update())
            target = f"{spec.subsystem}/{spec.code}"
            if new and row is not None:
                raise Conflict(f"service {target} is declared already; edit it", detail="code")
            if not new and row is None:
                raise NotFound(f"no service {target} is declared here", detail="code")
            if row is None:
                row = models.DeclaredService(
                    subsystem=spec.subsystem, code=spec.code, enabled=True, revision=0
                )
                session.add(row)
            row.declaration = stored(spec)
            row.revision += 1
            row.changed_at, row.changed_by = at, actor
            changes.record(
                session,
                at=at,
                actor=actor,
                action="service.declare" if new else "service.edit",
                target=target,
                detail=shown(spec),
            )
            session.commit()
            return _declared(row)

    def _store_switch(self, subsystem: str, code: str, enabled: bool, actor: str) -> Declared:
        at = self._clock()
        with Session(self._engine) as session:
            row = session.scalar(_row(subsystem, code).with_for_update())
            if row is None:
                raise NotFound(f"no service {subsystem}/{code} is declared here", detail="code")
            row.enabled = enabled
            row.revision += 1
            row.changed_at, row.changed_by = at, actor
            changes.record(
                session,
                at=at,
                actor=actor,
                action="service.enable" if enabled else "service.disable",
                target=f"{subsystem}/{code}",
                detail={},
            )
            session.commit()
            return _declared(row)

    # Every process in step

    def load(self) -> None:
        """At start: serve every enabled declaration (those that cannot be built are logged)."""
        for declared in self.listed():
            self._take(declared)

    async def sync(self) -> None:
        """Serve what the database declares now: each service whose revision changed is
        rebuilt (or withdrawn). One that can no longer be built (its evidence schema gone) is
        withdrawn and logged, and the others still served."""
        for declared in await self._in_thread(self.listed):
            self._take(declared)

    def _take(self, declared: Declared) -> None:
        key = self.key(declared.spec.subsystem, declared.spec.code)
        if self._installed.get(key) == declared.revision:
            return
        built = None
        if declared.enabled:
            try:
                built = self.check(declared.spec)
            except Error as error:
                log.warning("gateway.declared_service_unusable", service=key, reason=error.message)
        if built is None:
            self._table.withdraw(key)
        else:
            self._table.install(built)
        self._installed[key] = declared.revision

    async def keep_in_step(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                await self.sync()
            except Error as error:  # the database is away: what is served stays
                log.warning("gateway.declared_sync_failed", reason=error.message)

    async def probe(self, spec: ServiceSpec) -> str:
        """Test ``spec``'s connection without reading a record: what was found, or the
        connector's error (:class:`~exchange.errors.Error`) saying what went wrong."""
        built = self._build(spec)  # a service of the settings file may be tested too
        try:
            return await built.connector.probe()
        finally:
            await built.close()


def _row(subsystem: str, code: str) -> Any:
    table = models.DeclaredService
    return select(table).where(table.subsystem == subsystem, table.code == code)


def _declared(row: models.DeclaredService) -> Declared:
    return Declared(
        spec=ServiceSpec.model_validate(json.loads(row.declaration)),
        enabled=row.enabled,
        revision=row.revision,
        changed_at=row.changed_at,
        changed_by=row.changed_by,
    )


def keep_password(spec: ServiceSpec, before: ServiceSpec) -> ServiceSpec:
    """``spec`` with the stored password where the form sent back the hidden one."""
    url, old = spec.connector.url, before.connector.url
    if not url or not old or HIDDEN not in url:
        return spec
    try:
        given, kept = make_url(url), make_url(old)
    except ArgumentError:
        return spec
    if given.password != HIDDEN:
        return spec
    restored = given.set(password=kept.password).render_as_string(hide_password=False)
    return spec.model_copy(
        update={"connector": spec.connector.model_copy(update={"url": restored})}
    )


def _same_database(url: str | None, own: str) -> bool:
    """Whether ``url`` names the database at ``own`` (same kind, host, port and name)."""
    if not url:
        return False
    try:
        given, kept = make_url(url), make_url(own)
    except ArgumentError:
        return False

    def where(parsed: Any) -> tuple[object, ...]:
        database = parsed.database or ""
        if parsed.get_backend_name() == "sqlite" and database:
            database = str(Path(database).resolve())
        return (parsed.get_backend_name(), parsed.host, parsed.port, database)

    return bool(where(given) == where(kept))
