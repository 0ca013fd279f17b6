"""Consent enforcement at the provider: every way a consent can fail is a precise, audited
denial with zero calls to the registry; uses are counted exactly, also under concurrency."""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text

from exchange.consent import files as consent_files
from exchange.consent.artefact import Consent, Purpose, sign
from exchange.db.engine import build_engine
from exchange.sample import federation
from exchange.trust.keys import generate_key, load_certificate
from exchange.trust.signed import Signer
from tests.gateway.conftest import (
    BIRTH,
    CONSENTED_DIPLOMA,
    FEED_MAX_AGE,
    MARI,
    PORTAL_CLIENT,
    PURPOSE,
    RESIDENCE,
    Roles,
)

JAAN = "EE39107156021"
DIPLOMA_SERVICE = f"{federation.POPULATION_REGISTRY}/consented-diploma"


def ask(roles: Roles, artefact: str | None, **headers: str) -> httpx.Response:
    sent = {"X-Road-UserId": MARI, "X-Exchange-Purpose": PURPOSE, "X-Road-Id": str(uuid.uuid4())}
    if artefact is not None:
        sent["X-Exchange-Consent"] = artefact
    sent.update(headers)
    return roles.call(f"{CONSENTED_DIPLOMA}?person={MARI}", headers=sent)


def diploma_consent(roles: Roles, citizen: str = MARI, **fields: object) -> str:
    return roles.artefact(citizen, service=DIPLOMA_SERVICE, **fields)


def audit_bodies(roles: Roles) -> list[dict[str, object]]:
    with build_engine(roles.provider_settings().db_url).connect() as connection:
        rows = connection.execute(text("SELECT body FROM audit_records")).scalars()
        return [json.loads(body) for body in rows]


def audited(roles: Roles, message_id: str) -> dict[str, object]:
    """The provider's audit record of ``message_id``: committed before the answer was sent."""
    found = [b for b in audit_bodies(roles) if b.get("message_id") == message_id]
    assert found, f"no audit record for {message_id}"
    return found[0]


def denied(roles: Roles, response: httpx.Response, code: str, detail: str | None) -> None:
    """A signed, audited refusal of kind ``code`` (reason ``detail``)."""
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["type"] == f"Server.ServerProxy.{code}", body
    if detail is not None:
        assert body["detail"] == detail, body
    record = audited(roles, response.headers["X-Road-Id"])
    assert record["status"] == 403
    assert record["fault"] == f"Server.ServerProxy.{code}"


def forged(roles: Roles, **changes: object) -> str:
    """An artefact signed with the consent service's real key, with fields the service itself
    would never have issued (times in the past or future)."""
    folder = roles.layout.consent.parent
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
    return sign(Signer(key, certificate), replace(consent, **changes))  # type: ignore[arg-type]


def test_a_consented_request_is_served_and_audited_with_its_consent_id(roles: Roles) -> None:
    granted = roles.grant(MARI, service=DIPLOMA_SERVICE)
    artefact, consent_id = granted.json()["artefact"], granted.json()["id"]
    response = ask(roles, artefact)
    assert response.status_code == 200, response.text
    record = audited(roles, response.headers["X-Road-Id"])
    assert record["consent"] == consent_id
    assert record["purpose"] == PURPOSE
    everything = json.dumps(audit_bodies(roles))
    assert MARI not in everything  # neither the person's code nor the artefact is logged
    assert artefact.split(".")[1] not in everything


def test_no_consent(roles: Roles) -> None:
    before = roles.registry.calls
    denied(roles, ask(roles, None), "ConsentRequired", None)
    assert roles.registry.calls == before


def test_revoked_between_two_requests(roles: Roles) -> None:
    granted = roles.grant(MARI, service=DIPLOMA_SERVICE)
    artefact, consent_id = granted.json()["artefact"], granted.json()["id"]
    assert ask(roles, artefact).status_code == 200
    token = roles.id_token(MARI, federation.CONSENT_CLIENT_ID)
    revoked = roles.http.post(
        f"{roles.consent_url}/api/v1/consents/{consent_id}/revoke",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert revoked.json()["status"] == "revoked"
    before = roles.registry.calls
    denied(roles, ask(roles, artefact), "ConsentDenied", "revoked")
    assert roles.registry.calls == before


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": int(time.time()) - 60, "nbf": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600, "exp": int(time.time()) + 7200}, "not-yet-valid"),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_outside_its_validity(roles: Roles, changes: dict[str, int], reason: str) -> None:
    before = roles.registry.calls
    denied(roles, ask(roles, forged(roles, **changes)), "ConsentDenied", reason)
    assert roles.registry.calls == before


def test_wrong_purpose(roles: Roles) -> None:
    artefact = diploma_consent(roles)
    before = roles.registry.calls
    response = ask(roles, artefact, **{"X-Exchange-Purpose": "marketing"})
    denied(roles, response, "ConsentDenied", "other-purpose")
    assert roles.registry.calls == before


def test_consent_given_to_another_consumer(roles: Roles) -> None:
    artefact = diploma_consent(roles, consumer=str(federation.POPULATION_REGISTRY))
    before = roles.registry.calls
    denied(roles, ask(roles, artefact), "ConsentDenied", "other-consumer")
    assert roles.registry.calls == before


def test_consent_of_another_person(roles: Roles) -> None:
    jaans = diploma_consent(roles, JAAN)
    before = roles.registry.calls
    denied(roles, ask(roles, jaans), "ConsentDenied", "other-person")  # queried: Mari
    mine = diploma_consent(roles)
    response = ask(roles, mine, **{"X-Road-UserId": JAAN})  # the user is someone else
    denied(roles, response, "ConsentDenied", "other-person")
    assert roles.registry.calls == before


def test_consent_for_another_service(roles: Roles) -> None:
    birth_only = roles.artefact(MARI)  # for the birth certificate
    before = roles.registry.calls
    denied(roles, ask(roles, birth_only), "ConsentDenied", "other-service")
    assert roles.registry.calls == before


def test_artefact_not_signed_by_a_consent_service(roles: Roles) -> None:
    folder = roles.layout.consent.parent
    stranger = Signer(generate_key(), load_certificate(folder / "consent.pem"))
    artefact = forged(roles)
    tampered = sign(
        stranger,
        Consent.from_claims(json.loads(_payload(artefact))),  # same claims, another key
    )
    before = roles.registry.calls
    denied(roles, ask(roles, tampered), "ConsentDenied", "invalid-artefact")
    not_a_jws = ask(roles, "consent-1234")
    denied(roles, not_a_jws, "ConsentDenied", "invalid-artefact")
    an_id_token = roles.id_token(MARI)  # a token of another kind
    denied(roles, ask(roles, an_id_token), "ConsentDenied", "invalid-artefact")
    assert roles.registry.calls == before


def test_uses_are_counted(roles: Roles) -> None:
    artefact = diploma_consent(roles, max_uses=2)
    assert ask(roles, artefact).status_code == 200
    assert ask(roles, artefact).status_code == 200
    before = roles.registry.calls
    denied(roles, ask(roles, artefact), "ConsentDenied", "exhausted")
    assert roles.registry.calls == before


def test_exactly_n_of_20_concurrent_requests_succeed(roles: Roles) -> None:
    uses = 5
    artefact = diploma_consent(roles, max_uses=uses)
    before = roles.registry.calls
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: ask(roles, artefact), range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == uses, [a.text for a in answers if a.status_code != 200][:3]
    assert statuses.count(403) == 20 - uses
    assert all(a.json()["detail"] == "exhausted" for a in answers if a.status_code == 403), [
        a.text for a in answers
    ]
    assert roles.registry.calls == before + uses


def test_legal_basis_is_required_and_recorded(roles: Roles) -> None:
    response = roles.call(f"{RESIDENCE}?person={MARI}", headers={"X-Road-UserId": MARI})
    assert response.status_code == 200, response.text
    record = audited(roles, response.headers["X-Road-Id"])
    assert record["legal_basis"] == federation.RESIDENCE_LEGAL_BASIS
    assert record["purpose"] == PURPOSE
    no_purpose = roles.call(f"{RESIDENCE}?person={MARI}", headers={"X-Exchange-Purpose": ""})
    assert no_purpose.status_code == 400
    access = roles.provider_access()
    service = federation.RESIDENCE_RECORD
    access.revoke(service=service, subject=PORTAL_CLIENT, actor="test")
    access.grant(service=service, subject=PORTAL_CLIENT, actor="test")  # without a basis
    try:
        response = roles.call(f"{RESIDENCE}?person={MARI}")
        assert response.status_code == 403
        assert response.json()["detail"] == "legal-basis"
    finally:
        access.revoke(service=service, subject=PORTAL_CLIENT, actor="test")
        access.grant(
            service=service,
            subject=PORTAL_CLIENT,
            legal_basis=federation.RESIDENCE_LEGAL_BASIS,
            actor="test",
        )


def test_birth_certificate_through_the_gateway_with_consent(roles: Roles) -> None:
    response = roles.call(f"{BIRTH}?person={MARI}", headers=roles.consented())
    assert response.status_code == 200, response.text
    assert response.json()["BirthCertificate"]["personCode"] == MARI


def test_consent_service_unreachable_releases_nothing_it_must_confirm(roles: Roles) -> None:
    lasting = diploma_consent(roles)
    counted = diploma_consent(roles, max_uses=5)
    assert ask(roles, lasting).status_code == 200  # the provider now follows the feed
    wait_for_feed(roles, fresh=True)
    with roles.stopped("consent"):
        # A use must be spent at the consent service: refused at once.
        unavailable(roles, counted)
        # Without a use limit, the copy of the revocation feed answers while it is fresh ...
        assert ask(roles, lasting).status_code == 200
        # ... and once it is older than consent_feed_max_age, nothing is released.
        wait_for_feed(roles, fresh=False)
        unavailable(roles, lasting)
    wait_for_feed(roles, fresh=True)
    assert ask(roles, lasting).status_code == 200
    assert ask(roles, counted).status_code == 200


def unavailable(roles: Roles, artefact: str) -> None:
    before = roles.registry.calls
    response = ask(roles, artefact)
    assert response.status_code == 503, response.text
    # Refused by a stopped consent service: the type of every refused connection (still a 503).
    assert response.json()["type"] == "Server.ServerProxy.NetworkError"
    assert roles.registry.calls == before


def feed_fresh(roles: Roles) -> bool:
    """What the provider's /health says of its copy of the consent service's revocations."""
    health = roles.http.get(f"http://127.0.0.1:{roles.ports.provider_consumer}/health").json()
    return bool(health["consent_feeds"].get(federation.CONSENT_SERVICE, {}).get("fresh"))


def wait_for_feed(roles: Roles, *, fresh: bool) -> None:
    """Fresh: until the provider's follower has read a complete page (it polls on its own).
    Stale: the clock moves past consent_feed_max_age, with the feed cut nothing renews it."""
    if not fresh:
        roles.clock.advance(timedelta(seconds=FEED_MAX_AGE + 1))
        assert not feed_fresh(roles)
        return
    roles.eventually(lambda: feed_fresh(roles), what="the revocation feed is fresh")


def _payload(token: str) -> bytes:
    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def consent_id(artefact: str) -> str:
    return str(json.loads(_payload(artefact))["jti"])


def test_a_use_spent_on_a_request_the_registry_failed_is_given_back(roles: Roles) -> None:
    """Nothing was released, so the person's consent keeps the use: a retry is served."""
    artefact = diploma_consent(roles, max_uses=1)
    store = roles.roles.consent.store
    for mode, status in (("error", 502), ("garbage", 502)):
        roles.registry.mode = mode
        try:
            failed = ask(roles, artefact)
        finally:
            roles.registry.mode = "ok"
        assert failed.status_code == status, failed.text
        record = audited(roles, failed.headers["X-Road-Id"])
        assert record["status"] == status
        assert record["consent"] == consent_id(artefact)
        assert store.status(consent_id(artefact)).uses == 0
    served = ask(roles, artefact)
    assert served.status_code == 200, served.text
    assert store.status(consent_id(artefact)).uses == 1
    denied(roles, ask(roles, artefact), "ConsentDenied", "exhausted")


def test_a_use_is_given_back_once_and_only_by_the_provider_that_spent_it(roles: Roles) -> None:
    artefact = diploma_consent(roles, max_uses=2)
    store, consent = roles.roles.consent.store, consent_id(artefact)
    provider = str(federation.POPULATION_REGISTRY).rsplit("/", 1)[0]
    assert store.redeem(consent, message_id="m1", provider=provider).status == "active"
    assert store.give_back(consent, message_id="m1", provider="EE/GOV/70000001").uses == 1
    assert store.give_back(consent, message_id="m2", provider=provider).uses == 1  # never spent
    assert store.give_back(consent, message_id="m1", provider=provider).uses == 0
    assert store.give_back(consent, message_id="m1", provider=provider).uses == 0  # once
    # The message stays answered: its use is not spent again by a replay of it.
    assert store.redeem(consent, message_id="m1", provider=provider).status == "replayed"
    assert store.status(consent).uses == 0


def test_no_record_is_an_answer_and_spends_the_use(roles: Roles) -> None:
    """A miss tells something about the person: were it free, a one-use consent could ask
    again and again until a record appeared."""
    artefact = diploma_consent(roles, citizen=JAAN, max_uses=2)
    for _ in range(2):
        missed = roles.call(
            f"{CONSENTED_DIPLOMA}?person={JAAN}",
            headers={
                "X-Road-UserId": JAAN,
                "X-Exchange-Purpose": PURPOSE,
                "X-Road-Id": str(uuid.uuid4()),
                "X-Exchange-Consent": artefact,
            },
        )
        assert missed.status_code == 404, missed.text
    assert roles.roles.consent.store.status(consent_id(artefact)).uses == 2


def test_a_use_given_back_while_another_is_refused_does_not_release_without_a_use(
    roles: Roles,
) -> None:
    """The refused message read the consent again after its update matched nothing; a use given
    back in between must not make it "active" with no use spent for it."""
    artefact = diploma_consent(roles, max_uses=1)
    service = roles.roles.consent
    store, consent = service.store, consent_id(artefact)
    provider = str(federation.POPULATION_REGISTRY).rsplit("/", 1)[0]
    assert store.redeem(consent, message_id="m1", provider=provider).status == "active"
    refused: list[bool] = []

    def note_refusal(_c: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE consent_consents SET uses") and cursor.rowcount == 0:
            refused.append(True)

    def give_back_first(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if refused and refused[-1] and statement.lstrip().upper().startswith("SELECT"):
            refused[-1] = False  # once; give_back's own statements pass through
            store.give_back(consent, message_id="m1", provider=provider)

    event.listen(service.engine, "after_cursor_execute", note_refusal)
    event.listen(service.engine, "before_cursor_execute", give_back_first)
    try:
        second = store.redeem(consent, message_id="m2", provider=provider)
    finally:
        event.remove(service.engine, "after_cursor_execute", note_refusal)
        event.remove(service.engine, "before_cursor_execute", give_back_first)
    assert refused == [False]  # the use was given back between the refusal and the read
    assert second.status == "exhausted"
    assert store.status(consent).uses == 0  # m2 spent nothing: it may ask again
    assert store.redeem(consent, message_id="m3", provider=provider).status == "active"
    assert store.status(consent).uses == 1
