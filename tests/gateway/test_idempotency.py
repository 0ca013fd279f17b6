"""Idempotent retries: a request with an Idempotency-Key is executed once; its retries get the
kept answer, signed anew for each retry, without asking the registry or spending a consent use;
the same key for another request is refused (422); concurrent duplicates execute once."""

from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.db.engine import build_engine
from exchange.gateway import models
from tests.gateway.conftest import DIPLOMA, MARI, Roles
from tests.gateway.test_consent import ask as ask_consented
from tests.gateway.test_consent import audited, denied, diploma_consent


def post(roles: Roles, key: str | None, body: bytes = b'{"reason": "admission"}') -> httpx.Response:
    headers = {"X-Road-Id": str(uuid.uuid4()), "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return roles.call(f"{DIPLOMA}?person={MARI}", method="POST", content=body, headers=headers)


def signed_claims(roles: Roles, message_id: str) -> dict[str, object]:
    """The claims the consumer gateway signed for an exchange (its operational record keeps
    the whole request signature)."""
    consumer = roles.roles.consumer
    roles.roles.run(consumer.exchanges.drain())
    with Session(build_engine(consumer.settings.db_url)) as session:
        signature = session.scalars(
            select(models.Exchange.request_signature).where(
                models.Exchange.message_id == message_id
            )
        ).one()
    assert signature is not None
    payload = signature.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return claims


def test_a_retry_with_the_same_key_gets_the_same_answer_without_the_registry(
    roles: Roles,
) -> None:
    key = f'"{uuid.uuid4()}"'
    before = roles.registry.calls
    first = post(roles, key)
    assert first.status_code == 200, first.text
    retry = post(roles, key)
    assert retry.status_code == 200, retry.text  # its new signature verified at the consumer
    assert retry.content == first.content
    assert roles.registry.calls == before + 1
    assert retry.headers["X-Road-Id"] != first.headers["X-Road-Id"]
    assert retry.headers["X-Road-Request-Hash"] != first.headers["X-Road-Request-Hash"]
    record = audited(roles, retry.headers["X-Road-Id"])
    assert record["replay_of"] == first.headers["X-Road-Id"]
    assert record["status"] == 200
    assert "replay_of" not in audited(roles, first.headers["X-Road-Id"])
    assert signed_claims(roles, retry.headers["X-Road-Id"])["idempotency_key"] == key


def test_the_same_key_with_another_body_is_refused(roles: Roles) -> None:
    key = str(uuid.uuid4())
    assert post(roles, key).status_code == 200
    before = roles.registry.calls
    other = post(roles, key, b'{"reason": "something else"}')
    assert other.status_code == 422, other.text
    assert other.json()["type"] == "Server.ServerProxy.IdempotencyKeyReused"
    assert other.json()["detail"] == "Idempotency-Key"
    assert roles.registry.calls == before
    assert audited(roles, other.headers["X-Road-Id"])["status"] == 422


def test_twenty_concurrent_duplicates_execute_once(roles: Roles) -> None:
    key = str(uuid.uuid4())
    before = roles.registry.calls
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: post(roles, key), range(20)))
    assert roles.registry.calls == before + 1
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 409}, [a.text for a in answers if a.status_code not in (200, 409)]
    assert 200 in statuses
    assert len({a.content for a in answers if a.status_code == 200}) == 1
    for busy in (a for a in answers if a.status_code == 409):
        assert busy.json()["type"] == "Server.ServerProxy.RequestInProgress"
    again = post(roles, key)
    assert again.status_code == 200
    assert roles.registry.calls == before + 1


def test_a_retried_answer_spends_no_consent_use(roles: Roles) -> None:
    artefact = diploma_consent(roles, max_uses=1)
    key = str(uuid.uuid4())
    first = ask_consented(roles, artefact, **{"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    retry = ask_consented(roles, artefact, **{"Idempotency-Key": key})
    assert retry.status_code == 200, retry.text
    assert retry.content == first.content
    # The one use went on the first request: without the key, the consent is used up.
    denied(roles, ask_consented(roles, artefact), "ConsentDenied", "exhausted")


def test_a_failure_is_not_kept_and_its_retry_executes(roles: Roles) -> None:
    key = str(uuid.uuid4())
    roles.registry.mode = "error"
    try:
        assert post(roles, key).status_code == 502
    finally:
        roles.registry.mode = "ok"
    before = roles.registry.calls
    assert post(roles, key).status_code == 200
    assert roles.registry.calls == before + 1


def test_a_request_without_a_key_is_signed_as_before(roles: Roles) -> None:
    """Gateways that do not know the claim keep talking to these: it is left out when null."""
    answer = post(roles, None)
    assert answer.status_code == 200
    assert "idempotency_key" not in signed_claims(roles, answer.headers["X-Road-Id"])
