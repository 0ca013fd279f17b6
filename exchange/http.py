"""HTTP plumbing shared by every role's ASGI app: one error handler for the whole tree.

Every error leaves as the X-Road error body ``{"type", "message", "detail"}`` with the type also
in the ``X-Road-Error`` header. Unexpected exceptions are logged with their traceback and leave as
an opaque ``Server.InternalError``: nothing internal reaches the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from exchange.errors import Error, InvalidRequest
from exchange.logging import failure

if TYPE_CHECKING:
    from fastapi import FastAPI

# FastAPI is imported only where its app is built (the central authority's API): the gateways,
# consent service and portal are plain Starlette and save its ~12 MB per process.

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    401: "Unauthenticated",
    403: "AccessDenied",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
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
    return JSONResponse(body, status_code=error.status, headers=headers)


def _plain(status: int, code: str, message: str, detail: str | None = None) -> JSONResponse:
    kind = "Client" if status < 500 else "Server"
    body = {"type": f"{kind}.{code}", "message": message, "detail": detail}
    return JSONResponse(body, status_code=status, headers={"X-Road-Error": body["type"] or ""})


async def _on_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Error)
    if exc.status >= 500:
        failure(
            log,
            "request.failed",
            error_type=exc.xroad_type,
            message=exc.message,
            cause=exc.__cause__,
        )
    return error_response(exc)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    from fastapi.exceptions import RequestValidationError

    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = (
        f"{where}: {first.get('msg', 'invalid value')}" if where else "request body is invalid"
    )
    return error_response(InvalidRequest(message, detail=where or None))


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(
        exc.status_code, "InvalidRequest" if exc.status_code < 500 else "InternalError"
    )
    return _plain(exc.status_code, code, str(exc.detail))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    failure(
        log,
        "request.crashed",
        error_type="Server.InternalError",
        message=request.url.path,
        cause=exc,
    )
    return _plain(500, "InternalError", "internal error; the operator's log has the details")


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(Error, _on_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
