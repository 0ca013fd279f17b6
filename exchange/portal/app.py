"""The citizen portal: an example consumer information system, as an ASGI app.

The citizen signs in through the OIDC issuer, starts a procedure that needs evidence another
agency holds, is sent to the consent service to agree in plain words, and comes back with the
signed artefact; the portal then fetches the evidence through its own gateway on the citizen's
behalf (``X-Road-UserId``, ``X-Exchange-Purpose``, ``X-Exchange-Consent``) and shows it. The
citizen uploads nothing.

"Who accessed my data" (``/usage``) gathers the citizen's usage records from the usage service of
every provider in the global configuration, through the same gateway and with the citizen's ID
token, and checks any record's receipt against the provider's signed, timestamped tree head
(and the witness's countersignature of it, or says that one is pending).
Releases are listed one by one; refused attempts apart, grouped by who asked for what. Citizens
read plain words; the codes and reasons behind them go to the log, for operators.

A citizen may ask to be e-mailed at each release of their data, or once a day
(``/notifications``; :mod:`exchange.portal.notices`); each e-mail links to the record's receipt
check (``/usage/receipt``).

Consent artefacts are kept in this process's memory per citizen and procedure: the portal is an
example; a production portal would keep them with its case files.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import structlog
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from audit.receipt import ReceiptCheck, verify_receipt
from audit.verify import Anchors
from exchange import keyfolder, web
from exchange.consent.artefact import Consent, verify
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import AccessDenied, Error, InvalidRequest, NotFound
from exchange.evidence.rows import flatten
from exchange.faults import mapped
from exchange.http import install_error_handlers
from exchange.identity.login import OidcLogin, SignedIn, signed_in
from exchange.portal.figures import PublicFigures, figure_routes
from exchange.portal.mail import Mailer
from exchange.portal.notices import MODES, Notices
from exchange.portal.ratings import Ratings, rating_route
from exchange.portal.settings import PortalSettings, Procedure
from exchange.trust.globalconf_client import GlobalConfClient, utcnow
from exchange.trust.view import TrustView, relying_party
from exchange.web import languages
from exchange.web.languages import N_, localised

log = structlog.get_logger(__name__)
SITE = "State Portal"
GONE = ("revoked", "expired", "exhausted", "not-yet-valid", "unknown")
# Words for citizens are written here in English and marked for the catalogues (``N_``); each
# page shows them in its reader's language.
PLAIN = {
    "revoked": N_("You revoked your consent, so the register was not asked."),
    "expired": N_("Your consent has expired, so the register was not asked."),
    "exhausted": N_("Your consent has been used as many times as you allowed."),
    "PreviewRefused": N_("You chose not to share this data, so nothing was sent."),
    "ConsentRequired": N_("The register needs your consent first."),
    "NotFound": N_("The register holds no such record about you."),
}
UNAVAILABLE = N_("The register could not provide it just now. Please try again later.")
BAD_ADDRESS = N_("That does not look like an e-mail address.")
ADDRESS_CONFIRMED = N_(
    "Thank you. From now on, e-mails about the use of your data go to this address."
)
LINK_NOT_VALID = N_(
    "This link is not valid: it was used already, or it is too old. To get a new one, save your "
    "choice again on the page where you asked to be told when your data is used."
)
_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;.]+")
# Why an attempt to obtain a citizen's data was refused, by the error code of the answer.
REFUSED = {
    "AccessDenied": N_("refused: they had no right to it"),
    "ConsentRequired": N_("refused: you had not given your consent"),
    "ConsentDenied": N_("refused: your consent did not allow it"),
    "PreviewRequired": N_("held until you looked at the data"),
    "PreviewRefused": N_("refused: you chose not to share it"),
    "NotFound": N_("the register holds no such record"),
}


def refused_because(outcome: str, status: object) -> str:
    """Why an attempt released nothing, in plain words."""
    known = REFUSED.get(outcome.rsplit(".", 1)[-1])
    if known:
        return known
    if isinstance(status, int) and status >= 500:
        return N_("not answered: the register had a fault")
    return N_("refused: the request was not valid")


@dataclass(frozen=True, slots=True)
class Usage:
    """What the registers' usage services say about one citizen, as the page shows it."""

    accesses: list[dict[str, Any]]  # each release, newest first
    attempts: list[dict[str, Any]]  # refused attempts, grouped by who asked for what and why
    unavailable: list[str]  # the registers that could not be asked just now


@dataclass(frozen=True, slots=True)
class Answer:
    """The gateway's answer to a fetch, as the procedure page shows it."""

    evidence: list[tuple[str, str]] | None = None
    preview_url: str | None = None
    error: str | None = None  # in plain words; the codes behind it are logged


class Portal:
    def __init__(
        self,
        settings: PortalSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        globalconf: GlobalConfClient | None = None,
        http: httpx.AsyncBaseTransport | None = None,
        blocking_http: httpx.BaseTransport | None = None,
    ) -> None:
        """``http`` reaches the portal's gateway and the identity provider, ``blocking_http``
        the identity provider's keys: the network unless transports are injected (tests)."""
        self.settings = settings
        self.clock = clock
        keyfolder.create(settings.data_dir)
        self.trust = relying_party(
            anchor=settings.anchor, data_dir=settings.data_dir, clock=clock, globalconf=globalconf
        )
        self.globalconf = self.trust.client
        identity = settings.identity
        self.login = OidcLogin(
            issuer=identity.issuer,
            client_id=identity.client_id,
            client_secret=identity.client_secret,
            redirect_uri=f"{settings.public_url.rstrip('/')}/callback",
            transport=http,
            keys_transport=blocking_http,
        )
        self.session_secret = keyfolder.secret(settings.data_dir / "session.key")
        self.consents: dict[tuple[str, str], str] = {}
        self.engine = build_engine(settings.db_url)
        migrate.upgrade("portal", self.engine)
        self.ratings = Ratings(self.engine, procedures=settings.procedures, clock=clock)
        self.notices: Notices | None = None
        if settings.notifications is not None:
            self.notices = Notices(
                self,
                settings.notifications,
                key=keyfolder.secret(settings.data_dir / "notices.key"),
                mailer=Mailer(settings.notifications),
                clock=clock,
                site=SITE,
            )
        # Its own gateway, over the network unless a transport is injected (tests).
        self.http = httpx.AsyncClient(
            base_url=settings.gateway_url,
            timeout=settings.timeout,
            follow_redirects=False,
            transport=http,
        )

    def consent_of(self, citizen: SignedIn, procedure: Procedure) -> Consent | None:
        artefact = self.consents.get((citizen.subject, procedure.code))
        if artefact is None:
            return None
        view = self.trust.view()
        try:
            return verify(artefact, view=view, at=self.clock())
        except Error:
            self.consents.pop((citizen.subject, procedure.code), None)
            return None

    def grant_url(self, procedure: Procedure) -> str:
        authority = self.trust.view().consent_service(self.settings.consent_service)
        query = {
            "consumer": self.settings.client,
            "service": procedure.consented_service,
            "purpose": procedure.purpose,
            "purpose_text": localised(procedure.purpose_text),
            "valid_days": str(procedure.valid_days),
            "max_uses": "unlimited" if procedure.max_uses is None else str(procedure.max_uses),
            "preview": "1" if procedure.preview else "",
            "return_to": f"{self.settings.public_url.rstrip('/')}/procedures/"
            f"{procedure.code}/consent",
            "lang": languages.current(),  # the consent service speaks the reader's language
        }
        if procedure.legal_basis:
            query["legal_basis"] = procedure.legal_basis
        return f"{authority.url}/grant?{urlencode(query)}"

    def accept(self, procedure: Procedure, artefact: str) -> Consent:
        """Keep an artefact the consent service posted back, if it is genuine and fits."""
        view = self.trust.view()
        consent = verify(artefact, view=view, at=self.clock())
        if (
            consent.consumer != self.settings.client
            or consent.service != procedure.consented_service
            or consent.purpose.code != procedure.purpose
        ):
            raise AccessDenied(N_("this consent is not for this procedure of this portal"))
        self.consents[(consent.sub, procedure.code)] = artefact
        return consent

    def _on_behalf_of(self, citizen: SignedIn, **more: str) -> dict[str, str]:
        """X-Road headers of a request this portal makes for ``citizen``."""
        return {"X-Road-Client": self.settings.client, "X-Road-UserId": citizen.subject, **more}

    async def fetch(self, citizen: SignedIn, procedure: Procedure, artefact: str) -> Answer:
        headers = self._on_behalf_of(
            citizen,
            **{
                "X-Exchange-Purpose": procedure.purpose,
                "X-Exchange-Consent": artefact,
                "Accept": "application/json",
            },
        )
        try:
            with mapped("the portal's gateway"):
                response = await self.http.get(
                    f"/r1/{procedure.service}", params={"person": citizen.subject}, headers=headers
                )
        except Error as error:
            log.warning("portal.fetch_failed", error_type=error.xroad_type, reason=error.message)
            return Answer(error=UNAVAILABLE)
        body = _json(response)
        if response.status_code == 200 and isinstance(body, dict):
            return Answer(evidence=flatten(body, label=self.settings.label))
        fault = body if isinstance(body, dict) else {}
        kind = str(fault.get("type", ""))
        if kind.endswith("PreviewRequired"):
            return Answer(preview_url=str(fault.get("detail") or ""))
        detail = str(fault.get("detail") or "")
        if kind.endswith("ConsentDenied") and detail in GONE:
            self.consents.pop((citizen.subject, procedure.code), None)
        log.info(
            "portal.fetch_refused",
            status=response.status_code,
            error_type=kind,
            detail=detail,
            reason=fault.get("message"),
        )
        return Answer(error=PLAIN.get(detail) or PLAIN.get(kind.rsplit(".", 1)[-1]) or UNAVAILABLE)

    def providers(self, view: TrustView) -> list[str]:
        """Every provider subsystem in the service catalogue: each keeps its own usage log."""
        return sorted(
            {"/".join(str(s.get("id", "")).split("/")[:4]) for s in view.configuration.services}
        )

    async def usage(self, citizen: SignedIn, provider: str) -> dict[str, list[dict[str, Any]]]:
        """``provider``'s answer: its ``usages`` and ``attempts`` about ``citizen``."""
        with mapped("the portal's gateway"):
            response = await self.http.get(
                f"/r1/{provider}/usage/v1/records",
                params={"userCode": citizen.subject},
                headers=self._on_behalf_of(citizen, **{"X-Exchange-Identity": citizen.id_token}),
            )
        body = _json(response)
        if response.status_code != 200 or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else None
            raise NotFound(str(message or f"HTTP {response.status_code}"))
        return {
            kind: [dict(u, provider=provider) for u in body.get(kind, []) if isinstance(u, dict)]
            for kind in ("usages", "attempts")
        }

    def provider_name(self, view: TrustView, provider: str) -> str:
        member = view.members.get(provider.rsplit("/", 1)[0])
        return member.name if member else provider

    async def all_usage(self, citizen: SignedIn) -> Usage:
        view = self.trust.view()
        providers = self.providers(view)
        found = await asyncio.gather(
            *(self.usage(citizen, p) for p in providers), return_exceptions=True
        )
        shown = Usage(accesses=[], attempts=[], unavailable=[])
        for provider, result in zip(providers, found, strict=True):
            name = self.provider_name(view, provider)
            if isinstance(result, BaseException):
                # Never the exception's text: it may hold the request's URL, with the person.
                reason = result.message if isinstance(result, Error) else type(result).__name__
                log.warning("portal.usage_unavailable", provider=provider, reason=reason)
                shown.unavailable.append(name)
                continue
            for usage in result["usages"]:
                shown.accesses.append(dict(usage, providerName=name))
            for attempt in result["attempts"]:
                why = refused_because(str(attempt.get("outcome", "")), attempt.get("status"))
                shown.attempts.append(dict(attempt, providerName=name, refused=why))
        shown.accesses.sort(key=lambda u: str(u.get("logtime", "")), reverse=True)
        shown.attempts.sort(key=lambda u: str(u.get("last", "")), reverse=True)
        return shown

    def anchors_for(self, view: TrustView, provider: str) -> Anchors:
        member = provider.rsplit("/", 1)[0]
        return Anchors(
            ca=view.ca,
            signing=[e.certificate for e in view.signing.values() if e.member == member],
            tsa=[
                x509.load_pem_x509_certificate(str(t["certificate"]).encode())
                for t in view.configuration.timestamping_authorities
            ],
            revoked=view.revoked,
        )

    async def check_receipt(
        self, citizen: SignedIn, provider: str, chain: str, seq: int
    ) -> ReceiptCheck:
        view = self.trust.view()
        if provider not in self.providers(view):
            raise InvalidRequest("no such provider in the global configuration")
        for usage in (await self.usage(citizen, provider))["usages"]:
            receipt = usage.get("receipt")
            if (
                isinstance(receipt, dict)
                and receipt.get("chain") == chain
                and receipt.get("seq") == seq
            ):
                anchors = self.anchors_for(view, provider)
                return await asyncio.to_thread(verify_receipt, receipt, anchors=anchors)
        return ReceiptCheck(False, "the provider no longer hands out a receipt for that record")

    @property
    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """The jobs the portal runs beside its pages."""
        jobs = [self.trust.keep_fresh(self.settings.globalconf_refresh)]
        if self.notices is not None:
            jobs.append(self.notices.run)
        return jobs

    async def close(self) -> None:
        await self.http.aclose()
        self.engine.dispose()


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def create_app(portal: Portal) -> Starlette:
    settings, clock = portal.settings, portal.clock
    pages = web.Pages("exchange.portal")

    def citizen_of(request: Request) -> SignedIn | None:
        return signed_in(request.session, at=clock())

    def sign_in_first(request: Request) -> Response:
        then = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?then={quote(then)}", status_code=303)

    def procedure_of(request: Request) -> Procedure:
        procedure = settings.procedure(request.path_params["code"])
        if procedure is None:
            raise NotFound(N_("there is no such procedure"))
        return procedure

    async def home(request: Request) -> Response:
        return pages.page(
            "home.html",
            site=SITE,
            citizen=citizen_of(request),
            procedures=settings.procedures,
            csrf=web.csrf_token(request.session),
        )

    def procedure_page(
        request: Request,
        citizen: SignedIn,
        procedure: Procedure,
        *,
        answer: Answer | None = None,
        status: int = 200,
    ) -> Response:
        consent = portal.consent_of(citizen, procedure)
        return pages.page(
            "procedure.html",
            status=status,
            site=SITE,
            citizen=citizen,
            procedure=procedure,
            consent=consent,
            grant_url=portal.grant_url(procedure) if consent is None else None,
            declined="declined" in request.query_params,
            answer=answer,
            csrf=web.csrf_token(request.session),
            rating=portal.ratings.form_for(request.session, procedure),
            here=f"/procedures/{procedure.code}",  # the language switch, after a fetch too
        )

    async def procedure(request: Request) -> Response:
        citizen = citizen_of(request)
        if citizen is None:
            return sign_in_first(request)
        try:
            return procedure_page(request, citizen, procedure_of(request))
        except Error as error:
            return pages.failure(SITE, error)

    async def consent_returned(request: Request) -> Response:
        # Posted by the consent service's page (another site, so no session cookie comes
        # along): the artefact is checked on its own merits, then the citizen comes back here.
        try:
            form = await web.form(request)
            chosen = procedure_of(request)
            if form.get("declined"):
                return RedirectResponse(f"/procedures/{chosen.code}?declined=1", status_code=303)
            portal.accept(chosen, str(form.get("consent", "")))
        except Error as error:
            return pages.failure(SITE, error)
        return RedirectResponse(f"/procedures/{chosen.code}", status_code=303)

    async def fetch(request: Request) -> Response:
        citizen = citizen_of(request)
        if citizen is None:
            return sign_in_first(request)
        try:
            form = await web.form(request)
            web.check_csrf(request.session, form)
            chosen = procedure_of(request)
            artefact = portal.consents.get((citizen.subject, chosen.code))
            if artefact is None or portal.consent_of(citizen, chosen) is None:
                return RedirectResponse(f"/procedures/{chosen.code}", status_code=303)
            answer = await portal.fetch(citizen, chosen, artefact)
            if answer.evidence is not None:
                portal.ratings.issue(request.session, chosen)
            return procedure_page(request, citizen, chosen, answer=answer)
        except Error as error:
            return pages.failure(SITE, error)

    async def usage(request: Request) -> Response:
        citizen = citizen_of(request)
        if citizen is None:
            return sign_in_first(request)
        try:
            found = await portal.all_usage(citizen)
        except Error as error:
            return pages.failure(SITE, error)
        return pages.page(
            "usage.html",
            site=SITE,
            citizen=citizen,
            usage=found,
            csrf=web.csrf_token(request.session),
            checked=None,
            notifications=portal.notices is not None,
        )

    async def verify_page(request: Request) -> Response:
        citizen = citizen_of(request)
        if citizen is None:
            return sign_in_first(request)
        try:
            form = await web.form(request)
            web.check_csrf(request.session, form)
        except Error as error:
            return pages.failure(SITE, error, back="/usage")
        return await receipt_checked(
            request,
            citizen,
            provider=str(form.get("provider", "")),
            chain=str(form.get("chain", "")),
            seq=str(form.get("seq", "")),
        )

    async def receipt_page(request: Request) -> Response:
        """The record an e-mail links to, its receipt checked (a read, like ``/usage``)."""
        citizen = citizen_of(request)
        if citizen is None:
            return sign_in_first(request)
        query = request.query_params
        return await receipt_checked(
            request,
            citizen,
            provider=query.get("provider", ""),
            chain=query.get("chain", ""),
            seq=query.get("seq", ""),
        )

    async def receipt_checked(
        request: Request, citizen: SignedIn, *, provider: str, chain: str, seq: str
    ) -> Response:
        """The citizen's usage with one record's receipt checked against its register's log."""
        try:
            if not seq.isascii() or not seq.isdigit() or len(seq) > 12:
                raise InvalidRequest("no such record", detail="seq")
            checked = await portal.check_receipt(citizen, provider, chain, int(seq))
            found = await portal.all_usage(citizen)
            register = portal.provider_name(portal.trust.view(), provider)
        except Error as error:
            return pages.failure(SITE, error, back="/usage")
        log.info("portal.receipt_checked", provider=provider, ok=checked.ok, result=checked.message)
        return pages.page(
            "usage.html",
            site=SITE,
            citizen=citizen,
            usage=found,
            csrf=web.csrf_token(request.session),
            checked={
                "chain": chain,
                "seq": int(seq),
                "ok": checked.ok,
                "timestamped": checked.timestamped,
                "witnessed": checked.witnessed,
                "register": register,
            },
            here="/usage",
            notifications=portal.notices is not None,
        )

    def notifications_page(
        request: Request, citizen: SignedIn, notices: Notices, **shown: Any
    ) -> Response:
        return pages.page(
            "notifications.html",
            status=400 if shown.get("problem") else 200,
            site=SITE,
            citizen=citizen,
            subscription=notices.subscription(citizen.subject),
            csrf=web.csrf_token(request.session),
            here="/notifications",
            unreachable=shown.pop("unreachable", []),
            **shown,
        )

    async def notifications(request: Request) -> Response:
        citizen, notices = citizen_of(request), portal.notices
        if notices is None:
            return pages.failure(SITE, NotFound(N_("there is no such page")))
        if citizen is None:
            return sign_in_first(request)
        if request.method == "GET":
            return notifications_page(request, citizen, notices)
        try:
            form = await web.form(request)
            web.check_csrf(request.session, form)
            address, mode = str(form.get("address", "")).strip(), str(form.get("mode", ""))
            if not _ADDRESS.fullmatch(address) or len(address) > 254:
                return notifications_page(request, citizen, notices, problem=BAD_ADDRESS)
            if mode not in MODES:
                raise InvalidRequest("mode must be each or daily", detail="mode")
            saved = await notices.subscribe(
                citizen, address=address, mode=mode, language=languages.current()
            )
        except Error as error:
            return pages.failure(SITE, error, back="/notifications")
        return notifications_page(
            request,
            citizen,
            notices,
            saved=True,
            unreachable=saved.unreachable,
            confirmation=saved.confirmation,
        )

    async def confirm_address(request: Request) -> Response:
        """The link e-mailed to a new address: a page whose button confirms it (a mail
        system that fetches links to scan them confirms nothing). No sign-in: the link may be
        opened on another device; the token is the proof."""
        notices = portal.notices
        if notices is None:
            return pages.failure(SITE, NotFound(N_("there is no such page")))
        if request.method == "GET":
            token = request.query_params.get("token", "")
            return pages.page(
                "confirm.html",
                site=SITE,
                token=token,
                csrf=web.csrf_token(request.session),
                here=f"/notifications/confirm?{urlencode({'token': token})}",
            )
        try:
            form = await web.form(request)
            web.check_csrf(request.session, form)
            token = str(form.get("token", ""))
            if not (0 < len(token) <= 128 and await asyncio.to_thread(notices.confirm, token)):
                raise InvalidRequest(LINK_NOT_VALID, detail="token")
        except Error as error:
            return pages.failure(SITE, error, back="/notifications")
        return pages.message(
            SITE,
            languages.gettext(N_("Your address is confirmed")),
            languages.gettext(ADDRESS_CONFIRMED),
            kind="success",
            back="/notifications",
        )

    async def stop_notifications(request: Request) -> Response:
        citizen, notices = citizen_of(request), portal.notices
        if notices is None:
            return pages.failure(SITE, NotFound(N_("there is no such page")))
        if citizen is None:
            return sign_in_first(request)
        try:
            form = await web.form(request)
            web.check_csrf(request.session, form)
            await notices.unsubscribe(citizen)
        except Error as error:
            return pages.failure(SITE, error, back="/notifications")
        return notifications_page(request, citizen, notices, stopped=True)

    async def health(_: Request) -> Response:
        return Response('{"status":"ok"}', media_type="application/json")

    app = Starlette(
        routes=[
            Route("/", home),
            *web.sign_in_routes(portal.login, pages=pages, site=SITE, clock=clock),
            Route("/procedures/{code}", procedure, methods=["GET"]),
            Route("/procedures/{code}/consent", consent_returned, methods=["POST"]),
            Route("/procedures/{code}/fetch", fetch, methods=["POST"]),
            Route("/usage", usage, methods=["GET"]),
            Route("/usage/verify", verify_page, methods=["POST"]),
            Route("/usage/receipt", receipt_page, methods=["GET"]),
            Route("/notifications", notifications, methods=["GET", "POST"]),
            Route("/notifications/stop", stop_notifications, methods=["POST"]),
            Route("/notifications/confirm", confirm_address, methods=["GET", "POST"]),
            rating_route(portal.ratings, settings=settings, pages=pages, site=SITE, clock=clock),
            *(
                figure_routes(
                    PublicFigures(portal, clock=clock), portal=portal, pages=pages, site=SITE
                )
                if settings.figures
                else []
            ),
            Route("/health", health),
        ],
        middleware=[
            web.sessions(portal.session_secret, cookie="portal_session", https=settings.https),
            languages.middleware(default=settings.default_language, https=settings.https),
        ],
    )
    install_error_handlers(app, page=lambda error: pages.failure(SITE, error))
    return app
