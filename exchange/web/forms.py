"""Request bodies of the web pages and small APIs: a declared length, capped, read once."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request

from exchange.errors import PayloadTooLarge
from exchange.http import declared_length

MAX_FORM_BYTES = 64 * 1024


async def bounded_body(request: Request, limit: int) -> bytes:
    """The body, if its declared length is at most ``limit`` (read before anyone is known)."""
    length = declared_length(request.headers.get("content-length"))
    if length is None or length > limit:
        raise PayloadTooLarge(f"the body must declare its length, at most {limit} bytes")
    return await request.body()


async def form(request: Request) -> FormData:
    """A posted form of at most 64 KiB and 100 fields, files refused."""
    await bounded_body(request, MAX_FORM_BYTES)
    return await request.form(max_files=0, max_fields=100, max_part_size=MAX_FORM_BYTES)
