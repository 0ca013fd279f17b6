"""The central console's routes under ``/console``: each names the one right it needs
(:data:`ROUTES`); signing in and out (:data:`PUBLIC`) need none.

============  ========  =======  ======
right         operator  auditor  viewer
============  ========  =======  ======
``view``      yes       yes      yes     applications, members, certificates, versions, log
``change``    yes                        approve or reject applications (a member's with its
                                         gateway's enrolment code at once), issue enrolment codes,
                                         issue certificates from requests, revoke certificates
============  ========  =======  ======

An enrolment code (:mod:`exchange.central.enrolment`) is shown once, on the page that answers
the form that issued it, and never again: the authority keeps only its hash. A certificate
issued from a request pasted here (the offline path: a CSR carried from a gateway without a
connection) is shown with a link to download it.

A page asked without a signed-in staff member redirects to sign-in; a staff member whose roles
lack the right gets 403. Forms that change anything carry the session's CSRF token; every
change is written to the authority's change log with the operator as its actor
(``console:<subject>``), in the transaction that makes it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from exchange import keyfolder, web
from exchange.central import models
from exchange.central.applications import STATUSES, Applications
from exchange.central.certificates import REVOCATION_REASONS
from exchange.central.console import versions
from exchange.central.registry import check_gateway_address
from exchange.central.service import Central
from exchange.errors import InvalidRequest, NotFound
from exchange.identifiers import GatewayId, MemberId
from exchange.identity.login import OidcLogin
from exchange.web import staff
from exchange.web.languages import N_, gettext
from exchange.web.pages import HEADERS
from exchange.web.staff import Staff

PREFIX = "/console"
CONSOLE = N_("Central console")  # the site's name beside the instance's
WARN_AHEAD = timedelta(days=30)
RIGHTS: dict[str, frozenset[str]] = {
    "operator": frozenset({"view", "change"}),
    "auditor": frozenset({"view"}),
    "viewer": frozenset({"view"}),
}


@dataclass(frozen=True, slots=True)
class Guard:
    method: str
    path: str  # below PREFIX
    right: str
    name: str  # the handler's


ROUTES: tuple[Guard, ...] = (
    Guard("GET", "/", "view", "applications"),
    Guard("POST", "/applications/approve", "change", "approve"),
    Guard("POST", "/applications/reject", "change", "reject"),
    Guard("GET", "/members", "view", "members"),
    Guard("POST", "/members/enrolment-code", "change", "enrolment_code"),
    Guard("GET", "/certificates", "view", "certificates"),
    Guard("POST", "/certificates/issue", "change", "issue"),
    Guard("GET", "/certificates/pem", "view", "certificate_pem"),
    Guard("POST", "/certificates/revoke", "change", "revoke"),
    Guard("GET", "/configuration", "view", "configuration"),
    Guard("GET", "/trust-services", "view", "trust_services"),
    Guard("GET", "/changes", "view", "change_log"),
)
# Words of the data the pages show through ``translated``.
WORDS = (
    N_("pending"),
    N_("approved"),
    N_("rejected"),
    N_("member"),
    N_("subsystem"),
    N_("valid"),
    N_("expiring"),
    N_("expired"),
    N_("revoked"),
    N_("waiting"),
    N_("used"),
    N_("withdrawn"),
)
PROFILES = ("signing", "tls")
PUBLIC = (("GET", "/login"), ("GET", "/callback"), ("POST", "/logout"))

Handler = staff.Handler


def create_console_app(central: Central, *, login: OidcLogin) -> ASGIApp:
    """The console of ``central`` (mounted at :data:`PREFIX` on its listener)."""
    spec = central.settings.console
    registry = central.registry
    clock = registry.clock
    applications = Applications(registry=registry)
    pages = web.Pages("exchange.central.console")

    def site() -> str:
        return f"{registry.instance} · {gettext(CONSOLE)}"

    def page(template: str, request: Request, who: Staff, **context: Any) -> Response:
        return pages.page(
            template,
            site=site(),
            staff=who,
            csrf=web.csrf_token(request.session),
            prefix=PREFIX,
            signout_path=f"{PREFIX}/logout",
            done=request.query_params.get("done"),
            **context,
        )

    async def signed_in(request: Request) -> Staff | None:
        return staff.signed_in(request.session, RIGHTS, at=clock().timestamp())

    def guarded(guard: Guard, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return staff.guarded(handler, right=guard.right, prefix=PREFIX, who=signed_in)

    def field(form: FormData | None, name: str) -> str:
        value = form.get(name, "") if form is not None else ""
        return value.strip() if isinstance(value, str) else ""

    def number(form: FormData | None) -> int:
        raw = field(form, "application")
        return int(raw) if raw.isdigit() and len(raw) < 12 else 0

    async def applications_page(request: Request, who: Staff, _: FormData | None) -> Response:
        pending = await asyncio.to_thread(applications.list, "pending")
        decided = [
            a for a in await asyncio.to_thread(applications.list, None) if a.status != "pending"
        ]
        return page(
            "applications.html",
            request,
            who,
            pending=pending,
            decided=decided[:100],
            statuses=STATUSES,
        )

    async def approve(request: Request, who: Staff, form: FormData | None) -> Response:
        code, address = field(form, "gateway"), field(form, "address")
        asked = await asyncio.to_thread(applications.get, number(form))
        gateway = None
        if asked.kind == "member" and (code or address):
            # Checked before the decision, so that a mistyped gateway approves nothing.
            gateway = GatewayId(MemberId.parse(asked.identifier), code)
            check_gateway_address(address)
        await asyncio.to_thread(applications.approve, asked.id, actor=who.actor)
        if gateway is None:
            return RedirectResponse(f"{PREFIX}/?done=approved", status_code=303)
        issued = await asyncio.to_thread(
            central.enrolments.issue, gateway, address, actor=who.actor
        )
        return page("code.html", request, who, issued=issued)

    async def reject(request: Request, who: Staff, form: FormData | None) -> Response:
        await asyncio.to_thread(
            applications.reject, number(form), field(form, "reason"), actor=who.actor
        )
        return RedirectResponse(f"{PREFIX}/?done=rejected", status_code=303)

    async def members(request: Request, who: Staff, _: FormData | None) -> Response:
        listed = await asyncio.to_thread(registry.members)
        codes = await asyncio.to_thread(central.enrolments.codes)
        return page("members.html", request, who, members=listed, codes=codes)

    async def enrolment_code(request: Request, who: Staff, form: FormData | None) -> Response:
        member = MemberId.parse(field(form, "member"))
        gateway = GatewayId(member, field(form, "gateway"))
        issued = await asyncio.to_thread(
            central.enrolments.issue, gateway, field(form, "address"), actor=who.actor
        )
        # Answered here, not redirected: the code must not travel in a URL or be shown twice.
        return page("code.html", request, who, issued=issued)

    async def certificates(request: Request, who: Staff, _: FormData | None) -> Response:
        listed = await asyncio.to_thread(central.certificates.list)
        now = clock()
        rows = [
            (
                c,
                "revoked"
                if c.revoked_at
                else "expired"
                if c.not_after <= now
                else "expiring"
                if c.not_after - now <= WARN_AHEAD
                else "valid",
            )
            for c in reversed(listed)
        ]
        return page(
            "certificates.html",
            request,
            who,
            rows=rows,
            profiles=PROFILES,
            reasons=sorted(REVOCATION_REASONS),
            warn_days=WARN_AHEAD.days,
        )

    async def issue(request: Request, who: Staff, form: FormData | None) -> Response:
        profile, owner, csr = field(form, "profile"), field(form, "owner"), field(form, "csr")
        if profile == "signing":
            issued = await asyncio.to_thread(
                central.certificates.issue_signing, MemberId.parse(owner), csr, actor=who.actor
            )
        elif profile == "tls":
            issued = await asyncio.to_thread(
                central.certificates.issue_tls, GatewayId.parse(owner), csr, actor=who.actor
            )
        else:
            raise InvalidRequest("the purpose is signing or tls", detail="profile")
        return page("issued.html", request, who, issued=issued, profile=profile, owner=owner)

    async def certificate_pem(request: Request, who: Staff, _: FormData | None) -> Response:
        serial = request.query_params.get("serial", "")
        found = None
        if re.fullmatch(r"[0-9A-Fa-f]{1,64}", serial):
            found = await asyncio.to_thread(central.certificates.get, serial)
        if found is None:
            raise NotFound("no certificate with this serial", detail=serial[:64])
        return Response(
            found.pem,
            media_type="application/x-pem-file",
            headers={
                **HEADERS,
                "Content-Disposition": f'attachment; filename="{found.serial}.pem"',
            },
        )

    async def revoke(request: Request, who: Staff, form: FormData | None) -> Response:
        await asyncio.to_thread(
            central.certificates.revoke,
            field(form, "serial"),
            field(form, "reason"),
            actor=who.actor,
        )
        return RedirectResponse(f"{PREFIX}/certificates?done=revoked", status_code=303)

    async def configuration(request: Request, who: Staff, _: FormData | None) -> Response:
        kept = await asyncio.to_thread(versions.listed, registry)
        params = request.query_params
        older, newer = params.get("from", ""), params.get("to", "")
        lines = None
        if older.isdigit() and newer.isdigit() and len(older) < 10 and len(newer) < 10:
            lines = await asyncio.to_thread(versions.diff, registry, int(older), int(newer))
        elif len(kept) > 1:
            older, newer = str(kept[1].version), str(kept[0].version)
        return page(
            "configuration.html",
            request,
            who,
            versions=kept,
            older=older,
            newer=newer,
            lines=lines,
        )

    async def trust_services(request: Request, who: Staff, _: FormData | None) -> Response:
        consent = await asyncio.to_thread(central.certificates.consent_services)
        stamping = await asyncio.to_thread(_timestamping_authorities, central)
        return page("trust.html", request, who, consent=consent, stamping=stamping)

    async def change_log(request: Request, who: Staff, _: FormData | None) -> Response:
        raw = request.query_params.get("before", "")
        before = int(raw) if raw.isdigit() and len(raw) < 12 else None
        shown = await asyncio.to_thread(_newest_events, central, before)
        return page("changes.html", request, who, events=shown)

    handlers: dict[str, Handler] = {
        "applications": applications_page,
        "approve": approve,
        "reject": reject,
        "members": members,
        "enrolment_code": enrolment_code,
        "certificates": certificates,
        "issue": issue,
        "certificate_pem": certificate_pem,
        "revoke": revoke,
        "configuration": configuration,
        "trust_services": trust_services,
        "change_log": change_log,
    }
    routes = [
        *staff.staff_sign_in_routes(
            prefix=PREFIX,
            login=login,
            spec=spec,
            table=RIGHTS,
            where="the central console",
            clock=clock,
            signed_out=lambda: pages.message(
                site(),
                gettext(N_("Signed out")),
                gettext(N_("You have signed out of the central console.")),
                back=PREFIX + "/",
            ),
        ),
        *(
            Route(g.path, guarded(g, handlers[g.name]), methods=[g.method], name=g.name)
            for g in ROUTES
        ),
    ]
    return staff.console_app(
        routes,
        spec=spec,
        prefix=PREFIX,
        session_key=keyfolder.secret(central.settings.data_dir / "console-session.key"),
        cookie="central_console_session",
        failure=lambda error: pages.failure(site(), error, back=PREFIX + "/"),
    )


def _timestamping_authorities(central: Central) -> list[models.TimestampingAuthority]:
    table = models.TimestampingAuthority
    with central.registry.session() as session:
        return list(
            session.scalars(
                select(table).order_by(table.name).options(selectinload(table.certificate))
            )
        )


def _newest_events(central: Central, before: int | None) -> list[dict[str, Any]]:
    table = models.Event
    query = select(table).order_by(table.id.desc()).limit(100)
    if before is not None:
        query = query.where(table.id < before)
    with central.registry.session() as session:
        return [
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "subject": e.subject,
                "details": json.loads(e.details),
            }
            for e in session.scalars(query)
        ]
