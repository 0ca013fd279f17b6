"""The consumer gateway's part of the OOTS EDM profile (docs/oots.md): the request is checked
before it is signed, the answer is read before it is handed on.

- the ``QueryRequest`` must satisfy the EDM schemas (``Client.InvalidEdm``, ``Client.InvalidXml``)
  and the EDM-REQ business rules of the configured folder (``Client.InvalidEdm`` naming the
  rule, :mod:`exchange.evidence.edm.rules`);
- the provider's answer, once its signature is verified, must be an EDM answer to that very
  request (:func:`exchange.evidence.edm.response.read_answer`; an answer whose evidence is a
  large document, streamed, is read up to that document, once the bytes around it are found to
  be the signed ones and to close right after it,
  :func:`~exchange.evidence.edm.response.read_streamed_answer`); anything else is refused as the
  provider's fault (``Server.ClientProxy.InvalidEdmResponse``, 502). What it said (evidence
  delivered, preview required, or the EDM error code) goes to the exchange's audit and
  operational records.

The answer is handed on exactly as the provider signed it: the consumer system reads it itself.
X-Road errors that are not EDM documents (the provider's gateway refusing before the EDM
profile, or a service that does not speak EDM refusing) pass through as every X-Road error does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

from lxml import etree

from exchange.errors import ServiceUnavailable
from exchange.evidence.edm import MEDIA_TYPE
from exchange.evidence.edm.response import (
    EdmAnswer,
    EdmError,
    InvalidEdmResponse,
    read_answer,
    read_streamed_answer,
)
from exchange.evidence.edm.schemaset import EdmSchemas
from exchange.gateway.node import Gateway
from exchange.gateway.outcome import Answer
from exchange.gateway.parts import Streamed
from exchange.gateway.records import ExchangeRecord


def _schemas(gateway: Gateway) -> EdmSchemas:
    if gateway.edm_schemas is None:
        raise ServiceUnavailable(
            "this gateway does not speak OOTS EDM (no [edm] folder is set)", detail="edm"
        )
    return gateway.edm_schemas


async def check_request(gateway: Gateway, body: bytes) -> etree._Element:
    """The request in ``body`` once it satisfies the EDM schemas and the EDM-REQ business rules
    (but those the settings waive); raise to refuse it."""
    root = _schemas(gateway).parse(body, what="the QueryRequest")
    if gateway.edm_rules is not None:
        # Milliseconds of Saxon per request (docs/oots.md): off the event loop, which meanwhile
        # serves the other exchanges.
        await asyncio.to_thread(gateway.edm_rules.check, root, what="the QueryRequest")
    return root


async def read_reply(
    gateway: Gateway, request: etree._Element, answer: Answer, record: ExchangeRecord
) -> Answer:
    """Note in ``record`` what the provider's EDM ``answer`` to ``request`` said, and return it
    to be handed on; raise :class:`InvalidEdmResponse` for an answer the consumer system must
    not be given. A streamed answer (its evidence a large document) is read up to the document,
    which then passes on as it arrives."""
    kind = (answer.content_type or "").split(";")[0].strip().lower()
    edm_document = kind in ("multipart/related", MEDIA_TYPE)
    if answer.status >= 400 and not edm_document:
        return answer  # an X-Road error of the provider's gateway: passed on as it is
    request_id = request.get("id") or ""
    try:
        if answer.stream is not None:
            head, stream = await _head(answer.stream)
            answer = replace(answer, stream=stream)
            understood: EdmAnswer = read_streamed_answer(
                _schemas(gateway),
                answer.content_type,
                head,
                document_length=stream.parts[0].length,
                length=stream.length,
                envelope=stream.envelope,
                request_id=request_id,
            )
        else:
            understood = read_answer(
                _schemas(gateway), answer.content_type, answer.payload, request_id=request_id
            )
    except InvalidEdmResponse as error:
        if answer.stream is not None:
            await answer.stream.close()
        raise InvalidEdmResponse(
            f"the provider's EDM answer was refused: {error.message}", detail=error.detail
        ) from error
    except BaseException:
        if answer.stream is not None:
            await answer.stream.close()
        raise
    refused = isinstance(understood, EdmError)
    if refused == (answer.status < 400):
        if answer.stream is not None:
            await answer.stream.close()
        raise InvalidEdmResponse(
            f"the provider's EDM answer does not match its HTTP status {answer.status}",
            detail="status",
        )
    record.edm_outcome = understood.outcome
    if isinstance(understood, EdmError):
        record.fault_string = understood.outcome
    return answer


async def _head(stream: Streamed) -> tuple[bytes, Streamed]:
    """The bytes of ``stream`` before its first part (the EDM root part and the evidence part's
    headers, at most ``max_body_bytes``: the consumer checked the envelope's size), and the
    stream that still yields every byte, from the first, to be checked as it passes. The head
    is parsed only once it is found to be the one signed
    (:func:`~exchange.evidence.edm.response.read_streamed_answer`)."""
    if len(stream.parts) != 1:
        raise InvalidEdmResponse(
            "an EDM answer streams one evidence document", detail="X-Exchange-Parts"
        )
    offset = stream.parts[0].offset
    source = aiter(stream.chunks)
    read: list[bytes] = []
    size = 0
    while size < offset:
        chunk = await anext(source, b"")
        if not chunk:
            break
        read.append(chunk)
        size += len(chunk)
    if size < offset:
        raise stream.broken(
            f"{stream.what} sent {size} of the {stream.length} bytes it bound (cut short)"
        )

    async def replayed() -> AsyncIterator[bytes]:
        for chunk in read:
            yield chunk
        async for chunk in source:
            yield chunk

    return b"".join(read)[:offset], replace(stream, chunks=replayed())
