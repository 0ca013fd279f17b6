"""The consumer side: the member's own information systems call here with X-Road REST.

The gateway checks the caller's request (client is one of its subsystems, identifiers and
headers well-formed, body within the cap), finds the provider's gateways in the global
configuration, signs the request with the member's key and sends it over mutual TLS. It
accepts the answer only from a gateway whose TLS certificate the configuration lists for the
provider, and only with a valid response signature bound to this request; then it hands the
answer on with the X-Road response headers.

Errors the caller caused are ``Client.*``; errors of this gateway are ``Server.ClientProxy.*``;
errors of the provider's gateway arrive signed as ``Server.ServerProxy.*`` and pass through.
"""

from __future__ import annotations

import ssl

import structlog
import yarl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from exchange.consent.artefact import reference
from exchange.errors import (
    AccessDenied,
    Error,
    InvalidResponse,
    InvalidSignature,
    LoggingFailed,
    NetworkError,
    PayloadTooLarge,
    UnknownService,
)
from exchange.faults import mapped
from exchange.gateway import auditapi, metaservices
from exchange.gateway.node import Gateway
from exchange.gateway.records import ExchangeRecord, audit_entry, refuse
from exchange.gateway.signing import (
    REQUEST_HEADER,
    RESPONSE_HEADER,
    RequestClaims,
    ResponseClaims,
    body_digest,
    identity_digest,
    request_hash,
    verify_response,
)
from exchange.gateway.trust import TrustView
from exchange.gateway.xroad import (
    ALL_METHODS,
    Target,
    XRoadHeaders,
    exchanges_first,
    parse_target,
    read_body,
    read_headers,
)
from exchange.identifiers import ServiceId
from exchange.trust.globalconf import Gateway as PeerGateway

log = structlog.get_logger(__name__)
SIDE = "ClientProxy"


def create_consumer_app(gateway: Gateway) -> ASGIApp:
    async def health(_: Request) -> JSONResponse:
        if not gateway.started:
            return JSONResponse({"status": "FAIL", "reason": "starting"}, status_code=503)
        try:
            version = gateway.trust.view().version
        except Error as error:
            return JSONResponse({"status": "FAIL", "reason": error.message}, status_code=503)
        return JSONResponse(
            {
                "status": "ok",
                "gateway": gateway.settings.id,
                "globalconf_version": version,
                "consent_feeds": gateway.revocations.state(),
            }
        )

    async def list_clients(request: Request) -> Response:
        kind, body = metaservices.list_clients(
            gateway.trust.view().configuration, request.query_params.get("xRoadInstance")
        )
        return Response(body, media_type=kind)

    async def metrics(_: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def exchange(request: Request) -> Response:
        return await handle(gateway, request)

    return exchanges_first(
        Starlette(
            routes=[
                Route("/health", health),
                Route("/metrics", metrics),
                Route("/listClients", list_clients),
                Route("/r1/{rest:path}", exchange, methods=ALL_METHODS),
                *auditapi.routes(gateway),
            ]
        ),
        exchange,
        side=SIDE,
    )


async def handle(gateway: Gateway, request: Request) -> Response:
    clock = gateway.clock
    headers = {k.lower(): v for k, v in request.headers.items()}
    record = ExchangeRecord(
        side="client",
        message_id=headers.get("x-road-id", ""),
        client=headers.get("x-road-client", ""),
        service="",
        request_in=clock(),
    )
    try:
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
        body = await read_body(
            request.stream(),
            content_length=headers.get("content-length"),
            max_bytes=gateway.settings.max_body_bytes,
        )
        record.request_size = len(body)
        view = gateway.trust.view()
        status, content_type, payload, error_type = await forward(
            gateway, view, request, target, xroad, headers, body, record
        )
    except Exception as caught:  # every answer is an X-Road answer, whatever went wrong
        refused = refuse(caught, side=SIDE, record=record, event="consumer.failed")
        status, content_type, payload = refused.status, refused.content_type, refused.payload
        error_type = refused.error_type
    record.status = status
    record.fault_code = error_type
    record.response_digest = body_digest(payload)
    try:
        # The audit record is committed before the answer goes back: no record, no release.
        await gateway.audit.append(audit_entry(record), subject=record.user_id)
    except LoggingFailed as error:
        refused = refuse(error, side=SIDE, record=record, event="consumer.failed")
        status, content_type, payload = refused.status, refused.content_type, refused.payload
        error_type = refused.error_type
    record.response_size = len(payload)
    finished = clock()
    gateway.exchanges.write(record, response_out=finished)
    try:
        known: frozenset[str] = gateway.trust.view().catalogue
    except Error:
        known = frozenset()
    gateway.metrics.observe(
        side="client",
        service=record.service,
        known=known,
        status=status,
        error_type=error_type,
        seconds=(finished - record.request_in).total_seconds(),
    )
    out = {
        "X-Road-Id": record.message_id,
        "X-Road-Client": record.client,
        "X-Road-Service": record.service,
    }
    if content_type:
        out["Content-Type"] = content_type
    if record.request_hash:
        out["X-Road-Request-Hash"] = record.request_hash
    if error_type:
        out["X-Road-Error"] = error_type
    return Response(payload, status_code=status, headers=out)


async def forward(
    gateway: Gateway,
    view: TrustView,
    request: Request,
    target: Target,
    xroad: XRoadHeaders,
    headers: dict[str, str],
    body: bytes,
    record: ExchangeRecord,
) -> tuple[int, str | None, bytes, str | None]:
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
    claims = RequestClaims(
        method=request.method,
        path=raw_path,
        query=query,
        body=body_digest(body),
        client=str(xroad.client),
        service=str(target.service),
        message_id=xroad.message_id,
        user_id=xroad.user_id,
        issue=xroad.issue,
        purpose=xroad.purpose,
        consent=identity_digest(xroad.consent),  # the artefact names the person: its digest
        content_type=headers.get("content-type"),
        accept=headers.get("accept"),
        identity=identity_digest(xroad.identity),
        iat=now,
        exp=now + int(gateway.settings.request_ttl),
    )
    signature = gateway.signer.sign_request(claims)
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
        ("content-type", "Content-Type"),
        ("accept", "Accept"),
    ):
        if name in headers:
            outgoing[header] = headers[name]
    last: Error = NetworkError(f"no gateway of {provider} could be reached")
    for peer in peers:
        url = yarl.URL(f"{peer.address}{raw_path}{'?' + query if query else ''}", encoded=True)
        record.peer = peer.id
        record.request_out = gateway.clock()
        try:
            context = gateway.outbound_ssl(view, peer)
            answer = _exchange(
                gateway, view, peer, url, request.method, outgoing, body, context, claims, record
            )
            with mapped(f"gateway {peer.id}", broken=InvalidResponse):
                return await answer
        except NetworkError as unreachable:  # not connected, or dropped before an answer: next
            log.warning(
                "consumer.peer_unreachable", peer=peer.id, reason=str(unreachable.__cause__)
            )
            last = NetworkError(f"no gateway of {provider} could be reached", detail=peer.id)
            last.__cause__ = unreachable.__cause__
    raise last


async def _exchange(
    gateway: Gateway,
    view: TrustView,
    peer: PeerGateway,
    url: yarl.URL,
    method: str,
    outgoing: dict[str, str],
    body: bytes,
    context: ssl.SSLContext,
    claims: RequestClaims,
    record: ExchangeRecord,
) -> tuple[int, str | None, bytes, str | None]:
    async with gateway.session().request(
        method, url, data=body or None, headers=outgoing, ssl=context, allow_redirects=False
    ) as response:
        try:
            payload = await read_body(
                response.content.iter_chunked(65536),
                content_length=response.headers.get("Content-Length"),
                max_bytes=gateway.settings.max_body_bytes,
            )
        except PayloadTooLarge as exc:  # the provider's fault, not the caller's
            raise InvalidResponse(
                f"gateway {peer.id} answered with more than {gateway.settings.max_body_bytes} bytes"
            ) from exc
        record.response_in = gateway.clock()
        signature = response.headers.get(RESPONSE_HEADER)
        if not signature:
            raise InvalidResponse(f"gateway {peer.id} sent an unsigned response")
        content_type = response.headers.get("Content-Type")
        received = ResponseClaims(
            status=response.status,
            content_type=content_type,
            body=body_digest(payload),
            client=claims.client,
            service=claims.service,
            message_id=claims.message_id,
            request_hash=record.request_hash or "",
            iat=0,
        )
        try:
            provider = ServiceId.parse(claims.service).member
            verify_response(
                signature, received=received, provider=provider, view=view, at=gateway.clock()
            )
        except InvalidSignature as exc:
            raise InvalidResponse(
                f"response of gateway {peer.id} failed verification: {exc.message}"
            ) from exc
        record.response_signature = signature
        return response.status, content_type, payload, response.headers.get("X-Road-Error")
