"""Signed messages between gateways (compact JWS, ES256, ``kid`` = certificate fingerprint).

The request signature binds everything the provider acts on::

    method, path, query, body (SHA-256), client, service, message id, user id, issue,
    purpose, consent reference, issued-at, expiry

The response signature binds the HTTP status, content type, body (SHA-256), client, service,
message id and the hash of the request signature, so an answer can be neither replayed to
another request nor altered. ``X-Road-Request-Hash`` is that hash: base64 of SHA-512 over the
request signature.

:func:`verify_request` checks signature, signer (see :mod:`exchange.gateway.trust`), that every
bound field equals the request actually received, and time (issued-at within the skew, expiry
not passed). It does *not* check replay, access rights or consent; callers do that next.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from exchange.errors import InvalidSignature, StaleMessage
from exchange.gateway.trust import TrustView
from exchange.identifiers import MemberId, member_of, parse_client
from exchange.trust.keys import fingerprint

REQUEST_TYPE = "exchange-request+jws"
RESPONSE_TYPE = "exchange-response+jws"
ALGORITHMS = ["ES256"]
REQUEST_HEADER = "X-Exchange-Signature"
RESPONSE_HEADER = "X-Exchange-Response-Signature"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def body_digest(body: bytes) -> str:
    return b64url(hashlib.sha256(body).digest())


def request_hash(signature: str) -> str:
    return base64.b64encode(hashlib.sha512(signature.encode("ascii")).digest()).decode("ascii")


@dataclass(frozen=True, slots=True)
class RequestClaims:
    method: str
    path: str
    query: str
    body: str
    client: str
    service: str
    message_id: str
    user_id: str | None
    issue: str | None
    purpose: str | None
    consent: str | None
    iat: int
    exp: int


@dataclass(frozen=True, slots=True)
class ResponseClaims:
    status: int
    content_type: str | None
    body: str
    client: str
    service: str
    message_id: str
    request_hash: str
    iat: int


class MessageSigner:
    """The member's signing key and certificate, parsed once and kept."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.kid = fingerprint(certificate)

    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        return jwt.encode(
            claims, self._key, algorithm="ES256", headers={"typ": typ, "kid": self.kid}
        )

    def sign_request(self, claims: RequestClaims) -> str:
        return self._sign(asdict(claims), REQUEST_TYPE)

    def sign_response(self, claims: ResponseClaims) -> str:
        return self._sign(asdict(claims), RESPONSE_TYPE)


def _decode(
    token: str, typ: str, view: TrustView, member: MemberId, at: datetime
) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidSignature("message signature is not a JWS") from exc
    if header.get("typ") != typ or header.get("alg") not in ALGORITHMS:
        raise InvalidSignature("message signature has the wrong type or algorithm")
    certificate = view.signing_certificate(str(header.get("kid", "")), member=member, at=at)
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise InvalidSignature("signing certificate does not hold an EC key")
    try:
        # Times are checked by the caller against its own clock, not PyJWT's.
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=ALGORITHMS,
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidSignature("message signature does not verify") from exc
    return claims


def verify_request(
    token: str,
    *,
    received: RequestClaims,
    view: TrustView,
    at: datetime,
    skew: float,
) -> RequestClaims:
    """Verify a request signature against the request as received; see the module docstring.

    ``received`` carries what the provider saw on the wire; its ``iat``/``exp`` are ignored.
    """
    signer = member_of(parse_client(received.client))
    claims = _decode(token, REQUEST_TYPE, view, signer, at)
    try:
        signed = RequestClaims(**claims)
    except TypeError as exc:
        raise InvalidSignature("request signature lacks required claims") from exc
    for name in (
        "method",
        "path",
        "query",
        "body",
        "client",
        "service",
        "message_id",
        "user_id",
        "issue",
        "purpose",
        "consent",
    ):
        if getattr(signed, name) != getattr(received, name):
            raise InvalidSignature(
                f"request does not match its signature ({name.replace('_', ' ')} differs)"
            )
    now = at.timestamp()
    if abs(signed.iat - now) > skew:
        raise StaleMessage(
            f"request was issued {now - signed.iat:+.0f} s from now; allowed skew is {skew:g} s"
        )
    if signed.exp <= now - skew:
        raise StaleMessage("request signature has expired")
    return signed


def verify_response(
    token: str,
    *,
    received: ResponseClaims,
    provider: MemberId,
    view: TrustView,
    at: datetime,
) -> ResponseClaims:
    claims = _decode(token, RESPONSE_TYPE, view, provider, at)
    try:
        signed = ResponseClaims(**claims)
    except TypeError as exc:
        raise InvalidSignature("response signature lacks required claims") from exc
    for name in (
        "status",
        "content_type",
        "body",
        "client",
        "service",
        "message_id",
        "request_hash",
    ):
        if getattr(signed, name) != getattr(received, name):
            raise InvalidSignature(
                f"response does not match its signature ({name.replace('_', ' ')} differs)"
            )
    return signed
