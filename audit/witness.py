"""Witness countersignatures of signed tree heads: their format, made and checked.

A witness (the central authority by default) that accepted a head, because it verified and was
consistent with the last head it saw from that chain, answers with a *cosignature*::

    {"signature": "<JWS>", "certificate": "<PEM>"}

The JWS (``typ`` ``exchange-cosignature+jws``, ES256, ``kid`` the certificate's fingerprint)
signs ``{"chain", "size", "root", "head", "at"}`` where ``head`` is the base64url SHA-256 of the
head's own JWS: the cosignature vouches for that very signed head, not only for its root. ``at``
is when the witness saw it. The certificate travels with the cosignature, so a verifier needs
nothing but the instance CA: it must be issued by that CA for signing documents, and its subject
must be the instance's witness name (organisation as the CA's, common name ending in
``audit witness``, no ``serialNumber``). The authority sets every subject it issues and gives
members' certificates their member id as ``serialNumber``, so no member key can pass for the
witness. The signature is plain ECDSA P-256 over SHA-256: ``openssl dgst -sha256 -verify`` checks
it once the JWS's raw ``r||s`` is DER-encoded.

Not checked here: whether the witness saw the *newest* head of the log (only the log and later
heads can say), and the witness certificate's revocation beyond the serials passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from exchange import jws
from exchange.errors import InvalidSignature
from exchange.trust.keys import certificate_pem, fingerprint, serial_hex
from exchange.trust.signed import Signer, may_sign, verify_signed

COSIGNATURE_TYPE = "exchange-cosignature+jws"
WITNESS_NAME = "audit witness"


def witness_subject(instance: str) -> x509.Name:
    """The subject the authority gives its witness certificate."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"exchange instance {instance}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{instance} {WITNESS_NAME}"),
        ]
    )


def head_digest(head_signature: str) -> str:
    """What a cosignature binds of a head: the base64url SHA-256 of its JWS."""
    return jws.b64url(hashlib.sha256(head_signature.encode("ascii")).digest())


def cosign(
    signer: Signer, *, chain: str, size: int, root: str, head_signature: str, at: datetime
) -> dict[str, str]:
    claims = {
        "chain": chain,
        "size": size,
        "root": root,
        "head": head_digest(head_signature),
        "at": at.isoformat(),
    }
    return {
        "signature": signer.sign(claims, COSIGNATURE_TYPE),
        "certificate": certificate_pem(signer.certificate),
    }


def is_witness_certificate(certificate: x509.Certificate, *, ca: x509.Certificate) -> bool:
    """Issued by ``ca`` for signing documents, to the instance's witness (see module doc)."""
    if not may_sign(certificate, ca=ca):
        return False
    subject = certificate.subject
    organisation = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return (
        not subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        and len(names) == 1
        and str(names[0].value).endswith(f" {WITNESS_NAME}")
        and organisation == ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )


def verify_cosignature(
    cosignature: Mapping[str, Any],
    *,
    chain: str,
    size: int,
    root: str,
    head_signature: str,
    ca: x509.Certificate,
    revoked: Collection[str] = (),
) -> datetime:
    """When the witness saw the head, once ``cosignature`` is a valid witness countersignature
    of exactly this head; else :class:`InvalidSignature` saying what is wrong."""
    try:
        certificate = x509.load_pem_x509_certificate(str(cosignature["certificate"]).encode())
        token = str(cosignature["signature"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidSignature("the witness cosignature is malformed") from exc
    if not is_witness_certificate(certificate, ca=ca):
        raise InvalidSignature("the cosignature is not by the instance's witness")
    if serial_hex(certificate.serial_number) in revoked:
        raise InvalidSignature("the witness certificate is revoked")

    def certificate_for(kid: str) -> x509.Certificate:
        if kid != fingerprint(certificate):
            raise InvalidSignature("the cosignature names another certificate")
        return certificate

    claims = verify_signed(token, typ=COSIGNATURE_TYPE, certificate_for=certificate_for).claims
    if (
        claims.get("chain") != chain
        or claims.get("size") != size
        or claims.get("root") != root
        or claims.get("head") != head_digest(head_signature)
    ):
        raise InvalidSignature("the cosignature is for another head")
    try:
        at = datetime.fromisoformat(str(claims.get("at")))
    except ValueError as exc:
        raise InvalidSignature("the cosignature has no valid time") from exc
    if at.tzinfo is None or not (
        certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc
    ):
        raise InvalidSignature("the cosignature was made outside its certificate's validity")
    return at
