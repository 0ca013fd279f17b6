"""The central authority's ASGI app.

Public (no authentication; everything here is either signed or public by nature):
``GET /health``, ``GET /globalconf`` (signed JWS), ``GET /anchor``, ``GET /ca.pem``, ``GET /crl``,
``GET /metrics``, and the witness of the gateways' audit logs (:mod:`exchange.central.witness`):
``POST /witness/v1/heads`` (a signed tree head and a consistency proof in, a countersignature
out; 409 ``AuditLogForked`` for a fork, ``StaleConsistencyProof`` for an old head),
``GET /witness/v1/heads?chain=``, ``GET /witness/v1/forks``, ``GET /witness/v1/certificate``;
``PUT /catalogue/v1/services`` (a gateway's catalogue, signed with its member's key:
:mod:`exchange.central.catalogue`); the OCSP responder ``POST /ocsp`` /
``GET /ocsp/<request>`` (:mod:`exchange.central.ocsp`); and, with the EDM material, the Data
Service Directory ``GET /dsd/rest/search`` (:mod:`exchange.central.dsd`).


Applications (no authentication, validated and capped, :mod:`exchange.central.applications`):
``POST /applications`` submits one, pending, and answers its receipt once;
``GET /applications/{number}`` with ``Authorization: Receipt <receipt>`` says how it stands (to
anyone else, 404 as for a number never given); the same for people on the pages under ``/apply``
(:mod:`exchange.central.applying`).

These, ``POST /enrolment`` and ``PUT /catalogue/v1/services`` are rate-limited per client
address and overall before their bodies are read, the reads of applications with an allowance
of their own (:mod:`exchange.central.throttle`).

Enrolment (the one-time code is the credential, :mod:`exchange.central.enrolment`):
``POST /enrolment`` takes a gateway's two CSRs with the code the authority's operator issued for
it, and answers both certificates, once.

Management API under ``/api/v1`` (bearer admin token): member classes, members, subsystems,
gateways, applications and their decisions, certificate issuance from CSRs, revocation, and the
change log. With ``EXCHANGE_CENTRAL_CONSOLE_ENABLED``, the operators' console under ``/console``
(:mod:`exchange.central.console`). The token is checked
before any byte of a body is read, and bodies are capped (:class:`exchange.http.Guard`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from exchange import __version__
from exchange.central import throttle
from exchange.central.applications import Applications
from exchange.central.applying import PREFIX as APPLY
from exchange.central.applying import create_apply_app
from exchange.central.certificates import Issued
from exchange.central.console.app import PREFIX as CONSOLE
from exchange.central.console.app import create_console_app
from exchange.central.registry import catalogue_entry
from exchange.central.service import Central, build
from exchange.central.settings import CentralSettings
from exchange.errors import Error, InvalidRequest, NotFound, Unauthenticated
from exchange.evidence.edm import MEDIA_TYPE as EDM_MEDIA_TYPE
from exchange.http import Guard, install_error_handlers
from exchange.identifiers import GatewayId, MemberId, SubsystemId
from exchange.identity.login import OidcLogin
from exchange.trust.globalconf_client import utcnow
from exchange.trust.keys import certificate_pem
from exchange.web.forms import bounded_body

API_ACTOR = "api:admin"
OCSP_RESPONSE = "application/ocsp-response"
MAX_API_BODY = 1024 * 1024  # the largest request: a catalogue of a few thousand services
MAX_APPLICATION_BODY = 4096  # an application, unauthenticated: small
MAX_ENROLMENT_BODY = 32 * 1024  # a code and two CSRs, unauthenticated until the code is checked


class MemberClassIn(BaseModel):
    code: str
    description: str = ""


class MemberIn(BaseModel):
    id: str = Field(examples=["EE/GOV/70000310"])
    name: str = Field(examples=["Population Register"])


class SubsystemIn(BaseModel):
    id: str = Field(examples=["EE/GOV/70000310/population-registry"])


class GatewayIn(BaseModel):
    id: str = Field(examples=["EE/GOV/70000310/gw1"])
    address: str = Field(examples=["https://gw1.example.org:8443"])


class CsrIn(BaseModel):
    owner: str = Field(description="member id (signing) or gateway id (TLS)")
    csr: str = Field(description="PEM-encoded PKCS#10 request")


class EdmProviderIn(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    scheme: str = Field(pattern=r"^urn:cef\.eu:names:identifier:EAS:[0-9]{4}$")
    name: str = Field(min_length=1, max_length=500)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    region: str | None = Field(default=None, pattern=r"^[A-Z]{2}[0-9A-Z]{1,3}$")
    locality: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{1,20}$")
    address: str | None = Field(default=None, max_length=500)


EdmFormat = Literal[
    "application/xml", "application/pdf", "image/png", "image/jpeg", "image/svg+xml"
]


def _xml_only() -> list[EdmFormat]:
    return ["application/xml"]


class EdmOfferIn(BaseModel):
    """A service's EDM offer, which the Data Service Directory answers from."""

    evidence_type_classification: str = Field(min_length=1, max_length=500)
    titles: dict[str, str] = Field(min_length=1, max_length=30)
    conforms_to: str | None = Field(default=None, max_length=500)
    transformations: list[str] = Field(default_factory=list, max_length=30)
    # The distributions offered (OOTSMediaTypes); a catalogue published before they were
    # declared offers XML only.
    formats: list[EdmFormat] = Field(default_factory=_xml_only, min_length=1, max_length=5)
    about: str = Field(default="natural-person", pattern="^(natural-person|legal-person)$")
    provider: EdmProviderIn


class ServiceEntryIn(BaseModel):
    id: str = Field(examples=["EE/GOV/70000310/population-registry/birth-certificate"])
    evidence_type: str
    consent_policy: str = Field(pattern="^(consent|legal-basis|public)$")
    description: str = ""
    methods: list[str] = Field(default_factory=lambda: ["GET"])
    parameters: list[str] = Field(default_factory=list)
    edm: EdmOfferIn | None = None


class ServicesIn(BaseModel):
    subsystem: str
    services: list[ServiceEntryIn]


class SignedCatalogueIn(BaseModel):
    catalogue: str = Field(description="compact JWS of exchange-catalogue+jws, docs/protocol.md")


class ApplicationIn(BaseModel):
    kind: str = Field(pattern="^(member|subsystem)$")
    id: str = Field(max_length=1100, examples=["EE/GOV/70000310"])
    name: str = Field(default="", max_length=255, description="the member's (kind member)")
    contact: str = Field(default="", max_length=255, description="how the authority replies")


class EnrolmentIn(BaseModel):
    code: str = Field(max_length=64, description="the one-time code the authority issued")
    gateway: str = Field(max_length=1100, examples=["EE/GOV/70000310/gw1"])
    signing_csr: str = Field(description="PEM PKCS#10 for the member's signing key")
    tls_csr: str = Field(description="PEM PKCS#10 for the gateway's TLS key")


class RejectIn(BaseModel):
    reason: str = Field(max_length=1000)


class WitnessHeadIn(BaseModel):
    chain: str
    size: int
    root: str
    signature: str


class WitnessIn(BaseModel):
    head: WitnessHeadIn
    from_size: int | None = Field(
        default=None, description="the witness's latest size for this chain the proof starts at"
    )
    proof: list[str] = Field(default_factory=list, description="RFC 9162 consistency proof (hex)")


class RevokeIn(BaseModel):
    reason: str = "unspecified"


def _issued(issued: Issued) -> dict[str, Any]:
    return {
        "serial": issued.serial,
        "fingerprint": issued.fingerprint,
        "not_after": issued.not_after.isoformat(),
        "certificate": issued.pem,
    }


def require_admin(request: Request) -> str:
    """Dependency: the bearer admin token must match; returns the actor name for the log."""
    central: Central = request.app.state.central
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or not central.material.admin_token_matches(token):
        raise Unauthenticated("a valid admin bearer token is required")
    return API_ACTOR


# The open write endpoints and their allowance (the apply pages count in their own app).
THROTTLED = {
    ("POST", "/applications"): throttle.APPLICATIONS,
    ("POST", "/enrolment"): throttle.ENROLMENT,
    ("PUT", "/catalogue/v1/services"): throttle.CATALOGUE,
}
READ_APPLICATION = "/applications/"  # GET /applications/<number>: guessed at, so limited too


def admit(request: Request) -> None:
    """Before the body is read: the management API is the admin's only (the ``Admin``
    dependency checks again and names the actor, but FastAPI resolves it after the body), and
    the open endpoints (writes, and reads of applications) are within their rate limits."""
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    if path.startswith("/api/"):
        require_admin(request)
    endpoint = THROTTLED.get((request.method, path))
    if request.method == "GET" and path.startswith(READ_APPLICATION):
        endpoint = throttle.APPLICATION_READS
    if endpoint is not None:
        limits: throttle.Throttle = request.app.state.throttle
        limits.admit(endpoint, request.client.host if request.client else None)


Admin = Annotated[str, Depends(require_admin)]


def create_app(
    settings: CentralSettings,
    *,
    clock: Callable[[], datetime] = utcnow,
    console_login: OidcLogin | None = None,
) -> FastAPI:
    """The authority's app; with the console enabled, it signs staff in through
    ``console_login`` (by default the issuer its settings name)."""
    central = build(settings, clock=clock)
    applications = Applications(registry=central.registry)
    app = FastAPI(title="exchange central authority", version=__version__)
    install_error_handlers(app)
    # The apply form is counted, then read (64 KiB at most), by its own app: refused, the
    # visitor gets the error page in their language, and before the body is read.
    app.add_middleware(Guard, max_bytes=MAX_API_BODY, admit=admit, reads_itself=(APPLY + "/",))
    app.state.central = central
    app.state.throttle = limits = throttle.Throttle(
        central.settings.rate_limit, clock=lambda: clock().timestamp(), registry=central.metrics
    )
    app.mount(APPLY, create_apply_app(central.settings, applications, central.enrolments, limits))
    spec = central.settings.console
    if spec.enabled and spec.issuer and spec.client_id and spec.public_url:
        login = console_login or OidcLogin(
            issuer=spec.issuer,
            client_id=spec.client_id,
            client_secret=spec.client_secret,
            redirect_uri=f"{spec.public_url.rstrip('/')}{CONSOLE}/callback",
        )
        app.mount(CONSOLE, create_console_app(central, login=login))

    @app.post("/applications", status_code=201)
    async def submit_application(request: Request) -> dict[str, object]:
        raw = await bounded_body(request, MAX_APPLICATION_BODY)
        try:
            body = ApplicationIn.model_validate_json(raw)
        except ValueError as exc:
            raise InvalidRequest(
                "an application is a JSON object: kind, id, name, contact"
            ) from exc
        submitted = await asyncio.to_thread(
            applications.submit, body.kind, body.id, name=body.name, contact=body.contact
        )
        # The receipt once: with it, /apply/<number>/<receipt> shows the gateway's code.
        return {**submitted.document(), "receipt": submitted.receipt}

    @app.post("/enrolment", status_code=201)
    async def enrol(request: Request) -> dict[str, object]:
        raw = await bounded_body(request, MAX_ENROLMENT_BODY)
        try:
            body = EnrolmentIn.model_validate_json(raw)
        except ValueError as exc:
            raise InvalidRequest(
                "an enrolment is a JSON object: code, gateway, signing_csr, tls_csr"
            ) from exc
        enrolled = await asyncio.to_thread(
            central.enrolments.enrol,
            body.code,
            GatewayId.parse(body.gateway),
            signing_csr=body.signing_csr,
            tls_csr=body.tls_csr,
        )
        return {
            "gateway": enrolled.gateway,
            "member": enrolled.member,
            "signing": _issued(enrolled.signing),
            "tls": _issued(enrolled.tls),
        }

    @app.get("/applications/{number}")
    def application(
        request: Request, number: Annotated[int, Path(ge=1, lt=10**11)]
    ) -> dict[str, object]:
        # The receipt in a header, not the address: addresses end up in proxies' logs.
        scheme, _, receipt = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "receipt" or not receipt or len(receipt) > 64:
            receipt = ""  # derived and compared all the same: no quicker answer to tell by
        return applications.for_applicant(number, receipt).document()

    @app.get("/api/v1/applications")
    def listed_applications(
        _: Admin,
        status: Annotated[str | None, Query(pattern="^(pending|approved|rejected)$")] = None,
    ) -> list[dict[str, object]]:
        return [a.document() for a in applications.list(status)]

    @app.post("/api/v1/applications/{number}/approve")
    def approve_application(number: int, actor: Admin) -> dict[str, object]:
        return applications.approve(number, actor=actor).document()

    @app.post("/api/v1/applications/{number}/reject")
    def reject_application(number: int, body: RejectIn, actor: Admin) -> dict[str, object]:
        return applications.reject(number, body.reason, actor=actor).document()

    @app.get("/health")
    def health() -> dict[str, Any]:
        forks = central.witness.fork_count()
        return {
            "status": "ok",
            "instance": central.material.instance,
            # A fork does not stop the authority; it is an alarm for people to act on.
            "witness": {"status": "FORK DETECTED" if forks else "ok", "forks": forks},
        }

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(central.metrics), media_type=CONTENT_TYPE_LATEST)

    @app.post("/witness/v1/heads")
    def witness_head(body: WitnessIn) -> dict[str, Any]:
        cosignature = central.witness.submit(
            body.head.model_dump(), from_size=body.from_size, proof=body.proof
        )
        return {"chain": body.head.chain, "size": body.head.size, "cosignature": cosignature}

    @app.get("/witness/v1/heads")
    def witnessed_head(chain: str) -> dict[str, Any]:
        latest = central.witness.latest(chain)
        if latest is None:
            raise NotFound("the witness holds no head of this chain")
        return latest

    @app.get("/witness/v1/forks")
    def witness_forks() -> list[dict[str, Any]]:
        return central.witness.forks()

    @app.get("/witness/v1/certificate", response_class=Response)
    def witness_certificate() -> Response:
        pem = certificate_pem(central.witness.certificate)
        return Response(pem, media_type="application/x-pem-file")

    @app.get("/globalconf", response_class=Response)
    def global_configuration() -> Response:
        return Response(
            central.publisher.document(),
            media_type="application/jose",
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/anchor")
    def anchor() -> JSONResponse:
        url = f"{central.settings.url}/globalconf"
        data = central.material.anchor(url).model_dump(mode="json")
        return JSONResponse(data)

    @app.get("/ca.pem", response_class=Response)
    def ca_certificate() -> Response:
        pem = certificate_pem(central.material.authority.certificate)
        return Response(pem, media_type="application/x-pem-file")

    @app.get("/crl", response_class=Response)
    def crl() -> Response:
        return Response(central.certificates.crl_der(), media_type="application/pkix-crl")

    @app.post("/ocsp", response_class=Response)
    async def ocsp_post(request: Request) -> Response:
        # A registry lookup and a signature with the CA key: off the event loop, which serves
        # every gateway's configuration and CRL.
        body = await request.body()
        answer = await asyncio.to_thread(central.certificates.ocsp_response, body)
        return Response(answer, media_type=OCSP_RESPONSE)

    @app.get("/ocsp/{encoded:path}", response_class=Response)
    def ocsp_get(encoded: str) -> Response:
        # RFC 6960 appendix A.1: the DER request, base64, then URL-encoded (already decoded).
        try:
            request = base64.b64decode(encoded, validate=True)
        except ValueError:
            request = b""
        answer = central.certificates.ocsp_response(request)
        return Response(answer, media_type=OCSP_RESPONSE, headers={"Cache-Control": "no-cache"})

    @app.get("/api/v1/member-classes")
    def member_classes(_: Admin) -> list[dict[str, str]]:
        return [
            {"code": c.code, "description": c.description}
            for c in central.registry.member_classes()
        ]

    @app.post("/api/v1/member-classes", status_code=201)
    def add_member_class(body: MemberClassIn, actor: Admin) -> dict[str, str]:
        central.registry.add_member_class(body.code, body.description, actor=actor)
        return {"code": body.code}

    @app.get("/api/v1/members")
    def members(_: Admin) -> list[dict[str, Any]]:
        return [
            {
                "id": m.identifier,
                "name": m.name,
                "subsystems": [s.identifier for s in m.subsystems],
                "gateways": [{"id": g.identifier, "address": g.address} for g in m.gateways],
            }
            for m in central.registry.members()
        ]

    @app.post("/api/v1/members", status_code=201)
    def register_member(body: MemberIn, actor: Admin) -> dict[str, str]:
        row = central.registry.register_member(MemberId.parse(body.id), body.name, actor=actor)
        return {"id": row.identifier, "name": row.name}

    @app.post("/api/v1/subsystems", status_code=201)
    def register_subsystem(body: SubsystemIn, actor: Admin) -> dict[str, str]:
        row = central.registry.register_subsystem(SubsystemId.parse(body.id), actor=actor)
        return {"id": row.identifier}

    @app.post("/api/v1/gateways", status_code=201)
    def register_gateway(body: GatewayIn, actor: Admin) -> dict[str, str]:
        row = central.registry.register_gateway(GatewayId.parse(body.id), body.address, actor=actor)
        return {"id": row.identifier, "address": row.address}

    directory = central.directory
    if directory is not None:

        @app.get("/dsd/rest/search", response_class=Response)
        def directory_search(request: Request) -> Response:
            try:
                document, status = directory.search(request.query_params.multi_items()), 200
            except Error as refused:  # the DSD's own error document, with the precise status
                document, status = directory.refusal(refused), refused.status
            return Response(document, status_code=status, media_type=EDM_MEDIA_TYPE)

    @app.put("/api/v1/services")
    def publish_services(body: ServicesIn, actor: Admin) -> dict[str, list[str]]:
        entries = [entry.model_dump(exclude_none=True) for entry in body.services]
        published = central.registry.publish_services(
            SubsystemId.parse(body.subsystem), entries, actor=actor
        )
        return {"published": published}

    @app.put("/catalogue/v1/services")
    def publish_signed_services(body: SignedCatalogueIn) -> dict[str, list[str]]:
        # No token: the member's signature is the credential (exchange.central.catalogue).
        accepted = central.catalogues.check(body.catalogue)
        try:
            entries = [ServiceEntryIn.model_validate(e) for e in accepted.claims.services]
        except ValueError as exc:
            raise InvalidRequest("a service of the signed catalogue is malformed") from exc
        published = central.catalogues.publish(accepted, [e.model_dump() for e in entries])
        return {"published": published}

    @app.get("/api/v1/services")
    def services(_: Admin) -> list[dict[str, Any]]:
        return [catalogue_entry(s) for s in central.registry.services()]

    @app.post("/api/v1/certificates/signing", status_code=201)
    def issue_signing(body: CsrIn, actor: Admin) -> dict[str, Any]:
        return _issued(
            central.certificates.issue_signing(MemberId.parse(body.owner), body.csr, actor=actor)
        )

    @app.post("/api/v1/certificates/tls", status_code=201)
    def issue_tls(body: CsrIn, actor: Admin) -> dict[str, Any]:
        return _issued(
            central.certificates.issue_tls(GatewayId.parse(body.owner), body.csr, actor=actor)
        )

    @app.get("/api/v1/certificates")
    def certificates(_: Admin) -> list[dict[str, Any]]:
        return [
            {
                "serial": c.serial,
                "profile": c.profile,
                "subject": c.subject,
                "fingerprint": c.fingerprint,
                "not_after": c.not_after.isoformat(),
                "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
                "revocation_reason": c.revocation_reason,
            }
            for c in central.certificates.list()
        ]

    @app.post("/api/v1/certificates/{serial}/revoke")
    def revoke(serial: str, body: RevokeIn, actor: Admin) -> dict[str, str]:
        central.certificates.revoke(serial, body.reason, actor=actor)
        return {"serial": serial.upper(), "status": "revoked"}

    @app.get("/api/v1/events")
    def events(
        _: Admin,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        return [
            {
                "id": e.id,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "subject": e.subject,
                "details": json.loads(e.details),
            }
            for e in central.registry.events(after=after, limit=limit)
        ]

    return app
