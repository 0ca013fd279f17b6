"""Registration of members, subsystems and gateways, and the change log.

Every change is written together with an :class:`~exchange.central.models.Event` naming the actor,
in one transaction: the log cannot miss a change that happened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from exchange.central import models
from exchange.errors import Conflict, InvalidRequest, NotFound
from exchange.identifiers import GatewayId, MemberId, ServiceId, SubsystemId, check_segment

Clock = Callable[[], datetime]
DEFAULT_MEMBER_CLASSES = {
    "GOV": "Government organisations",
    "COM": "Commercial organisations",
    "NGO": "Non-governmental organisations",
    "NEE": "Non-Estonian entities",
}
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


def record(
    session: Session, *, at: datetime, actor: str, action: str, subject: str, **details: Any
) -> None:
    session.add(
        models.Event(
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            details=json.dumps(details, sort_keys=True),
        )
    )


def catalogue_entry(service: models.Service) -> dict[str, Any]:
    """A service as the global configuration and the API show it."""
    return {
        "id": service.identifier,
        "evidence_type": service.evidence_type,
        "consent_policy": service.consent_policy,
        "description": service.description,
        **json.loads(service.details),
    }


def latest_event_id(session: Session) -> int:
    return session.scalar(select(func.max(models.Event.id))) or 0


def check_gateway_address(address: str) -> str:
    """A gateway is reached at ``https://host[:port]``: nothing else, nothing more."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"gateway address {address!r} is not a URL", detail="address") from exc
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidRequest("gateway address must be https://host[:port]", detail="address")
    if (
        parts.username
        or parts.password
        or parts.query
        or parts.fragment
        or parts.path not in ("", "/")
    ):
        raise InvalidRequest(
            "gateway address must not carry credentials, a path, a query or a fragment",
            detail="address",
        )
    if port == 0:
        raise InvalidRequest("gateway address has port 0", detail="address")
    return f"https://{parts.netloc}"


def check_member_name(name: str) -> str:
    if _NAME.fullmatch(name) is None or not name.strip():
        raise InvalidRequest("member name must be 1 to 255 printable characters", detail="name")
    return name


def check_instance(member: MemberId, instance: str) -> None:
    if member.instance != instance:
        raise InvalidRequest(
            f"{member} belongs to instance {member.instance!r}; this authority serves {instance!r}",
            detail="instance",
        )


class Registry:
    def __init__(self, *, engine: Engine, instance: str, clock: Clock) -> None:
        self._engine = engine
        self._instance = instance
        self._clock = clock

    @property
    def instance(self) -> str:
        return self._instance

    def clock(self) -> datetime:
        return self._clock()

    def session(self) -> Session:
        return Session(self._engine, expire_on_commit=False)

    def _check_instance(self, member: MemberId) -> None:
        check_instance(member, self._instance)

    def _commit(self, session: Session, what: str) -> None:
        try:
            session.commit()
        except IntegrityError as exc:
            session.rollback()
            raise Conflict(f"{what} is already registered") from exc

    def seed_member_classes(self, *, actor: str) -> None:
        with self.session() as session:
            existing = set(session.scalars(select(models.MemberClass.code)))
            for code, description in DEFAULT_MEMBER_CLASSES.items():
                if code not in existing:
                    session.add(models.MemberClass(code=code, description=description))
            record(
                session,
                at=self._clock(),
                actor=actor,
                action="member_classes.seeded",
                subject=self._instance,
            )
            session.commit()

    def add_member_class(self, code: str, description: str, *, actor: str) -> None:
        check_segment(code, "member class")
        with self.session() as session:
            session.add(models.MemberClass(code=code, description=description))
            record(
                session, at=self._clock(), actor=actor, action="member_class.added", subject=code
            )
            self._commit(session, f"member class {code}")

    def member_classes(self) -> list[models.MemberClass]:
        with self.session() as session:
            return list(
                session.scalars(select(models.MemberClass).order_by(models.MemberClass.code))
            )

    def register_member(self, member: MemberId, name: str, *, actor: str) -> models.Member:
        with self.session() as session:
            row = self.add_member(session, member, name, actor=actor)
            self._commit(session, f"member {member}")
            return row

    def add_member(
        self, session: Session, member: MemberId, name: str, *, actor: str, **details: Any
    ) -> models.Member:
        """Add ``member`` and its event in ``session`` (the caller commits both, or neither)."""
        self._check_instance(member)
        check_member_name(name)
        if session.get(models.MemberClass, member.member_class) is None:
            raise InvalidRequest(
                f"member class {member.member_class!r} is not defined in {self._instance}",
                detail="member class",
            )
        row = models.Member(
            identifier=str(member),
            member_class=member.member_class,
            name=name,
            created_at=self._clock(),
        )
        session.add(row)
        record(
            session,
            at=self._clock(),
            actor=actor,
            action="member.registered",
            subject=str(member),
            name=name,
            **details,
        )
        return row

    def _member(self, session: Session, member: MemberId) -> models.Member:
        row = session.scalar(select(models.Member).where(models.Member.identifier == str(member)))
        if row is None:
            raise NotFound(f"member {member} is not registered", detail=str(member))
        return row

    def member(self, member: MemberId) -> models.Member:
        with self.session() as session:
            return self._member(session, member)

    def register_subsystem(self, subsystem: SubsystemId, *, actor: str) -> models.Subsystem:
        with self.session() as session:
            row = self.add_subsystem(session, subsystem, actor=actor)
            self._commit(session, f"subsystem {subsystem}")
            return row

    def add_subsystem(
        self, session: Session, subsystem: SubsystemId, *, actor: str, **details: Any
    ) -> models.Subsystem:
        """Add ``subsystem`` and its event in ``session`` (the caller commits both, or neither)."""
        self._check_instance(subsystem.member)
        owner = self._member(session, subsystem.member)
        row = models.Subsystem(
            member_id=owner.id, identifier=str(subsystem), created_at=self._clock()
        )
        session.add(row)
        record(
            session,
            at=self._clock(),
            actor=actor,
            action="subsystem.registered",
            subject=str(subsystem),
            **details,
        )
        return row

    def commit(self, session: Session, what: str) -> None:
        """Commit ``session``; a unique key taken meanwhile is a :class:`Conflict` on ``what``."""
        self._commit(session, what)

    def register_gateway(self, gateway: GatewayId, address: str, *, actor: str) -> models.Gateway:
        with self.session() as session:
            row = self.add_gateway(session, gateway, address, actor=actor)
            self._commit(session, f"gateway {gateway}")
            return row

    def add_gateway(
        self, session: Session, gateway: GatewayId, address: str, *, actor: str
    ) -> models.Gateway:
        """Add ``gateway`` and its event in ``session`` (the caller commits both, or neither)."""
        self._check_instance(gateway.member)
        address = check_gateway_address(address)
        owner = self._member(session, gateway.member)
        row = models.Gateway(
            member_id=owner.id,
            identifier=str(gateway),
            address=address,
            created_at=self._clock(),
        )
        session.add(row)
        record(
            session,
            at=self._clock(),
            actor=actor,
            action="gateway.registered",
            subject=str(gateway),
            address=address,
        )
        return row

    def gateway(self, session: Session, gateway: GatewayId) -> models.Gateway:
        row = session.scalar(
            select(models.Gateway)
            .where(models.Gateway.identifier == str(gateway))
            .options(selectinload(models.Gateway.member))
        )
        if row is None:
            raise NotFound(f"gateway {gateway} is not registered", detail=str(gateway))
        return row

    def members(self) -> list[models.Member]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(models.Member)
                    .order_by(models.Member.identifier)
                    .options(
                        selectinload(models.Member.subsystems), selectinload(models.Member.gateways)
                    )
                )
            )

    def publish_services(
        self, subsystem: SubsystemId, entries: list[dict[str, Any]], *, actor: str
    ) -> list[str]:
        """Replace ``subsystem``'s catalogue entries with ``entries``; return their ids."""
        with self.session() as session:
            published = self.replace_services(session, subsystem, entries, actor=actor)
            self._commit(session, "one of these services")
        return published

    def subsystem(
        self, session: Session, subsystem: SubsystemId, *, for_update: bool = False
    ) -> models.Subsystem:
        """``subsystem``'s row (locked until ``session`` ends, ``for_update``, where the
        database locks rows), or :class:`NotFound`."""
        self._check_instance(subsystem.member)
        query = select(models.Subsystem).where(models.Subsystem.identifier == str(subsystem))
        row = session.scalar(query.with_for_update() if for_update else query)
        if row is None:
            raise NotFound(f"subsystem {subsystem} is not registered", detail=str(subsystem))
        return row

    def replace_services(
        self,
        session: Session,
        subsystem: SubsystemId,
        entries: list[dict[str, Any]],
        *,
        actor: str,
        **details: Any,
    ) -> list[str]:
        """Replace ``subsystem``'s entries and log it in ``session`` (the caller commits both, or
        neither); return the ids published."""
        owner = self.subsystem(session, subsystem)
        published = []
        session.execute(delete(models.Service).where(models.Service.subsystem_id == owner.id))
        for entry in entries:
            service = ServiceId.parse(entry["id"])
            if service.subsystem != subsystem:
                raise InvalidRequest(
                    f"{service} is not a service of {subsystem}", detail=entry["id"]
                )
            session.add(
                models.Service(
                    subsystem_id=owner.id,
                    identifier=str(service),
                    evidence_type=entry["evidence_type"],
                    consent_policy=entry["consent_policy"],
                    description=entry.get("description", ""),
                    details=json.dumps(
                        {
                            "methods": entry.get("methods", []),
                            "parameters": entry.get("parameters", []),
                            # the EDM offer, for the Data Service Directory
                            **({"edm": entry["edm"]} if entry.get("edm") else {}),
                        }
                    ),
                    published_at=self._clock(),
                )
            )
            published.append(str(service))
        record(
            session,
            at=self._clock(),
            actor=actor,
            action="services.published",
            subject=str(subsystem),
            services=published,
            **details,
        )
        return published

    def services(self) -> list[models.Service]:
        with self.session() as session:
            return list(session.scalars(select(models.Service).order_by(models.Service.identifier)))

    def events(self, *, after: int = 0, limit: int = 100) -> list[models.Event]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(models.Event)
                    .where(models.Event.id > after)
                    .order_by(models.Event.id)
                    .limit(limit)
                )
            )
