"""The authority's OCSP responder (RFC 6960): the status of a certificate it issued, now.

``POST /ocsp`` (body ``application/ocsp-request``) and ``GET /ocsp/<base64 request>``
(RFC 6960 appendix A) answer ``application/ocsp-response``, signed by the instance CA itself
(so a relying party needs no other certificate) or, when ``ocsp_delegated`` is on, by a
delegated responder (RFC 6960 4.2.2.2): a certificate the CA issues to the authority with the
id-kp-OCSPSigning purpose and id-pkix-ocsp-nocheck (:func:`load_responder`), carried in each
answer and named by its key hash. The CA key then signs only certificates and CRLs, and can be
kept apart from a process that answers every gateway's questions. With ``thisUpdate`` = now and
``nextUpdate`` = now + ``ocsp_validity``; a nonce in the request is echoed. Status comes from
the registry: ``good`` for a certificate issued and not revoked, ``revoked`` with its time and
reason, ``unknown`` for a serial the authority never issued or an issuer that is not its CA.

What it does *not* do: answer several certificates in one request (``malformedRequest``), or
cache signed answers (one ECDSA signature per request). The responder certificate is made anew
(a new key) when it is missing or ends within a day (:class:`Responders`); its own revocation is
not checked by relying parties (nocheck), so it is kept short-lived
(``ocsp_responder_validity``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from exchange import keyfolder
from exchange.central import models
from exchange.trust.ca import CertificateAuthority, Profile
from exchange.trust.keys import (
    PrivateKey,
    certificate_pem,
    generate_key,
    load_certificate,
    serial_hex,
)

Lookup = Callable[[str], models.Certificate | None]
RENEW_BEFORE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Responder:
    """A delegated OCSP responder: its key and the certificate the CA issued for it."""

    key: PrivateKey
    certificate: x509.Certificate


def load_responder(
    folder: Path,
    authority: CertificateAuthority,
    *,
    instance: str,
    at: datetime,
    validity: timedelta,
) -> Responder:
    """The delegated responder from ``folder`` (``ocsp.key``, ``ocsp.pem``), made anew (a new key,
    certified by the CA) when missing, ending within :data:`RENEW_BEFORE`, or not a pair."""
    key_path, certificate_path = folder / "ocsp.key", folder / "ocsp.pem"
    if key_path.exists() and certificate_path.exists():
        certificate, key = load_certificate(certificate_path), keyfolder.ec_key(key_path)
        lasting = certificate.not_valid_after_utc - RENEW_BEFORE > at
        if lasting and certificate.public_key() == key.public_key():
            return Responder(key, certificate)
    key = generate_key()
    certificate = authority.issue(
        public_key=key.public_key(),
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"exchange instance {instance}"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{instance} OCSP responder"),
            ]
        ),
        profile=Profile.OCSP_SIGNING,
        at=at,
        validity=validity,
    )
    # A new file each, then renamed over the old one: a stop between the two renames leaves a
    # key its certificate does not certify, which the next load finds and makes anew (above).
    fresh_key, fresh_certificate = folder / "ocsp.key.new", folder / "ocsp.pem.new"
    fresh_key.unlink(missing_ok=True)
    keyfolder.write_key(fresh_key, key)
    fresh_certificate.write_text(certificate_pem(certificate))
    fresh_key.replace(key_path)
    fresh_certificate.replace(certificate_path)
    return Responder(key, certificate)


class Responders:
    """The delegated responder in use, renewed (:func:`load_responder`) once it ends within
    :data:`RENEW_BEFORE`, so an authority that runs for longer than its validity keeps
    answering with a valid one."""

    def __init__(
        self,
        folder: Path,
        authority: CertificateAuthority,
        *,
        instance: str,
        validity: timedelta,
        at: datetime,
    ) -> None:
        self._folder, self._authority = folder, authority
        self._instance, self._validity = instance, validity
        self._lock = threading.Lock()
        self._current = self._load(at)

    def _load(self, at: datetime) -> Responder:
        return load_responder(
            self._folder, self._authority, instance=self._instance, at=at, validity=self._validity
        )

    def current(self, at: datetime) -> Responder:
        with self._lock:
            if self._current.certificate.not_valid_after_utc - RENEW_BEFORE <= at:
                self._current = self._load(at)
            return self._current


def _key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's content, which RFC 6960 issuerKeyHash hashes."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raise TypeError(f"no OCSP key hash for {type(key).__name__}")


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    hasher = hashes.Hash(algorithm)
    hasher.update(data)
    return hasher.finalize()


def _ours(request: ocsp.OCSPRequest, ca: x509.Certificate) -> bool:
    algorithm = request.hash_algorithm
    return request.issuer_name_hash == _digest(
        algorithm, ca.subject.public_bytes()
    ) and request.issuer_key_hash == _digest(algorithm, _key_bits(ca))


def respond(
    body: bytes,
    *,
    authority: CertificateAuthority,
    lookup: Lookup,
    at: datetime,
    validity: timedelta,
    responder: Responder | None = None,
) -> bytes:
    """The DER OCSP response to the DER request ``body``, signed by ``responder`` if given,
    else by the CA."""
    try:
        request = ocsp.load_der_ocsp_request(body)
        serial = request.serial_number
        algorithm = request.hash_algorithm
    except (ValueError, NotImplementedError, x509.UnsupportedGeneralNameType):
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    except Exception:  # an unsupported hash algorithm, or anything else we cannot parse
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    ca = authority.certificate
    this_update = at.replace(microsecond=0)
    next_update = this_update + validity
    row = lookup(serial_hex(serial)) if _ours(request, ca) else None
    builder = ocsp.OCSPResponseBuilder()
    if row is None:
        builder = builder.add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=serial,
            algorithm=algorithm,
            cert_status=ocsp.OCSPCertStatus.UNKNOWN,
            this_update=this_update,
            next_update=next_update,
            revocation_time=None,
            revocation_reason=None,
        )
    else:
        certificate = x509.load_pem_x509_certificate(row.pem.encode())
        revoked = row.revoked_at is not None and row.revoked_at <= at
        builder = builder.add_response(
            cert=certificate,
            issuer=ca,
            algorithm=algorithm,
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=this_update,
            next_update=next_update,
            revocation_time=row.revoked_at if revoked else None,
            revocation_reason=(
                x509.ReasonFlags(row.revocation_reason)
                if revoked and row.revocation_reason
                else None
            ),
        )
    if responder is None:
        key: PrivateKey = authority.key
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
    else:
        key = responder.key
        builder = builder.responder_id(
            ocsp.OCSPResponderEncoding.HASH, responder.certificate
        ).certificates([responder.certificate])
    for extension in request.extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            builder = builder.add_extension(extension.value, critical=False)
    signature_hash = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    response = builder.sign(key, signature_hash)
    return response.public_bytes(serialization.Encoding.DER)


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )
