"""Signed messages between gateways (compact JWS, ES256, ``kid`` = certificate fingerprint).

The request signature binds everything the provider acts on::

    method, path, query, body (SHA-256), client, service, message id, user id, issue,
    purpose, consent artefact (SHA-256), content type, accept, citizen's ID token (SHA-256),
    issued-at, expiry

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
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from exchange import jws
from exchange.errors import InvalidSignature, StaleMessage
from exchange.gateway.trust import TrustView
from exchange.identifiers import MemberId, member_of, parse_client
from exchange.trust.keys import fingerprint

REQUEST_TYPE = "exchange-request+jws"
RESPONSE_TYPE = "exchange-response+jws"
REQUEST_HEADER = "X-Exchange-Signature"
RESPONSE_HEADER = "X-Exchange-Response-Signature"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def body_digest(body: bytes) -> str:
    return b64url(hashlib.sha256(body).digest())


def identity_digest(token: str | None) -> str | None:
    """What a request signature binds of a citizen's ID token or consent artefact: its SHA-256,
    never the token itself, so that neither a bearer credential nor a person's code lands in a
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
    content_type: str | None
    accept: str | None
    identity: str | None
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


REQUEST_FIELDS = tuple(f.name for f in fields(RequestClaims))  # iat and exp come last
RESPONSE_FIELDS = tuple(f.name for f in fields(ResponseClaims))  # iat comes last


class MessageSigner:
    """The member's signing key and certificate, parsed once and kept."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.kid = fingerprint(certificate)

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        return jws.sign(claims, self._key, typ=typ, kid=self.kid)

    def sign_request(self, claims: RequestClaims) -> str:
        return self.sign(_flat(claims, REQUEST_FIELDS), REQUEST_TYPE)

    def sign_response(self, claims: ResponseClaims) -> str:
        return self.sign(_flat(claims, RESPONSE_FIELDS), RESPONSE_TYPE)


def _flat(claims: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The claims as a dict (``dataclasses.asdict`` deep-copies each value; these are flat)."""
    return {name: getattr(claims, name) for name in names}


def decode_signed(
    token: str, typ: str, view: TrustView, member: MemberId, at: datetime
) -> dict[str, Any]:
    try:
        signed = jws.Token(token)
    except jws.JwsError as exc:
        raise InvalidSignature("message signature is not an ES256 JWS") from exc
    if signed.header.get("typ") != typ:
        raise InvalidSignature("message signature has the wrong type")
    certificate = view.signing_certificate(str(signed.header.get("kid", "")), member=member, at=at)
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise InvalidSignature("signing certificate does not hold an EC key")
    try:
        # Times are checked by the caller against its own clock.
        return signed.claims(public_key)
    except jws.JwsError as exc:
        raise InvalidSignature("message signature does not verify") from exc


def verify_request(
    token: str,
    *,
    received: RequestClaims,
    view: TrustView,
    at: datetime,
    skew: float,
    max_lifetime: float,
) -> RequestClaims:
    """Verify a request signature against the request as received; see the module docstring.

    ``received`` carries what the provider saw on the wire; its ``iat``/``exp`` are ignored.
    A signature may live at most ``max_lifetime`` seconds (``exp - iat``).
    """
    signer = member_of(parse_client(received.client))
    claims = decode_signed(token, REQUEST_TYPE, view, signer, at)
    _typed(claims, REQUEST_FIELDS)
    signed = RequestClaims(**claims)
    _compare(signed, received, REQUEST_FIELDS[:-2], "request")
    now = at.timestamp()
    if abs(signed.iat - now) > skew:
        raise StaleMessage(
            f"request was issued {now - signed.iat:+.0f} s from now; allowed skew is {skew:g} s"
        )
    if signed.exp <= now - skew:
        raise StaleMessage("request signature has expired")
    if not 0 < signed.exp - signed.iat <= max_lifetime:
        raise StaleMessage(f"request signature must live at most {max_lifetime:g} s")
    return signed


def verify_response(
    token: str,
    *,
    received: ResponseClaims,
    provider: MemberId,
    view: TrustView,
    at: datetime,
) -> ResponseClaims:
    claims = decode_signed(token, RESPONSE_TYPE, view, provider, at)
    _typed(claims, RESPONSE_FIELDS)
    signed = ResponseClaims(**claims)
    _compare(signed, received, RESPONSE_FIELDS[:-1], "response")
    return signed


def _compare(signed: object, received: object, names: tuple[str, ...], kind: str) -> None:
    for name in names:
        if getattr(signed, name) != getattr(received, name):
            differs = name.replace("_", " ")
            raise InvalidSignature(f"{kind} does not match its signature ({differs} differs)")


_INTEGERS = frozenset({"iat", "exp", "status"})


def _typed(claims: dict[str, Any], names: tuple[str, ...]) -> None:
    """Exactly the expected claims, each of its type: integers (not booleans), or text or null.

    JSON allows NaN and floats; a time check on NaN is always false, so types are checked first.
    """
    if set(claims) != set(names):
        raise InvalidSignature("message signature has missing or unexpected claims")
    for name, value in claims.items():
        if name in _INTEGERS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidSignature(f"message signature claim {name} is not an integer")
        elif value is not None and not isinstance(value, str):
            raise InvalidSignature(f"message signature claim {name} is not text")
