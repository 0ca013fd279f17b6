"""Consents granted, listed, revoked and redeemed; the consent service's one source of truth.

A consent's live state is kept here and nowhere else: revoking it, or spending its last use, is
seen by every provider at its next request. Redeeming a use is one conditional ``UPDATE`` (``uses
< max_uses``, not revoked, inside its validity window) in the same transaction as the row that
records the use, so concurrent redemptions never spend more than ``max_uses``, on SQLite or
PostgreSQL alike. A message answered under a consent once is never answered under it again (a
provider's replay guard forgets old message ids; this store does not).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange.consent import models
from exchange.consent.artefact import Consent, Purpose, sign, timestamp
from exchange.consent.messages import Revocations
from exchange.errors import InternalError, InvalidIdentifier, InvalidRequest, NotFound
from exchange.identifiers import ServiceId, SubsystemId, check_segment, unversioned
from exchange.trust.globalconf import GlobalConfiguration
from exchange.trust.signed import Signer
from exchange.web import languages
from exchange.web.languages import gettext, ngettext

MAX_TEXT = 500
_PURPOSE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")


@dataclass(frozen=True, slots=True)
class GrantRequest:
    """What a citizen is asked to agree to (checked, then shown in plain words)."""

    consumer: str
    service: str
    purpose_code: str
    purpose_text: str
    legal_basis: str | None = None
    valid_days: int = 30
    max_uses: int | None = 1
    preview: bool = False


@dataclass(frozen=True, slots=True)
class Terms:
    """A grant request resolved against the global configuration, ready to show and sign."""

    request: GrantRequest
    consumer_name: str
    provider_name: str
    evidence_type: str
    valid_from: datetime
    valid_until: datetime
    evidence_name: str | None = None  # the evidence type as the reader reads it, if named

    def notice(self) -> str:
        """The terms in plain words, in the reader's language: what the citizen confirms, and
        what the signed consent keeps (in the language it was given in)."""
        request = self.request
        words: dict[str, str | int] = {
            "consumer": f"{self.consumer_name} ({request.consumer})",
            "evidence": self.evidence_name or self.evidence_type.replace("-", " "),
            "provider": self.provider_name,
            "until": languages.date_time(self.valid_until),
            "purpose": request.purpose_text,
        }
        if request.max_uses is None:
            text = gettext(
                "%(consumer)s may obtain your %(evidence)s from %(provider)s as many times as it "
                "needs, until %(until)s, for this purpose: %(purpose)s."
            )
        else:
            words["count"] = request.max_uses
            text = ngettext(
                "%(consumer)s may obtain your %(evidence)s from %(provider)s at most %(count)s "
                "time, until %(until)s, for this purpose: %(purpose)s.",
                "%(consumer)s may obtain your %(evidence)s from %(provider)s at most %(count)s "
                "times, until %(until)s, for this purpose: %(purpose)s.",
                request.max_uses,
            )
        parts = [text % words]
        if request.legal_basis:
            parts.append(gettext("Legal basis: %(basis)s.") % {"basis": request.legal_basis})
        if request.preview:
            parts.append(gettext("You will see the data and approve it before each release."))
        parts.append(gettext("You can revoke this consent at any time."))
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Status:
    id: str
    status: str  # active | revoked | expired | not-yet-valid | exhausted | replayed
    uses: int
    max_uses: int | None

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "status": self.status, "uses": self.uses, "max_uses": self.max_uses}


@dataclass(frozen=True, slots=True)
class Listed:
    consent: Consent
    status: Status
    revoked_at: datetime | None


def resolve(
    request: GrantRequest,
    configuration: GlobalConfiguration,
    *,
    at: datetime,
    max_validity_days: int,
) -> Terms:
    """Check a grant request against the registered consumers and services."""
    try:
        consumer = SubsystemId.parse(request.consumer)
        service = ServiceId.parse(request.service)
    except InvalidIdentifier as exc:
        raise InvalidRequest(
            "consumer and service must be X-Road identifiers", detail="consumer"
        ) from exc
    if service.version is not None:
        raise InvalidRequest("a consent names a service without its version", detail="service")
    member = configuration.member(str(consumer.member))
    if member is None or consumer.subsystem_code not in member.subsystems:
        raise InvalidRequest("the consumer is not registered", detail="consumer")
    entry = next(
        (s for s in configuration.services if unversioned(str(s.get("id", ""))) == str(service)),
        None,
    )
    if entry is None:
        raise InvalidRequest("the service is not in the service catalogue", detail="service")
    provider = configuration.member(str(service.subsystem.member))
    code = request.purpose_code
    if not 0 < len(code) <= 100 or not set(code) <= _PURPOSE_CHARS:
        raise InvalidRequest("purpose code is 1-100 of A-Z a-z 0-9 . _ : -", detail="purpose")
    for name, text in (("purpose", request.purpose_text), ("legal_basis", request.legal_basis)):
        if text is not None and not (0 < len(text) <= MAX_TEXT and text.isprintable()):
            raise InvalidRequest(
                f"{name} text must be 1-{MAX_TEXT} printable characters", detail=name
            )
    if not 1 <= request.valid_days <= max_validity_days:
        raise InvalidRequest(f"a consent lasts 1 to {max_validity_days} days", detail="valid_days")
    if request.max_uses is not None and not 1 <= request.max_uses <= 10000:
        raise InvalidRequest("max_uses is 1 to 10000, or unlimited", detail="max_uses")
    return Terms(
        request=request,
        consumer_name=member.name,
        provider_name=provider.name if provider else str(service.subsystem.member),
        evidence_type=str(entry.get("evidence_type") or service.service_code),
        valid_from=at,
        valid_until=at + timedelta(days=request.valid_days),
    )


_REVOCATION_LOCK = 0x636F6E73  # any constant: one lock for all revocations of this database


class ConsentStore:
    def __init__(
        self,
        engine: Engine,
        *,
        name: str,
        signer: Signer,
        subject_key: bytes,
        status_url: str,
        jurisdiction: str,
        clock: Callable[[], datetime],
    ) -> None:
        check_segment(name, "consent service name")
        self._engine = engine
        self.name = name
        self._signer = signer
        self._subject_key = subject_key
        self._status_url = status_url.rstrip("/")
        self._jurisdiction = jurisdiction
        self._clock = clock

    def subject_key(self, subject: str) -> str:
        return hmac.new(self._subject_key, subject.encode(), hashlib.sha256).hexdigest()

    def grant(self, subject: str, terms: Terms) -> tuple[Consent, str]:
        """Sign and keep the consent ``subject`` confirmed; return it and its artefact."""
        request = terms.request
        consent_id = str(uuid.uuid4())
        consent = Consent(
            jti=consent_id,
            iss=self.name,
            sub=subject,
            consumer=request.consumer,
            consumer_name=terms.consumer_name,
            service=request.service,
            evidence_type=terms.evidence_type,
            purpose=Purpose(request.purpose_code, request.purpose_text, request.legal_basis),
            iat=timestamp(self._clock()),
            nbf=timestamp(terms.valid_from),
            exp=timestamp(terms.valid_until),
            max_uses=request.max_uses,
            preview=request.preview,
            notice=terms.notice(),
            status_url=f"{self._status_url}/api/v1/consents/{consent_id}/status",
            jurisdiction=self._jurisdiction,
        )
        artefact = sign(self._signer, consent)
        with Session(self._engine) as session:
            session.add(
                models.Consent(
                    id=consent_id,
                    subject=self.subject_key(subject),
                    consumer=request.consumer,
                    service=request.service,
                    purpose=request.purpose_code,
                    granted_at=self._clock(),
                    valid_from=terms.valid_from,
                    valid_until=terms.valid_until,
                    max_uses=request.max_uses,
                    uses=0,
                    preview=request.preview,
                    artefact=artefact,
                )
            )
            session.commit()
        return consent, artefact

    def of(self, subject: str) -> list[Listed]:
        """The citizen's consents, newest first."""
        with Session(self._engine) as session:
            rows = session.scalars(
                select(models.Consent)
                .where(models.Consent.subject == self.subject_key(subject))
                .order_by(models.Consent.granted_at.desc())
                .limit(500)
            )
            return [
                Listed(_decode(row.artefact), self._status(row), row.revoked_at) for row in rows
            ]

    def lookup(self, consent_id: str) -> tuple[str, Status]:
        """(the consented service, the status) in one read."""
        with Session(self._engine) as session:
            row = session.get(models.Consent, consent_id)
            if row is None:
                raise NotFound("no such consent")
            return row.service, self._status(row)

    def revoke(self, subject: str, consent_id: str) -> tuple[Status, int | None]:
        """Revoke one of ``subject``'s own consents (anyone else's is "not found").

        Returns the status and the revocation's number in the feed (None if it was revoked
        before).
        """
        with Session(self._engine) as session:
            if self._engine.dialect.name == "postgresql":
                # Revocations commit one at a time, so that numbers are handed out in commit
                # order and a provider that has read up to n never misses one below it. They
                # are rare (a person's action), so this costs nothing that matters.
                session.execute(select(func.pg_advisory_xact_lock(_REVOCATION_LOCK)))
            row = session.get(models.Consent, consent_id, with_for_update=True)
            if row is None or row.subject != self.subject_key(subject):
                raise NotFound("no such consent of yours")
            if row.revoked_at is not None:
                return self._status(row), None
            row.revoked_at = self._clock()
            revocation = models.Revocation(
                consent_id=row.id, revoked_at=row.revoked_at, valid_until=row.valid_until
            )
            session.add(revocation)
            try:
                session.commit()
            except IntegrityError:  # revoked at the same moment by another request: done
                session.rollback()
                row = _reread(session, consent_id)
                return self._status(row), None
            return self._status(row), revocation.seq

    def revocations(self, after: int, *, limit: int) -> Revocations:
        """Revocations numbered above ``after`` of consents not yet ended, oldest first.

        A provider that read further than this store holds (a database restored from a backup)
        is sent everything again.
        """
        at = self._clock()
        with self._engine.connect() as connection:
            newest = connection.scalar(select(func.max(models.Revocation.seq))) or 0
            if after > newest:
                after = 0
            table = models.Revocation.__table__
            rows = connection.execute(
                select(table.c.seq, table.c.consent_id, table.c.valid_until)
                .where(table.c.seq > after, table.c.valid_until > at)
                .order_by(table.c.seq)
                .limit(limit)
            ).all()
        complete = len(rows) < limit
        last = rows[-1].seq if rows else after
        if complete:  # what lies between is of consents that have ended: nothing to send
            last = max(last, newest)
        return Revocations(
            after=after,
            last=last,
            revoked={row.consent_id: timestamp(row.valid_until) for row in rows},
            complete=complete,
        )

    def status(self, consent_id: str) -> Status:
        with Session(self._engine) as session:
            row = session.get(models.Consent, consent_id)
            if row is None:
                raise NotFound("no such consent")
            return self._status(row)

    def redeem(self, consent_id: str, *, message_id: str, provider: str) -> Status:
        """Spend one use for ``message_id`` if the consent is live and has one left.

        Returns the status after the attempt: ``active`` means this message may be answered.
        """
        at = self._clock()
        with Session(self._engine) as session:
            row = session.get(models.Consent, consent_id)
            if row is None:
                raise NotFound("no such consent")
            live = (
                update(models.Consent)
                .where(
                    models.Consent.id == consent_id,
                    models.Consent.revoked_at.is_(None),
                    models.Consent.valid_from <= at,
                    models.Consent.valid_until > at,
                    (models.Consent.max_uses.is_(None))
                    | (models.Consent.uses < models.Consent.max_uses),
                )
                .values(uses=models.Consent.uses + 1)
            )
            try:
                session.add(
                    models.Use(
                        consent_id=consent_id, message_id=message_id, provider=provider, used_at=at
                    )
                )
                session.flush()
            except IntegrityError:
                session.rollback()  # this message was answered before: never again
                row = _reread(session, consent_id)
                return Status(row.id, "replayed", row.uses, row.max_uses)
            if session.execute(live).rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                row = _reread(session, consent_id)
                status = self._status(row)
                if status.status == "active":
                    # A use given back between the update and this read: this message spent
                    # none, so it is never answered "active"; it may ask again.
                    return Status(row.id, "exhausted", row.uses, row.max_uses)
                return status
            session.commit()
            row = _reread(session, consent_id)
            return Status(row.id, "active", row.uses, row.max_uses)

    def give_back(self, consent_id: str, *, message_id: str, provider: str) -> Status:
        """Give back the use ``provider`` spent for ``message_id``: its registry failed, so
        nothing was released. Once per use; a use spent by another member, or none, is left as
        it is. The message stays answered (a replay of it is still refused)."""
        at = self._clock()
        with Session(self._engine) as session:
            returned = session.execute(
                update(models.Use)
                .where(
                    models.Use.consent_id == consent_id,
                    models.Use.message_id == message_id,
                    models.Use.provider == provider,
                    models.Use.returned_at.is_(None),
                )
                .values(returned_at=at)
            )
            if returned.rowcount == 1:  # type: ignore[attr-defined]
                session.execute(
                    update(models.Consent)
                    .where(models.Consent.id == consent_id, models.Consent.uses > 0)
                    .values(uses=models.Consent.uses - 1)
                )
            session.commit()
            row = session.get(models.Consent, consent_id)
            if row is None:
                raise NotFound("no such consent")
            return self._status(row)

    def _status(self, row: models.Consent) -> Status:
        at = self._clock()
        if row.revoked_at is not None:
            status = "revoked"
        elif at < row.valid_from:
            status = "not-yet-valid"
        elif at >= row.valid_until:
            status = "expired"
        elif row.max_uses is not None and row.uses >= row.max_uses:
            status = "exhausted"
        else:
            status = "active"
        return Status(row.id, status, row.uses, row.max_uses)


def _decode(artefact: str) -> Consent:
    """The claims of an artefact this service signed and kept itself."""
    return Consent.from_claims(jwt.decode(artefact, options={"verify_signature": False}))


def _reread(session: Session, consent_id: str) -> models.Consent:
    """A consent row read again after the transaction changed or rolled back; rows are never
    deleted here, so one that was there a moment ago still is."""
    row = session.get(models.Consent, consent_id, populate_existing=True)
    if row is None:
        raise InternalError(f"consent {consent_id} vanished within a transaction")
    return row
