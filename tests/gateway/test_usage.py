"""Who used my data: the Data Tracker v2 usage API on the provider gateway, through X-Road."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from audit import merkle
from exchange.cli import demo
from exchange.db.engine import build_engine
from exchange.gateway import usage as usage_service
from exchange.gateway.settings import GatewaySettings, UsageSpec
from exchange.sample import federation
from tests.gateway.conftest import MARI, PORTAL_CLIENT, RESIDENCE, Roles

JAAN = "EE39107156021"
USAGE = f"/r1/{federation.POPULATION_REGISTRY}/usage"


def usage(
    roles: Roles, path: str, *, token: str | None, user: str | None, **query: str
) -> httpx.Response:
    headers = {}
    if token is not None:
        headers["X-Exchange-Identity"] = token
    if user is not None:
        headers["X-Road-UserId"] = user
    return roles.call(f"{USAGE}{path}", headers=headers, params=query)


def test_find_usage_matches_the_protocol_field_for_field(roles: Roles) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(2):
        assert (
            roles.call(f"{RESIDENCE}?person={MARI}", headers={"X-Road-UserId": MARI}).status_code
            == 200
        )
    assert (
        roles.call(f"{RESIDENCE}?person={JAAN}", headers={"X-Road-UserId": JAAN}).status_code == 200
    )
    token = roles.id_token(MARI)
    found = usage(
        roles,
        "/v2/findUsage",
        token=token,
        user=MARI,
        userCode=MARI,
        periodStart=started.isoformat(),
    )
    assert found.status_code == 200, found.text
    body = found.json()
    assert set(body) == {"totalUsages", "usages"}
    assert body["totalUsages"] == 2
    for entry in body["usages"]:
        assert set(entry) == {"logtime", "action", "receiverCode", "receiverName", "receiverSystem"}
        assert entry["receiverCode"] == "70000001"
        assert entry["receiverName"] == "State Portal"
        assert entry["receiverSystem"] == "citizen-portal"
        assert "residence-record" in entry["action"]
    times = [entry["logtime"] for entry in body["usages"]]
    assert times == sorted(times, reverse=True)  # newest first
    page = usage(
        roles, "/v2/findUsage", token=token, user=MARI, userCode=MARI, offset="1", limit="1"
    ).json()
    assert len(page["usages"]) == 1
    assert page["usages"][0]["logtime"] <= times[0]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert usage(
        roles, "/v2/findUsage", token=token, user=MARI, userCode=MARI, periodStart=future
    ).json() == {"totalUsages": 0, "usages": []}


def test_a_citizen_cannot_read_another_citizens_usage(roles: Roles) -> None:
    mari = roles.id_token(MARI)
    for user, code in ((MARI, JAAN), (JAAN, JAAN), (JAAN, MARI)):
        refused = usage(roles, "/v2/findUsage", token=mari, user=user, userCode=code)
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"] == "Server.ServerProxy.AccessDenied"
    missing = usage(roles, "/v2/findUsage", token=None, user=MARI, userCode=MARI)
    assert missing.status_code == 401
    assert missing.json()["type"] == "Server.ServerProxy.InvalidToken"
    forged = usage(roles, "/v2/findUsage", token=mari[:-4] + "AAAA", user=MARI, userCode=MARI)
    assert forged.status_code == 401


def test_usage_period_and_heartbeat(roles: Roles) -> None:
    token = roles.id_token(MARI)
    period = usage(roles, "/v2/usagePeriod", token=token, user=MARI).json()
    assert set(period) == {"periodStart", "periodEnd"}
    heartbeat = usage(roles, "/v2/heartbeat", token=None, user=None).json()
    assert heartbeat["status"] == "OK"
    assert set(heartbeat) == {"status", "message"}


def test_rich_records_carry_purpose_and_a_verifiable_receipt(roles: Roles) -> None:
    response = roles.call(
        f"{RESIDENCE}?person={MARI}",
        headers={"X-Road-UserId": MARI, "X-Exchange-Purpose": "study-grant"},
    )
    assert response.status_code == 200
    roles.roles.run(roles.provider.heads.sign_now())
    records = usage(
        roles, "/v1/records", token=roles.id_token(MARI), user=MARI, userCode=MARI
    ).json()
    newest = records["usages"][0]
    assert newest["purpose"] == "study-grant"
    assert newest["messageId"] == response.headers["X-Road-Id"]
    receipt = newest["receipt"]
    leaf = merkle.leaf_hash(base64.b64decode(receipt["record"]))
    proof = [bytes.fromhex(p) for p in receipt["proof"]]
    assert merkle.verify_inclusion(
        receipt["seq"], receipt["size"], leaf, proof, bytes.fromhex(receipt["head"]["root"])
    )
    assert receipt["head"]["timestamp"]


def test_audit_records_hold_no_personal_codes_and_no_tokens(roles: Roles) -> None:
    token = roles.id_token(MARI)
    assert (
        roles.call(f"{RESIDENCE}?person={MARI}", headers={"X-Road-UserId": MARI}).status_code == 200
    )
    assert usage(roles, "/v2/findUsage", token=token, user=MARI, userCode=MARI).status_code == 200
    for settings in (roles.provider_settings(), roles.consumer_settings()):
        with build_engine(settings.db_url).connect() as connection:
            bodies = b"\n".join(
                connection.execute(text("SELECT body FROM audit_records")).scalars()
            )
        assert MARI.encode() not in bodies
        assert token.split(".")[1].encode() not in bodies
        assert b'"request_claims_digest"' in bodies


def test_refusals_are_attempts_apart_and_never_hide_a_release(
    roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = roles.clock().isoformat()
    released = roles.call(f"{RESIDENCE}?person={JAAN}", headers={"X-Road-UserId": JAAN})
    assert released.status_code == 200
    access = roles.provider_access()
    access.revoke(service=federation.RESIDENCE_RECORD, subject=PORTAL_CLIENT, actor="test")
    try:  # a member without an access right asks three times
        for _ in range(3):
            refused = roles.call(f"{RESIDENCE}?person={JAAN}", headers={"X-Road-UserId": JAAN})
            assert refused.status_code == 403
    finally:
        access.grant(
            service=federation.RESIDENCE_RECORD,
            subject=PORTAL_CLIENT,
            legal_basis=federation.RESIDENCE_LEGAL_BASIS,
            actor="test",
        )
    # However many refusals come after it, the release stays in view.
    monkeypatch.setattr(usage_service, "SCAN_LIMIT", 2)
    token = roles.id_token(JAAN)
    found = usage(
        roles, "/v2/findUsage", token=token, user=JAAN, userCode=JAAN, periodStart=started
    )
    assert found.json()["totalUsages"] == 1, found.text  # Data Tracker v2 lists releases only
    rich = usage(
        roles, "/v1/records", token=token, user=JAAN, userCode=JAAN, periodStart=started
    ).json()
    [access_] = rich["usages"]
    assert access_["messageId"] == released.headers["X-Road-Id"]
    monkeypatch.undo()
    rich = usage(
        roles, "/v1/records", token=token, user=JAAN, userCode=JAAN, periodStart=started
    ).json()
    assert rich["totalAttempts"] == 3
    [attempt] = rich["attempts"]  # grouped: who, what and why it was refused
    assert attempt["count"] == 3
    assert attempt["receiverSystem"] == "citizen-portal"
    assert attempt["service"] == federation.RESIDENCE_RECORD
    assert attempt["outcome"] == "Server.ServerProxy.AccessDenied"
    assert attempt["first"] <= attempt["last"]


def test_a_trusted_portal_may_ask_with_the_citizens_code_alone(fresh_roles: Roles) -> None:
    """Kept out by default (an ID token is needed); a portal subsystem the provider names may
    ask on the citizen's behalf with X-Road-UserId alone, and each record says which way."""
    settings = fresh_roles.provider_settings()

    def trusting(portal: str) -> None:
        update = {"usage": UsageSpec(trusted_portals=[portal])}
        fresh_roles.roles.restart("provider", settings.model_copy(update=update))

    def bare(path: str, code: str = MARI) -> int:
        return usage(fresh_roles, path, token=None, user=MARI, userCode=code).status_code

    assert bare("/v2/findUsage") == 401
    trusting("EE/GOV/70000001/another-portal")  # trusting one portal lets no other one in
    assert bare("/v2/findUsage") == 401
    trusting(PORTAL_CLIENT)
    trusted = usage(fresh_roles, "/v2/findUsage", token=None, user=MARI, userCode=MARI)
    assert trusted.status_code == 200, trusted.text
    assert bare("/v2/findUsage", JAAN) == 403
    # What Data Tracker does not give (message and consent ids, receipts) still needs the token.
    assert bare("/v1/records") == 401
    with_token = usage(
        fresh_roles, "/v2/findUsage", token=fresh_roles.id_token(MARI), user=MARI, userCode=MARI
    )
    assert with_token.status_code == 200
    authorised = {
        record["message_id"]: record["legal_basis"]
        for record in audit_records(fresh_roles.provider_settings())
    }
    assert "trusted portal" in authorised[trusted.headers["X-Road-Id"]]
    assert "ID token" in authorised[with_token.headers["X-Road-Id"]]


def test_every_register_of_the_demo_offers_the_usage_service(tmp_path: Path) -> None:
    """The portal's "who accessed my data" asks every provider: none may be left out."""
    layout = federation.create(tmp_path / "demo", demo._ports(21000), more=demo._more(21000))
    providers = [layout.provider, *layout.providers]
    assert len(providers) == 3
    for config in providers:
        settings = GatewaySettings.load(config)
        assert settings.identity is not None or settings.usage.trusted_portals, config


def audit_records(settings: GatewaySettings) -> list[dict[str, Any]]:
    with build_engine(settings.db_url).connect() as connection:
        bodies = connection.execute(text("SELECT body FROM audit_records")).scalars()
        return [json.loads(body) for body in bodies]
