"""What the project's web pages share: autoescaped templates, security headers, sessions, CSRF.

The pages (citizen portal, consent service, preview at a provider gateway) run no script at all;
the content security policy says so. Forms that change anything carry a per-session CSRF token,
and session cookies are signed, HttpOnly and SameSite=Lax (Secure when served over HTTPS).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from exchange.errors import AccessDenied, Error, PayloadTooLarge
from exchange.identity.login import OidcLogin, remember

_templates = Environment(
    loader=PackageLoader("exchange.web", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["utc"] = lambda seconds: datetime.fromtimestamp(seconds, UTC).strftime(
    "%Y-%m-%d %H:%M UTC"
)

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action *; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def page(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def sessions(secret: bytes, *, cookie: str, https: bool, max_age: int = 3600) -> Middleware:
    return Middleware(
        SessionMiddleware,
        secret_key=secret.hex(),
        session_cookie=cookie,
        max_age=max_age,
        same_site="lax",
        https_only=https,
    )


def csrf_token(session: dict[str, Any]) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf(session: dict[str, Any], form: Mapping[str, Any]) -> None:
    expected, given = session.get("csrf"), form.get("csrf")
    if not (
        isinstance(expected, str)
        and isinstance(given, str)
        and hmac.compare_digest(expected, given)
    ):
        raise AccessDenied("the form is stale or was not sent from this site; please try again")


def message(site: str, heading: str, text: str, **context: Any) -> HTMLResponse:
    return page("message.html", site=site, heading=heading, text=text, **context)


def failure(site: str, error: Error, *, back: str | None = "/") -> HTMLResponse:
    shown = page(
        "message.html",
        status=error.status,
        site=site,
        heading="That did not work",
        kind="alert",
        text=error.message,
        detail=error.detail,
        back=back,
    )
    shown.headers["X-Road-Error"] = error.xroad_type  # people read the page, programs the type
    return shown


def local_path(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/``: sign-in never redirects elsewhere."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def sign_in_routes(login: OidcLogin, *, site: str, clock: Callable[[], datetime]) -> list[Route]:
    """``/login?then=``, ``/callback`` (from the issuer) and ``POST /logout``."""

    async def start(request: Request) -> Response:
        try:
            target = await login.start(
                request.session, then=local_path(request.query_params.get("then"))
            )
        except Error as error:
            return failure(site, error, back=None)
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
            return failure(site, error)
        request.session.clear()  # a new session for the signed-in citizen (no fixation)
        remember(request.session, citizen)
        return RedirectResponse(local_path(then), status_code=303)

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    return [
        Route("/login", start),
        Route("/callback", callback),
        Route("/logout", logout, methods=["POST"]),
    ]


MAX_FORM_BYTES = 64 * 1024
_LENGTH = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes '²'


async def bounded_body(request: Request, limit: int) -> bytes:
    """The body, if its declared length is at most ``limit`` (read before anyone is known)."""
    length = request.headers.get("content-length", "")
    if not _LENGTH.fullmatch(length) or int(length) > limit:
        raise PayloadTooLarge(f"the body must declare its length, at most {limit} bytes")
    return await request.body()


async def form(request: Request) -> FormData:
    """A posted form of at most 64 KiB and 100 fields, files refused."""
    await bounded_body(request, MAX_FORM_BYTES)
    return await request.form(max_files=0, max_fields=100, max_part_size=MAX_FORM_BYTES)
