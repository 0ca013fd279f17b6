"""The sign-in routes every citizen-facing site mounts: to the OIDC issuer and back, and out.

Signing out is a form like any other that changes something: it carries the session's CSRF
token (the ``signout.html`` partial), so another site cannot sign a citizen out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from exchange.errors import Error
from exchange.identity.login import OidcLogin, remember
from exchange.web.forms import form
from exchange.web.pages import Pages
from exchange.web.sessions import check_csrf


def local_path(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/``: sign-in never redirects elsewhere."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def sign_in_routes(
    login: OidcLogin, *, pages: Pages, site: str, clock: Callable[[], datetime]
) -> list[Route]:
    """``/login?then=``, ``/callback`` (from the issuer) and ``POST /logout``."""

    async def start(request: Request) -> Response:
        try:
            target = await login.start(
                request.session, then=local_path(request.query_params.get("then"))
            )
        except Error as error:
            return pages.failure(site, error, back=None)
        return RedirectResponse(target, status_code=303)

    async def callback(request: Request) -> Response:
        query = request.query_params
        try:
            citizen, then = await login.finish(
                request.session,
                code=query.get("code", ""),
                state=query.get("state", ""),
                at=clock(),
            )
        except Error as error:
            return pages.failure(site, error)
        request.session.clear()  # a new session for the signed-in citizen (no fixation)
        remember(request.session, citizen)
        return RedirectResponse(local_path(then), status_code=303)

    async def logout(request: Request) -> Response:
        try:
            check_csrf(request.session, await form(request))
        except Error as error:
            return pages.failure(site, error)
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    return [
        Route("/login", start),
        Route("/callback", callback),
        Route("/logout", logout, methods=["POST"]),
    ]
