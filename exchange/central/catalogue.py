"""Catalogues the gateways publish signed with their member's key (``PUT /catalogue/v1/services``).

The credential is the signature (:mod:`exchange.trust.catalogue`), not a token: a member's
gateway publishes without holding anything that opens the authority's management API. Denied
unless every check passes, in this order:

1. the JWS is well formed and its ``kid`` names a message-signing certificate this authority
   issued to a member (not a consent service's key, not a TLS or timestamping certificate):
   else :class:`~exchange.errors.InvalidSignature` (400), "unknown signer";
2. that certificate is unrevoked and valid now, and the signature verifies with it: else
   :class:`~exchange.errors.InvalidSignature` (400) saying which;
3. the subsystem and the gateway named belong to the member the certificate was issued to:
   else :class:`~exchange.errors.AccessDenied` (403), detail the subsystem or gateway;
4. ``iat`` is within the clock skew of now: else :class:`~exchange.errors.StaleMessage` (400);
5. this very JWS was not published before (:class:`~exchange.errors.DuplicateMessage`, 409), and
   no catalogue of the subsystem issued later is published already
   (:class:`~exchange.errors.StaleMessage`: it would roll the catalogue back).

An accepted catalogue replaces the subsystem's entries, and is logged in the change log with
``gateway:<gateway id>`` as actor and the certificate's serial, in the same transaction as its
:class:`~exchange.central.models.SignedPublication` row (the replay guard).

Not checked here: the entries' own form (the HTTP layer validates them as the admin route does),
and whether the gateway serves the services it lists (its member answers for that).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from exchange.central import models
from exchange.central.registry import Registry
from exchange.errors import (
    AccessDenied,
    Conflict,
    DuplicateMessage,
    Error,
    InvalidSignature,
    StaleMessage,
)
from exchange.identifiers import GatewayId, SubsystemId
from exchange.trust import ca
from exchange.trust.catalogue import CATALOGUE_TYPE, CatalogueClaims, read_claims
from exchange.trust.signed import verify_signed

log = structlog.get_logger(__name__)
UNKNOWN_SIGNER = "the catalogue is signed by an unknown signer"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A signed catalogue that passed every check but the last: not yet published."""

    claims: CatalogueClaims
    subsystem: SubsystemId
    gateway: GatewayId
    certificate_serial: str
    digest: str

    @property
    def actor(self) -> str:
        return f"gateway:{self.gateway}"


@contextlib.contextmanager
def refusals_logged(accepted: Accepted | None = None) -> Iterator[None]:
    """A refusal goes back to the gateway as it is; the log also says why, and for which
    subsystem once the signature told (never the entries, never the token)."""
    try:
        yield
    except Error as refusal:
        log.warning(
            "catalogue.refused",
            kind=refusal.code,
            problem=refusal.message,
            subsystem=str(accepted.subsystem) if accepted else None,
            gateway=str(accepted.gateway) if accepted else None,
        )
        raise


class SignedCatalogues:
    def __init__(self, *, registry: Registry, skew: timedelta) -> None:
        self._registry = registry
        self._skew = skew

    def check(self, token: str) -> Accepted:
        """``token`` verified (checks 1 to 4 of the module docstring), or why not."""
        with refusals_logged():
            return self._check(token, self._registry.clock())

    def _check(self, token: str, at: datetime) -> Accepted:
        signer: list[models.Certificate] = []  # the row certificate_for found, for after

        def certificate_for(kid: str) -> x509.Certificate:
            row = self._signing_certificate(kid)
            if row.revoked_at is not None:
                raise InvalidSignature("the signing certificate is revoked")
            if not row.not_before <= at < row.not_after:
                raise InvalidSignature("the signing certificate is not valid at this time")
            signer.append(row)
            return x509.load_pem_x509_certificate(row.pem.encode())

        verified = verify_signed(token, typ=CATALOGUE_TYPE, certificate_for=certificate_for)
        claims = read_claims(verified.claims)
        member = signer[0].member.identifier
        subsystem = SubsystemId.parse(claims.subsystem)  # InvalidIdentifier (400) if it is none
        gateway = GatewayId.parse(claims.gateway)
        if str(subsystem.member) != member:
            raise AccessDenied(
                "a member's key publishes only that member's subsystems", detail=str(subsystem)
            )
        if str(gateway.member) != member:
            raise AccessDenied(
                "the catalogue names a gateway of another member", detail=str(gateway)
            )
        drift = claims.iat - at.timestamp()
        if abs(drift) > self._skew.total_seconds():
            raise StaleMessage(
                f"the catalogue was signed {drift:+.0f} s from now; "
                f"allowed skew is {self._skew.total_seconds():g} s"
            )
        return Accepted(
            claims=claims,
            subsystem=subsystem,
            gateway=gateway,
            certificate_serial=signer[0].serial,
            digest=hashlib.sha256(token.encode("ascii")).hexdigest(),
        )

    def _signing_certificate(self, kid: str) -> models.Certificate:
        """The member signing certificate named ``kid``; a consent service's key publishes no
        catalogue (as the configuration publishes them, it signs no message)."""
        with self._registry.session() as session:
            row = session.scalar(
                select(models.Certificate)
                .where(
                    models.Certificate.fingerprint == kid.lower(),
                    models.Certificate.profile == ca.Profile.SIGNING.value,
                )
                .options(selectinload(models.Certificate.member))
            )
            consent_key = row is not None and session.scalar(
                select(models.ConsentService.id).where(
                    models.ConsentService.certificate_serial == row.serial
                )
            )
        if row is None or consent_key:
            raise InvalidSignature(UNKNOWN_SIGNER)
        return row

    def publish(self, accepted: Accepted, entries: list[dict[str, Any]]) -> list[str]:
        """Publish ``entries`` as ``accepted``'s subsystem's catalogue (check 5 first).

        Publications of one subsystem are serialised, so that of two racing catalogues the one
        signed later wins whichever commits first: PostgreSQL locks the subsystem's row; SQLite
        has one writer at a time, and the publication row is written before the check reads."""
        at = self._registry.clock()
        issued = datetime.fromtimestamp(accepted.claims.iat, at.tzinfo)
        with refusals_logged(accepted), self._registry.session() as session:
            owner = self._registry.subsystem(session, accepted.subsystem, for_update=True)
            gateway = self._registry.gateway(session, accepted.gateway)
            if self._seen(session, accepted.digest):
                raise DuplicateMessage("this signed catalogue was published already")
            try:
                # A flush may hit the unique digest before the commit does (a replay racing
                # the original): both are guarded.
                session.add(
                    models.SignedPublication(
                        digest=accepted.digest,
                        subsystem_id=owner.id,
                        gateway_id=gateway.id,
                        certificate_serial=accepted.certificate_serial,
                        issued_at=issued,
                        published_at=at,
                    )
                )
                session.flush()
                self._check_newest(session, accepted, owner, issued)
                published = self._registry.replace_services(
                    session,
                    accepted.subsystem,
                    entries,
                    actor=accepted.actor,
                    certificate=accepted.certificate_serial,
                )
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                if self._seen(session, accepted.digest):  # the same JWS, sent twice at once
                    raise DuplicateMessage("this signed catalogue was published already") from exc
                raise Conflict("one of these services is already registered") from exc
        log.info(
            "catalogue.published",
            subsystem=str(accepted.subsystem),
            gateway=str(accepted.gateway),
            services=len(published),
        )
        return published

    @staticmethod
    def _check_newest(
        session: Session, accepted: Accepted, owner: models.Subsystem, issued: datetime
    ) -> None:
        """Refuse a catalogue signed before one of its subsystem already published."""
        newest = session.scalar(
            select(func.max(models.SignedPublication.issued_at)).where(
                models.SignedPublication.subsystem_id == owner.id,
                models.SignedPublication.digest != accepted.digest,
            )
        )
        if newest is not None and newest > issued:
            raise StaleMessage(
                "a catalogue of this subsystem signed later is published already",
                detail=str(accepted.subsystem),
            )

    @staticmethod
    def _seen(session: Session, digest: str) -> bool:
        return (
            session.scalar(
                select(models.SignedPublication.id).where(models.SignedPublication.digest == digest)
            )
            is not None
        )
