"""What a staff console shares (a gateway's and the central authority's): its settings, who is
signed in and with which roles, and the headers on every answer.

Staff sign in at an OIDC issuer; the values of the ``role_claim`` in their ID token name their
roles through ``roles`` (a value not listed gives nothing, and a token that gives no role signs
nobody in). Each console has its own table of rights per role; a signed-in :class:`Staff`
carries the rights its roles give in that console.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, model_validator
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.errors import AccessDenied, Error, Unauthenticated
from exchange.http import install_error_handlers
from exchange.identity.login import OidcLogin
from exchange.settings_file import Strict
from exchange.web import languages
from exchange.web.forms import form
from exchange.web.languages import N_, SOURCE, Language
from exchange.web.pages import HEADERS
from exchange.web.sessions import check_csrf, sessions
from exchange.web.signin import local_path

StaffRole = Literal["operator", "auditor", "viewer"]
STAFF_ROLES: tuple[StaffRole, ...] = ("operator", "auditor", "viewer")
ROLE_NAMES = (N_("operator"), N_("auditor"), N_("viewer"))  # as pages show them
SESSION_KEY = "staff"
Rights = Mapping[str, frozenset[str]]  # role -> the rights it gives in one console


def loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (a name other than localhost is not known to be)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def stays_local(console: ConsoleSpec, host: str, *, where: str, setting: str) -> None:
    """Refuse a console on a listener bound to a non-loopback address unless allowed: it
    changes who may do what, and should be reached only by staff."""
    if console.enabled and not console.allow_public and not loopback(host):
        raise ValueError(
            f"the console is served on {where}, bound to {host}, which is not a loopback"
            f" address: set {setting} to serve it there anyway (behind TLS and a firewall that"
            " admits only staff)"
        )


class ConsoleSpec(Strict):
    """A staff console's sign-in: off by default; when on, it names its issuer and client."""

    enabled: bool = False
    allow_public: bool = Field(
        default=False,
        description="serve it although its listener is bound to a non-loopback address",
    )
    public_url: str | None = Field(
        default=None, description="the listener serving the console as staff's browsers reach it"
    )
    issuer: str | None = None
    jwks_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    role_claim: str = "roles"
    roles: dict[str, list[StaffRole]] = Field(
        default_factory=lambda: {str(role): [role] for role in STAFF_ROLES},
        description="a value of the role claim -> the console roles it gives",
    )
    session_lifetime: int = Field(default=3600, gt=0, le=86400, description="seconds")
    default_language: Language = SOURCE

    @model_validator(mode="after")
    def _complete(self) -> ConsoleSpec:
        if self.enabled:
            missing = [
                name
                for name in ("public_url", "issuer", "jwks_url", "client_id")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"an enabled [console] needs {', '.join(missing)}")
        return self


@dataclass(frozen=True, slots=True)
class Staff:
    subject: str
    name: str
    roles: tuple[str, ...]
    expires: int  # Unix time the session ends
    rights: frozenset[str] = frozenset()  # what the roles give in this console

    @property
    def actor(self) -> str:
        """How a change log names this member's changes."""
        return f"console:{self.subject}"

    def may(self, right: str) -> bool:
        return right in self.rights

    def require(self, right: str) -> None:
        if not self.may(right):
            raise AccessDenied(
                f"your roles ({', '.join(self.roles)}) do not allow this ({right})", detail=right
            )


def rights_of(roles: Sequence[str], table: Rights) -> frozenset[str]:
    return frozenset(right for role in roles for right in table.get(role, ()))


def roles_of(claims: Mapping[str, Any], spec: ConsoleSpec) -> tuple[str, ...]:
    """The console roles an ID token's claims give (none if its role claim lists none known)."""
    raw = claims.get(spec.role_claim)
    values: Sequence[object] = (
        [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    )
    found = {
        role for value in values if isinstance(value, str) for role in spec.roles.get(value, [])
    }
    return tuple(sorted(found))


def from_claims(
    claims: Mapping[str, Any], spec: ConsoleSpec, table: Rights, *, until: int, where: str
) -> Staff:
    roles = roles_of(claims, spec)
    if not roles:
        raise AccessDenied(f"your sign-in gives you no role in {where}")
    subject = str(claims["sub"])
    return Staff(subject, str(claims.get("name") or subject), roles, until, rights_of(roles, table))


def remember(session: dict[str, Any], staff: Staff) -> None:
    session[SESSION_KEY] = {
        "sub": staff.subject,
        "name": staff.name,
        "roles": list(staff.roles),
        "exp": staff.expires,
    }


def signed_in(session: dict[str, Any], table: Rights, *, at: float) -> Staff | None:
    """Who the session says is signed in (``at``: Unix time now), or None once it has ended."""
    raw = session.get(SESSION_KEY)
    if not isinstance(raw, dict) or int(raw.get("exp", 0)) <= at:
        session.pop(SESSION_KEY, None)
        return None
    roles = tuple(raw["roles"])
    return Staff(str(raw["sub"]), str(raw["name"]), roles, int(raw["exp"]), rights_of(roles, table))


class SecurityHeaders:
    """Every answer of a console (pages, redirects, JSON, files) with the pages' headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(
                        (name.lower().encode(), value.encode())
                        for name, value in HEADERS.items()
                        if name.lower().encode() not in present
                    ),
                ]
            await send(message)

        await self.app(scope, receive, send_with)


# A console page or API call: the request, who is signed in, and the form of a POST (its CSRF
# token checked).
Handler = Callable[[Request, Staff, FormData | None], Awaitable[Response]]


def guarded(
    handler: Handler,
    *,
    right: str,
    prefix: str,
    who: Callable[[Request], Awaitable[Staff | None]],
    api: bool = False,
    keep_query: bool = False,
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of a console route that needs ``right``. Nobody signed in (``who``): a
    page sends the browser to sign in and back (``keep_query``: with its query), an API call
    (``api``) is refused 401; a right the staff member lacks is 403; a POST's form is read and
    its CSRF token checked before ``handler`` sees it."""

    async def endpoint(request: Request) -> Response:
        member = await who(request)
        if member is None:
            if api:
                raise Unauthenticated(
                    "sign in to the console, or send a staff ID token as a bearer token"
                )
            then = request.url.path if request.method == "GET" else prefix + "/"
            if keep_query and request.method == "GET" and request.url.query:
                then += "?" + request.url.query
            return RedirectResponse(f"{prefix}/login?then={quote(then, safe='/')}", status_code=303)
        member.require(right)
        posted = None
        if request.method == "POST":
            posted = await form(request)
            check_csrf(request.session, posted)
        return await handler(request, member, posted)

    return endpoint


def staff_sign_in_routes(
    *,
    prefix: str,
    login: OidcLogin,
    spec: ConsoleSpec,
    table: Rights,
    where: str,
    clock: Callable[[], datetime],
    signed_out: Callable[[], Response],
) -> list[Route]:
    """A console's ``/login``, ``/callback`` and ``/logout`` (a form with the CSRF token): staff
    sign in at the issuer, their roles from the token, a new session; never sent off the
    console (``prefix``)."""

    def inside(then: str | None) -> str:
        path = local_path(then)
        return path if path.startswith(prefix) else prefix + "/"

    async def sign_in(request: Request) -> Response:
        target = await login.start(request.session, then=inside(request.query_params.get("then")))
        return RedirectResponse(target, status_code=303)

    async def callback(request: Request) -> Response:
        query = request.query_params
        signed, then = await login.finish(
            request.session, code=query.get("code", ""), state=query.get("state", ""), at=clock()
        )
        until = int(clock().timestamp()) + spec.session_lifetime
        who = from_claims(signed.claims, spec, table, until=until, where=where)
        request.session.clear()  # a new session for the signed-in member (no fixation)
        remember(request.session, who)
        return RedirectResponse(inside(then), status_code=303)

    async def sign_out(request: Request) -> Response:
        check_csrf(request.session, await form(request))
        request.session.clear()
        return signed_out()

    return [
        Route("/login", sign_in, methods=["GET"]),
        Route("/callback", callback, methods=["GET"]),
        Route("/logout", sign_out, methods=["POST"]),
    ]


def console_app(
    routes: Sequence[BaseRoute],
    *,
    spec: ConsoleSpec,
    prefix: str,
    session_key: bytes,
    cookie: str,
    failure: Callable[[Error], Response],
) -> ASGIApp:
    """A console's app: its routes behind a session cookie of its own (scoped to ``prefix``),
    each reader's language, X-Road errors shown as ``failure`` pages, the security headers."""
    https = bool(spec.public_url and spec.public_url.startswith("https://"))
    app = Starlette(
        routes=list(routes),
        middleware=[
            sessions(
                session_key, cookie=cookie, https=https, max_age=spec.session_lifetime, path=prefix
            ),
            languages.middleware(default=spec.default_language, https=https),
        ],
    )
    install_error_handlers(app, page=failure)
    return SecurityHeaders(app)
