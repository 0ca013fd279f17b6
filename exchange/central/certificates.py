"""Certificate issuance from CSRs, revocation and the CRL, persisted in the registry.

Members keep their private keys: the authority only ever sees a CSR, checks it, and decides the
subject and extensions itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from exchange.central import models, ocsp
from exchange.central.registry import Registry, latest_event_id, record
from exchange.central.settings import CentralSettings
from exchange.errors import Conflict, InvalidRequest, NotFound
from exchange.identifiers import GatewayId, MemberId, check_segment
from exchange.trust import ca
from exchange.trust.keys import certificate_pem, fingerprint, serial_hex

_SUBJECT_NAMES = {NameOID.SERIAL_NUMBER: "serialNumber"}
REVOCATION_REASONS = {
    flag.value: flag
    for flag in (
        x509.ReasonFlags.unspecified,
        x509.ReasonFlags.key_compromise,
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
    )
}


@dataclass(frozen=True, slots=True)
class Issued:
    serial: str
    fingerprint: str
    pem: str
    not_after: datetime


@dataclass(frozen=True, slots=True)
class Listed:
    """A kind of service that a member runs and the authority certifies and lists by name."""

    model: type[models.TimestampingAuthority] | type[models.ConsentService]
    label: str
    profile: ca.Profile
    action: str


TIMESTAMPING_AUTHORITY = Listed(
    models.TimestampingAuthority,
    "timestamping authority",
    ca.Profile.TIMESTAMPING,
    "timestamping_authority.registered",
)
# Consent records are signed documents, hence the signing profile (documentSigning).
CONSENT_SERVICE = Listed(
    models.ConsentService, "consent service", ca.Profile.SIGNING, "consent_service.registered"
)


def add(
    session: Session,
    certificate: x509.Certificate,
    *,
    profile: ca.Profile,
    member_id: int,
    gateway_id: int | None,
    at: datetime,
    actor: str,
    owner: str,
) -> Issued:
    """Add an issued certificate and its event to ``session``; the caller commits."""
    issued = Issued(
        serial=serial_hex(certificate.serial_number),
        fingerprint=fingerprint(certificate),
        pem=certificate_pem(certificate),
        not_after=certificate.not_valid_after_utc,
    )
    session.add(
        models.Certificate(
            serial=issued.serial,
            profile=profile.value,
            member_id=member_id,
            gateway_id=gateway_id,
            fingerprint=issued.fingerprint,
            subject=certificate.subject.rfc4514_string(_SUBJECT_NAMES),
            pem=issued.pem,
            not_before=certificate.not_valid_before_utc,
            not_after=issued.not_after,
            issued_at=at,
        )
    )
    record(
        session,
        at=at,
        actor=actor,
        action=f"certificate.issued.{profile.value}",
        subject=owner,
        serial=issued.serial,
        fingerprint=issued.fingerprint,
    )
    return issued


class Certificates:
    def __init__(
        self,
        *,
        registry: Registry,
        authority: ca.CertificateAuthority,
        settings: CentralSettings,
        responders: ocsp.Responders | None = None,
    ) -> None:
        self._registry = registry
        self._authority = authority
        self._settings = settings
        self._responders = responders  # the delegated OCSP responder, when ocsp_delegated is on
        self._crl: tuple[int, datetime, bytes] | None = None  # (basis event, made at, DER)

    @property
    def ca_certificate(self) -> x509.Certificate:
        return self._authority.certificate

    def _store(
        self,
        certificate: x509.Certificate,
        *,
        profile: ca.Profile,
        member_id: int,
        gateway_id: int | None,
        at: datetime,
        actor: str,
        owner: str,
    ) -> Issued:
        with self._registry.session() as session:
            issued = add(
                session,
                certificate,
                profile=profile,
                member_id=member_id,
                gateway_id=gateway_id,
                at=at,
                actor=actor,
                owner=owner,
            )
            session.commit()
        return issued

    def _crl_url(self) -> str:
        return f"{self._settings.url}/crl"

    def issue_signing(self, member: MemberId, csr_pem: str, *, actor: str) -> Issued:
        """A member's message-signing certificate for the key in ``csr_pem``."""
        public_key = ca.public_key_from_csr(csr_pem)
        row = self._registry.member(member)
        at = self._registry.clock()
        certificate = self.signing_certificate(member, row.name, public_key, at=at)
        return self._store(
            certificate,
            profile=ca.Profile.SIGNING,
            member_id=row.id,
            gateway_id=None,
            at=at,
            actor=actor,
            owner=str(member),
        )

    def issue_tls(self, gateway: GatewayId, csr_pem: str, *, actor: str) -> Issued:
        """A gateway's TLS certificate, naming the host of its registered address."""
        public_key = ca.public_key_from_csr(csr_pem)
        with self._registry.session() as session:
            row = self._registry.gateway(session, gateway)
            member_name, member_id, gateway_id = row.member.name, row.member_id, row.id
            address = row.address
        at = self._registry.clock()
        certificate = self.tls_certificate(gateway, member_name, address, public_key, at=at)
        return self._store(
            certificate,
            profile=ca.Profile.TLS,
            member_id=member_id,
            gateway_id=gateway_id,
            at=at,
            actor=actor,
            owner=str(gateway),
        )

    def signing_certificate(
        self, member: MemberId, name: str, public_key: ca.PublicKey, *, at: datetime
    ) -> x509.Certificate:
        """Signed, not stored: the caller adds it (:func:`add`) in its own transaction."""
        return self._authority.issue(
            public_key=public_key,
            subject=x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                    x509.NameAttribute(NameOID.COMMON_NAME, member.member_code),
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, str(member)),
                ]
            ),
            profile=ca.Profile.SIGNING,
            at=at,
            validity=self._settings.signing_certificate_validity,
            crl_url=self._crl_url(),
        )

    def tls_certificate(
        self,
        gateway: GatewayId,
        member_name: str,
        address: str,
        public_key: ca.PublicKey,
        *,
        at: datetime,
    ) -> x509.Certificate:
        """Signed, not stored: the caller adds it (:func:`add`) in its own transaction."""
        return self._authority.issue(
            public_key=public_key,
            subject=x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, member_name),
                    x509.NameAttribute(NameOID.COMMON_NAME, gateway.gateway_code),
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, str(gateway)),
                ]
            ),
            profile=ca.Profile.TLS,
            at=at,
            validity=self._settings.tls_certificate_validity,
            hosts=[x509_host(address)],
            crl_url=self._crl_url(),
        )

    def issue_timestamping(
        self, member: MemberId, name: str, url: str, csr_pem: str, *, actor: str
    ) -> Issued:
        """Certify a timestamping authority that ``member`` operates at ``url``, and list it."""
        return self._certify_listed(TIMESTAMPING_AUTHORITY, member, name, url, csr_pem, actor=actor)

    def issue_consent_service(
        self, member: MemberId, name: str, url: str, csr_pem: str, *, actor: str
    ) -> Issued:
        """Certify a consent service that ``member`` operates at ``url``, and list it."""
        return self._certify_listed(CONSENT_SERVICE, member, name, url, csr_pem, actor=actor)

    def consent_services(self) -> list[models.ConsentService]:
        with self._registry.session() as session:
            return list(
                session.scalars(
                    select(models.ConsentService)
                    .order_by(models.ConsentService.name)
                    .options(
                        selectinload(models.ConsentService.member),
                        selectinload(models.ConsentService.certificate),
                    )
                )
            )

    def _certify_listed(
        self, kind: Listed, member: MemberId, name: str, url: str, csr_pem: str, *, actor: str
    ) -> Issued:
        """Issue the certificate and list the service under ``name`` in one transaction.

        One transaction, so that a certificate is never left behind without its listing (a
        consent service's certificate would otherwise pass for a member's signing key).
        """
        check_segment(name, f"{kind.label} name")
        if not url.startswith(("http://", "https://")):
            raise InvalidRequest(f"a {kind.label} URL is http(s)://...", detail="url")
        public_key = ca.public_key_from_csr(csr_pem)
        row = self._registry.member(member)
        with self._registry.session() as session:
            if session.scalar(select(kind.model).where(kind.model.name == name)) is not None:
                raise Conflict(f"{kind.label} {name} is already registered", detail=name)
        at = self._registry.clock()
        certificate = self._authority.issue(
            public_key=public_key,
            subject=x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, row.name),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, str(member)),
                ]
            ),
            profile=kind.profile,
            at=at,
            validity=self._settings.signing_certificate_validity,
            crl_url=self._crl_url(),
        )
        with self._registry.session() as session:
            issued = add(
                session,
                certificate,
                profile=kind.profile,
                member_id=row.id,
                gateway_id=None,
                at=at,
                actor=actor,
                owner=name,
            )
            session.flush()  # the listing refers to the certificate row
            session.add(
                kind.model(
                    name=name,
                    member_id=row.id,
                    url=url,
                    certificate_serial=issued.serial,
                    created_at=at,
                )
            )
            record(session, at=at, actor=actor, action=kind.action, subject=name, url=url)
            try:
                session.commit()
            except IntegrityError as exc:  # registered concurrently under the same name
                session.rollback()
                raise Conflict(f"{kind.label} {name} is already registered", detail=name) from exc
        return issued

    def revoke(self, serial: str, reason: str, *, actor: str) -> None:
        flag = REVOCATION_REASONS.get(reason)
        if flag is None:
            raise InvalidRequest(
                f"unknown revocation reason {reason!r}; "
                f"use one of {', '.join(sorted(REVOCATION_REASONS))}",
                detail="reason",
            )
        serial = serial.upper()
        at = self._registry.clock()
        with self._registry.session() as session:
            row = session.get(models.Certificate, serial)
            if row is None:
                raise NotFound(f"no certificate with serial {serial}", detail=serial)
            if row.revoked_at is not None:
                raise Conflict(f"certificate {serial} is already revoked", detail=serial)
            row.revoked_at = at
            row.revocation_reason = flag.value
            record(
                session,
                at=at,
                actor=actor,
                action="certificate.revoked",
                subject=serial,
                reason=flag.value,
            )
            session.commit()

    def get(self, serial: str) -> models.Certificate | None:
        """The certificate issued under ``serial`` (upper-case hex), for the OCSP responder."""
        with self._registry.session() as session:
            return session.get(models.Certificate, serial.upper())

    def ocsp_response(self, request: bytes) -> bytes:
        """The signed OCSP answer to the DER ``request`` (:mod:`exchange.central.ocsp`)."""
        at = self._registry.clock()
        return ocsp.respond(
            request,
            authority=self._authority,
            lookup=self.get,
            at=at,
            validity=self._settings.ocsp_validity,
            responder=None if self._responders is None else self._responders.current(at),
        )

    def list(self) -> list[models.Certificate]:
        with self._registry.session() as session:
            return list(
                session.scalars(select(models.Certificate).order_by(models.Certificate.issued_at))
            )

    def crl_der(self) -> bytes:
        """The current CRL, re-signed after any change and when half its validity has passed."""
        at = self._registry.clock()
        validity = self._settings.crl_validity
        with self._registry.session() as session:
            basis = latest_event_id(session)
            cached = self._crl
            if cached is not None and cached[0] == basis and at < cached[1] + validity / 2:
                return cached[2]
            revoked = session.scalars(
                select(models.Certificate).where(models.Certificate.revoked_at.is_not(None))
            )
            revocations = [
                ca.Revocation(
                    serial=int(row.serial, 16),
                    revoked_at=row.revoked_at,
                    reason=x509.ReasonFlags(row.revocation_reason),
                )
                for row in revoked
                if row.revoked_at is not None and row.revocation_reason is not None
            ]
        # Each CRL's thisUpdate is later (to the second) than the one before: a TLS context
        # that holds both (exchange.trust.crl) uses the one with the latest thisUpdate.
        issued = at.replace(microsecond=0)
        if cached is not None and issued <= cached[1].replace(microsecond=0):
            issued = cached[1].replace(microsecond=0) + timedelta(seconds=1)
        # The CRL number must grow with every CRL issued: milliseconds since the epoch do.
        crl = self._authority.crl(
            revocations, at=issued, validity=validity, number=int(at.timestamp() * 1000)
        )
        der = crl.public_bytes(serialization.Encoding.DER)
        self._crl = (basis, issued, der)
        return der


def x509_host(address: str) -> str:
    host = urlsplit(address).hostname
    if host is None:
        raise InvalidRequest("gateway address has no host", detail="address")
    return host
