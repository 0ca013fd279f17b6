"""The consent service's HTTP face: citizens' pages and API, and the providers' status and use
endpoints.

Citizens (web, signed in through the OIDC issuer)::

    GET  /                       your consents, each revocable
    GET  /grant?consumer=&service=&purpose=&purpose_text=&legal_basis=&valid_days=
                &max_uses=&preview=&return_to=
                                 the terms in plain words, to confirm or decline
    POST /grant                  confirm: the artefact is signed and posted back to return_to
    POST /consents/{id}/revoke

Citizens' programs (``Authorization: Bearer <ID token issued to this service>``)::

    POST /api/v1/terms           the plain words for a grant request, nothing granted
    POST /api/v1/consents        grant; answers the artefact
    GET  /api/v1/consents        list, with status
    POST /api/v1/consents/{id}/revoke

Provider gateways::

    POST /api/v1/consents/{id}/status   is it live: active | revoked | expired | not-yet-valid |
                                        exhausted
    POST /api/v1/consents/{id}/uses     spend one use for a message
    POST /api/v1/consents/{id}/returns  give back the use spent for a message whose registry
                                        failed (nothing was released)
        (all three: the body is a question signed by the consented service's provider, the answer a
        JWS signed by this service; see exchange.consent.messages)
    GET  /api/v1/revocations?after=&wait=&subscriber=
                                        the revocation feed, a page signed by this service
                                        (see exchange.consent.revocations)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from exchange import web
from exchange.consent.messages import sign_answer, sign_page, verify_query
from exchange.consent.revocations import MAX_WAIT, PAGE_SIZE, Subscribers
from exchange.consent.service import ConsentService
from exchange.consent.store import GrantRequest, Listed, Status, Terms, resolve
from exchange.errors import AccessDenied, Error, InvalidRequest, InvalidToken, NotFound
from exchange.http import install_error_handlers
from exchange.identifiers import unversioned
from exchange.identity.login import signed_in
from exchange.web.languages import N_

SITE = "Consent service"
MAX_QUESTION = 8 * 1024


def grant_request(fields: Any) -> GrantRequest:
    """A grant request from form or JSON fields, every value checked for type and range."""

    def number(name: str, default: int | None) -> int | None:
        raw = fields.get(name)
        if raw in (None, ""):
            return default
        if str(raw) == "unlimited" and name == "max_uses":
            return None
        try:
            return int(str(raw))
        except ValueError as exc:
            raise InvalidRequest(f"{name} must be a whole number", detail=name) from exc

    text = {k: fields.get(k) for k in ("consumer", "service", "purpose", "purpose_text")}
    missing = [k for k, v in text.items() if not isinstance(v, str) or not v]
    if missing:
        raise InvalidRequest(f"{missing[0]} is required", detail=missing[0])
    basis = fields.get("legal_basis")
    days = number("valid_days", 30)
    return GrantRequest(
        consumer=str(text["consumer"]),
        service=str(text["service"]),
        purpose_code=str(text["purpose"]),
        purpose_text=str(text["purpose_text"]),
        legal_basis=str(basis) if basis else None,
        valid_days=30 if days is None else days,
        max_uses=number("max_uses", 1),
        preview=str(fields.get("preview", "")).lower() in ("1", "true", "yes", "on"),
    )


def listed_json(item: Listed) -> dict[str, Any]:
    return {
        **item.status.as_json(),
        "consumer": item.consent.consumer,
        "service": item.consent.service,
        "purpose": item.consent.purpose.code,
        "notice": item.consent.notice,
        "valid_from": item.consent.nbf,
        "valid_until": item.consent.exp,
        "revoked_at": item.revoked_at.isoformat() if item.revoked_at else None,
    }


def create_app(service: ConsentService) -> Starlette:
    store, settings, clock = service.store, service.settings, service.clock
    subscribers = Subscribers()
    pages = web.Pages("exchange.consent")

    def fail_page(error: Error, back: str | None = "/") -> Response:
        return pages.failure(SITE, error, back=back)

    def terms_of(request: GrantRequest) -> Terms:
        configuration = service.trust.view().configuration
        terms = resolve(
            request,
            configuration,
            at=clock(),
            max_validity_days=settings.max_validity_days,
        )
        consumer, provider = request.consumer.rsplit("/", 1)[0], request.service.split("/")[:3]
        return replace(  # the names as the reader reads them, where the settings give them
            terms,
            consumer_name=settings.member_name(consumer, terms.consumer_name),
            provider_name=settings.member_name("/".join(provider), terms.provider_name),
            evidence_name=settings.evidence_name(terms.evidence_type),
        )

    def checked_return(terms: Terms, return_to: str) -> str:
        if not settings.return_allowed(terms.request.consumer, return_to):
            raise InvalidRequest(
                N_("this consumer may not send citizens back to that address"), detail="return_to"
            )
        return return_to

    async def bearer(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise InvalidToken("an ID token is required (Authorization: Bearer ...)")
        claims = await asyncio.to_thread(service.citizens.validate, token.strip(), at=clock())
        return str(claims["sub"])

    # Pages

    async def home(request: Request) -> Response:
        citizen = signed_in(request.session, at=clock())
        if citizen is None:
            return pages.page("signin.html", site=SITE, then="/")
        consents = await asyncio.to_thread(store.of, citizen.subject)
        return pages.page(
            "consents.html",
            site=SITE,
            citizen=citizen,
            consents=consents,
            csrf=web.csrf_token(request.session),
            evidence_name=lambda kind: settings.evidence_name(kind) or kind.replace("-", " "),
        )

    async def ask(request: Request) -> Response:
        citizen = signed_in(request.session, at=clock())
        if citizen is None:
            then = f"/grant?{request.url.query}"
            return RedirectResponse(f"/login?{urlencode({'then': then})}", status_code=303)
        fields = request.query_params
        try:
            terms = terms_of(grant_request(fields))
            checked_return(terms, str(fields.get("return_to", "")))
        except Error as error:
            return fail_page(error, back=None)
        return pages.page(
            "grant.html",
            site=SITE,
            citizen=citizen,
            terms=terms,
            fields=dict(fields),
            csrf=web.csrf_token(request.session),
        )

    async def confirm(request: Request) -> Response:
        citizen = signed_in(request.session, at=clock())
        try:
            form = await web.form(request)
            if citizen is None:
                raise InvalidToken(N_("your sign-in has ended; please start again"))
            web.check_csrf(request.session, form)
            terms = terms_of(grant_request(form))
            return_to = checked_return(terms, str(form.get("return_to", "")))
            if form.get("decision") != "grant":
                return pages.page(
                    "granted.html",
                    site=SITE,
                    citizen=citizen,
                    terms=terms,
                    return_to=return_to,
                    artefact=None,
                )
            consent, artefact = await asyncio.to_thread(store.grant, citizen.subject, terms)
        except Error as error:
            return fail_page(error)
        return pages.page(
            "granted.html",
            site=SITE,
            citizen=citizen,
            terms=terms,
            consent=consent,
            return_to=return_to,
            artefact=artefact,
        )

    async def revoke_page(request: Request) -> Response:
        citizen = signed_in(request.session, at=clock())
        try:
            form = await web.form(request)
            if citizen is None:
                raise InvalidToken(N_("your sign-in has ended; please sign in again"))
            web.check_csrf(request.session, form)
            await revoke(citizen.subject, request.path_params["consent_id"])
        except Error as error:
            return fail_page(error)
        return RedirectResponse("/", status_code=303)

    # Citizens' API

    async def api_terms(request: Request) -> Response:
        await bearer(request)
        terms = terms_of(grant_request(await _json(request)))
        return JSONResponse({"notice": terms.notice()})

    async def api_grant(request: Request) -> Response:
        subject = await bearer(request)
        terms = terms_of(grant_request(await _json(request)))
        consent, artefact = await asyncio.to_thread(store.grant, subject, terms)
        return JSONResponse(
            {"id": consent.jti, "artefact": artefact, "notice": consent.notice}, status_code=201
        )

    async def api_list(request: Request) -> Response:
        subject = await bearer(request)
        consents = await asyncio.to_thread(store.of, subject)
        return JSONResponse({"consents": [listed_json(c) for c in consents]})

    async def api_revoke(request: Request) -> Response:
        subject = await bearer(request)
        status = await revoke(subject, request.path_params["consent_id"])
        return JSONResponse(status.as_json())

    async def revoke(subject: str, consent_id: str) -> Status:
        status, seq = await asyncio.to_thread(store.revoke, subject, consent_id)
        if seq is not None:
            await subscribers.published(seq)
        return status

    # Providers

    async def question(request: Request, action: str) -> Response:
        consent_id = request.path_params["consent_id"]
        body = await web.bounded_body(request, MAX_QUESTION)
        if not body.isascii():
            raise InvalidRequest("a consent question is a compact JWS")
        member, asked = verify_query(
            body.decode("ascii"),
            consent_id=consent_id,
            action=action,
            view=service.trust.view(),
            at=clock(),
            skew=120,
        )
        consented, answer = await asyncio.to_thread(store.lookup, consent_id)
        # Only the consented service's provider may ask; anyone else learns nothing.
        if consented.rsplit("/", 2)[0] != member:
            raise NotFound("no such consent")
        if unversioned(str(asked["service"])) != consented:
            raise AccessDenied("the question names another service than the consent")
        if action == "use":
            answer = await asyncio.to_thread(
                store.redeem, consent_id, message_id=asked["message_id"], provider=member
            )
        elif action == "return":
            answer = await asyncio.to_thread(
                store.give_back, consent_id, message_id=asked["message_id"], provider=member
            )
        signed = sign_answer(service.signer, asked, answer.as_json(), clock())
        return Response(
            signed, media_type="application/jose", headers={"Cache-Control": "no-store"}
        )

    async def status(request: Request) -> Response:
        return await question(request, "status")

    async def revocations(request: Request) -> Response:
        after = int(_number(request.query_params.get("after", "0"), "after", whole=True))
        wait = min(_number(request.query_params.get("wait", "0"), "wait"), MAX_WAIT)
        subscriber = request.query_params.get("subscriber") or None
        nonce = request.query_params.get("nonce") or None
        for name, value in (("subscriber", subscriber), ("nonce", nonce)):
            if value is not None and len(value) > 255:
                raise InvalidRequest(f"{name} is at most 255 characters", detail=name)
        await subscribers.asked(subscriber, after)
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            since = subscribers.published_so_far
            page = await asyncio.to_thread(store.revocations, after, limit=PAGE_SIZE)
            remaining = deadline - asyncio.get_running_loop().time()
            if page.revoked or remaining <= 0:
                break
            # Woken at once by a revocation here; a replica's is found by the next read.
            await subscribers.wait(subscriber, since, min(remaining, 1.0))
        signed = sign_page(service.signer, settings.name, page, nonce, clock())
        return Response(
            signed, media_type="application/jose", headers={"Cache-Control": "no-store"}
        )

    async def use(request: Request) -> Response:
        return await question(request, "use")

    async def give_back(request: Request) -> Response:
        return await question(request, "return")

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "consent_service": settings.name})

    app = Starlette(
        routes=[
            Route("/", home),
            *web.sign_in_routes(service.login, pages=pages, site=SITE, clock=clock),
            Route("/grant", ask, methods=["GET"]),
            Route("/grant", confirm, methods=["POST"]),
            Route("/consents/{consent_id}/revoke", revoke_page, methods=["POST"]),
            Route("/api/v1/terms", api_terms, methods=["POST"]),
            Route("/api/v1/consents", api_grant, methods=["POST"]),
            Route("/api/v1/consents", api_list, methods=["GET"]),
            Route("/api/v1/consents/{consent_id}/revoke", api_revoke, methods=["POST"]),
            Route("/api/v1/consents/{consent_id}/status", status, methods=["POST"]),
            Route("/api/v1/consents/{consent_id}/uses", use, methods=["POST"]),
            Route("/api/v1/consents/{consent_id}/returns", give_back, methods=["POST"]),
            Route("/api/v1/revocations", revocations),
            Route("/health", health),
        ],
        middleware=[
            web.sessions(service.session_secret, cookie="consent_session", https=settings.https),
            web.languages.middleware(default=settings.default_language, https=settings.https),
        ],
    )
    install_error_handlers(app, page=fail_page)
    app.state.subscribers = subscribers  # who follows the feed (operators, tests)
    return app


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await web.bounded_body(request, web.MAX_FORM_BYTES))
    except ValueError as exc:
        raise InvalidRequest("the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _number(raw: str, name: str, *, whole: bool = False) -> float:
    """A non-negative number from a query parameter, in plain digits."""
    digits = raw.replace(".", "", 0 if whole else 1)
    if not (digits.isascii() and digits.isdigit()) or len(raw) > 18:
        raise InvalidRequest(f"{name} must be a non-negative number", detail=name)
    return int(raw) if whole else float(raw)
