"""Admission at the provider: who is asking, and is this exactly the request they signed, once.

The first steps of the provider pipeline (:mod:`exchange.gateway.provider`), in order, each
failing closed with an :class:`~exchange.errors.Error` and without any call to the registry:

1. a valid global configuration is held;
2. the TLS client certificate is a live certificate of a registered gateway, and that gateway
   belongs to the member named in ``X-Road-Client``, itself registered;
3. the service path and headers are well-formed, the service is provided here, the body fits
   (and, if XML, is safe to parse);
4. the request signature verifies against the request as received (signer, every bound field,
   time);
5. the (client, message id) pair is new (committed before going on).

What is *not* checked here: access rights and the service's release policy (the provider's
next steps, :mod:`exchange.gateway.release`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request

from exchange.errors import AccessDenied, InvalidSignature, UnknownService
from exchange.evidence.xml import parse_untrusted
from exchange.gateway.node import Gateway
from exchange.gateway.records import ExchangeRecord
from exchange.gateway.signing import (
    REQUEST_HEADER,
    RequestClaims,
    request_claims,
    request_hash,
    verify_request,
)
from exchange.gateway.tls import PEER_FINGERPRINT
from exchange.gateway.xroad import Target, XRoadHeaders, parse_target, read_headers
from exchange.http import receive_body
from exchange.identifiers import member_of
from exchange.trust.view import TrustView

SAFE_METHODS = frozenset({"GET", "HEAD"})  # change nothing at the registry (RFC 9110 9.2.1)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that passed admission: everything later steps act on."""

    view: TrustView
    target: Target
    xroad: XRoadHeaders
    body: bytes
    query: str
    signed: RequestClaims


async def admit(
    gateway: Gateway, request: Request, headers: dict[str, str], record: ExchangeRecord
) -> Admitted:
    """Steps 1-5; see the module docstring. ``headers`` are lower-cased."""
    signature = _signature(headers, record)
    # Parsed first so that every signed answer, even a refusal, names the service asked for.
    target = parse_target(request.scope["raw_path"])
    record.service = str(target.service)
    view = gateway.trust.view()
    xroad = _bind_peer(view, request, headers, record)
    if target.service.member != gateway.member:
        raise UnknownService(
            f"{target.service} is not provided by this gateway", detail=str(target.service)
        )
    body = await _read_body(gateway, request, headers, record)
    if not signature:
        raise InvalidSignature("request carries no signature")
    query = request.scope["query_string"].decode("latin-1")
    received = request_claims(
        method=request.method,
        path=request.scope["raw_path"].decode("ascii"),
        query=query,
        body=body,
        service=str(target.service),
        xroad=xroad,
        headers=headers,
    )
    settings = gateway.settings
    signed = verify_request(
        signature,
        received=received,
        view=view,
        at=gateway.clock(),
        skew=settings.clock_skew,
        max_lifetime=settings.request_ttl,
    )
    await gateway.replay.accept_once(
        client=received.client,
        message_id=received.message_id,
        keep_until=datetime.fromtimestamp(signed.exp + settings.clock_skew, UTC),
        safe=request.method in SAFE_METHODS,
    )
    return Admitted(view=view, target=target, xroad=xroad, body=body, query=query, signed=signed)


def _signature(headers: dict[str, str], record: ExchangeRecord) -> str | None:
    signature = headers.get(REQUEST_HEADER.lower())
    if signature is not None:
        if not signature.isascii():
            raise InvalidSignature("request signature is not a JWS")
        record.request_signature = signature
        record.request_hash = request_hash(signature)
    return signature


def _bind_peer(
    view: TrustView, request: Request, headers: dict[str, str], record: ExchangeRecord
) -> XRoadHeaders:
    """The X-Road headers, once the TLS peer is a gateway of the client's member."""
    peer = view.gateway_presenting(request.scope.get(PEER_FINGERPRINT))
    record.peer = peer.id
    xroad = read_headers(headers, generate_id=False)
    record.user_id, record.issue = xroad.user_id, xroad.issue
    # The consent's id is recorded once its artefact verified (release), never a claimed one.
    record.purpose = xroad.purpose
    if str(member_of(xroad.client)) != peer.id.rsplit("/", 1)[0]:
        raise AccessDenied(f"gateway {peer.id} does not serve client {xroad.client}")
    view.check_client(xroad.client)
    return xroad


async def _read_body(
    gateway: Gateway, request: Request, headers: dict[str, str], record: ExchangeRecord
) -> bytes:
    limit = gateway.settings.max_body_bytes
    body = await receive_body(
        request.receive, content_length=headers.get("content-length"), max_bytes=limit
    )
    record.request_size = len(body)
    if looks_like_xml(body, headers.get("content-type")):
        # Refuse entity expansion, DTDs and oversized documents before anyone parses them.
        parse_untrusted(body, max_bytes=limit)
    return body


def looks_like_xml(body: bytes, content_type: str | None) -> bool:
    """Labelled XML, or starting like XML whatever the label says (a label is easy to omit)."""
    head = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return bool(body) and ("xml" in (content_type or "").lower() or head.startswith(b"<"))
