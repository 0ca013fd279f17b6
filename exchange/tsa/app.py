"""The timestamping authority's HTTP face (RFC 3161 section 3.4: POST a query, get a reply)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange.errors import UnsupportedMediaType
from exchange.http import install_error_handlers
from exchange.tsa.tokens import MAX_REQUEST_BYTES, Authority

QUERY = "application/timestamp-query"
REPLY = "application/timestamp-reply"


def create_app(authority: Authority, *, clock: Callable[[], datetime]) -> Starlette:
    async def stamp(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != QUERY:
            raise UnsupportedMediaType(f"send {QUERY}", detail="Content-Type")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                break  # the authority answers an oversized query with a rejection
        return Response(authority.respond(body, at=clock()), media_type=REPLY)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "policy": authority.policy})

    app = Starlette(routes=[Route("/", stamp, methods=["POST"]), Route("/health", health)])
    install_error_handlers(app)
    return app
