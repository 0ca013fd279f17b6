"""How every exchange ends, on both sides: one answer, audited before it leaves, then counted.

:func:`refuse` turns whatever went wrong into the X-Road error answer. :func:`conclude` is the
one finishing path of the consumer and the provider: the audit record is committed before the
answer is released (no record, no release: a failed commit turns the answer into
``LoggingFailed``), then the operational record and the metrics are written off the request
path, and the answer leaves with the X-Road response headers.

An answer that streams a large document (:mod:`exchange.gateway.parts`) is audited the same
way before its first byte leaves, its parts bound by the signature the record keeps; its body
is checked as it passes. If it turns out not to be what was bound, the reader is left with an
incomplete body (the connection is closed before the last chunk) and a second record, with the
same message id and signature, says that the answer broke and whose fault it was.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import structlog
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from exchange.errors import Error, LoggingFailed, QuotaExceeded
from exchange.faults import error_of
from exchange.gateway.node import Gateway
from exchange.gateway.parts import HEADER as PARTS_HEADER
from exchange.gateway.parts import Streamed, verified
from exchange.gateway.records import ExchangeRecord, audit_entry
from exchange.http import error_body
from exchange.logging import failure
from exchange.trust.signed import body_digest

log = structlog.get_logger(__name__)
SIDES = {"client": "ClientProxy", "producer": "ServerProxy"}  # record.side -> X-Road error side


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str | None
    payload: bytes
    error_type: str | None = None
    retry_after: int | None = None  # seconds, sent as Retry-After (a quota refusal)
    stream: Streamed | None = None  # a large body passing through; payload is then empty


def refuse(caught: BaseException, *, record: ExchangeRecord) -> Answer:
    """The X-Road error answer for ``caught`` (see :func:`exchange.faults.error_of`), noted in
    ``record``; failures of ours (5xx) are logged without personal data.
    """
    error = error_of(caught)
    body = error_body(error, SIDES[record.side])
    error_type = body["type"] or ""
    record.status, record.fault_code, record.fault_string = error.status, error_type, error.message
    if error.status >= 500:
        event = "consumer.failed" if record.side == "client" else "provider.failed"
        failure(log, event, error_type=error_type, message=error.message, cause=error.__cause__)
    retry_after = error.retry_after if isinstance(error, QuotaExceeded) else None
    return Answer(
        error.status, "application/json", json.dumps(body).encode(), error_type, retry_after
    )


async def conclude(
    gateway: Gateway,
    record: ExchangeRecord,
    answer: Answer,
    *,
    subject: str | None,
    known: frozenset[str],
    sign: Callable[[Answer], dict[str, str]] | None = None,
) -> Released | StreamedResponse:
    """Audit, then release ``answer``; see the module docstring.

    ``sign`` (the provider's) signs an answer, notes its digest in ``record`` and returns the
    headers that carry the signature; without it the answer's digest is noted as it is.
    """
    answer = _as_sent(record, answer)
    signed = _seal(record, answer, sign)
    try:
        # The audit record is committed before anything leaves: no record, no release.
        await gateway.audit.append(audit_entry(record), subject=subject)
    except LoggingFailed as error:
        if answer.stream is not None:
            await answer.stream.close()
        answer = _as_sent(record, refuse(error, record=record))
        signed = _seal(record, answer, sign)
    record.response_size = len(answer.payload) if answer.stream is None else answer.stream.length
    finished = gateway.clock()
    gateway.exchanges.write(record, response_out=finished)
    gateway.metrics.observe(
        side=record.side,
        service=record.service,
        known=known,
        status=answer.status,
        error_type=answer.error_type,
        seconds=(finished - record.request_in).total_seconds(),
    )
    headers = {
        "X-Road-Id": record.message_id,
        "X-Road-Client": record.client,
        "X-Road-Service": record.service,
        **signed,
    }
    if answer.content_type:
        headers["Content-Type"] = answer.content_type  # exactly the signed value: no charset
    if record.request_hash:
        headers["X-Road-Request-Hash"] = record.request_hash
    if answer.error_type:
        headers["X-Road-Error"] = answer.error_type
    if answer.retry_after is not None:
        headers["Retry-After"] = str(answer.retry_after)
    if answer.stream is None:
        return Released(answer.status, headers, answer.payload)
    headers[PARTS_HEADER] = answer.stream.header
    headers["Content-Length"] = str(answer.stream.length)

    async def broke(error: Error) -> None:
        # A record of its own: the released one may still wait in the operational batch.
        broken = replace(record)
        refuse(error, record=broken)  # noted in it, and logged
        try:
            await gateway.audit.append(audit_entry(broken), subject=subject)
        except LoggingFailed:
            log.error("exchange.broken_answer_not_audited", message_id=record.message_id)

    return StreamedResponse(answer.stream, answer.status, headers, broke=broke)


class Released:
    """An answer whose body is whole, as the ASGI server takes it: its head's header list is
    built once, and the answer leaves as two messages (a Starlette ``Response`` builds and
    checks the same list through a mutable header object, for every answer). The headers are
    written as Starlette writes them: names lower-cased, values as Latin-1, then the body's
    ``Content-Length`` (none for 1xx, 204 and 304; ``0`` for an answer to ``HEAD``, whose body
    was emptied before it was signed). The server still refuses a name or value that would
    break the head (uvicorn checks every header it writes)."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if not (status < 200 or status in (204, 304)):
            raw.append((b"content-length", b"%d" % len(body)))
        self.status_code, self.raw_headers, self.body = status, raw, body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})


class StreamedResponse(Response):
    """Sends a streamed body as it is checked (:func:`exchange.gateway.parts.verified`); when
    the check fails it calls ``broke`` and leaves the response unfinished, so that the server
    closes the connection and the reader holds an incomplete body, never a complete wrong one.
    A reader who hangs up stops the source being read (the release was audited already).
    """

    def __init__(
        self,
        stream: Streamed,
        status: int,
        headers: dict[str, str],
        *,
        broke: Callable[[Error], Awaitable[None]],
    ) -> None:
        super().__init__(None, status_code=status, headers=headers)
        self.stream = stream
        self.broke = broke

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        left = asyncio.Event()

        async def listen() -> None:
            # The server drops what is sent to a reader who has gone: stop reading the source.
            while (await receive())["type"] != "http.disconnect":
                pass
            left.set()

        listener = asyncio.ensure_future(listen())
        try:
            start = {"status": self.status_code, "headers": self.raw_headers}
            await send({"type": "http.response.start", **start})
            async for chunk in verified(self.stream):
                if left.is_set():
                    log.info("exchange.reader_left", sent_by=self.stream.what)
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception as caught:  # the body broke: cut it short
            await self.broke(error_of(caught))
            return
        finally:
            listener.cancel()
            await self.stream.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _as_sent(record: ExchangeRecord, answer: Answer) -> Answer:
    """``answer`` as it leaves: servers send no body after ``HEAD``, so none is signed."""
    return replace(answer, payload=b"") if record.method == "HEAD" else answer


def _seal(
    record: ExchangeRecord, answer: Answer, sign: Callable[[Answer], dict[str, str]] | None
) -> dict[str, str]:
    record.status, record.fault_code = answer.status, answer.error_type
    if answer.stream is not None:
        record.parts = answer.stream.header
    if sign is not None:
        return sign(answer)
    stream = answer.stream
    record.response_digest = body_digest(answer.payload) if stream is None else stream.envelope
    return {}
