"""The consent service's API on a roles server: forged ID tokens are refused at the door, a
citizen sees and revokes only their own consents, and the terms are shown before granting."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from exchange.consent.artefact import Consent, Purpose
from exchange.consent.messages import sign_page, sign_query, verify_answer, verify_page
from exchange.consent.store import Revocations
from exchange.errors import ConsentDenied, ServiceUnavailable
from exchange.gateway import files as gateway_files
from exchange.idp import files as idp_files
from exchange.sample import federation
from exchange.trust.signed import Signer
from exchange.trust.view import TrustView
from tests.gateway.conftest import MARI, Roles

JAAN = "EE39107156021"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def idp_key(roles: Roles) -> Any:
    return idp_files.load(roles.layout.idp, clock=lambda: None)._key  # type: ignore[arg-type]


def claims(roles: Roles, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": f"http://127.0.0.1:{roles.ports.idp}",
        "sub": MARI,
        "aud": federation.CONSENT_CLIENT_ID,
        "iat": now,
        "exp": now + 300,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(roles: Roles, payload: dict[str, Any], typ: str = "JWT") -> str:
    provider = idp_files.load(roles.layout.idp, clock=lambda: None)  # type: ignore[arg-type]
    return jwt.encode(
        payload, idp_key(roles), algorithm="ES256", headers={"kid": provider.kid, "typ": typ}
    )


def listing(roles: Roles, token: str) -> httpx.Response:
    return roles.http.get(
        f"{roles.consent_url}/api/v1/consents", headers={"Authorization": f"Bearer {token}"}
    )


def forgeries(roles: Roles) -> dict[str, str]:
    provider = idp_files.load(roles.layout.idp, clock=lambda: None)  # type: ignore[arg-type]
    body = b64(json.dumps(claims(roles)).encode())
    none = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': provider.kid}).encode())}.{body}."
    public_pem = (
        idp_key(roles)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider.kid}).encode())
    mac = hmac.new(public_pem, f"{hs_header}.{body}".encode(), hashlib.sha256).digest()
    return {
        "alg-none": none,
        "hs256-with-public-key": f"{hs_header}.{body}.{b64(mac)}",
        "missing-exp": signed(roles, claims(roles, exp=None)),
        "missing-aud": signed(roles, claims(roles, aud=None)),
        "wrong-issuer": signed(roles, claims(roles, iss="http://127.0.0.1:1")),
        "expired": signed(
            roles, claims(roles, iat=int(time.time()) - 900, exp=int(time.time()) - 600)
        ),
        "portal-token": roles.id_token(MARI),  # issued to another client
        "consent-artefact": roles.artefact(MARI),  # a token of another kind
        "another-typ": signed(roles, claims(roles), typ="exchange-consent+jwt"),
    }


@pytest.mark.parametrize(
    "attack",
    [
        "alg-none",
        "hs256-with-public-key",
        "missing-exp",
        "missing-aud",
        "wrong-issuer",
        "expired",
        "portal-token",
        "consent-artefact",
        "another-typ",
    ],
)
def test_forged_id_tokens_are_refused(roles: Roles, attack: str) -> None:
    answer = listing(roles, forgeries(roles)[attack])
    assert answer.status_code == 401, answer.text
    assert answer.json()["type"] == "Client.InvalidToken"
    assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_genuine_token_lists_only_ones_own_consents(roles: Roles) -> None:
    mine = roles.grant(MARI).json()["id"]
    jaans = roles.grant(JAAN).json()["id"]
    token = roles.id_token(MARI, federation.CONSENT_CLIENT_ID)
    ids = [c["id"] for c in listing(roles, token).json()["consents"]]
    assert mine in ids
    assert jaans not in ids
    stolen = roles.http.post(
        f"{roles.consent_url}/api/v1/consents/{jaans}/revoke",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert stolen.status_code == 404
    mine_now = [
        c
        for c in listing(roles, roles.id_token(JAAN, federation.CONSENT_CLIENT_ID)).json()[
            "consents"
        ]
        if c["id"] == jaans
    ]
    assert mine_now[0]["status"] == "active"


def test_terms_in_plain_words_and_bad_requests(roles: Roles) -> None:
    token = roles.id_token(MARI, federation.CONSENT_CLIENT_ID)
    request = {
        "consumer": str(federation.CITIZEN_PORTAL),
        "service": federation.BIRTH_CERTIFICATE,
        "purpose": "passport-application",
        "purpose_text": "to apply for a passport",
        "max_uses": 1,
    }
    terms = roles.http.post(
        f"{roles.consent_url}/api/v1/terms",
        json=request,
        headers={"Authorization": f"Bearer {token}"},
    ).json()["notice"]
    assert terms.startswith("State Portal (EE/GOV/70000001/citizen-portal) may obtain your")
    assert "birth certificate from Population Register at most 1 time" in terms
    for bad, field in (
        ({"service": "EE/GOV/70000310/population-registry/nothing"}, "service"),
        ({"consumer": "EE/GOV/79999999/nobody"}, "consumer"),
        ({"purpose": "has spaces"}, "purpose"),
        ({"valid_days": 100000}, "valid_days"),
        ({"max_uses": 0}, "max_uses"),
    ):
        answer = roles.http.post(
            f"{roles.consent_url}/api/v1/consents",
            json={**request, **bad},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["detail"] == field


def question(roles: Roles, config: str, consent_id: str, action: str, message: str) -> str:
    settings = roles.provider_settings() if config == "provider" else roles.consumer_settings()
    keys = gateway_files.load(settings)
    return sign_query(
        Signer(keys.signing_key, keys.signing_certificate),
        consent_id=consent_id,
        action=action,
        message_id=message,
        service=f"{federation.BIRTH_CERTIFICATE}/v1",
        at=datetime.now(UTC),
    )


def answer_of(
    roles: Roles, response: httpx.Response, consent_id: str, action: str, message: str
) -> dict[str, Any]:
    """The consent service's signed answer, verified as a provider verifies it."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/jose"
    return verify_answer(
        response.text,
        view=trust_view(roles),
        issuer=federation.CONSENT_SERVICE,
        consent_id=consent_id,
        action=action,
        message_id=message,
        at=datetime.now(UTC),
        skew=30,
    )


def test_only_the_provider_may_ask_and_answers_are_signed(roles: Roles) -> None:
    consent_id = roles.grant(MARI, max_uses=1).json()["id"]
    base = f"{roles.consent_url}/api/v1/consents/{consent_id}"
    unsigned = roles.http.post(f"{base}/status", content=b"not-a-jws")
    assert unsigned.status_code in (400, 403)
    # The portal's member does not provide the consented service: it learns nothing.
    portal = roles.http.post(
        f"{base}/uses", content=question(roles, "consumer", consent_id, "use", "m-1")
    )
    assert portal.status_code == 404, portal.text
    status = roles.http.post(
        f"{base}/status", content=question(roles, "provider", consent_id, "status", "m-1")
    )
    assert answer_of(roles, status, consent_id, "status", "m-1")["status"] == "active"
    used = roles.http.post(
        f"{base}/uses", content=question(roles, "provider", consent_id, "use", "m-1")
    )
    assert answer_of(roles, used, consent_id, "use", "m-1")["uses"] == 1
    # The same message again, after the provider's replay guard forgot it: never again.
    again = roles.http.post(
        f"{base}/uses", content=question(roles, "provider", consent_id, "use", "m-1")
    )
    assert answer_of(roles, again, consent_id, "use", "m-1")["status"] == "replayed"
    # A question for one action cannot be used at the other endpoint.
    mixed = roles.http.post(
        f"{base}/uses", content=question(roles, "provider", consent_id, "status", "m-2")
    )
    assert mixed.status_code == 403


def trust_view(roles: Roles) -> TrustView:
    """The configuration as the provider gateway sees it."""
    return roles.provider.trust.view()


def feed(roles: Roles, **params: str) -> Revocations:
    nonce = str(uuid.uuid4())
    response = roles.http.get(
        f"{roles.consent_url}/api/v1/revocations",
        params={**params, "nonce": nonce},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/jose"
    return verify_page(
        response.text,
        view=trust_view(roles),
        issuer=federation.CONSENT_SERVICE,
        nonce=nonce,
        at=datetime.now(UTC),
        skew=30,
    )


def revoke(roles: Roles, consent_id: str, citizen: str = MARI) -> httpx.Response:
    token = roles.id_token(citizen, federation.CONSENT_CLIENT_ID)
    return roles.http.post(
        f"{roles.consent_url}/api/v1/consents/{consent_id}/revoke",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_the_revocation_feed_lists_revocations_in_order_signed(roles: Roles) -> None:
    start = feed(roles)
    assert start.complete
    first, second, kept = (roles.grant(MARI).json()["id"] for _ in range(3))
    assert revoke(roles, first).json()["status"] == "revoked"
    assert revoke(roles, second).json()["status"] == "revoked"
    page = feed(roles, after=str(start.last))
    assert list(page.revoked) == [first, second]
    assert kept not in page.revoked
    assert page.complete
    assert page.last > start.last
    assert all(until > time.time() for until in page.revoked.values())
    # Revoking again changes nothing and adds nothing.
    assert revoke(roles, first).json()["status"] == "revoked"
    assert feed(roles, after=str(page.last)).revoked == {}
    # A provider that read further than the service holds (a restored backup) gets it all again.
    assert {first, second} <= set(feed(roles, after=str(page.last + 1000)).revoked)


def test_revoking_at_the_same_moment_twice_revokes_once(roles: Roles) -> None:
    after = feed(roles).last
    consent_id = roles.grant(MARI).json()["id"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: revoke(roles, consent_id), range(8)))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert {a.json()["status"] for a in answers} == {"revoked"}
    assert list(feed(roles, after=str(after)).revoked) == [consent_id]


def test_a_held_poll_answers_as_soon_as_a_consent_is_revoked(roles: Roles) -> None:
    after = feed(roles).last
    consent_id = roles.grant(MARI).json()["id"]
    with ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        held = pool.submit(feed, roles, after=str(after), wait="20", subscriber="test")
        subscribers = roles.roles.loopback.routes[roles.consent_url][0].state.subscribers
        roles.eventually(lambda: subscribers.holding("test") > 0, what="the poll is held")
        assert not held.done()
        assert revoke(roles, consent_id).status_code == 200
        assert list(held.result(timeout=15).revoked) == [consent_id]
    assert time.monotonic() - began < 10
    # Nothing new: the poll is held for its wait, then answered empty and complete.
    began = time.monotonic()
    quiet = feed(roles, after=str(feed(roles).last), wait="0.5")
    assert quiet.revoked == {}
    assert quiet.complete
    assert 0.4 < time.monotonic() - began < 5


@pytest.mark.parametrize(
    "params",
    [{"after": "-1"}, {"after": "x"}, {"wait": "1e3"}, {"after": "1.5"}, {"subscriber": "s" * 300}],
)
def test_the_revocation_feed_refuses_malformed_questions(
    roles: Roles, params: dict[str, str]
) -> None:
    response = roles.http.get(f"{roles.consent_url}/api/v1/revocations", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("InvalidRequest")


def test_a_page_verifies_only_from_its_consent_service_for_its_poll(roles: Roles) -> None:
    response = roles.http.get(f"{roles.consent_url}/api/v1/revocations", params={"nonce": "n-1"})
    view = trust_view(roles)
    now = datetime.now(UTC)
    page = response.text

    def check(**changes: Any) -> Revocations:
        arguments = {
            "view": view,
            "issuer": federation.CONSENT_SERVICE,
            "nonce": "n-1",
            "at": now,
            "skew": 30,
        }
        return verify_page(changes.pop("page", page), **{**arguments, **changes})

    check()
    keys = gateway_files.load(roles.provider_settings())
    provider = Signer(keys.signing_key, keys.signing_certificate)
    resigned = sign_page(provider, federation.CONSENT_SERVICE, check(), "n-1", now)
    for changes in (
        {"page": resigned},  # another signer: a provider, not the consent service
        {"issuer": "other"},  # another consent service's name
        {"at": now + timedelta(minutes=5)},  # stale
        {"nonce": "n-2"},  # replayed to a later poll
        {"nonce": None},
    ):
        with pytest.raises(ServiceUnavailable):
            check(**changes)


def test_a_consent_covers_one_service_not_its_evidence_type_elsewhere() -> None:
    consent = Consent(
        jti="c",
        iss="consent",
        sub=MARI,
        consumer="EE/GOV/70000001/citizen-portal",
        consumer_name="State Portal",
        service="EE/GOV/70000310/population-registry/birth-certificate",
        evidence_type="birth-certificate",
        purpose=Purpose("p", "text"),
        iat=0,
        nbf=0,
        exp=2**40,
        max_uses=None,
        preview=False,
        notice="n",
        status_url="u",
    )
    with pytest.raises(ConsentDenied) as denied:
        consent.check(
            at=datetime.now(UTC),
            consumer="EE/GOV/70000001/citizen-portal",
            service="EE/GOV/79999999/other-registry/birth-certificate",
            evidence_type="birth-certificate",
            purpose="p",
            subject=MARI,
            user_id=MARI,
        )
    assert denied.value.detail == "other-service"
