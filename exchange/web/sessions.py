"""Sessions of the web pages and the CSRF token of their forms.

Session cookies are signed, HttpOnly and SameSite=Lax (Secure when served over HTTPS). Forms that
change anything carry a per-session CSRF token, compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware

from exchange.errors import AccessDenied
from exchange.web.languages import N_


def sessions(
    secret: bytes, *, cookie: str, https: bool, max_age: int = 3600, path: str = "/"
) -> Middleware:
    """``path``: the cookie is sent only below it (a console mounted under ``/console``)."""
    return Middleware(
        SessionMiddleware,
        secret_key=secret.hex(),
        session_cookie=cookie,
        max_age=max_age,
        path=path,
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
        raise AccessDenied(N_("the form is stale or was not sent from this site; please try again"))
