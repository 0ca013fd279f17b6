"""The development identity provider's HTTP face: discovery, JWKS, login page, token endpoint."""

from __future__ import annotations

import html
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from exchange import web
from exchange.errors import InvalidRequest
from exchange.http import install_error_handlers
from exchange.idp.provider import IdentityProvider

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in (test identities)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}
button{{display:block;width:100%;margin:.5rem 0;padding:.8rem;font-size:1rem;text-align:left}}
small{{color:#555}}</style></head>
<body><h1>Sign in</h1>
<p>This is the development identity provider. Choose a test citizen to sign in to
<strong>{client}</strong>.</p>
<form method="post" action="authorize">
<input type="hidden" name="client_id" value="{client}">
<input type="hidden" name="redirect_uri" value="{redirect}">
<input type="hidden" name="state" value="{state}">
<input type="hidden" name="nonce" value="{nonce}">
{buttons}
</form></body></html>"""


def create_app(provider: IdentityProvider) -> Starlette:
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
        buttons = "\n".join(
            f'<button name="citizen" value="{html.escape(c.code)}">{html.escape(c.given_name)} '
            f"{html.escape(c.family_name)} <small>{html.escape(c.code)}</small></button>"
            for c in provider.citizens.values()
        )
        page = PAGE.format(
            client=html.escape(client),
            redirect=html.escape(redirect),
            state=html.escape(query.get("state", "")),
            nonce=html.escape(query.get("nonce", "")),
            buttons=buttons,
        )
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    async def login(request: Request) -> Response:
        form = await web.form(request)
        redirect = str(form.get("redirect_uri", ""))
        code = provider.authorize(
            client_id=str(form.get("client_id", "")),
            redirect_uri=redirect,
            citizen=str(form.get("citizen", "")),
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
        ]
    )
    install_error_handlers(app)
    return app
