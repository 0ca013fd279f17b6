"""Gateways enrol with a one-time code instead of the admin token.

X-Road's order, without a shell: the agency applies and the authority's operator approves the
member (:mod:`exchange.central.applications`); the operator then registers the agency's gateway
(its identifier and address) and the authority hands out a one-time *enrolment code* bound to
that gateway (:meth:`Enrolments.issue`), shown once to the operator, who passes it to the agency.
The agency's gateway generates its keys, and its console sends both CSRs with the code
(:meth:`Enrolments.enrol`, ``POST /enrolment``): the authority issues the member's signing
certificate and the gateway's TLS certificate, for exactly the member and gateway the code names,
and marks the code used, in one transaction. Keys never leave the gateway.

What keeps the door small:

- a code is 120 random bits; only its SHA-256 is stored, so the database does not hold a usable
  code;
- it works once (a conditional update: two gateways racing with one code get one pair of
  certificates between them), until it expires (:attr:`CentralSettings.enrolment_code_validity`),
  and a newer code for the same gateway withdraws the older;
- once used, the same code with the same two public keys, for the same gateway and before the
  code would have expired, is answered with the certificates already issued
  (``gateway.enrolment_repeated``), unless one of them has been revoked since: a gateway whose
  answer was lost (a timeout after the authority committed) retries, as it keeps its keys and
  CSRs, instead of holding a used code and no certificate. Nothing new is issued; the
  certificates are public anyway, and asking needs the code and the CSRs' keys;
- the subject of both certificates is decided here from the registry, never from the CSRs;
- the applicant whose approved application made the member reads the code on its own page with
  its receipt (:mod:`exchange.central.receipts`): the code is sealed to it, not stored;
- every step is in the change log with its actor: ``enrolment_code.issued`` (the operator),
  ``certificate.issued.*`` and ``gateway.enrolled`` (``enrolment:<gateway>``, the code's holder).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from exchange.central import models, receipts
from exchange.central.applications import UNKNOWN
from exchange.central.certificates import Certificates, Issued, add
from exchange.central.registry import Registry, check_gateway_address, record
from exchange.errors import (
    AccessDenied,
    EnrolmentCodeExpired,
    EnrolmentCodeUsed,
    InvalidEnrolmentCode,
    InvalidRequest,
    NotFound,
)
from exchange.identifiers import GatewayId
from exchange.trust import ca
from exchange.trust.ca import PublicKey
from exchange.trust.keys import serial_hex

CODE_BYTES = 15  # 120 bits, 24 base32 characters
_GROUP = 4


def new_code() -> str:
    """A fresh code, in groups of four letters and digits that are easy to read out and type."""
    raw = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode()
    return "-".join(raw[i : i + _GROUP] for i in range(0, len(raw), _GROUP))


def digest(code: str) -> str:
    """What is stored of a code: its SHA-256, taken over the letters alone (a code typed in
    lower case, without its dashes or with spaces, is the same code)."""
    letters = "".join(code.split()).replace("-", "").upper()
    return hashlib.sha256(letters.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A code just issued: the only time its letters are known."""

    code: str
    gateway: str
    address: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CodeState:
    """A code as the console lists it (never its letters)."""

    id: int
    gateway: str
    issued_at: datetime
    issued_by: str
    expires_at: datetime
    status: str  # waiting | used | expired | withdrawn


@dataclass(frozen=True, slots=True)
class Enrolled:
    gateway: str
    member: str
    signing: Issued
    tls: Issued


class Enrolments:
    def __init__(
        self, *, registry: Registry, certificates: Certificates, validity: timedelta
    ) -> None:
        self._registry = registry
        self._certificates = certificates
        self._validity = validity

    def issue(self, gateway: GatewayId, address: str, *, actor: str) -> IssuedCode:
        """A code for ``gateway`` of a registered member. The gateway is registered at
        ``address`` if it is not yet; if it is, ``address`` must be the one registered (moving
        a gateway is another decision). Earlier codes of the gateway still waiting are
        withdrawn."""
        address = check_gateway_address(address)
        code = new_code()
        at = self._registry.clock()
        with self._registry.session() as session:
            row = session.scalar(
                select(models.Gateway).where(models.Gateway.identifier == str(gateway))
            )
            if row is None:
                row = self._registry.add_gateway(session, gateway, address, actor=actor)
                session.flush()
            elif row.address != address:
                raise InvalidRequest(
                    f"gateway {gateway} is registered at {row.address}, not {address}",
                    detail="address",
                )
            withdrawn = session.execute(
                update(models.EnrolmentCode)
                .where(
                    models.EnrolmentCode.gateway_id == row.id,
                    models.EnrolmentCode.used_at.is_(None),
                    models.EnrolmentCode.withdrawn_at.is_(None),
                )
                .values(withdrawn_at=at)
            ).rowcount  # type: ignore[attr-defined]
            expires = at + self._validity
            applicant = _receipt_key(session, gateway)
            session.add(
                models.EnrolmentCode(
                    digest=digest(code),
                    gateway_id=row.id,
                    issued_at=at,
                    issued_by=actor,
                    expires_at=expires,
                    sealed=None
                    if applicant is None
                    else receipts.seal(code, to=applicant, bound=str(gateway)),
                )
            )
            record(
                session,
                at=at,
                actor=actor,
                action="enrolment_code.issued",
                subject=str(gateway),
                expires_at=expires.isoformat(),
                withdrawn=withdrawn,
            )
            self._registry.commit(session, f"gateway {gateway}")
        return IssuedCode(code=code, gateway=str(gateway), address=address, expires_at=expires)

    def enrol(self, code: str, gateway: GatewayId, *, signing_csr: str, tls_csr: str) -> Enrolled:
        """Issue the certificates ``code`` allows, for the keys of the two CSRs, once."""
        signing_key = ca.public_key_from_csr(signing_csr)
        tls_key = ca.public_key_from_csr(tls_csr)
        if signing_key == tls_key:
            raise InvalidRequest(
                "the signing and TLS requests must be for two different keys", detail="tls_csr"
            )
        at = self._registry.clock()
        actor = f"enrolment:{gateway}"
        with self._registry.session() as session:
            row = self._found(session, code)
            if row.used_at is not None:
                repeated = self._repeated(session, row, gateway, signing_key, tls_key, at=at)
                if repeated is None:
                    raise EnrolmentCodeUsed("this enrolment code was used already")
                record(
                    session,
                    at=at,
                    actor=actor,
                    action="gateway.enrolment_repeated",
                    subject=str(gateway),
                    code=row.id,
                    signing=repeated.signing.serial,
                    tls=repeated.tls.serial,
                )
                session.commit()
                return repeated
            self._usable(row, gateway, at=at)
            member, target = row.gateway.member, row.gateway
            signing = self._certificates.signing_certificate(
                gateway.member, member.name, signing_key, at=at
            )
            tls = self._certificates.tls_certificate(
                gateway, member.name, target.address, tls_key, at=at
            )
            # Claimed first, so that of two enrolments racing with one code only one commits.
            claimed = session.execute(
                update(models.EnrolmentCode)
                .where(models.EnrolmentCode.id == row.id, models.EnrolmentCode.used_at.is_(None))
                .values(
                    used_at=at,
                    signing_serial=serial_hex(signing.serial_number),
                    tls_serial=serial_hex(tls.serial_number),
                )
            ).rowcount  # type: ignore[attr-defined]
            if claimed != 1:
                raise EnrolmentCodeUsed("this enrolment code was used already")
            issued_signing = add(
                session,
                signing,
                profile=ca.Profile.SIGNING,
                member_id=member.id,
                gateway_id=None,
                at=at,
                actor=actor,
                owner=member.identifier,
            )
            issued_tls = add(
                session,
                tls,
                profile=ca.Profile.TLS,
                member_id=member.id,
                gateway_id=target.id,
                at=at,
                actor=actor,
                owner=str(gateway),
            )
            record(
                session,
                at=at,
                actor=actor,
                action="gateway.enrolled",
                subject=str(gateway),
                code=row.id,
                code_issued_by=row.issued_by,
                signing=issued_signing.serial,
                tls=issued_tls.serial,
            )
            session.commit()
        return Enrolled(
            gateway=str(gateway), member=member.identifier, signing=issued_signing, tls=issued_tls
        )

    def for_applicant(self, number: int, receipt: str) -> list[IssuedCode]:
        """The waiting codes of the gateways of the member application ``number`` made, as the
        holder of its ``receipt`` reads them; :class:`NotFound` for anyone else."""
        at = self._registry.clock()
        table = models.EnrolmentCode
        with self._registry.session() as session:
            application = session.get(models.Application, number)
            stored = application.receipt_key if application is not None else None
            if not receipts.matches(receipt, stored) or application is None:
                raise NotFound(UNKNOWN)
            if application.kind != "member" or application.status != "approved":
                return []
            rows = session.scalars(
                select(table)
                .join(models.Gateway)
                .join(models.Member)
                .where(
                    models.Member.identifier == application.identifier,
                    table.sealed.is_not(None),
                    table.used_at.is_(None),
                    table.withdrawn_at.is_(None),
                    table.expires_at > at,
                )
                .order_by(table.id)
                .options(selectinload(table.gateway))
            )
            shown = []
            for row in rows:
                gateway = row.gateway.identifier
                code = receipts.unseal(row.sealed or "", receipt=receipt, bound=gateway)
                if code is not None:
                    shown.append(IssuedCode(code, gateway, row.gateway.address, row.expires_at))
            return shown

    def codes(self, *, limit: int = 100) -> list[CodeState]:
        """The newest codes and how each stands."""
        at = self._registry.clock()
        table = models.EnrolmentCode
        with self._registry.session() as session:
            rows = session.scalars(
                select(table)
                .order_by(table.id.desc())
                .limit(limit)
                .options(selectinload(table.gateway))
            )
            return [
                CodeState(
                    id=r.id,
                    gateway=r.gateway.identifier,
                    issued_at=r.issued_at,
                    issued_by=r.issued_by,
                    expires_at=r.expires_at,
                    status="used"
                    if r.used_at
                    else "withdrawn"
                    if r.withdrawn_at
                    else "expired"
                    if r.expires_at <= at
                    else "waiting",
                )
                for r in rows
            ]

    @staticmethod
    def _found(session: Session, code: str) -> models.EnrolmentCode:
        row = session.scalar(
            select(models.EnrolmentCode)
            .where(models.EnrolmentCode.digest == digest(code))
            .options(selectinload(models.EnrolmentCode.gateway).selectinload(models.Gateway.member))
        )
        if row is None:
            raise InvalidEnrolmentCode("this is not an enrolment code of this authority")
        return row

    @staticmethod
    def _repeated(
        session: Session,
        row: models.EnrolmentCode,
        gateway: GatewayId,
        signing_key: PublicKey,
        tls_key: PublicKey,
        *,
        at: datetime,
    ) -> Enrolled | None:
        """The answer given when ``row`` was used, if this is the same request again: the same
        gateway, the same two keys, before the code's expiry, neither certificate revoked."""
        if row.gateway.identifier != str(gateway) or row.expires_at <= at:
            return None
        if row.signing_serial is None or row.tls_serial is None:  # used before serials were kept
            return None
        issued = []
        for serial, key in ((row.signing_serial, signing_key), (row.tls_serial, tls_key)):
            stored = session.get(models.Certificate, serial)
            if stored is None or stored.revoked_at is not None:
                return None
            certificate = x509.load_pem_x509_certificate(stored.pem.encode())
            if certificate.public_key() != key:
                return None
            issued.append(Issued(stored.serial, stored.fingerprint, stored.pem, stored.not_after))
        signing, tls = issued
        return Enrolled(str(gateway), row.gateway.member.identifier, signing, tls)

    @staticmethod
    def _usable(row: models.EnrolmentCode, gateway: GatewayId, *, at: datetime) -> None:
        """Refuse a code that may not enrol ``gateway`` now (a used one is decided above)."""
        if row.withdrawn_at is not None:
            raise InvalidEnrolmentCode(
                "this enrolment code was replaced by a newer one", detail="withdrawn"
            )
        if row.expires_at <= at:
            raise EnrolmentCodeExpired(
                "this enrolment code has expired: ask the authority for a new one",
                detail=row.expires_at.isoformat(),
            )
        if row.gateway.identifier != str(gateway):
            raise AccessDenied(
                f"this enrolment code is for gateway {row.gateway.identifier}",
                detail=row.gateway.identifier,
            )


def _receipt_key(session: Session, gateway: GatewayId) -> str | None:
    """The receipt key of the approved application that made the gateway's member, if any."""
    table = models.Application
    return session.scalar(
        select(table.receipt_key)
        .where(
            table.kind == "member",
            table.identifier == str(gateway.member),
            table.status == "approved",
            table.receipt_key.is_not(None),
        )
        .order_by(table.id.desc())
        .limit(1)
    )
