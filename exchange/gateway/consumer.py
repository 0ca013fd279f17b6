"""The consumer side: the member's own information systems call here with X-Road REST.

The gateway checks the caller's request (client is one of its subsystems, identifiers and
headers well-formed, body within the cap), finds the provider's gateways in the global
configuration, signs the request with the member's key and sends it over mutual TLS. It
accepts the answer only from a gateway whose TLS certificate the configuration lists for the
provider, and only with a valid response signature bound to this request; then it hands the
answer on with the X-Road response headers.

A request in OOTS EDM (``Content-Type: application/x-ebrs+xml``) must satisfy the EDM schemas
before it is signed, and its answer must be an EDM answer to it (:mod:`.edm_consumer`).

An answer that streams a large document (``X-Exchange-Parts``) is verified before its body is
read: its signature binds the parts by length and SHA-256 (each at most ``max_part_bytes``) and
the rest by digest (at most ``max_body_bytes``); then the body passes on to the caller in
chunks, checked as it passes (:mod:`exchange.gateway.parts`), and is cut short if it is not
what was signed.

Errors the caller caused are ``Client.*``; errors of this gateway are ``Server.ClientProxy.*``;
errors of the provider's gateway arrive signed as ``Server.ServerProxy.*`` and pass through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from exchange.consent.artefact import reference
from exchange.errors import (
    AccessDenied,
    Error,
    InvalidResponse,
    InvalidSignature,
    NetworkError,
    PayloadTooLarge,
    UnknownService,
)
from exchange.gateway import auditapi, edm_consumer, metaservices
from exchange.gateway.console.app import PREFIX as CONSOLE
from exchange.gateway.console.app import create_console_app
from exchange.gateway.edm import is_edm
from exchange.gateway.node import Gateway
from exchange.gateway.outcome import SIDES, Answer, Released, StreamedResponse, conclude, refuse
from exchange.gateway.parts import HEADER as PARTS_HEADER
from exchange.gateway.parts import Streamed, parse_parts
from exchange.gateway.records import ExchangeRecord
from exchange.gateway.signing import (
    REQUEST_HEADER,
    RESPONSE_HEADER,
    RequestClaims,
    ResponseClaims,
    request_claims,
    request_hash,
    sign_request,
    verify_response,
)
from exchange.gateway.transport import Reply
from exchange.gateway.xroad import (
    ALL_METHODS,
    Target,
    XRoadHeaders,
    exchanges_first,
    parse_target,
    read_headers,
    request_headers,
)
from exchange.http import declared_length, receive_body, retry_after
from exchange.identifiers import ServiceId
from exchange.identity.login import OidcLogin
from exchange.trust.globalconf import Gateway as PeerGateway
from exchange.trust.signed import body_digest
from exchange.trust.view import TrustView

log = structlog.get_logger(__name__)
SIDE = SIDES["client"]  # errors raised here are Server.ClientProxy.* (the caller's: Client.*)


def create_consumer_app(gateway: Gateway, *, console_login: OidcLogin | None = None) -> ASGIApp:
    """The consumer listener's app; with ``[console] enabled``, the staff console under
    ``/console``, signing staff in through ``console_login`` (by default the issuer the
    settings name, over the network)."""

    async def health(_: Request) -> JSONResponse:
        status, shown = await gateway.health()
        return JSONResponse(
            {**shown, "consent_feeds": gateway.revocations.state()}, status_code=status
        )

    async def list_clients(request: Request) -> Response:
        kind, body = metaservices.list_clients(
            gateway.trust.view().configuration, request.query_params.get("xRoadInstance")
        )
        return Response(body, media_type=kind)

    async def metrics(_: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(gateway.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def exchange(request: Request) -> Released | StreamedResponse:
        return await handle(gateway, request)

    routes: list[BaseRoute] = [
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/listClients", list_clients),
        Route("/r1/{rest:path}", exchange, methods=ALL_METHODS),
        *auditapi.routes(gateway),
    ]
    spec = gateway.settings.console
    if spec.enabled and spec.issuer and spec.client_id and spec.public_url:
        login = console_login or OidcLogin(
            issuer=spec.issuer,
            client_id=spec.client_id,
            client_secret=spec.client_secret,
            redirect_uri=f"{spec.public_url.rstrip('/')}{CONSOLE}/callback",
        )
        routes.append(Mount(CONSOLE, app=create_console_app(gateway, login=login)))
    return exchanges_first(
        Starlette(routes=routes),
        exchange,
        side=SIDE,
    )


async def handle(gateway: Gateway, request: Request) -> Released | StreamedResponse:
    headers = request_headers(request.scope)
    record = ExchangeRecord.arriving("client", request.method, headers, gateway.clock())
    held: list[TrustView] = []
    try:
        answer = await _serve(gateway, request, headers, record, held)
    except Exception as caught:  # every answer is an X-Road answer, whatever went wrong
        answer = refuse(caught, record=record)
    try:
        # The metrics' service labels: the catalogue of the configuration the exchange used.
        known: frozenset[str] = (held[0] if held else gateway.trust.view()).catalogue
    except Error:
        known = frozenset()
    return await conclude(gateway, record, answer, subject=record.user_id, known=known)


async def _serve(
    gateway: Gateway,
    request: Request,
    headers: dict[str, str],
    record: ExchangeRecord,
    held: list[TrustView],
) -> Answer:
    """Check the caller's request, forward it and verify the answer; raise to refuse. The
    configuration the exchange is checked against is left in ``held``."""
    target = parse_target(request.scope["raw_path"])
    record.service = str(target.service)
    xroad = read_headers(headers, generate_id=True)
    record.message_id, record.client = xroad.message_id, str(xroad.client)
    record.user_id, record.issue, record.purpose, record.consent = (
        xroad.user_id,
        xroad.issue,
        xroad.purpose,
        reference(xroad.consent),  # the consent's id: the artefact names the person
    )
    if xroad.client not in gateway.subsystems:
        raise AccessDenied(
            f"{xroad.client} is not a client of this gateway", detail="X-Road-Client"
        )
    body = await receive_body(
        request.receive,
        content_length=headers.get("content-length"),
        max_bytes=gateway.settings.max_body_bytes,
    )
    record.request_size = len(body)
    # An OOTS EDM request is checked before it is signed, and its answer read before it leaves.
    edm = None
    if is_edm(headers.get("content-type")):
        edm = await edm_consumer.check_request(gateway, body)
    view = gateway.trust.view()
    held.append(view)
    answer = await forward(gateway, view, request, target, xroad, headers, body, record)
    if edm is not None:
        answer = await edm_consumer.read_reply(gateway, edm, answer, record)
    return answer


async def forward(
    gateway: Gateway,
    view: TrustView,
    request: Request,
    target: Target,
    xroad: XRoadHeaders,
    headers: dict[str, str],
    body: bytes,
    record: ExchangeRecord,
) -> Answer:
    provider = target.service.member
    member = view.members.get(str(provider))
    if member is None or target.service.subsystem.subsystem_code not in member.subsystems:
        raise UnknownService(
            f"{target.service.subsystem} is not registered in the global configuration",
            detail=str(target.service),
        )
    peers = view.gateways_for(provider)
    now = int(gateway.clock().timestamp())
    raw_path = request.scope["raw_path"].decode("ascii")
    query = request.scope["query_string"].decode("latin-1")
    claims = request_claims(
        method=request.method,
        path=raw_path,
        query=query,
        body=body,
        service=str(target.service),
        xroad=xroad,
        headers=headers,
        iat=now,
        exp=now + int(gateway.settings.request_ttl),
    )
    signature = sign_request(gateway.signer, claims)
    record.request_signature = signature
    record.request_hash = request_hash(signature)
    outgoing = {
        "X-Road-Client": claims.client,
        "X-Road-Id": claims.message_id,
        REQUEST_HEADER: signature,
    }
    for name, header in (
        ("x-road-userid", "X-Road-UserId"),
        ("x-road-issue", "X-Road-Issue"),
        ("x-exchange-purpose", "X-Exchange-Purpose"),
        ("x-exchange-consent", "X-Exchange-Consent"),
        ("x-exchange-identity", "X-Exchange-Identity"),
        ("idempotency-key", "Idempotency-Key"),
        ("content-type", "Content-Type"),
        ("accept", "Accept"),
    ):
        if name in headers:
            outgoing[header] = headers[name]
    last: Error = NetworkError(f"no gateway of {provider} could be reached")
    for peer in peers:
        url = f"{peer.address}{raw_path}{'?' + query if query else ''}"
        record.peer = peer.id
        record.request_out = gateway.clock()
        try:
            reply = await gateway.transport.request(
                request.method,
                url,
                what=f"gateway {peer.id}",
                headers=outgoing,
                body=body,
                tls=gateway.outbound_ssl(view, peer),
                max_bytes=gateway.settings.max_body_bytes,
                broken=InvalidResponse,
                stream_if=PARTS_HEADER.lower(),
            )
        except NetworkError as unreachable:  # not connected, or dropped before an answer: next
            log.warning(
                "consumer.peer_unreachable", peer=peer.id, reason=str(unreachable.__cause__)
            )
            last = NetworkError(f"no gateway of {provider} could be reached", detail=peer.id)
            last.__cause__ = unreachable.__cause__
            continue
        except PayloadTooLarge as exc:  # the provider's fault, not the caller's
            raise InvalidResponse(
                f"gateway {peer.id} answered with more than {gateway.settings.max_body_bytes} bytes"
            ) from exc
        record.response_in = gateway.clock()
        try:
            return _verified(gateway, view, peer, reply, claims, record)
        except BaseException:
            if reply.release is not None:  # a streamed body refused unread
                await reply.release()
            raise
    raise last


def _verified(
    gateway: Gateway,
    view: TrustView,
    peer: PeerGateway,
    reply: Reply,
    claims: RequestClaims,
    record: ExchangeRecord,
) -> Answer:
    """The peer's answer, once its signature binds it to this request."""
    signature = reply.headers.get(RESPONSE_HEADER.lower())
    if not signature:
        raise InvalidResponse(f"gateway {peer.id} sent an unsigned response")
    content_type = reply.headers.get("content-type")
    parts = reply.headers.get(PARTS_HEADER.lower())
    received = ResponseClaims(
        status=reply.status,
        content_type=content_type,
        body=body_digest(reply.body),  # of a streamed body: checked as it passes
        client=claims.client,
        service=claims.service,
        message_id=claims.message_id,
        request_hash=record.request_hash or "",
        parts=parts,
        iat=0,
    )
    try:
        provider = ServiceId.parse(claims.service).member
        signed = verify_response(
            signature,
            received=received,
            provider=provider,
            view=view,
            at=gateway.clock(),
            streamed=parts is not None,
        )
    except InvalidSignature as exc:
        raise InvalidResponse(
            f"response of gateway {peer.id} failed verification: {exc.message}"
        ) from exc
    record.response_signature = signature
    if parts is not None:
        return Answer(
            reply.status,
            content_type,
            b"",
            reply.headers.get("x-road-error"),
            stream=_streamed(gateway, peer, reply, parts, envelope=signed.body),
        )
    # Retry-After is advice, not evidence: outside the response signature (the mutual TLS
    # channel carries it), passed on only as a number of seconds.
    return Answer(
        reply.status,
        content_type,
        reply.body,
        reply.headers.get("x-road-error"),
        retry_after(reply.status, reply.headers.get("retry-after")),
    )


def _streamed(
    gateway: Gateway, peer: PeerGateway, reply: Reply, parts: str, *, envelope: str
) -> Streamed:
    """The peer's streamed body, its declared layout within this gateway's limits."""
    length = declared_length(reply.headers.get("content-length"))
    if length is None:
        raise InvalidResponse(f"gateway {peer.id} streamed an answer without its length")
    try:
        bound = parse_parts(parts, length=length, max_part_bytes=gateway.settings.max_part_bytes)
    except ValueError as exc:
        raise InvalidResponse(f"gateway {peer.id} declared parts refused here: {exc}") from exc
    if length - sum(part.length for part in bound) > gateway.settings.max_body_bytes:
        raise InvalidResponse(
            f"gateway {peer.id} answered with more than {gateway.settings.max_body_bytes} "
            "bytes around its parts"
        )
    return Streamed(
        parts=bound,
        length=length,
        envelope=envelope,
        chunks=reply.chunks if reply.chunks is not None else _whole(reply.body),
        close=reply.release if reply.release is not None else _nothing,
        broken=InvalidResponse,
        what=f"gateway {peer.id}",
    )


async def _whole(body: bytes) -> AsyncIterator[bytes]:
    """A body that was read whole already (a transport that does not stream), as chunks."""
    yield body


async def _nothing() -> None:
    return None
