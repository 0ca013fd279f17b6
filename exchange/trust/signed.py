"""Signed messages, as every role makes and accepts them.

Every signed artefact of an instance is a compact JWS (ES256) whose ``kid`` is the SHA-256
fingerprint of the signing certificate: gateway requests and responses, consent artefacts, a
provider's consent questions and the consent service's answers, revocation pages and audit tree
heads. :class:`Signer` makes them; :func:`verify_signed` is the one way to accept one.

:func:`verify_signed` checks the form (:mod:`exchange.jws`), the ``typ``, that the certificate
named by ``kid`` may sign (the caller's ``certificate_for`` decides: which party, revocation,
validity at the caller's time) and the signature. It does *not* check the claims: each message
kind checks its own fields and times next, and turns :class:`~exchange.errors.InvalidSignature`
into the refusal its callers expect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from exchange import jws
from exchange.errors import InvalidSignature
from exchange.trust.ca import DOCUMENT_SIGNING
from exchange.trust.keys import fingerprint, serial_hex

# Given a ``kid``, the certificate that may sign this kind of message; raises InvalidSignature.
CertificateFor = Callable[[str], x509.Certificate]


class Signer:
    """A signing key and its certificate, parsed once and kept."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate
        self.kid = fingerprint(certificate)

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        return jws.sign(claims, self._key, typ=typ, kid=self.kid)


class Verified(NamedTuple):
    # A named tuple: built on every signature verified, and cheaper to build than a dataclass.
    claims: dict[str, Any]
    kid: str
    certificate: x509.Certificate


def verify_signed(token: str, *, typ: str, certificate_for: CertificateFor) -> Verified:
    """The claims of ``token`` once it is a JWS of type ``typ`` signed with a key that
    ``certificate_for`` admits; else :class:`InvalidSignature` saying what failed."""
    try:
        signed = jws.Token(token)
    except jws.JwsError as exc:
        raise InvalidSignature("the signature is not an ES256 compact JWS") from exc
    if signed.header.get("typ") != typ:
        raise InvalidSignature("the signed message has the wrong type")
    kid = str(signed.header.get("kid", ""))
    certificate = certificate_for(kid)
    public_key = certificate.public_key()
    if not jws.is_ec_public_key(public_key):
        raise InvalidSignature("the signing certificate does not hold an EC key")
    try:
        claims = signed.claims(public_key)
    except jws.JwsError as exc:
        raise InvalidSignature("the signature does not verify") from exc
    return Verified(claims, kid, certificate)


def may_sign(certificate: x509.Certificate, *, ca: x509.Certificate) -> bool:
    """Whether the instance CA ``ca`` issued ``certificate`` for signing documents."""
    try:
        certificate.verify_directly_issued_by(ca)
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, TypeError, CryptoInvalidSignature, x509.ExtensionNotFound):
        return False
    return DOCUMENT_SIGNING in usage


@dataclass(frozen=True, slots=True)
class Validity:
    """What makes a certificate usable at a time (its serial, not revoked; its validity), read
    once: the certificate cannot change, so a holder of many checks (a trust view) keeps this
    beside it and compares it with the revocation list and time of each check."""

    serial: str
    not_before: datetime
    not_after: datetime

    @classmethod
    def of(cls, certificate: x509.Certificate) -> Validity:
        return cls(
            serial_hex(certificate.serial_number),
            certificate.not_valid_before_utc,
            certificate.not_valid_after_utc,
        )

    def require(self, *, revoked: Collection[str], at: datetime) -> None:
        if self.serial in revoked:
            raise InvalidSignature("the signing certificate is revoked")
        if not self.not_before <= at <= self.not_after:
            raise InvalidSignature("the signing certificate is not valid at this time")


def body_digest(body: bytes) -> str:
    if not body:
        return _EMPTY_BODY  # every GET's
    return jws.b64url(hashlib.sha256(body).digest())


_EMPTY_BODY = jws.b64url(hashlib.sha256(b"").digest())


def identity_digest(token: str | None) -> str | None:
    """What a signature binds of a citizen's ID token or consent artefact: its SHA-256, never
    the token itself, so that neither a bearer credential nor a person's code lands in a
    signature that is kept and shown."""
    return None if token is None else body_digest(token.encode("ascii"))


def detached(signature: str) -> tuple[str, str]:
    """(``header..signature``, SHA-256 of the payload segment): a JWS as the audit log keeps it.

    The claims name the person and the query, so the published log holds only their digest;
    the full JWS stays in the gateway's operational records for an authorised investigation,
    where it verifies against the same signature.
    """
    header, payload, tail = signature.split(".")
    return f"{header}..{tail}", body_digest(payload.encode("ascii"))
