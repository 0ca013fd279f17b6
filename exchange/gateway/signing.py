"""The gateway protocol's signed messages: request and response signatures.

The request signature binds everything the provider acts on::

    method, path, query, body (SHA-256), client, service, message id, user id, issue,
    purpose, consent artefact (SHA-256), content type, accept, citizen's ID token (SHA-256),
    idempotency key, issued-at, expiry

The idempotency key is the one optional claim: a request without ``Idempotency-Key`` is signed
without it, exactly as before the claim existed, so gateways of either version keep talking; a
request with one is refused by a provider that does not know the claim (its claims differ),
which is the safe outcome (that provider would execute every retry).

The response signature binds the HTTP status, content type, body (SHA-256), client, service,
message id and the hash of the request signature, so an answer can be neither replayed to
another request nor altered. An answer that streams a large document binds it as a *part*
(claim ``parts``, the ``X-Exchange-Parts`` header: offset, length and SHA-256 of each) and the
rest of its body by the ``body`` claim (:mod:`exchange.gateway.parts`); like the idempotency
key, the claim is left out when there are no parts, so small answers are signed as before.
``X-Road-Request-Hash`` is the hash of the request signature: base64 of SHA-512 over it.

:func:`verify_request` checks signature and signer (through
:func:`~exchange.trust.signed.verify_signed`), that every bound field equals the request
actually received, and time (issued-at within the skew, expiry not passed). It does *not*
check replay, access rights or consent; callers do that next.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from exchange.errors import InvalidSignature, StaleMessage
from exchange.gateway.xroad import XRoadHeaders
from exchange.identifiers import MemberId, member_of, parse_client
from exchange.trust.signed import Signer, body_digest, identity_digest, verify_signed
from exchange.trust.view import TrustView

REQUEST_TYPE = "exchange-request+jws"
RESPONSE_TYPE = "exchange-response+jws"
REQUEST_HEADER = "X-Exchange-Signature"
RESPONSE_HEADER = "X-Exchange-Response-Signature"


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
    idempotency_key: str | None = field(default=None, kw_only=True)  # optional: see above
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
    parts: str | None = field(default=None, kw_only=True)  # optional: see above
    iat: int


def request_claims(
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    service: str,
    xroad: XRoadHeaders,
    headers: Mapping[str, str],
    iat: int = 0,
    exp: int = 0,
) -> RequestClaims:
    """What a request signature binds, from the request as sent or received: the one place both
    sides build it, so that they can never disagree on a field. ``headers`` are lower-cased."""
    return RequestClaims(
        method=method,
        path=path,
        query=query,
        body=body_digest(body),
        client=str(xroad.client),
        service=service,
        message_id=xroad.message_id,
        user_id=xroad.user_id,
        issue=xroad.issue,
        purpose=xroad.purpose,
        consent=identity_digest(xroad.consent),  # the artefact names the person: its digest
        content_type=headers.get("content-type"),
        accept=headers.get("accept"),
        identity=identity_digest(xroad.identity),
        idempotency_key=xroad.idempotency_key,
        iat=iat,
        exp=exp,
    )


REQUEST_FIELDS = tuple(f.name for f in fields(RequestClaims))  # iat and exp come last
OPTIONAL_CLAIMS = frozenset({"idempotency_key"})  # left out when null (see the docstring)
OPTIONAL_RESPONSE_CLAIMS = frozenset({"parts"})  # likewise
RESPONSE_FIELDS = tuple(f.name for f in fields(ResponseClaims))  # iat comes last


def sign_request(signer: Signer, claims: RequestClaims) -> str:
    flat = _flat(claims, REQUEST_FIELDS)
    for name in OPTIONAL_CLAIMS:
        if flat[name] is None:
            del flat[name]
    return signer.sign(flat, REQUEST_TYPE)


def sign_response(signer: Signer, claims: ResponseClaims) -> str:
    flat = _flat(claims, RESPONSE_FIELDS)
    for name in OPTIONAL_RESPONSE_CLAIMS:
        if flat[name] is None:
            del flat[name]
    return signer.sign(flat, RESPONSE_TYPE)


def _flat(claims: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The claims as a dict (``dataclasses.asdict`` deep-copies each value; these are flat)."""
    return {name: getattr(claims, name) for name in names}


def _claims(
    token: str, typ: str, view: TrustView, member: MemberId, at: datetime
) -> dict[str, Any]:
    # Times are checked by the caller against its own clock.
    return verify_signed(token, typ=typ, certificate_for=view.member_signer(member, at=at)).claims


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
    claims = dict(_claims(token, REQUEST_TYPE, view, signer, at))
    for name in OPTIONAL_CLAIMS:
        claims.setdefault(name, None)
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
    streamed: bool = False,
) -> ResponseClaims:
    """Verify a response signature against the response as received. A ``streamed`` body has
    not been read yet: its ``body`` claim is returned unchecked, for the reader to check as
    the body passes (:func:`exchange.gateway.parts.verified`)."""
    claims = dict(_claims(token, RESPONSE_TYPE, view, provider, at))
    for name in OPTIONAL_RESPONSE_CLAIMS:
        claims.setdefault(name, None)
    _typed(claims, RESPONSE_FIELDS)
    signed = ResponseClaims(**claims)
    compared = RESPONSE_FIELDS[:-1]
    if streamed:
        compared = tuple(name for name in compared if name != "body")
    _compare(signed, received, compared, "response")
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
