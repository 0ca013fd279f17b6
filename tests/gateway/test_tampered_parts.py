"""A provider gateway that streams other bytes than its signature binds: the consumer gateway
checks the parts itself and never hands the caller a complete body, and audits the answer as
the provider's fault. The federation runs in this process (:mod:`tests.inprocess`), so that the
provider's answer can be altered after it was signed, where mutual TLS keeps any outsider out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.gateway.document_server import (
    HEADERS,
    PERSON,
    SCAN,
    DocumentServer,
    audit_bodies,
    document_layout,
    running_backend,
)
from tests.inprocess import InProcess, LiveClock

SIZE = 32 * 1024  # read whole by the in-process transport: under max_body_bytes


def altered(app: ASGIApp) -> ASGIApp:
    """``app`` with one byte of every body it sends changed, its headers (and signature) kept."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        async def changed(message: Message) -> None:
            body = message.get("body", b"")
            if message["type"] == "http.response.body" and body:
                message = {**message, "body": bytes([body[0] ^ 1]) + body[1:]}
            await send(message)

        await app(scope, receive, changed)

    return asgi


@pytest.fixture
def federation_in_process(tmp_path: Path) -> Iterator[tuple[InProcess, DocumentServer]]:
    with running_backend() as backend:
        layout, ports = document_layout(tmp_path / "federation", backend)
        roles = InProcess(layout, ports, LiveClock())
        try:
            yield roles, backend
        finally:
            roles.close()


def test_a_provider_streaming_other_bytes_than_it_signed_reaches_nobody_complete(
    federation_in_process: tuple[InProcess, DocumentServer],
) -> None:
    roles, backend = federation_in_process
    backend.size = SIZE
    consumer = f"http://127.0.0.1:{roles.ports.consumer_consumer}{SCAN}?person={PERSON}"
    sent = {**HEADERS, "X-Road-Id": str(uuid.uuid4())}
    honest = roles.http.get(consumer, headers=sent)
    assert honest.status_code == 200, honest.text
    assert len(honest.content) == SIZE  # the same path, unaltered, passes whole

    provider = f"https://127.0.0.1:{roles.ports.provider_tls}"
    app, loop = roles.loopback.route(provider)
    roles.loopback.serve(provider, altered(app), loop)
    message_id = str(uuid.uuid4())
    answer = roles.http.get(consumer, headers={**HEADERS, "X-Road-Id": message_id})

    assert answer.headers["content-length"] == str(SIZE)
    assert len(answer.content) < SIZE  # the last chunk held back: never the whole wrong body
    bodies = (json.loads(body) for body in audit_bodies(roles.layout, "consumer"))
    consumer_records = [body for body in bodies if body["message_id"] == message_id]
    assert [(r["status"], r["fault"]) for r in consumer_records] == [
        (200, None),
        (502, "Server.ClientProxy.InvalidResponse"),
    ]
