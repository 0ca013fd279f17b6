"""Streamed documents in an in-process federation (:mod:`tests.inprocess`): a provider gateway
that streams other bytes than its signature binds (altered after signing, which mutual TLS keeps
any outsider from doing on the wire) is cut off by the consumer gateway, which never hands the
caller a complete body and audits the answer as the provider's fault; and a document released
under the person's consent, which cannot be shown for preview first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.sample import federation
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

CONSENTED_SCAN = f"/r1/{federation.POPULATION_REGISTRY}/consented-scan"
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


def consent(roles: InProcess, *, preview: bool) -> str:
    """A consent artefact of the person for the consented scan, granted at the consent service."""
    token = roles.id_token(PERSON, federation.CONSENT_CLIENT_ID)
    granted = roles.http.post(
        f"{roles.consent_url}/api/v1/consents",
        json={
            "consumer": HEADERS["X-Road-Client"],
            "service": f"{federation.POPULATION_REGISTRY}/consented-scan",
            "purpose": HEADERS["X-Exchange-Purpose"],
            "purpose_text": "to check a diploma",
            "max_uses": "unlimited",
            "preview": preview,
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert granted.status_code == 201, granted.text
    return str(granted.json()["artefact"])


def test_a_document_is_released_under_consent_but_never_previewed(
    federation_in_process: tuple[InProcess, DocumentServer],
) -> None:
    roles, backend = federation_in_process
    backend.size = SIZE
    url = f"http://127.0.0.1:{roles.ports.consumer_consumer}{CONSENTED_SCAN}?person={PERSON}"

    def ask(artefact: str) -> httpx.Response:
        headers = {**HEADERS, "X-Road-Id": str(uuid.uuid4()), "X-Road-UserId": PERSON}
        return roles.http.get(url, headers={**headers, "X-Exchange-Consent": artefact})

    released = ask(consent(roles, preview=False))
    assert released.status_code == 200, released.text
    assert released.headers["x-exchange-parts"] == f"0:{SIZE}:{backend.digest()}"
    assert len(released.content) == SIZE

    called = backend.calls
    refused = ask(consent(roles, preview=True))
    assert refused.status_code == 403
    assert (refused.json()["type"], refused.json()["detail"]) == (
        "Server.ServerProxy.AccessDenied",
        "preview",
    )
    assert backend.calls == called  # the registry was not asked
