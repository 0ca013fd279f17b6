"""A gateway that has no certificates yet: its consumer listener serves only the setup console.

``exchange gateway serve`` starts here when the data folder lacks a key or a certificate and the
console is on: staff sign in as at the full console, generate the keys, enrol with the one-time
code of the central authority (:mod:`~exchange.gateway.console.enrolling`), and ``enrolled`` is
called; the command then starts the gateway itself on the same ports. Meanwhile ``/health``
answers 503 (``not enrolled``) and every exchange a 503 X-Road error, so nothing mistakes the
gateway for one that can answer. The routes keep the full console's paths and rights
(:data:`ROUTES`), so links and bookmarks stay good after the start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from exchange import web
from exchange.errors import ServiceUnavailable
from exchange.gateway.changes import ChangeLog
from exchange.gateway.console import certificates, staff
from exchange.gateway.console.app import CONSOLE, PREFIX, PUBLIC, Guard, assemble
from exchange.gateway.console.enrolling import Enrolling, request_file
from exchange.gateway.settings import GatewaySettings
from exchange.http import install_error_handlers
from exchange.identity.login import OidcLogin
from exchange.web import staff as web_staff
from exchange.web.languages import gettext
from exchange.web.staff import Handler, Staff

NOT_ENROLLED = "this gateway is not enrolled yet: its staff enrol it in its console"
ROUTES: tuple[Guard, ...] = (
    Guard("GET", "/", "view", "overview"),
    Guard("GET", "/certificates", "view", "certificate_list"),
    Guard("POST", "/certificates/keys", "change", "generate_keys"),
    Guard("GET", "/certificates/signing.csr", "view", "signing_request"),
    Guard("GET", "/certificates/tls.csr", "view", "tls_request"),
    Guard("POST", "/certificates/enrol", "change", "enrol"),
    Guard("GET", "/changes", "view", "change_log"),
)
__all__ = ["NOT_ENROLLED", "PUBLIC", "ROUTES", "create_setup_app"]


def create_setup_app(
    settings: GatewaySettings,
    *,
    engine: Engine,
    login: OidcLogin,
    clock: Callable[[], datetime],
    enrolled: Callable[[], None],
    transport: httpx.BaseTransport | None = None,
    central: str | None = None,
) -> ASGIApp:
    """The consumer listener's app until the gateway is enrolled: the setup console under
    :data:`PREFIX`, and refusals elsewhere."""

    async def health(_: Request) -> JSONResponse:
        shown = {"gateway": settings.id, "replica": settings.replica}
        return JSONResponse({"status": "FAIL", "reason": "not enrolled", **shown}, status_code=503)

    async def exchange(_: Request) -> Response:
        raise ServiceUnavailable(NOT_ENROLLED)

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/r1/{rest:path}", exchange, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            Mount(
                PREFIX,
                app=create_setup_console_app(
                    settings,
                    engine=engine,
                    login=login,
                    clock=clock,
                    enrolled=enrolled,
                    transport=transport,
                    central=central,
                ),
            ),
        ]
    )
    install_error_handlers(app)
    return app


def create_setup_console_app(
    settings: GatewaySettings,
    *,
    engine: Engine,
    login: OidcLogin,
    clock: Callable[[], datetime],
    enrolled: Callable[[], None],
    transport: httpx.BaseTransport | None = None,
    central: str | None = None,
) -> ASGIApp:
    spec = settings.console
    pages = web.Pages("exchange.gateway.console")
    enrolling = Enrolling(
        settings=settings, engine=engine, clock=clock, transport=transport, central=central
    )
    kept_changes = ChangeLog(engine)

    def site() -> str:
        return f"{settings.id} · {gettext(CONSOLE)}"

    def page(template: str, request: Request, who: Staff, **context: Any) -> Response:
        return pages.page(
            template,
            site=site(),
            staff=who,
            csrf=web.csrf_token(request.session),
            prefix=PREFIX,
            signout_path=f"{PREFIX}/logout",
            setup=True,
            **context,
        )

    async def signed_in(request: Request) -> Staff | None:
        return staff.signed_in(request.session, at=clock())

    def guarded(guard: Guard, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return web_staff.guarded(handler, right=guard.right, prefix=PREFIX, who=signed_in)

    async def overview(request: Request, who: Staff, _: FormData | None) -> Response:
        return page(
            "setup.html",
            request,
            who,
            gateway_id=settings.id,
            state=enrolling.state(),
            purposes=certificates.PURPOSES,
            done=request.query_params.get("done"),
        )

    async def generate_keys(request: Request, who: Staff, _: FormData | None) -> Response:
        await asyncio.to_thread(enrolling.generate, who)
        return RedirectResponse(f"{PREFIX}/certificates?done=keys", status_code=303)

    async def signing_request(request: Request, who: Staff, _: FormData | None) -> Response:
        return await asyncio.to_thread(request_file, settings, "signing")

    async def tls_request(request: Request, who: Staff, _: FormData | None) -> Response:
        return await asyncio.to_thread(request_file, settings, "tls")

    async def enrol(request: Request, who: Staff, form: FormData | None) -> Response:
        raw = form.get("code", "") if form is not None else ""
        await asyncio.to_thread(enrolling.enrol, raw if isinstance(raw, str) else "", who)
        # Answered here, not redirected: this listener closes once the answer is sent, and the
        # gateway opens it again (the page says to come back in a moment).
        answer = page(
            "setup.html",
            request,
            who,
            gateway_id=settings.id,
            state=enrolling.state(),
            purposes=certificates.PURPOSES,
            done="enrolled",
        )
        if enrolling.state().enrolled:
            answer.background = BackgroundTask(enrolled)
        return answer

    async def change_log(request: Request, who: Staff, _: FormData | None) -> Response:
        shown, _total = await asyncio.to_thread(kept_changes.newest, limit=50)
        return page("changes.html", request, who, changes=shown, number=1, more=False)

    handlers: dict[str, Handler] = {
        "overview": overview,
        "certificate_list": overview,
        "generate_keys": generate_keys,
        "signing_request": signing_request,
        "tls_request": tls_request,
        "enrol": enrol,
        "change_log": change_log,
    }
    return assemble(
        ROUTES,
        handlers,
        guarded=guarded,
        login=login,
        spec=spec,
        settings=settings,
        clock=clock,
        pages=pages,
        site=site,
    )
