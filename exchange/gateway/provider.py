"""The provider side: other gateways call here over mutual TLS.

Order of checks, each failing closed with a signed X-Road error (``Server.ServerProxy.*``) and
without any call to the registry:

1. a valid global configuration is held;
2. the TLS client certificate is a live certificate of a registered gateway, and that gateway
   belongs to the member named in ``X-Road-Client``;
3. the service path and headers are well-formed, the service is provided here, the body fits;
4. the request signature verifies against the request as received (signer, fields, time);
5. the (client, message id) pair is new (committed durably before going on);
6. the client holds an access right for the service (and method and path);
7. the service's consent policy holds: ``consent`` (a genuine artefact covering this request,
   live at the consent service, a use spent; see :mod:`exchange.gateway.consent`),
   ``legal-basis`` (the access right names the client's legal basis, and a purpose is given) or
   ``public``;
8. with preview required, the citizen has approved exactly this evidence
   (:mod:`exchange.gateway.preview`);
9. the registry is asked through the service's connector, and its answer must satisfy the
   evidence schema before it is signed and released.

Every outcome is recorded with both signatures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from connectors.base import ConnectorRequest, Evidence
from exchange.consent.artefact import Consent
from exchange.errors import (
    AccessDenied,
    InvalidRequest,
    InvalidSignature,
    LoggingFailed,
    MethodNotAllowed,
    PreviewRefused,
    PreviewRequired,
    ServiceUnavailable,
    UnknownService,
)
from exchange.evidence.xml import parse_untrusted
from exchange.gateway import metaservices, usage
from exchange.gateway.consent import ConsentCheck
from exchange.gateway.node import Gateway
from exchange.gateway.preview import query_digest
from exchange.gateway.records import ExchangeRecord, audit_entry, refuse
from exchange.gateway.services import LocalService
from exchange.gateway.signing import (
    REQUEST_HEADER,
    RESPONSE_HEADER,
    RequestClaims,
    ResponseClaims,
    body_digest,
    identity_digest,
    request_hash,
    verify_request,
)
from exchange.gateway.tls import PEER_FINGERPRINT
from exchange.gateway.trust import TrustView
from exchange.gateway.xroad import (
    ALL_METHODS,
    MEDIA_TYPES,
    METASERVICES,
    exchanges_first,
    negotiate,
    parse_target,
    query_parameters,
    read_body,
    read_headers,
)
from exchange.identifiers import member_of

SIDE = "ServerProxy"
SAFE_METHODS = frozenset({"GET", "HEAD"})  # change nothing at the registry (RFC 9110 9.2.1)


def create_provider_app(gateway: Gateway) -> ASGIApp:
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "gateway": gateway.settings.id})

    checks = Checks(usage.Usage(gateway), ConsentCheck(gateway))

    async def exchange(request: Request) -> Response:
        return await handle(gateway, request, checks)

    return exchanges_first(
        Starlette(
            routes=[
                Route("/health", health),
                Route("/r1/{rest:path}", exchange, methods=ALL_METHODS),
            ]
        ),
        exchange,
        side=SIDE,
    )


@dataclass(frozen=True, slots=True)
class Checks:
    usage: usage.Usage
    consents: ConsentCheck


async def handle(gateway: Gateway, request: Request, checks: Checks) -> Response:
    clock = gateway.clock
    headers = {k.lower(): v for k, v in request.headers.items()}
    record = ExchangeRecord(
        side="producer",
        message_id=headers.get("x-road-id", ""),
        client=headers.get("x-road-client", ""),
        service="",
        request_in=clock(),
    )
    content_type = "application/json"
    status = 200
    try:
        payload, content_type = await _serve(gateway, request, headers, record, checks)
    except Exception as caught:  # every answer is signed and recorded, whatever went wrong
        refusal = refuse(caught, side=SIDE, record=record, event="provider.failed")
        status, content_type, payload = refusal.status, refusal.content_type, refusal.payload
    record.status = status
    return await respond(gateway, record, status=status, content_type=content_type, payload=payload)


async def _serve(
    gateway: Gateway,
    request: Request,
    headers: dict[str, str],
    record: ExchangeRecord,
    checks: Checks,
) -> tuple[bytes, str]:
    """Check and answer one request; raise an :class:`Error` to refuse it."""
    clock = gateway.clock
    signature = headers.get(REQUEST_HEADER.lower())
    if signature is not None:
        if not signature.isascii():
            raise InvalidSignature("request signature is not a JWS")
        record.request_signature = signature
        record.request_hash = request_hash(signature)
    # Parsed first so that every signed answer, even a refusal, names the service asked for.
    target = parse_target(request.scope["raw_path"])
    record.service = str(target.service)
    view = gateway.trust.view()
    peer = view.gateway_presenting(request.scope.get(PEER_FINGERPRINT))
    record.peer = peer.id
    xroad = read_headers(headers, generate_id=False)
    record.user_id, record.issue = xroad.user_id, xroad.issue
    # The consent's id is recorded once its artefact verified (below), never a claimed one.
    record.purpose = xroad.purpose
    client_member = member_of(xroad.client)
    if str(client_member) != peer.id.rsplit("/", 1)[0]:
        raise AccessDenied(f"gateway {peer.id} does not serve client {xroad.client}")
    view.check_client(xroad.client)
    if target.service.member != gateway.member:
        raise UnknownService(
            f"{target.service} is not provided by this gateway", detail=str(target.service)
        )
    body = await read_body(
        request.stream(),
        content_length=headers.get("content-length"),
        max_bytes=gateway.settings.max_body_bytes,
    )
    record.request_size = len(body)
    if looks_like_xml(body, headers.get("content-type")):
        # Refuse entity expansion, DTDs and oversized documents before anyone parses them.
        parse_untrusted(body, max_bytes=gateway.settings.max_body_bytes)
    if not signature:
        raise InvalidSignature("request carries no signature")
    query = request.scope["query_string"].decode("latin-1")
    received = RequestClaims(
        method=request.method,
        path=request.scope["raw_path"].decode("ascii"),
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
        iat=0,
        exp=0,
    )
    settings = gateway.settings
    signed = verify_request(
        signature,
        received=received,
        view=view,
        at=clock(),
        skew=settings.clock_skew,
        max_lifetime=settings.request_ttl,
    )
    keep_until = datetime.fromtimestamp(signed.exp + settings.clock_skew, UTC)
    await gateway.replay.accept_once(
        client=received.client,
        message_id=received.message_id,
        keep_until=keep_until,
        safe=request.method in SAFE_METHODS,
    )
    parameters = query_parameters(query)
    local = gateway.services.find(target.service)
    code = target.service.service_code
    if code == usage.SERVICE:
        if local is None:
            record.subject = xroad.user_id
        return await checks.usage.answer(
            subsystem=target.service.subsystem,
            rest_path=target.rest_path,
            parameters=parameters,
            xroad=xroad,
        )
    if code in METASERVICES:
        if code == "getOpenAPI":
            kind, document = metaservices.get_openapi(
                gateway.services, target.service.subsystem, parameters
            )
            return document, kind
        allowed = (
            await gateway.in_thread(gateway.access.allowed_services, received.client)
            if code == "allowedMethods"
            else None
        )
        kind, listing = metaservices.list_methods(
            gateway.services, target.service.subsystem, allowed
        )
        return listing, kind
    service = gateway.services.get(target.service)
    if request.method not in service.spec.methods:
        raise MethodNotAllowed(f"{target.service} does not accept {request.method}")
    representation = negotiate(headers.get("accept"))
    if service.spec.subject_parameter:
        # Only now: a client without access cannot fill a person's usage list with refusals.
        record.subject = parameters.get(service.spec.subject_parameter)
    if gateway.access.stale:
        await gateway.in_thread(gateway.access.reload)
    grant = gateway.access.check(
        client=received.client, service=target.service, method=request.method, path=target.rest_path
    )
    missing = [name for name in service.spec.parameters if not parameters.get(name)]
    if missing:  # before any policy check: a malformed request is not a consent question
        raise InvalidRequest(f"parameter {missing[0]} is required", detail=missing[0])
    consent: Consent | None = None
    policy = service.spec.consent_policy
    if policy == "legal-basis":
        if not grant.legal_basis:
            raise AccessDenied(
                f"{received.client} holds no declared legal basis for {target.service}",
                detail="legal-basis",
            )
        if not xroad.purpose:
            raise InvalidRequest(
                "this service needs the purpose of the request (X-Exchange-Purpose)",
                detail="X-Exchange-Purpose",
            )
        record.legal_basis = grant.legal_basis
    elif policy == "consent":
        if body:
            # The person is named in the query and checked against the consent; a body the
            # registry might read another person from is not accepted.
            raise InvalidRequest("a service released under consent takes no request body")
        consent = checks.consents.verify(
            xroad.consent,
            view=view,
            client=received.client,
            service=str(target.service),
            evidence_type=service.spec.evidence_type,
            purpose=xroad.purpose,
            subject=record.subject,
            user_id=xroad.user_id,
        )
        record.consent, record.legal_basis = consent.jti, consent.purpose.legal_basis

    async def fetch() -> Evidence:
        record.request_out = clock()
        evidence = await service.connector.fetch(
            ConnectorRequest(
                service=str(target.service),
                parameters=parameters,
                method=request.method,
                path=target.rest_path,
                body=body,
                content_type=headers.get("content-type"),
            )
        )
        record.response_in = clock()
        return evidence

    if consent is not None and (consent.preview or service.spec.preview):
        evidence = await _previewed(
            gateway, checks, view, consent, service, record, parameters, fetch
        )
    else:
        if consent is not None:
            await checks.consents.spend(
                consent, view=view, message_id=record.message_id, service=record.service
            )
        evidence = await fetch()
    if representation == "xml":
        return service.schema.to_xml(evidence), MEDIA_TYPES["xml"]
    return service.schema.to_json(evidence), MEDIA_TYPES["json"]


async def _previewed(
    gateway: Gateway,
    checks: Checks,
    view: TrustView,
    consent: Consent,
    service: LocalService,
    record: ExchangeRecord,
    parameters: dict[str, str],
    fetch: Callable[[], Awaitable[Evidence]],
) -> Evidence:
    """The evidence the citizen approved for exactly this request; see
    :mod:`exchange.gateway.preview`."""
    previews = gateway.previews
    if previews.spec is None:
        raise ServiceUnavailable("this provider cannot show previews to citizens")
    query = query_digest(parameters)
    held = await gateway.in_thread(
        previews.find,
        consent_id=consent.jti,
        client=record.client,
        service=record.service,
        query=query,
    )
    if held is None:
        await checks.consents.ensure_live(
            consent, view=view, message_id=record.message_id, service=record.service
        )
        evidence = await fetch()
        service.schema.to_json(evidence)  # nothing that would fail the schema is shown
        preview_id = await gateway.in_thread(
            previews.hold,
            consent_id=consent.jti,
            client=record.client,
            service=record.service,
            query=query,
            subject=consent.sub,
            evidence=dict(evidence),
        )
        raise PreviewRequired(
            "the person wants to see this evidence before it is sent; send them to the preview "
            "page (detail), then ask again",
            detail=previews.url(preview_id),
        )
    if held.decision is None:
        raise PreviewRequired(
            "the person has not yet approved this evidence; send them to the preview page "
            "(detail), then ask again",
            detail=previews.url(held.id),
        )
    if held.decision != "approved":
        raise PreviewRefused("the person looked at this evidence and refused to share it")
    # Claimed first: of two retries racing for one approval, only one may spend a use.
    evidence = await gateway.in_thread(previews.release, held.id)
    await checks.consents.spend(
        consent, view=view, message_id=record.message_id, service=record.service
    )
    return evidence


def looks_like_xml(body: bytes, content_type: str | None) -> bool:
    """Labelled XML, or starting like XML whatever the label says (a label is easy to omit)."""
    head = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return bool(body) and ("xml" in (content_type or "").lower() or head.startswith(b"<"))


def _sign(
    gateway: Gateway, record: ExchangeRecord, status: int, content_type: str, payload: bytes
) -> str:
    claims = ResponseClaims(
        status=status,
        content_type=content_type,
        body=body_digest(payload),
        client=record.client,
        service=record.service,
        message_id=record.message_id,
        request_hash=record.request_hash or "",
        iat=int(gateway.clock().timestamp()),
    )
    record.response_signature = gateway.signer.sign_response(claims)
    record.response_digest = claims.body
    record.response_size = len(payload)
    return record.response_signature


async def respond(
    gateway: Gateway, record: ExchangeRecord, *, status: int, content_type: str, payload: bytes
) -> Response:
    response_signature = _sign(gateway, record, status, content_type, payload)
    try:
        # The audit record is committed before anything leaves: no record, no release.
        await gateway.audit.append(audit_entry(record), subject=record.subject)
    except LoggingFailed as error:
        refusal = refuse(error, side=SIDE, record=record, event="provider.failed")
        status, content_type, payload = refusal.status, refusal.content_type, refusal.payload
        response_signature = _sign(gateway, record, status, content_type, payload)
    finished = gateway.clock()
    gateway.exchanges.write(record, response_out=finished)
    gateway.metrics.observe(
        side="producer",
        service=record.service,
        known=gateway.services.keys,
        status=status,
        error_type=record.fault_code,
        seconds=(finished - record.request_in).total_seconds(),
    )
    headers = {
        "Content-Type": content_type,  # exactly the signed value: no charset is appended
        "X-Road-Id": record.message_id,
        "X-Road-Client": record.client,
        "X-Road-Service": record.service,
        RESPONSE_HEADER: response_signature,
    }
    if record.request_hash:
        headers["X-Road-Request-Hash"] = record.request_hash
    if record.fault_code:
        headers["X-Road-Error"] = record.fault_code
    return Response(payload, status_code=status, headers=headers)
