"""The provider side: other gateways call here over mutual TLS.

A pipeline of small steps, each failing closed with a signed X-Road error
(``Server.ServerProxy.*``) and without any call to the registry:

1. admission (:mod:`exchange.gateway.admission`): trust held, the TLS peer bound to the client's
   member, a well-formed request for a service provided here, its signature verified against
   the request as received, its message id new;
2. routing: the Data Tracker usage service, the public figures service
   (:mod:`exchange.gateway.figures`) and the X-Road metaservices are answered here;
3. access: the client holds an access right for the service (and method and path), the
   service's parameters are present, and the quotas the right declares are not used up
   (:mod:`exchange.gateway.quotas`);
   A request with an ``Idempotency-Key`` answered before is given its kept answer here
   (:mod:`exchange.gateway.idempotency`), before quotas and release;
4. release (:mod:`exchange.gateway.release`): the service's policy admits the request
   (``public``, ``legal-basis``, ``consent``; with preview composed where it applies), then
   obtains the evidence from the registry through the service's connector;
5. the evidence must satisfy the evidence schema (encoded as JSON or XML here) before it is
   signed, audited and released (:func:`exchange.gateway.outcome.conclude`).

A document service (``connector.document``, e.g. a PDF scan) streams its document instead: the
answer's signature binds it by the length and SHA-256 the registry declared
(:mod:`exchange.gateway.parts`), and the bytes are checked against them as they pass.

Services that declare ``[services.edm]`` take an OOTS EDM ``QueryRequest`` and answer in EDM,
refusals included (:mod:`exchange.gateway.edm`); the steps are the same.

Every answer of ``/r1/`` is signed; only a request the HTTP server cannot parse at all gets an
unsigned error from the server's protocol (:mod:`exchange.serving`).

Every outcome is recorded with both signatures.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from connectors.base import ConnectorRequest, Document, Evidence
from connectors.document import HttpDocumentConnector
from exchange.errors import (
    InvalidEvidence,
    InvalidIdentifier,
    InvalidRequest,
    MethodNotAllowed,
    NotAcceptable,
)
from exchange.evidence.edm import MEDIA_TYPE as EDM_MEDIA_TYPE
from exchange.faults import error_of
from exchange.gateway import figures, metaservices, peerwitnessapi, usage
from exchange.gateway.admission import Admitted, admit
from exchange.gateway.consent import ConsentCheck
from exchange.gateway.edm import EdmProvider, Exchange
from exchange.gateway.idempotency import Held, Stored, fingerprint
from exchange.gateway.node import Gateway
from exchange.gateway.outcome import SIDES, Answer, Released, StreamedResponse, conclude, refuse
from exchange.gateway.parts import Part, Streamed
from exchange.gateway.records import ExchangeRecord
from exchange.gateway.release import Release, ReleasePolicy, policy_for
from exchange.gateway.services import LocalService
from exchange.gateway.signing import RESPONSE_HEADER, ResponseClaims, sign_response
from exchange.gateway.xroad import (
    ALL_METHODS,
    MEDIA_TYPES,
    METASERVICES,
    exchanges_first,
    negotiate,
    query_parameters,
    request_headers,
)
from exchange.identifiers import ServiceId
from exchange.logging import failure
from exchange.trust.signed import body_digest

log = structlog.get_logger(__name__)
SIDE = SIDES["producer"]  # errors raised here are Server.ServerProxy.*


class Claim:
    """The ``Idempotency-Key`` a request holds while it is answered, if any."""

    held: Held | None = None


class Provider:
    """The provider pipeline of one gateway, its release policies built once per service."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.usage = usage.Usage(gateway)
        self.figures = figures.Figures(gateway)
        self.consents = ConsentCheck(gateway)
        # Built once per service as served: a service declared or changed from the console
        # is a new LocalService, and gets its policy on its first request.
        self.policies: dict[str, tuple[LocalService, ReleasePolicy]] = {}
        self.edm = (
            None
            if gateway.edm_schemas is None
            or gateway.settings.edm is None
            or gateway.settings.edm.provider is None
            else EdmProvider(gateway, gateway.edm_schemas)
        )

    async def handle(self, request: Request) -> Released | StreamedResponse:
        gateway = self.gateway
        headers = request_headers(request.scope)
        record = ExchangeRecord.arriving("producer", request.method, headers, gateway.clock())
        exchange: list[Exchange] = []
        claim = Claim()
        try:
            answer = await self.serve(request, headers, record, claim, exchange)
        except Exception as caught:  # every answer is signed and recorded, whatever went wrong
            answer = refuse(caught, record=record)
            answer = self.edm_refusal(caught, answer, record, exchange)
        if claim.held is not None:
            await self.keep(claim.held, answer, record)
        return await conclude(
            gateway,
            record,
            answer,
            subject=record.subject,
            known=gateway.services.keys,
            sign=lambda signed: self.sign(record, signed),
        )

    def edm_refusal(
        self,
        caught: BaseException,
        answer: Answer,
        record: ExchangeRecord,
        exchange: list[Exchange],
    ) -> Answer:
        """``answer`` as an EDM error response where the service is offered in EDM."""
        if self.edm is None:
            return answer
        if not exchange:  # refused in admission: the service may still be an EDM one
            try:
                service = self.gateway.services.find(ServiceId.parse(record.service or ""))
            except InvalidIdentifier:
                service = None
            if service is None or service.spec.edm is None:
                return answer
            exchange.append(Exchange(service))
        try:
            payload = self.edm.refusal(error_of(caught), exchange[0])
        except Exception as failed:  # an EDM error that cannot be built: the X-Road one stands
            refuse(failed, record=record)
            return answer
        return replace(answer, content_type=EDM_MEDIA_TYPE, payload=payload)

    async def serve(
        self,
        request: Request,
        headers: dict[str, str],
        record: ExchangeRecord,
        claim: Claim,
        exchange: list[Exchange] | None = None,
    ) -> Answer:
        """Check and answer one request; raise an :class:`Error` to refuse it. A request with
        an ``Idempotency-Key`` it now holds leaves the key in ``claim``; an EDM exchange is
        noted in ``exchange`` as soon as it is known to be one."""
        gateway = self.gateway
        admitted = await admit(gateway, request, headers, record)
        target, xroad = admitted.target, admitted.xroad
        parameters = query_parameters(admitted.query)
        code = target.service.service_code
        if code == usage.SERVICE:
            if request.method not in self.usage.methods(target.rest_path):
                raise MethodNotAllowed(f"the usage service does not accept {request.method}")
            if gateway.services.find(target.service) is None:
                record.subject = xroad.user_id
            payload, kind = await self.usage.answer(
                subsystem=target.service.subsystem,
                rest_path=target.rest_path,
                parameters=parameters,
                xroad=xroad,
                record=record,
                method=request.method,
            )
            return Answer(200, kind, payload)
        if code == figures.SERVICE:
            if request.method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"the figures service does not accept {request.method}")
            payload = await self.figures.answer(
                subsystem=target.service.subsystem,
                rest_path=target.rest_path,
                parameters=parameters,
            )
            return Answer(200, MEDIA_TYPES["json"], payload)
        if code in METASERVICES:
            return await self.metadata(code, admitted, parameters)
        service = gateway.services.get(target.service)
        edm, body = None, admitted.body
        if service.spec.edm is not None and self.edm is not None:
            exchange = exchange if exchange is not None else []
            exchange.append(Exchange(service))
            if request.method not in service.spec.methods:
                raise MethodNotAllowed(f"{target.service} takes an EDM QueryRequest by POST")
            edm = self.edm.read(body, headers.get("content-type"), exchange[0])
            if parameters:
                raise InvalidRequest("an EDM service takes no query parameters", detail="query")
            parameters = self.edm.parameters(edm, service)
            xroad = replace(xroad, purpose=self.edm.purpose(edm, xroad.purpose))
            record.purpose = xroad.purpose
            body = b""  # the person is read from the request and checked; the registry gets
            # the parameters only, as for every other service
        if request.method not in service.spec.methods:
            raise MethodNotAllowed(f"{target.service} does not accept {request.method}")
        if service.document is not None:
            representation = _accepted(service.document, headers.get("accept"))
        else:
            representation = "xml" if edm is not None else negotiate(headers.get("accept"))
        if service.spec.subject_parameter:
            # From here on, a refusal is recorded about the person, as an attempt: the citizen
            # sees who tried (apart from the releases, which attempts cannot push out of view).
            record.subject = parameters.get(service.spec.subject_parameter)
        if gateway.access.stale:
            await gateway.in_thread(gateway.access.reload)
        grant = gateway.access.check(
            client=str(xroad.client),
            service=target.service,
            method=request.method,
            path=target.rest_path,
        )
        missing = [name for name in service.spec.parameters if not parameters.get(name)]
        if missing:  # before any policy check: a malformed request is not a consent question
            raise InvalidRequest(f"parameter {missing[0]} is required", detail=missing[0])
        asked = ConnectorRequest(
            service=str(target.service),
            parameters=parameters,
            method="GET" if edm is not None else request.method,
            path=target.rest_path,
            body=body,
            content_type=None if edm is not None else headers.get("content-type"),
        )
        service.connector.check(asked)  # likewise: values the registry would misread
        key = xroad.idempotency_key
        if key is not None:
            outcome = await gateway.idempotency.begin(
                client=str(xroad.client),
                service=record.service,
                key=key,
                fingerprint=fingerprint(admitted.signed),
                message_id=record.message_id,
            )
            if isinstance(outcome, Stored):  # given again, signed anew for this request
                record.replay_of = outcome.message_id
                record.legal_basis, record.consent = outcome.legal_basis, outcome.consent
                return Answer(
                    outcome.status, outcome.content_type, outcome.payload, outcome.error_type
                )
            claim.held = outcome
        if grant.limits:  # a grant without quotas costs nothing here
            await gateway.quotas.admit(
                client=str(xroad.client),
                service=grant.service,
                limits=grant.limits,
                person=record.subject,
            )

        async def fetch() -> Evidence | Document:
            record.request_out = gateway.clock()
            if isinstance(service.connector, HttpDocumentConnector):
                document = await service.connector.open(asked)
                record.response_in = gateway.clock()
                return document
            evidence = await service.connector.fetch(asked)
            record.response_in = gateway.clock()
            if edm is not None:  # before anything is shown or released: the person asked for
                EdmProvider.check_person(evidence, edm, service)
            return evidence

        # An EDM request for a document distribution (a PDF): the record first, then the document.
        distribution = None if edm is None else EdmProvider.distribution(edm, service)
        document_type = None if distribution == "application/xml" else distribution
        release = Release(
            view=admitted.view,
            record=record,
            service=service,
            grant=grant,
            xroad=xroad,
            parameters=parameters,
            body=body,
            fetch=fetch,
            preview_location=None if edm is None else edm.preview_location,
            describe=partial(EdmProvider.describe, service, asked) if document_type else None,
            open_previewed=(
                partial(EdmProvider.open_previewed, service, asked) if document_type else None
            ),
        )
        policy = self.policy(service)
        if edm is not None:
            EdmProvider.admit(edm, service)
        await policy.admit(release)
        evidence = await policy.obtain(release)
        if isinstance(evidence, Document):
            return Answer(200, evidence.media_type, b"", stream=_streamed(evidence))
        if edm is not None and self.edm is not None:
            if document_type is not None:
                kind, streamed = await self.edm.document_answer(
                    edm, service, evidence, asked, release.document
                )
                return Answer(200, kind, b"", stream=streamed)
            related = self.edm.answer(edm, service, evidence)
            return Answer(200, related.content_type, related.body)
        if representation == "xml":
            return Answer(200, MEDIA_TYPES["xml"], service.schema.to_xml(evidence))
        return Answer(200, MEDIA_TYPES["json"], service.schema.to_json(evidence))

    def policy(self, service: LocalService) -> ReleasePolicy:
        key = self.gateway.services.key(service.id)
        known = self.policies.get(key)
        if known is not None and known[0] is service:
            return known[1]
        gateway = self.gateway
        policy = policy_for(
            service, consents=self.consents, previews=gateway.previews, in_thread=gateway.in_thread
        )
        self.policies[key] = (service, policy)
        return policy

    async def keep(self, held: Held, answer: Answer, record: ExchangeRecord) -> None:
        """Keep ``answer`` for the retries of ``held``'s key (or give the key up). If that
        fails the answer still leaves; a retry finds the key claimed and, after the takeover
        time, executes again. A streamed document is never kept (never held): its retries
        execute again."""
        if answer.stream is not None:
            answer = replace(answer, status=503)  # not kept, as the provider's failures are not
        try:
            await self.gateway.idempotency.finish(
                held,
                status=answer.status,
                content_type=answer.content_type,
                payload=answer.payload,
                error_type=answer.error_type,
                legal_basis=record.legal_basis,
                consent=record.consent,
            )
        except Exception as failed:  # the answer matters more than its copy for retries
            failure(
                log,
                "provider.idempotency_failed",
                error_type="Server.ServerProxy.InternalError",
                message="the answer could not be kept for retries",
                cause=failed,
            )

    async def metadata(self, code: str, admitted: Admitted, parameters: dict[str, str]) -> Answer:
        services, subsystem = self.gateway.services, admitted.target.service.subsystem
        if code == "getOpenAPI":
            kind, document = metaservices.get_openapi(services, subsystem, parameters)
            return Answer(200, kind, document)
        allowed = (
            await self.gateway.in_thread(
                self.gateway.access.allowed_services, admitted.signed.client
            )
            if code == "allowedMethods"
            else None
        )
        kind, listing = metaservices.list_methods(services, subsystem, allowed)
        return Answer(200, kind, listing)

    def sign(self, record: ExchangeRecord, answer: Answer) -> dict[str, str]:
        """Sign ``answer`` bound to the request; the headers that carry the signature."""
        stream = answer.stream
        claims = ResponseClaims(
            status=answer.status,
            content_type=answer.content_type,
            body=body_digest(answer.payload) if stream is None else stream.envelope,
            client=record.client,
            service=record.service,
            message_id=record.message_id,
            request_hash=record.request_hash or "",
            parts=None if stream is None else stream.header,
            iat=int(self.gateway.clock().timestamp()),
        )
        record.response_signature = sign_response(self.gateway.signer, claims)
        record.response_digest = claims.body
        return {RESPONSE_HEADER: record.response_signature}


def _accepted(media_type: str, accept: str | None) -> str:
    """``media_type``, if the caller's ``Accept`` takes it (or says nothing)."""
    if accept:
        family = media_type.split("/", 1)[0]
        taken = {item.split(";", 1)[0].strip().lower() for item in accept.split(",")}
        if not taken & {media_type, f"{family}/*", "*/*"}:
            raise NotAcceptable(f"this evidence is a document of type {media_type}")
    return media_type


def _streamed(document: Document) -> Streamed:
    """The answer's body: the registry's document as one part, nothing around it."""
    return Streamed(
        parts=(Part(0, document.length, document.digest),),
        length=document.length,
        envelope=body_digest(b""),
        chunks=document.chunks,
        close=document.close,
        broken=InvalidEvidence,
        what="the registry",
    )


def create_provider_app(gateway: Gateway) -> ASGIApp:
    provider = Provider(gateway)

    async def health(_: Request) -> JSONResponse:
        status, shown = await gateway.health()
        return JSONResponse(shown, status_code=status)

    # Witnessing other members' logs is opt-in (audit_peer_witness): no routes otherwise.
    witness = peerwitnessapi.routes(gateway) if gateway.settings.audit_peer_witness else []
    return exchanges_first(
        Starlette(
            routes=[
                Route("/health", health),
                Route("/r1/{rest:path}", provider.handle, methods=ALL_METHODS),
                *witness,
            ]
        ),
        provider.handle,
        side=SIDE,
    )
