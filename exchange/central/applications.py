"""Applications of agencies: to become a member of the instance, or to add a subsystem to a
membership. An application waits, ``pending``, until an operator of the authority approves it
(the member or subsystem is registered, so the next global configuration lists it) or rejects
it with a reason.

Anyone may submit one, without signing in: an agency that is not yet a member has no identity
in the instance to sign in with, and a submission changes nothing by itself. What keeps this
open door small: each application is validated as a registration would be (identifier, member
class, name) before it is stored, the same identifier cannot wait twice (the refusal tells
that one is pending, and nothing else of it: docs/threat-model.md), a subsystem is only
asked for a registered member, and at most :data:`MAX_PENDING` wait at once (beyond that,
submissions are refused until operators decide). The body of the request is capped by the
app's guard.

A submission answers a *receipt*, a secret shown to the applicant once: with it, the
applicant's page shows the enrolment code of the member's gateway once the authority issues it
(:mod:`exchange.central.receipts`; the authority keeps only the receipt's public key). Numbers are
sequential, so they are no secret: outside the authority, an application is shown only to the
holder of its receipt (:meth:`Applications.for_applicant`), and anyone else is answered
:data:`UNKNOWN`, as for a number that was never given.

Submission, approval and rejection each write an event of the change log in the same
transaction as the change, with its actor: ``applicant`` for a submission, the operator
(``console:<subject>``) or the admin API for a decision.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.central import models, receipts
from exchange.central.registry import Registry, check_instance, check_member_name, record
from exchange.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from exchange.identifiers import MemberId, SubsystemId
from exchange.web.languages import N_

Kind = Literal["member", "subsystem"]
Status = Literal["pending", "approved", "rejected"]
STATUSES: tuple[Status, ...] = ("pending", "approved", "rejected")
MAX_PENDING = 200
APPLICANT = "applicant"
# The one answer to a wrong receipt and to a number never given.
UNKNOWN = N_("no such application")
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{0,255}")
_REASON = re.compile(r"[^\x00-\x08\x0b-\x1f\x7f]{1,1000}")


@dataclass(frozen=True, slots=True)
class Application:
    id: int
    kind: str
    identifier: str
    name: str
    contact: str
    submitted_at: datetime
    status: str
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    receipt: str | None = None  # only as submitted: the applicant's secret, never stored

    @classmethod
    def of(cls, row: models.Application) -> Application:
        return cls(
            row.id,
            row.kind,
            row.identifier,
            row.name,
            row.contact,
            row.submitted_at,
            row.status,
            row.decided_at,
            row.decided_by,
            row.reason,
        )

    def document(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "identifier": self.identifier,
            "name": self.name,
            "status": self.status,
            "submitted_at": self.submitted_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "reason": self.reason,
        }


class Applications:
    def __init__(self, *, registry: Registry) -> None:
        self._registry = registry

    @property
    def instance(self) -> str:
        return self._registry.instance

    def submit(
        self, kind: str, identifier: str, *, name: str = "", contact: str = ""
    ) -> Application:
        """Store a pending application (validated as the registration it asks for)."""
        if _TEXT.fullmatch(contact) is None:
            raise InvalidRequest(
                "contact must be at most 255 printable characters", detail="contact"
            )
        instance = self._registry.instance
        with self._registry.session() as session:
            if kind == "member":
                member = MemberId.parse(identifier)
                check_instance(member, instance)
                check_member_name(name)
                if session.get(models.MemberClass, member.member_class) is None:
                    raise InvalidRequest(
                        f"member class {member.member_class!r} is not defined in {instance}",
                        detail="member class",
                    )
                taken = select(models.Member.id).where(models.Member.identifier == str(member))
                if session.scalar(taken) is not None:
                    raise Conflict(f"member {member} is already registered")
                identifier = str(member)
            elif kind == "subsystem":
                subsystem = SubsystemId.parse(identifier)
                check_instance(subsystem.member, instance)
                owner = select(models.Member).where(
                    models.Member.identifier == str(subsystem.member)
                )
                found = session.scalar(owner)
                if found is None:
                    raise NotFound(
                        f"member {subsystem.member} is not registered: apply for it first",
                        detail=str(subsystem.member),
                    )
                taken = select(models.Subsystem.id).where(
                    models.Subsystem.identifier == str(subsystem)
                )
                if session.scalar(taken) is not None:
                    raise Conflict(f"subsystem {subsystem} is already registered")
                identifier, name = str(subsystem), found.name
            else:
                raise InvalidRequest("kind is member or subsystem", detail="kind")
            pending = models.Application.status == "pending"
            waiting = session.scalar(
                select(models.Application.id).where(
                    pending, models.Application.identifier == identifier
                )
            )
            if waiting is not None:
                raise Conflict(f"an application for {identifier} is already pending")
            count = session.scalar(select(func.count()).where(pending)) or 0
            if count >= MAX_PENDING:
                raise ServiceUnavailable(
                    "too many applications are waiting for a decision; try again later"
                )
            receipt = receipts.new_receipt()
            row = models.Application(
                kind=kind,
                identifier=identifier,
                name=name,
                contact=contact,
                submitted_at=self._registry.clock(),
                status="pending",
                receipt_key=receipts.public_key(receipt),
            )
            session.add(row)
            session.flush()
            record(
                session,
                at=self._registry.clock(),
                actor=APPLICANT,
                action="application.submitted",
                subject=identifier,
                application=row.id,
                kind=kind,
            )
            session.commit()
            return dataclasses.replace(Application.of(row), receipt=receipt)

    def get(self, number: int) -> Application:
        with self._registry.session() as session:
            row = session.get(models.Application, number)
            if row is None:
                raise NotFound(f"no application {number}", detail=str(number))
            return Application.of(row)

    def for_applicant(self, number: int, receipt: str) -> Application:
        """Application ``number`` as the holder of its ``receipt`` reads it; the same
        :class:`NotFound` (no detail) for a number never given and for a receipt that does not
        open it, after the same work: one column read, no row built (building one takes
        measurably longer than finding none), and the key derived either way
        (:func:`receipts.matches`); the application is loaded only once the receipt opens it."""
        table = models.Application
        with self._registry.session() as session:
            stored = session.scalar(select(table.receipt_key).where(table.id == number))
            if not receipts.matches(receipt, stored):
                raise NotFound(UNKNOWN)
            row = session.get(table, number)
            if row is None:  # none is ever deleted; checked all the same
                raise NotFound(UNKNOWN)
            return Application.of(row)

    def list(self, status: str | None = None, *, limit: int = 200) -> list[Application]:
        """Newest first; pending ones oldest first (the order to decide them in)."""
        table = models.Application
        query = select(table)
        if status is not None:
            query = query.where(table.status == status)
        order = table.id.asc() if status == "pending" else table.id.desc()
        with self._registry.session() as session:
            return [Application.of(r) for r in session.scalars(query.order_by(order).limit(limit))]

    def approve(self, number: int, *, actor: str) -> Application:
        """Register what application ``number`` asks for, and mark it approved, at once."""
        with self._registry.session() as session:
            row = self._pending(session, number)
            if row.kind == "member":
                self._registry.add_member(
                    session,
                    MemberId.parse(row.identifier),
                    row.name,
                    actor=actor,
                    application=number,
                )
            else:
                self._registry.add_subsystem(
                    session, SubsystemId.parse(row.identifier), actor=actor, application=number
                )
            self._decide(session, row, "approved", actor=actor, reason=None)
            self._registry.commit(session, f"{row.kind} {row.identifier}")
            return Application.of(row)

    def reject(self, number: int, reason: str, *, actor: str) -> Application:
        reason = reason.strip()
        if _REASON.fullmatch(reason) is None:
            raise InvalidRequest(
                "a rejection needs a reason of 1 to 1000 characters", detail="reason"
            )
        with self._registry.session() as session:
            row = self._pending(session, number)
            self._decide(session, row, "rejected", actor=actor, reason=reason)
            session.commit()
            return Application.of(row)

    def _pending(self, session: Session, number: int) -> models.Application:
        row = session.get(models.Application, number, with_for_update=True)
        if row is None:
            raise NotFound(f"no application {number}", detail=str(number))
        if row.status != "pending":
            raise Conflict(f"application {number} was already {row.status}")
        return row

    def _decide(
        self,
        session: Session,
        row: models.Application,
        status: Status,
        *,
        actor: str,
        reason: str | None,
    ) -> None:
        row.status, row.decided_at = status, self._registry.clock()
        row.decided_by, row.reason = actor, reason
        details: dict[str, object] = {"application": row.id, "kind": row.kind}
        if reason is not None:
            details["reason"] = reason
        record(
            session,
            at=self._registry.clock(),
            actor=actor,
            action=f"application.{status}",
            subject=row.identifier,
            **details,
        )
