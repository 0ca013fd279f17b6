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
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

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


class RequestClaims(NamedTuple):
    """What a request signature binds. A named tuple rather than a frozen dataclass: every
    exchange builds three of these and compares two of them field by field, and a tuple is
    built, read and compared in C."""

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
    idempotency_key: str | None = None  # optional (see above), so last


class ResponseClaims(NamedTuple):
    """What a response signature binds; a named tuple for the same reason."""

    status: int
    content_type: str | None
    body: str
    client: str
    service: str
    message_id: str
    request_hash: str
    iat: int
    parts: str | None = None  # optional (see above), so last


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


REQUEST_FIELDS = RequestClaims._fields
RESPONSE_FIELDS = ResponseClaims._fields
OPTIONAL_CLAIMS = frozenset({"idempotency_key"})  # left out when null (see the docstring)
OPTIONAL_RESPONSE_CLAIMS = frozenset({"parts"})  # likewise
_INTEGERS = frozenset({"iat", "exp", "status"})
_TIMES = frozenset({"iat", "exp"})  # checked against the verifier's clock, not compared


def sign_request(signer: Signer, claims: RequestClaims) -> str:
    return signer.sign(_flat(claims, OPTIONAL_CLAIMS), REQUEST_TYPE)


def sign_response(signer: Signer, claims: ResponseClaims) -> str:
    return signer.sign(_flat(claims, OPTIONAL_RESPONSE_CLAIMS), RESPONSE_TYPE)


def _flat(claims: RequestClaims | ResponseClaims, optional: frozenset[str]) -> dict[str, Any]:
    flat = claims._asdict()
    for name in optional:
        if flat[name] is None:
            del flat[name]
    return flat


class _Shape:
    """The claims of one kind of signature, and how they are checked against what arrived.

    :meth:`checked` runs the same checks as :func:`_typed` and :func:`_compare`, field by field
    in C (one ``itemgetter`` and one tuple comparison for all the bound fields); only when a
    check fails are the fields looked at one at a time, to say which."""

    def __init__(self, names: tuple[str, ...], compared: tuple[str, ...], kind: str) -> None:
        self.names, self.compared, self.kind = names, compared, kind
        self._names = frozenset(names)
        self._values = itemgetter(*names)
        self._integers = itemgetter(*(i for i, n in enumerate(names) if n in _INTEGERS))
        self._texts = itemgetter(*(i for i, n in enumerate(names) if n not in _INTEGERS))
        self._bound = itemgetter(*(names.index(n) for n in compared))

    def checked(self, claims: dict[str, Any], received: tuple[Any, ...]) -> tuple[Any, ...]:
        """The claims' values in field order, once they are exactly the expected claims, each
        of its type, and each compared one equals ``received``'s."""
        if claims.keys() != self._names:
            raise InvalidSignature("message signature has missing or unexpected claims")
        values: tuple[Any, ...] = self._values(claims)
        if not (
            _INTEGER_TYPE.issuperset(map(type, self._integers(values)))
            and _TEXT_TYPES.issuperset(map(type, self._texts(values)))
        ):
            _typed(claims, self.names)  # raises, naming the claim
            raise _unexplained()  # were the two ever to disagree: refused all the same
        if self._bound(values) != self._bound(received):
            _compare(values, received, self.names, self.compared, self.kind)  # raises likewise
            raise _unexplained()
        return values


def _unexplained() -> InvalidSignature:
    return InvalidSignature("message signature claims are not the expected ones")


_INTEGER_TYPE = frozenset({int})  # not bool, a subclass: JSON's true is no time or status
_TEXT_TYPES = frozenset({str, type(None)})
_REQUEST = _Shape(REQUEST_FIELDS, tuple(n for n in REQUEST_FIELDS if n not in _TIMES), "request")
_RESPONSE = _Shape(RESPONSE_FIELDS, tuple(n for n in RESPONSE_FIELDS if n != "iat"), "response")
# A streamed body has not been read yet: its digest is checked as it passes.
_STREAMED_RESPONSE = _Shape(
    RESPONSE_FIELDS, tuple(n for n in _RESPONSE.compared if n != "body"), "response"
)


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
    claims = _claims(token, REQUEST_TYPE, view, signer, at)
    for name in OPTIONAL_CLAIMS:
        claims.setdefault(name, None)
    signed = RequestClaims._make(_REQUEST.checked(claims, received))
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
    claims = _claims(token, RESPONSE_TYPE, view, provider, at)
    for name in OPTIONAL_RESPONSE_CLAIMS:
        claims.setdefault(name, None)
    shape = _STREAMED_RESPONSE if streamed else _RESPONSE
    return ResponseClaims._make(shape.checked(claims, received))


def _compare(
    signed: tuple[Any, ...],
    received: tuple[Any, ...],
    names: tuple[str, ...],
    compared: tuple[str, ...],
    kind: str,
) -> None:
    for index, name in enumerate(names):
        if name in compared and signed[index] != received[index]:
            differs = name.replace("_", " ")
            raise InvalidSignature(f"{kind} does not match its signature ({differs} differs)")


def _typed(claims: dict[str, Any], names: tuple[str, ...]) -> None:
    """Exactly the expected claims, each of its type: integers (not booleans), or text or null.

    JSON allows NaN and floats; a time check on NaN is always false, so types are checked first.
    """
    if set(claims) != set(names):
        raise InvalidSignature("message signature has missing or unexpected claims")
    for name, value in claims.items():
        if name in _INTEGERS:
            if type(value) is not int:
                raise InvalidSignature(f"message signature claim {name} is not an integer")
        elif value is not None and type(value) is not str:
            raise InvalidSignature(f"message signature claim {name} is not text")
