"""The exchange path end to end: portal, its gateway, mutual TLS, provider gateway, registry."""

from __future__ import annotations

import base64
import json
import uuid
from urllib.parse import quote

import httpx
import pytest
import xmlschema
from cryptography import x509
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import select
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from audit import merkle
from exchange.db.engine import build_engine
from exchange.gateway import models, node
from exchange.gateway.settings import SCHEMAS_DIR
from exchange.gateway.signing import request_hash
from exchange.trust.keys import certificate_pem
from tests.conftest import database_down
from tests.factories import audit_store_unwritable
from tests.gateway.conftest import (
    BIRTH,
    DIPLOMA,
    DIPLOMA_LEGAL_BASIS,
    MARI,
    PORTAL_CLIENT,
    PURPOSE,
    RESIDENCE,
    Roles,
)
from tests.servers import exchange


def exchanges(roles: Roles, side: str, message_id: str) -> list[models.Exchange]:
    """The operational records of ``message_id``. They are written in batches after the response
    (only the audit record must precede it): the gateway's log is drained first."""
    gateway = roles.roles.consumer if side == "client" else roles.provider
    roles.roles.run(gateway.exchanges.drain())
    query = select(models.Exchange).where(models.Exchange.message_id == message_id)
    with Session(build_engine(gateway.settings.db_url)) as session:
        found = list(session.scalars(query))
    assert found, f"no {side} operational record of {message_id}"
    return found


def test_evidence_as_json_with_xroad_headers(roles: Roles) -> None:
    message_id = str(uuid.uuid4())
    response = roles.call(
        f"{BIRTH}?person={MARI}", headers={**roles.consented(), "X-Road-Id": message_id}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    evidence = response.json()["BirthCertificate"]
    assert evidence["personCode"] == MARI
    assert evidence["placeOfBirth"] == {"municipality": "Tallinn", "country": "EE"}
    assert response.headers["X-Road-Id"] == message_id
    assert response.headers["X-Road-Client"] == PORTAL_CLIENT
    assert (
        response.headers["X-Road-Service"]
        == "EE/GOV/70000310/population-registry/birth-certificate"
    )
    [record] = exchanges(roles, "client", message_id)
    assert response.headers["X-Road-Request-Hash"] == request_hash(record.request_signature or "")
    assert "X-Road-Error" not in response.headers


def test_evidence_as_xml_is_schema_valid(roles: Roles) -> None:
    response = roles.call(
        f"{BIRTH}?person={MARI}", headers={**roles.consented(), "Accept": "application/xml"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml"
    schema = xmlschema.XMLSchema(str(SCHEMAS_DIR / "birth-certificate.xsd"))
    assert schema.is_valid(response.content)
    assert schema.to_dict(response.content)["familyName"] == "Tamm"


def test_message_id_is_generated_when_missing(roles: Roles) -> None:
    response = roles.call(f"{BIRTH}?person={MARI}", headers=roles.consented())
    assert response.status_code == 200
    assert uuid.UUID(response.headers["X-Road-Id"])


def test_both_signatures_verify_with_an_independent_jose_library(roles: Roles) -> None:
    message_id = str(uuid.uuid4())
    response = roles.call(
        f"{BIRTH}?person={MARI}",
        headers={**roles.consented(), "X-Road-Id": message_id},
    )
    assert response.status_code == 200
    [consumer_side] = exchanges(roles, "client", message_id)
    [provider_side] = exchanges(roles, "producer", message_id)
    assert consumer_side.request_signature == provider_side.request_signature
    assert consumer_side.response_signature == provider_side.response_signature

    def key(settings_dir: object) -> ECKey:
        cert = x509.load_pem_x509_certificate((settings_dir / "signing.pem").read_bytes())  # type: ignore[operator]
        return ECKey.import_key(certificate_pem(cert).encode())

    request = jws.deserialize_compact(
        consumer_side.request_signature or "",
        key(roles.consumer_settings().data_dir),
        algorithms=["ES256"],
    )
    claims = json.loads(request.payload)
    assert claims["message_id"] == message_id
    assert claims["client"] == PORTAL_CLIENT
    assert claims["purpose"] == PURPOSE
    assert claims["query"] == f"person={MARI}"
    assert claims["exp"] > claims["iat"]
    answer = jws.deserialize_compact(
        consumer_side.response_signature or "",
        key(roles.provider_settings().data_dir),
        algorithms=["ES256"],
    )
    bound = json.loads(answer.payload)
    assert bound["status"] == 200
    assert bound["request_hash"] == request_hash(consumer_side.request_signature or "")
    assert provider_side.succeeded
    assert provider_side.peer == "EE/GOV/70000001/gw1"


def test_unknown_person_is_a_signed_not_found(roles: Roles) -> None:
    response = roles.call(f"{RESIDENCE}?person=EE00000000000")
    assert response.status_code == 404
    assert response.json()["type"] == "Server.ServerProxy.NotFound"
    assert response.headers["X-Road-Error"] == "Server.ServerProxy.NotFound"


def test_caller_mistakes_are_client_errors(roles: Roles) -> None:
    missing_client = roles.call(f"{BIRTH}?person={MARI}", headers={"X-Road-Client": ""})
    assert missing_client.status_code == 400
    assert missing_client.json()["type"] == "Client.InvalidRequest"
    foreign = roles.call(
        f"{BIRTH}?person={MARI}", headers={"X-Road-Client": "EE/GOV/70000310/population-registry"}
    )
    assert foreign.status_code == 403
    assert foreign.json()["type"] == "Client.AccessDenied"
    encoded = roles.call(
        f"/r1/EE/GOV/70000310/population%2Dregistry/birth-certificate?person={MARI}"
    )
    assert encoded.status_code == 400
    assert encoded.json()["type"] == "Client.InvalidIdentifier"
    unknown_subsystem = roles.call("/r1/EE/GOV/70000310/nothing-here/birth-certificate")
    assert unknown_subsystem.status_code == 404
    assert unknown_subsystem.json()["type"] == "Client.UnknownService"
    missing_parameter = roles.call(BIRTH)
    assert missing_parameter.status_code == 400
    assert missing_parameter.json()["type"] == "Server.ServerProxy.InvalidRequest"
    not_acceptable = roles.call(f"{BIRTH}?person={MARI}", headers={"Accept": "text/csv"})
    assert not_acceptable.status_code == 406


def test_unknown_service_of_a_known_subsystem(roles: Roles) -> None:
    response = roles.call("/r1/EE/GOV/70000310/population-registry/tax-returns")
    assert response.status_code == 404
    assert response.json()["type"] == "Server.ServerProxy.UnknownService"


def test_no_access_right_is_denied_without_calling_the_registry(roles: Roles) -> None:
    access = roles.provider_access()
    service = "EE/GOV/70000310/population-registry/diploma"
    access.revoke(service=service, subject=PORTAL_CLIENT, actor="test")
    try:
        before = roles.registry.calls
        response = roles.call(f"{DIPLOMA}?person={MARI}")
        assert response.status_code == 403
        assert response.json()["type"] == "Server.ServerProxy.AccessDenied"
        assert roles.registry.calls == before
    finally:
        access.grant(
            service=service, subject=PORTAL_CLIENT, legal_basis=DIPLOMA_LEGAL_BASIS, actor="test"
        )
    assert roles.call(f"{DIPLOMA}?person={MARI}").status_code == 200


def test_group_grants_and_method_path_narrowing(roles: Roles) -> None:
    access = roles.provider_access()
    service = "EE/GOV/70000310/population-registry/diploma"
    access.revoke(service=service, subject=PORTAL_CLIENT, actor="test")
    try:
        access.add_group("portals", actor="test")
        access.add_to_group("portals", PORTAL_CLIENT, actor="test")
        access.grant(
            service=service,
            subject="group:portals",
            method="POST",
            legal_basis=DIPLOMA_LEGAL_BASIS,
            actor="test",
        )
        assert roles.call(f"{DIPLOMA}?person={MARI}").status_code == 403  # GET is not granted
        posted = roles.call(
            f"{DIPLOMA}?person={MARI}",
            method="POST",
            content=b"{}",
            headers={"Content-Type": "application/json"},
        )
        assert posted.status_code == 200, posted.text
    finally:
        access.revoke(service=service, subject="group:portals", method="POST", actor="test")
        access.grant(
            service=service, subject=PORTAL_CLIENT, legal_basis=DIPLOMA_LEGAL_BASIS, actor="test"
        )


def test_oversized_body_is_413(roles: Roles) -> None:
    response = roles.call(f"{DIPLOMA}?person={MARI}", method="POST", content=b"x" * 70000)
    assert response.status_code == 413
    assert response.json()["type"] == "Client.PayloadTooLarge"


def test_metaservices(roles: Roles) -> None:
    listed = roles.call("/r1/EE/GOV/70000310/population-registry/listMethods")
    assert listed.status_code == 200, listed.text
    codes = {s["service_code"] for s in listed.json()["service"]}
    assert codes == {"birth-certificate", "residence-record", "diploma", "consented-diploma"}
    allowed = roles.call("/r1/EE/GOV/70000310/population-registry/allowedMethods")
    assert {s["service_code"] for s in allowed.json()["service"]} == codes
    openapi = roles.call(
        "/r1/EE/GOV/70000310/population-registry/getOpenAPI?serviceCode=birth-certificate"
    )
    assert openapi.status_code == 200
    assert openapi.json()["openapi"].startswith("3.")
    clients = json.loads(roles.call("/listClients").content)["member"]
    ids = {
        (c["id"]["object_type"], c["id"]["member_code"], c["id"].get("subsystem_code"))
        for c in clients
    }
    assert ("SUBSYSTEM", "70000001", "citizen-portal") in ids
    assert ("MEMBER", "70000310", None) in ids


def test_operational_metrics_are_exported(roles: Roles) -> None:
    roles.call(f"{BIRTH}?person={MARI}", headers=roles.consented())
    text = roles.call("/metrics").text
    assert (
        'exchange_requests_total{service="EE/GOV/70000310/population-registry/birth-certificate",side="client",status="200"}'
        in text
    )
    assert "exchange_request_seconds_bucket" in text


def test_operational_monitoring_records(roles: Roles) -> None:
    message_id = str(uuid.uuid4())
    roles.call(f"{BIRTH}?person={MARI}", headers={**roles.consented(), "X-Road-Id": message_id})
    listed = exchange(
        "gateway", "exchanges", "-c", str(roles.layout.provider), "--json", "--limit", "50"
    )
    assert listed.returncode == 0, listed.stderr
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    [mine] = [r for r in records if r["messageId"] == message_id]
    assert mine["securityServerType"] == "Producer"
    assert mine["serviceCode"] == "birth-certificate"
    assert mine["clientSubsystemCode"] == "citizen-portal"
    assert mine["messageUserId"] == MARI
    assert mine["succeeded"] is True
    assert (
        mine["requestInTs"] <= mine["requestOutTs"] <= mine["responseInTs"] <= mine["responseOutTs"]
    )


def test_audit_log_of_both_gateways_verifies(roles: Roles) -> None:
    for _ in range(3):
        assert roles.call(f"{BIRTH}?person={MARI}", headers=roles.consented()).status_code == 200
    assert (
        roles.call(f"{RESIDENCE}?person=EE00000000000").status_code == 404
    )  # refusals are audited too
    for gateway, config in (
        (roles.provider, roles.layout.provider),
        (roles.roles.consumer, roles.layout.consumer),
    ):
        head = roles.roles.run(gateway.heads.sign_now())
        assert head.tsa == "tsa1"  # timestamped by the instance's TSA
        checked = exchange("audit", "verify", "-c", str(config))
        assert checked.returncode == 0, checked.stderr
        assert "OK," in checked.stdout
        assert " 0 timestamped" not in checked.stdout
    # An auditor saves the provider's heads as published, and checks its log against them.
    saved = roles.layout.provider.parent / "saved-heads.json"
    published = roles.http.get(f"http://127.0.0.1:{roles.ports.provider_consumer}/audit/heads")
    saved.write_bytes(published.content)
    checked = exchange("audit", "verify", "-c", str(roles.layout.provider), "--heads", str(saved))
    assert checked.returncode == 0, checked.stderr
    assert f"consistent with the head kept at size {published.json()[-1]['size']}" in (
        checked.stdout
    )


def provider_health(roles: Roles) -> httpx.Response:
    return roles.http.get(f"http://127.0.0.1:{roles.ports.provider_consumer}/health")


def test_an_idle_gateway_finds_out_that_it_cannot_audit(
    roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No exchange comes to show it: once its last write is old enough (here at once), each
    health check tries the database itself."""
    monkeypatch.setattr(node, "PROBE_AFTER", 0.0)
    engine = build_engine(roles.provider_settings().db_url)
    with audit_store_unwritable(engine):
        assert provider_health(roles).status_code == 503
    assert provider_health(roles).status_code == 200
    engine.dispose()


def test_unwritable_audit_store_releases_nothing_and_health_says_so(roles: Roles) -> None:
    """A gateway that cannot audit refuses with 503 (try another replica) and its /health says
    503 until a write succeeds again, which it finds out without any exchange."""
    assert provider_health(roles).json()["audit_log"] == "ok"
    engine = build_engine(roles.provider_settings().db_url)
    with audit_store_unwritable(engine):
        response = roles.call(f"{BIRTH}?person={MARI}", headers=roles.consented())
        assert response.status_code == 503
        assert response.json()["type"] == "Server.ServerProxy.LoggingFailed"
        assert response.headers["X-Road-Error"] == "Server.ServerProxy.LoggingFailed"
        assert "Tamm" not in response.text
        for _ in range(2):  # the probe that each check makes still fails
            health = provider_health(roles)
            assert health.status_code == 503, health.text
            assert health.json()["status"] == "FAIL"
            assert health.json()["audit_log"] == "failing"
            assert "audit log" in health.json()["reason"]
            assert "consent_feeds" in health.json()
        # The consumer's own log is fine: its gateway stays in service.
        assert roles.http.get(f"{roles.consumer_url}/health").status_code == 200
    engine.dispose()
    health = provider_health(roles)  # repaired: the next check's probe writes, no exchange needed
    assert health.status_code == 200, health.text
    assert (health.json()["status"], health.json()["audit_log"]) == ("ok", "ok")
    assert roles.call(f"{BIRTH}?person={MARI}", headers=roles.consented()).status_code == 200


def test_a_lost_database_makes_the_gateway_unhealthy_until_it_returns(roles: Roles) -> None:
    url = roles.provider_settings().db_url
    if not url.startswith("postgresql"):
        pytest.skip("a database server that goes away and comes back: PostgreSQL")
    headers = roles.consented()
    with database_down(url):
        response = roles.call(f"{BIRTH}?person={MARI}", headers=headers)
        assert response.status_code == 503, response.text
        assert response.json()["type"] == "Server.ServerProxy.LoggingFailed"
        health = provider_health(roles)
        assert health.status_code == 503, health.text
        assert health.json()["audit_log"] == "failing"
    health = provider_health(roles)
    assert health.status_code == 200, health.text
    assert roles.call(f"{BIRTH}?person={MARI}", headers=headers).status_code == 200


def test_receipts_and_consistency_proofs_verify_independently(roles: Roles) -> None:
    provider = f"http://127.0.0.1:{roles.ports.provider_consumer}"
    assert roles.call(f"{BIRTH}?person={MARI}", headers=roles.consented()).status_code == 200
    roles.roles.run(roles.provider.heads.sign_now())
    first = roles.http.get(f"{provider}/audit/heads").json()[-1]
    assert roles.call(f"{BIRTH}?person={MARI}", headers=roles.consented()).status_code == 200
    roles.roles.run(roles.provider.heads.sign_now())
    second = roles.http.get(f"{provider}/audit/heads").json()[-1]
    assert second["size"] > first["size"]

    receipt = roles.http.get(f"{provider}/audit/records/{first['size'] - 1}/proof").json()
    body = base64.b64decode(receipt["record"])
    leaf = merkle.leaf_hash(body)
    proof = [bytes.fromhex(p) for p in receipt["proof"]]
    root = bytes.fromhex(receipt["head"]["root"])
    assert merkle.verify_inclusion(receipt["seq"], receipt["size"], leaf, proof, root)
    assert not merkle.verify_inclusion(
        receipt["seq"], receipt["size"], merkle.leaf_hash(b"forged"), proof, root
    )
    assert json.loads(body)["chain"] == receipt["chain"]
    assert MARI.encode() not in body  # the person appears only as a keyed hash

    consistency = roles.http.get(
        f"{provider}/audit/consistency", params={"from": first["size"], "to": second["size"]}
    ).json()
    assert merkle.verify_consistency(
        first["size"],
        second["size"],
        bytes.fromhex(first["root"]),
        bytes.fromhex(second["root"]),
        [bytes.fromhex(p) for p in consistency["proof"]],
    )
    assert roles.http.get(f"{provider}/audit/records/999999/proof").status_code == 404
    assert (
        roles.http.get(f"{provider}/audit/consistency", params={"from": "x", "to": 1}).status_code
        == 400
    )


def bare_request(
    roles: Roles, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> httpx.Response:
    """A request with only the headers given (and ``Host``, ``Content-Length``): no Accept,
    no Content-Type, none of the defaults an HTTP library adds."""
    request = roles.http.build_request(
        method, f"{roles.consumer_url}{path}", headers=headers, content=body or None
    )
    for default in ("accept", "accept-encoding", "user-agent", "connection"):
        del request.headers[default]
    return roles.http.send(request)


def test_a_client_sending_only_the_xroad_headers_gets_its_evidence(roles: Roles) -> None:
    xroad = {"X-Road-Client": PORTAL_CLIENT, "X-Exchange-Purpose": PURPOSE}
    fetched = bare_request(roles, "GET", f"{DIPLOMA}?person={MARI}", xroad)
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["Content-Type"] == "application/json"
    assert fetched.json()["Diploma"]["personCode"] == MARI
    # A POST with a body and no Content-Type: signed as sent, so it verifies.
    posted = bare_request(roles, "POST", f"{DIPLOMA}?person={MARI}", xroad, b"{}")
    assert posted.status_code == 200, posted.text


def test_head_is_answered_without_a_body_and_never_as_tampering(roles: Roles) -> None:
    with capture_logs() as logs:
        listed = roles.call("/r1/EE/GOV/70000310/population-registry/listMethods", method="HEAD")
        refused = roles.call(f"{BIRTH}?person={MARI}", method="HEAD", headers=roles.consented())
    assert listed.status_code == 200, listed.headers
    assert listed.content == b""
    # The birth certificate service accepts GET only: a signed refusal, not a broken answer.
    assert refused.status_code == 405
    assert refused.headers["X-Road-Error"] == "Server.ServerProxy.InvalidHttpMethod"
    assert not [entry for entry in logs if "verification" in str(entry)], logs


def test_a_malformed_header_is_refused_with_the_rule_it_breaks(roles: Roles) -> None:
    issue = "ملف القضية 42".encode()  # a case file named in Arabic, sent as raw UTF-8
    response = roles.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Issue": issue})  # type: ignore[dict-item]
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "Client.InvalidRequest"
    assert body["detail"] == "X-Road-Issue"
    assert "printable ASCII" in body["message"]
    assert "percent-encode" in body["message"]
    encoded = quote("ملف القضية 42")
    assert roles.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Issue": encoded}).is_success
