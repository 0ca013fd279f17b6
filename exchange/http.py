"""HTTP plumbing shared by every role's ASGI app: one error boundary for the whole tree.

:func:`install_error_handlers` makes any Starlette app (FastAPI's too) answer every error as
X-Road does: the body ``{"type", "message", "detail"}`` with the type also in the
``X-Road-Error`` header. Errors of the tree keep their status and type; Starlette's own (no such
path, a method the path does not take) get theirs from the tree by status; library exceptions
get theirs from :mod:`exchange.faults`; anything else is logged and leaves as an opaque
``Server.InternalError``. Web pages may show people a page instead of the body; it carries the
header too. A request the HTTP server cannot even parse is answered in the same form
(:mod:`exchange.serving`).

Bodies are read with a cap: :func:`read_body` refuses (413) a declared length over the cap before
reading anything and a streamed body as soon as it passes the cap. :class:`Guard` puts that, and
a check of who is calling, in front of an app whose framework reads bodies by itself (FastAPI
reads and parses a body before it resolves any dependency, authentication included).
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.errors import (
    AccessDenied,
    Conflict,
    Error,
    InvalidRequest,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    Unauthenticated,
    UnsupportedMediaType,
)
from exchange.faults import error_of
from exchange.logging import failure

if TYPE_CHECKING:
    from fastapi.exceptions import RequestValidationError

# FastAPI is imported only where its app is built (the central authority's API): the gateways,
# consent service and portal are plain Starlette and save its ~12 MB per process.

log = structlog.get_logger(__name__)
Page = Callable[[Error], Response]
_LENGTH = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also takes '²'
_SECONDS = re.compile(r"[0-9]{1,9}")  # up to 31 years: a longer wait is no instruction

_BY_STATUS: dict[int, type[Error]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: AccessDenied,
    404: NotFound,
    405: MethodNotAllowed,
    406: NotAcceptable,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def xroad_type(error: Error, side: str | None = None) -> str:
    """The error type as the caller sees it.

    ``side`` is where a gateway raised it: ``"ClientProxy"`` (consumer gateway; the caller's own
    mistakes stay ``Client.*``) or ``"ServerProxy"`` (provider gateway).
    """
    if side is None or (side == "ClientProxy" and error.is_client_fault):
        return error.xroad_type
    return f"Server.{side}.{error.code}"


def error_body(error: Error, side: str | None = None) -> dict[str, str | None]:
    return {"type": xroad_type(error, side), "message": error.message, "detail": error.detail}


def error_response(error: Error, side: str | None = None) -> JSONResponse:
    body = error_body(error, side)
    headers = {"X-Road-Error": body["type"] or ""}
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, QuotaExceeded):
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(body, status_code=error.status, headers=headers)


def install_error_handlers(
    app: Starlette, *, side: str | None = None, page: Page | None = None
) -> None:
    """Answer every error of ``app`` as X-Road does.

    ``side``: the gateway listener's side (see :func:`xroad_type`). ``page``: the site's error
    page, shown to a browser (a request that accepts ``text/html``) instead of the body.
    """

    def answer(request: Request, error: Error, status: int | None = None) -> Response:
        if page is not None and "text/html" in request.headers.get("accept", ""):
            response = page(error)
            response.headers["X-Road-Error"] = xroad_type(error, side)
            if isinstance(error, QuotaExceeded):
                response.headers["Retry-After"] = str(error.retry_after)
        else:
            response = error_response(error, side)
        if status is not None:
            response.status_code = status
        return response

    async def on_error(request: Request, exc: Exception) -> Response:
        error = error_of(exc)  # not an Error: translated or InternalError, caused by exc
        if error.status >= 500:
            failure(
                log,
                "request.failed" if error is exc else "request.crashed",
                error_type=xroad_type(error, side),
                message=error.message if error is exc else request.url.path,
                cause=error.__cause__,
            )
        return answer(request, error)

    async def on_http(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, HTTPException):
            raise TypeError(f"not an HTTPException: {exc!r}")
        kind = _BY_STATUS.get(exc.status_code, InvalidRequest if exc.status_code < 500 else Error)
        response = answer(request, kind(str(exc.detail)), exc.status_code)
        response.headers.update(exc.headers or {})  # Allow on a 405
        return response

    app.add_exception_handler(Error, on_error)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_error)
    if "fastapi" in sys.modules:  # not imported: not a FastAPI app, nothing to validate
        from fastapi import FastAPI
        from fastapi.exceptions import RequestValidationError

        async def on_validation(request: Request, exc: Exception) -> Response:
            if not isinstance(exc, RequestValidationError):
                raise TypeError(f"not a RequestValidationError: {exc!r}")
            return answer(request, _invalid(exc))

        if isinstance(app, FastAPI):
            app.add_exception_handler(RequestValidationError, on_validation)


def _invalid(exc: RequestValidationError) -> InvalidRequest:
    """The first complaint of FastAPI's validation, naming the field."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = (
        f"{where}: {first.get('msg', 'invalid value')}" if where else "request body is invalid"
    )
    return InvalidRequest(message, detail=where or None)


def declared_length(content_length: str | None) -> int | None:
    """The length a ``Content-Length`` value declares; ``None`` if there is none (or it is not
    plain digits, which the HTTP server refuses anyway): then only counting the body tells."""
    if content_length is None or not _LENGTH.fullmatch(content_length):
        return None
    return int(content_length)


def retry_after(status: int, value: str | None) -> int | None:
    """The seconds a ``429`` answer's ``Retry-After`` says to wait, when it says so in whole
    seconds (RFC 9110 10.2.3), and at least one: a ``0`` must not make a loop of anyone's
    retries (this tree never sends one). A date, a fraction, a sign or more than nine digits is
    no instruction, and neither is the header on any other status."""
    if status != 429 or value is None or not _SECONDS.fullmatch(value):
        return None
    return max(int(value), 1)


async def read_body(
    stream: AsyncIterable[bytes], *, content_length: str | None, max_bytes: int
) -> bytes:
    """Read a body, refusing (413) as soon as it is known to exceed ``max_bytes``: at once when
    its declared length does, else when the bytes counted so far do."""
    _check_declared(content_length, max_bytes)
    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    return bytes(body)


async def receive_body(receive: Receive, *, content_length: str | None, max_bytes: int) -> bytes:
    """:func:`read_body` of a request's body taken straight from the server's ``receive`` (no
    stream object around it: a body mostly arrives in one message). A client that hangs up
    first raises Starlette's ``ClientDisconnect``, as its request stream does."""
    _check_declared(content_length, max_bytes)
    pieces: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise ClientDisconnect()
        if kind != "http.request":
            continue
        piece = message.get("body", b"")
        size += len(piece)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
        if not message.get("more_body", False):
            return b"".join((*pieces, piece)) if pieces else piece
        pieces.append(piece)


def _check_declared(content_length: str | None, max_bytes: int) -> None:
    declared = declared_length(content_length)
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")


class Guard:
    """ASGI middleware that answers before an app reads a body it should not.

    First ``admit(request)`` (it raises an :class:`Error`, e.g. :class:`Unauthenticated`, for a
    request it refuses, and must not read the body); then the body is read with
    :func:`read_body`. Only then does the app run, with the body handed over whole, so no parser
    behind it meets more than ``max_bytes``. Refusals are answered here, in the error boundary's
    form (the body and the ``X-Road-Error`` header).

    ``reads_itself``: path prefixes of apps mounted behind it that read their bodies themselves,
    capped, after checks of their own (a site's form, whose refusals are pages in the visitor's
    language): they are admitted and passed on with the body unread.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        admit: Callable[[Request], None] | None = None,
        reads_itself: tuple[str, ...] = (),
    ) -> None:
        self.app, self.max_bytes, self.admit = app, max_bytes, admit
        self.reads_itself = reads_itself

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            if self.admit is not None:
                self.admit(request)
            path = scope["path"].removeprefix(scope.get("root_path", ""))
            unread = path.startswith(self.reads_itself)
            if not unread:
                body = await read_body(
                    request.stream(),
                    content_length=request.headers.get("content-length"),
                    max_bytes=self.max_bytes,
                )
        except Error as error:
            await error_response(error)(scope, receive, send)
            return
        except ClientDisconnect:
            return  # nobody is left to answer
        if unread:
            await self.app(scope, receive, send)
            return
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)
