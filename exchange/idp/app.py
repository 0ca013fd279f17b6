"""The development identity provider's HTTP face: discovery, JWKS, login page, token endpoint."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from exchange import web
from exchange.errors import InvalidRequest
from exchange.http import install_error_handlers
from exchange.idp.provider import IdentityProvider


def create_app(provider: IdentityProvider) -> Starlette:
    pages = web.Pages("exchange.idp")

    async def discovery(_: Request) -> JSONResponse:
        return JSONResponse(provider.discovery())

    async def jwks(_: Request) -> JSONResponse:
        return JSONResponse(provider.jwks())

    async def login_page(request: Request) -> Response:
        query = request.query_params
        client, redirect = query.get("client_id", ""), query.get("redirect_uri", "")
        if query.get("response_type") != "code" or "openid" not in query.get("scope", "").split():
            raise InvalidRequest("response_type=code and scope=openid are required")
        provider.check_client(client, redirect)
        return pages.page(
            "authorize.html",
            client=client,
            redirect=redirect,
            state=query.get("state", ""),
            nonce=query.get("nonce", ""),
            citizens=provider.citizens.values(),
            staff=provider.staff.values(),
        )

    async def login(request: Request) -> Response:
        form = await web.form(request)
        redirect = str(form.get("redirect_uri", ""))
        code = provider.authorize(
            client_id=str(form.get("client_id", "")),
            redirect_uri=redirect,
            citizen=str(form.get("citizen", "")),
            staff=str(form.get("staff", "")),
            nonce=str(form.get("nonce") or "") or None,
        )
        target = f"{redirect}?{urlencode({'code': code, 'state': str(form.get('state', ''))})}"
        return RedirectResponse(target, status_code=303)

    async def token(request: Request) -> JSONResponse:
        form = await web.form(request)
        if form.get("grant_type") != "authorization_code":
            raise InvalidRequest("grant_type must be authorization_code", detail="grant_type")
        answer = provider.token(
            code=str(form.get("code", "")),
            client_id=str(form.get("client_id", "")),
            redirect_uri=str(form.get("redirect_uri", "")),
        )
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    app = Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/authorize", login_page, methods=["GET"]),
            Route("/authorize", login, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/health", lambda _: JSONResponse({"status": "ok"})),
        ],
        middleware=[web.languages.middleware(https=provider.issuer.startswith("https://"))],
    )
    install_error_handlers(app)
    return app
