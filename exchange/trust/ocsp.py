"""The status of the signing certificates a gateway relies on, by OCSP (RFC 6960), cached.

:class:`CertificateStatus` asks the authority's responder about every signing certificate of
the current configuration (members' and consent services') in the background, at each
refresh, and keeps each answer until ``min(nextUpdate, thisUpdate + max_age)``. The request
path only looks an answer up (:meth:`CertificateStatus.require`): no network call per
exchange. It fails closed: no answer, or one past its bound (the responder down for longer
than that), is :class:`~exchange.errors.CertificateStatusUnknown`; ``revoked`` is
:class:`~exchange.errors.InvalidSignature`.

An answer is taken only if it is signed by the instance CA itself or by a delegated responder
(RFC 6960 4.2.2.2): a certificate carried in the answer, issued directly by the instance CA,
with the id-kp-OCSPSigning purpose, valid when checked, and named by the answer's responder
id. A certificate of the CA for any other purpose (a member's signing key) signs no answer. The
answer must also name the serial asked about and not be produced in the future.

What is *not* checked here: TLS certificates (the CRL at the handshake, :mod:`exchange.trust.crl`),
and the delegated responder's own revocation (it carries id-pkix-ocsp-nocheck and is short-lived).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature as BadSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from exchange.errors import CertificateStatusUnknown, InvalidSignature
from exchange.trust.keys import serial_hex

log = structlog.get_logger(__name__)

Post = Callable[[str, bytes], bytes]
DEFAULT_SKEW = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Answer:
    revoked: bool
    good_until: datetime
    produced: datetime  # the answer's thisUpdate: a held answer is never replaced by an older one


def _delegated(
    response: ocsp.OCSPResponse, ca: x509.Certificate, at: datetime
) -> x509.Certificate | None:
    """The delegated responder certificate the answer carries and names, if the CA issued it
    for OCSP signing and it is valid ``at``."""
    for candidate in response.certificates:
        try:
            candidate.verify_directly_issued_by(ca)
            purposes = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, BadSignature, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in purposes:
            continue
        if not candidate.not_valid_before_utc <= at <= candidate.not_valid_after_utc:
            continue
        named = (
            response.responder_name == candidate.subject
            if response.responder_name is not None
            else response.responder_key_hash
            == x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest
        )
        if named:
            return candidate
    return None


def _signed_by(response: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    key = signer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm = response.signature_hash_algorithm
            if algorithm is None:
                return False
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            algorithm = response.signature_hash_algorithm
            if algorithm is None:
                return False
            key.verify(
                response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm
            )
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(response.signature, response.tbs_response_bytes)
        else:
            return False
    except BadSignature:
        return False
    return True


def check_response(
    der: bytes,
    *,
    certificate: x509.Certificate,
    ca: x509.Certificate,
    at: datetime,
    max_age: timedelta,
    skew: timedelta = DEFAULT_SKEW,
) -> Answer:
    """The verified answer about ``certificate`` in ``der``; else CertificateStatusUnknown."""
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise CertificateStatusUnknown("the OCSP answer cannot be read") from exc
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise CertificateStatusUnknown(f"the OCSP responder answered {response.response_status}")
    if not _signed_by(response, ca):
        delegated = _delegated(response, ca, at)
        if delegated is None or not _signed_by(response, delegated):
            raise CertificateStatusUnknown(
                "the OCSP answer is not signed by the instance CA or its delegated responder"
            )
    if response.serial_number != certificate.serial_number:
        raise CertificateStatusUnknown("the OCSP answer is about another certificate")
    status = response.certificate_status
    if status == ocsp.OCSPCertStatus.UNKNOWN:
        raise CertificateStatusUnknown("the OCSP responder does not know the certificate")
    this_update = response.this_update_utc
    if this_update > at + skew:
        raise CertificateStatusUnknown("the OCSP answer was produced in the future")
    bound = this_update + max_age
    next_update = response.next_update_utc
    good_until = bound if next_update is None else min(bound, next_update)
    return Answer(
        revoked=status == ocsp.OCSPCertStatus.REVOKED, good_until=good_until, produced=this_update
    )


def ocsp_request(certificate: x509.Certificate, ca: x509.Certificate) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, ca, hashes.SHA1())  # noqa: S303
    return builder.build().public_bytes(serialization.Encoding.DER)


class CertificateStatus:
    """Cached OCSP answers for signing certificates; see the module docstring."""

    def __init__(self, *, post: Post, clock: Callable[[], datetime], max_age: timedelta) -> None:
        self._post = post
        self._clock = clock
        self.max_age = max_age
        self._answers: dict[str, Answer] = {}
        self._lock = threading.Lock()
        # Whether one refresh has had an answer about every certificate (health, start).
        self.known = False

    def require(self, certificate: x509.Certificate, at: datetime) -> None:
        """Raise unless a fresh answer says ``certificate`` is good (dictionary lookup only)."""
        answer = self._answers.get(serial_hex(certificate.serial_number))
        if answer is not None and answer.revoked:  # final, however old the answer
            raise InvalidSignature("the signing certificate is revoked (OCSP)")
        if answer is None or answer.good_until <= at:
            raise CertificateStatusUnknown(
                "the status of the signing certificate is unknown or stale",
                detail=serial_hex(certificate.serial_number),
            )

    def prefetch(
        self, *, url: str, ca: x509.Certificate, certificates: Iterable[x509.Certificate]
    ) -> int:
        """Ask about each of ``certificates``; a failure keeps the answer held (until its bound).
        Returns how many could not be asked or verified."""
        failed = 0
        for certificate in certificates:
            serial = serial_hex(certificate.serial_number)
            try:
                der = self._post(url, ocsp_request(certificate, ca))
                answer = check_response(
                    der, certificate=certificate, ca=ca, at=self._clock(), max_age=self.max_age
                )
            except CertificateStatusUnknown as error:
                failed += 1
                log.warning("ocsp.status_unknown", serial=serial, reason=error.message)
                continue
            except Exception as exc:  # the responder cannot be reached: keep what is held
                failed += 1
                log.warning("ocsp.unreachable", serial=serial, cause=type(exc).__name__)
                continue
            with self._lock:
                held = self._answers.get(serial)
                # An answer replayed from before (signed, within its bound) must not undo a
                # newer one, and nothing undoes a revocation.
                if held is None or not (
                    answer.produced < held.produced or (held.revoked and not answer.revoked)
                ):
                    self._answers[serial] = answer
        if not failed:
            self.known = True
        return failed
