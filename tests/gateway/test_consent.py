"""Consent enforcement at the provider: every way a consent can fail is a precise, audited
denial with zero calls to the registry; uses are counted exactly, also under concurrency."""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from exchange.consent import files as consent_files
from exchange.consent.artefact import Consent, ConsentSigner, Purpose
from exchange.db.engine import build_engine
from exchange.sample import federation
from exchange.trust.keys import generate_key, load_certificate
from tests.gateway.conftest import (
    BIRTH,
    CONSENTED_DIPLOMA,
    FEED_MAX_AGE,
    MARI,
    PORTAL_CLIENT,
    PURPOSE,
    RESIDENCE,
    Running,
)

JAAN = "EE39107156021"
DIPLOMA_SERVICE = f"{federation.POPULATION_REGISTRY}/consented-diploma"


def ask(running: Running, artefact: str | None, **headers: str) -> httpx.Response:
    sent = {"X-Road-UserId": MARI, "X-Exchange-Purpose": PURPOSE, "X-Road-Id": str(uuid.uuid4())}
    if artefact is not None:
        sent["X-Exchange-Consent"] = artefact
    sent.update(headers)
    return running.call(f"{CONSENTED_DIPLOMA}?person={MARI}", headers=sent)


def diploma_consent(running: Running, citizen: str = MARI, **fields: object) -> str:
    return running.artefact(citizen, service=DIPLOMA_SERVICE, **fields)


def audit_bodies(running: Running) -> list[dict[str, object]]:
    with build_engine(running.provider_settings().db_url).connect() as connection:
        rows = connection.execute(text("SELECT body FROM audit_records")).scalars()
        return [json.loads(body) for body in rows]


def audited(running: Running, message_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [b for b in audit_bodies(running) if b.get("message_id") == message_id]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no audit record for {message_id}")


def denied(running: Running, response: httpx.Response, code: str, detail: str | None) -> None:
    """A signed, audited refusal of kind ``code`` (reason ``detail``)."""
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["type"] == f"Server.ServerProxy.{code}", body
    if detail is not None:
        assert body["detail"] == detail, body
    record = audited(running, response.headers["X-Road-Id"])
    assert record["status"] == 403
    assert record["fault"] == f"Server.ServerProxy.{code}"


def forged(running: Running, **changes: object) -> str:
    """An artefact signed with the consent service's real key, with fields the service itself
    would never have issued (times in the past or future)."""
    folder = running.layout.consent.parent
    key, certificate = consent_files.load(folder)
    now = int(datetime.now(UTC).timestamp())
    consent = Consent(
        jti=str(uuid.uuid4()),
        iss=federation.CONSENT_SERVICE,
        sub=MARI,
        consumer=PORTAL_CLIENT,
        consumer_name="State Portal",
        service=DIPLOMA_SERVICE,
        evidence_type="diploma",
        purpose=Purpose(PURPOSE, "testing"),
        iat=now,
        nbf=now,
        exp=now + 3600,
        max_uses=None,
        preview=False,
        notice="test",
        status_url="http://127.0.0.1:1/",
    )
    return ConsentSigner(key, certificate).sign(replace(consent, **changes))  # type: ignore[arg-type]


def test_a_consented_request_is_served_and_audited_with_its_consent_id(running: Running) -> None:
    granted = running.grant(MARI, service=DIPLOMA_SERVICE)
    artefact, consent_id = granted.json()["artefact"], granted.json()["id"]
    response = ask(running, artefact)
    assert response.status_code == 200, response.text
    record = audited(running, response.headers["X-Road-Id"])
    assert record["consent"] == consent_id
    assert record["purpose"] == PURPOSE
    everything = json.dumps(audit_bodies(running))
    assert MARI not in everything  # neither the person's code nor the artefact is logged
    assert artefact.split(".")[1] not in everything


def test_no_consent(running: Running) -> None:
    before = running.registry.calls
    denied(running, ask(running, None), "ConsentRequired", None)
    assert running.registry.calls == before


def test_revoked_between_two_requests(running: Running) -> None:
    granted = running.grant(MARI, service=DIPLOMA_SERVICE)
    artefact, consent_id = granted.json()["artefact"], granted.json()["id"]
    assert ask(running, artefact).status_code == 200
    token = running.id_token(MARI, federation.CONSENT_CLIENT_ID)
    revoked = httpx.post(
        f"{running.consent_url}/api/v1/consents/{consent_id}/revoke",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert revoked.json()["status"] == "revoked"
    before = running.registry.calls
    denied(running, ask(running, artefact), "ConsentDenied", "revoked")
    assert running.registry.calls == before


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": int(time.time()) - 60, "nbf": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600, "exp": int(time.time()) + 7200}, "not-yet-valid"),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_outside_its_validity(running: Running, changes: dict[str, int], reason: str) -> None:
    before = running.registry.calls
    denied(running, ask(running, forged(running, **changes)), "ConsentDenied", reason)
    assert running.registry.calls == before


def test_wrong_purpose(running: Running) -> None:
    artefact = diploma_consent(running)
    before = running.registry.calls
    response = ask(running, artefact, **{"X-Exchange-Purpose": "marketing"})
    denied(running, response, "ConsentDenied", "other-purpose")
    assert running.registry.calls == before


def test_consent_given_to_another_consumer(running: Running) -> None:
    artefact = diploma_consent(running, consumer=str(federation.POPULATION_REGISTRY))
    before = running.registry.calls
    denied(running, ask(running, artefact), "ConsentDenied", "other-consumer")
    assert running.registry.calls == before


def test_consent_of_another_person(running: Running) -> None:
    jaans = diploma_consent(running, JAAN)
    before = running.registry.calls
    denied(running, ask(running, jaans), "ConsentDenied", "other-person")  # queried: Mari
    mine = diploma_consent(running)
    response = ask(running, mine, **{"X-Road-UserId": JAAN})  # the user is someone else
    denied(running, response, "ConsentDenied", "other-person")
    assert running.registry.calls == before


def test_consent_for_another_service(running: Running) -> None:
    birth_only = running.artefact(MARI)  # for the birth certificate
    before = running.registry.calls
    denied(running, ask(running, birth_only), "ConsentDenied", "other-service")
    assert running.registry.calls == before


def test_artefact_not_signed_by_a_consent_service(running: Running) -> None:
    folder = running.layout.consent.parent
    stranger = ConsentSigner(generate_key(), load_certificate(folder / "consent.pem"))
    artefact = forged(running)
    tampered = stranger.sign(
        Consent.from_claims(json.loads(_payload(artefact)))  # same claims, another key
    )
    before = running.registry.calls
    denied(running, ask(running, tampered), "ConsentDenied", "invalid-artefact")
    not_a_jws = ask(running, "consent-1234")
    denied(running, not_a_jws, "ConsentDenied", "invalid-artefact")
    an_id_token = running.id_token(MARI)  # a token of another kind
    denied(running, ask(running, an_id_token), "ConsentDenied", "invalid-artefact")
    assert running.registry.calls == before


def test_uses_are_counted(running: Running) -> None:
    artefact = diploma_consent(running, max_uses=2)
    assert ask(running, artefact).status_code == 200
    assert ask(running, artefact).status_code == 200
    before = running.registry.calls
    denied(running, ask(running, artefact), "ConsentDenied", "exhausted")
    assert running.registry.calls == before


def test_exactly_n_of_20_concurrent_requests_succeed(running: Running) -> None:
    uses = 5
    artefact = diploma_consent(running, max_uses=uses)
    before = running.registry.calls
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: ask(running, artefact), range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == uses, [a.text for a in answers if a.status_code != 200][:3]
    assert statuses.count(403) == 20 - uses
    assert all(a.json()["detail"] == "exhausted" for a in answers if a.status_code == 403), [
        a.text for a in answers
    ]
    assert running.registry.calls == before + uses


def test_legal_basis_is_required_and_recorded(running: Running) -> None:
    response = running.call(f"{RESIDENCE}?person={MARI}", headers={"X-Road-UserId": MARI})
    assert response.status_code == 200, response.text
    record = audited(running, response.headers["X-Road-Id"])
    assert record["legal_basis"] == federation.RESIDENCE_LEGAL_BASIS
    assert record["purpose"] == PURPOSE
    no_purpose = running.call(f"{RESIDENCE}?person={MARI}", headers={"X-Exchange-Purpose": ""})
    assert no_purpose.status_code == 400
    access = running.provider_access()
    service = federation.RESIDENCE_RECORD
    access.revoke(service=service, subject=PORTAL_CLIENT)
    access.grant(service=service, subject=PORTAL_CLIENT)  # an access right without a basis
    try:
        response = running.call(f"{RESIDENCE}?person={MARI}")
        assert response.status_code == 403
        assert response.json()["detail"] == "legal-basis"
    finally:
        access.revoke(service=service, subject=PORTAL_CLIENT)
        access.grant(
            service=service, subject=PORTAL_CLIENT, legal_basis=federation.RESIDENCE_LEGAL_BASIS
        )


def test_birth_certificate_through_the_gateway_with_consent(running: Running) -> None:
    response = running.call(f"{BIRTH}?person={MARI}", headers=running.consented())
    assert response.status_code == 200, response.text
    assert response.json()["BirthCertificate"]["personCode"] == MARI


def test_consent_service_unreachable_releases_nothing_it_must_confirm(running: Running) -> None:
    lasting = diploma_consent(running)
    counted = diploma_consent(running, max_uses=5)
    assert ask(running, lasting).status_code == 200  # the provider now follows the feed
    wait_for_feed(running, fresh=True)
    with running.stopped("consent"):
        # A use must be spent at the consent service: refused at once.
        unavailable(running, counted)
        # Without a use limit, the copy of the revocation feed answers while it is fresh ...
        assert ask(running, lasting).status_code == 200
        # ... and once it is older than consent_feed_max_age, nothing is released.
        wait_for_feed(running, fresh=False)
        unavailable(running, lasting)
    wait_for_feed(running, fresh=True)
    assert ask(running, lasting).status_code == 200
    assert ask(running, counted).status_code == 200


def unavailable(running: Running, artefact: str) -> None:
    before = running.registry.calls
    response = ask(running, artefact)
    assert response.status_code == 503, response.text
    # Refused by a stopped consent service: the type of every refused connection (still a 503).
    assert response.json()["type"] == "Server.ServerProxy.NetworkError"
    assert running.registry.calls == before


def wait_for_feed(running: Running, *, fresh: bool) -> None:
    """Until the provider's /health says its copy of the consent service's revocations is fresh
    (or no longer is: at most consent_feed_max_age after the feed was cut)."""
    deadline = time.monotonic() + FEED_MAX_AGE + 10
    while time.monotonic() < deadline:
        health = httpx.get(f"http://127.0.0.1:{running.ports.provider_consumer}/health").json()
        if health["consent_feeds"].get(federation.CONSENT_SERVICE, {}).get("fresh") is fresh:
            return
        time.sleep(0.05)
    raise AssertionError(f"the provider's copy of the revocation feed never became fresh={fresh}")


def _payload(token: str) -> bytes:
    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
