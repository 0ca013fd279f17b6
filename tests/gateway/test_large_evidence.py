"""Large evidence, bounded memory (issue 17): a 100 MB PDF scan streams from the registry's REST
backend through both gateways, real processes on loopback with mutual TLS, to a caller that
reads it in chunks. Neither gateway holds it: each one's peak resident memory grows by less than
30 MB over what it held before. A backend that sends other bytes than it promised, or fewer,
leaves the caller with no complete answer, and both gateways audit the exchange as broken.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from connectors.document import sha256_of
from exchange.errors import ServiceFailed
from exchange.gateway.settings import GatewaySettings
from exchange.sample import federation
from exchange.trust.signed import body_digest
from tests.gateway.document_server import (
    HEADERS,
    MB,
    PERSON,
    SCAN,
    DocumentFederation,
    document_federation,
    peak_rss,
    reset_peak,
    rss,
)

pytestmark = pytest.mark.timeout(240)
LARGE = 100 * MB
GROWTH = 30 * MB


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentFederation]:
    with document_federation(tmp_path_factory.mktemp("large")) as running:
        yield running


def fetch(running: DocumentFederation, message_id: str) -> tuple[httpx.Response, str, int]:
    """Ask for the scan and read it in chunks: the answer, its SHA-256 and length as read."""
    hashed, length = hashlib.sha256(), 0
    headers = {**HEADERS, "X-Road-Id": message_id}
    url = f"{running.consumer_url}{SCAN}?person={PERSON}"
    with (
        httpx.Client(timeout=60) as client,
        client.stream("GET", url, headers=headers) as answer,
    ):
        for chunk in answer.iter_raw(65536):
            hashed.update(chunk)
            length += len(chunk)
    return answer, base64.urlsafe_b64encode(hashed.digest()).rstrip(b"=").decode(), length


def records(running: DocumentFederation, gateway: str, message_id: str) -> list[dict[str, object]]:
    bodies = (json.loads(body) for body in running.audit_bodies(gateway))
    return [body for body in bodies if body["message_id"] == message_id]


def test_a_100_mb_scan_passes_both_gateways_whole_without_either_holding_it(
    scans: DocumentFederation,
) -> None:
    scans.backend.mode, scans.backend.size = "ok", MB
    answer, _, _ = fetch(scans, str(uuid.uuid4()))  # every code path loaded once
    assert answer.status_code == 200, answer.read()
    gateways = {name: scans.processes[name].pid for name in ("consumer", "provider")}
    before = {name: rss(pid) for name, pid in gateways.items()}
    for pid in gateways.values():
        reset_peak(pid)

    scans.backend.size = LARGE
    message_id = str(uuid.uuid4())
    answer, digest, length = fetch(scans, message_id)

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert (length, digest) == (LARGE, scans.backend.digest())
    assert answer.headers["x-exchange-parts"] == f"0:{LARGE}:{digest}"  # bound, and passed on
    growth = {name: peak_rss(pid) - before[name] for name, pid in gateways.items()}
    assert all(grown < GROWTH for grown in growth.values()), growth
    for gateway in ("consumer", "provider"):
        (record,) = records(scans, gateway, message_id)
        assert (record["status"], record["fault"]) == (200, None)
        assert record["parts"] == f"0:{LARGE}:{digest}"  # the audit record binds the part


@pytest.mark.parametrize(
    ("mode", "provider_fault"),
    [
        ("forged", "Server.ServerProxy.InvalidEvidence"),  # other bytes than promised
        ("cut", "Server.ServerProxy.ServiceFailed"),  # fewer bytes than promised
    ],
)
def test_a_scan_other_than_promised_reaches_nobody_complete_and_is_audited_as_broken(
    scans: DocumentFederation, mode: str, provider_fault: str
) -> None:
    scans.backend.mode, scans.backend.size = mode, 4 * MB
    message_id = str(uuid.uuid4())
    with pytest.raises(httpx.RemoteProtocolError):  # the connection closes short of the length
        fetch(scans, message_id)

    provider = records(scans, "provider", message_id)
    consumer = records(scans, "consumer", message_id)
    # Released under the signature binding the promise; then the record of its breaking.
    assert [(r["status"], r["fault"]) for r in provider] == [(200, None), (502, provider_fault)]
    assert [(r["status"], r["fault"]) for r in consumer] == [
        (200, None),
        (502, "Server.ClientProxy.InvalidResponse"),  # the provider's answer is at fault
    ]
    assert provider[0]["response_signature"] == provider[1]["response_signature"]


def test_a_caller_that_stops_reading_stops_the_registry_being_read(
    scans: DocumentFederation,
) -> None:
    scans.backend.mode, scans.backend.size = "ok", LARGE
    headers = {**HEADERS, "X-Road-Id": str(uuid.uuid4())}
    url = f"{scans.consumer_url}{SCAN}?person={PERSON}"
    with httpx.Client(timeout=60) as client, client.stream("GET", url, headers=headers) as answer:
        assert answer.status_code == 200
        next(answer.iter_raw(65536))  # the first chunk, then the caller hangs up
    assert scans.backend.done.wait(30), "the registry is still being read"
    assert scans.backend.sent < LARGE // 2  # far from all of it: nobody read on for no one


def test_a_caller_that_does_not_take_the_documents_type_is_refused_unasked(
    scans: DocumentFederation,
) -> None:
    called = scans.backend.calls
    with httpx.Client(timeout=30) as client:
        answer = client.get(
            f"{scans.consumer_url}{SCAN}?person={PERSON}",
            headers={**HEADERS, "Accept": "application/json", "X-Road-Id": str(uuid.uuid4())},
        )
    assert answer.status_code == 406
    assert answer.json()["type"] == "Server.ServerProxy.NotAcceptable"
    assert scans.backend.calls == called  # the registry was not asked


def test_the_services_openapi_document_names_the_documents_type(
    scans: DocumentFederation,
) -> None:
    with httpx.Client(timeout=30) as client:
        answer = client.get(
            f"{scans.consumer_url}/r1/{federation.POPULATION_REGISTRY}/getOpenAPI"
            "?serviceCode=diploma-scan",
            headers={"X-Road-Client": HEADERS["X-Road-Client"]},
        )
    assert answer.status_code == 200, answer.text
    (operation,) = answer.json()["paths"]["/"].values()
    assert set(operation["responses"]["200"]["content"]) == {"application/pdf"}


def test_a_backend_that_does_not_declare_the_digest_is_refused_before_anything_leaves(
    scans: DocumentFederation,
) -> None:
    scans.backend.mode, scans.backend.size = "undeclared", MB
    message_id = str(uuid.uuid4())
    with httpx.Client(timeout=30) as client:
        answer = client.get(
            f"{scans.consumer_url}{SCAN}?person={PERSON}",
            headers={**HEADERS, "X-Road-Id": message_id},
        )
    assert answer.status_code == 502
    assert answer.json()["type"] == "Server.ServerProxy.ServiceFailed"
    assert "SHA-256" in answer.json()["message"]
    (record,) = records(scans, "provider", message_id)
    assert (record["status"], record["fault"]) == (502, "Server.ServerProxy.ServiceFailed")


def document_service(**changes: object) -> dict[str, object]:
    connector = {"type": "http", "url": "http://registry/scans/{person}"}
    connector["document"] = "application/pdf"
    service = {
        "subsystem": "population-registry",
        "code": "diploma-scan",
        "evidence_type": "diploma",
        "consent_policy": "consent",
        "parameters": ["person"],
        "connector": connector,
    }
    return {**service, **changes}


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"methods": ["GET", "POST"]}, "a document service takes methods"),
        ({"preview": True}, "cannot be shown first"),
        ({"connector": {"type": "sql", "document": "application/pdf"}}, "http connector"),
        ({"connector": {"type": "http", "document": "pdf"}}, "should match pattern"),
    ],
)
def test_a_document_service_is_declared_only_as_it_can_stream(
    tmp_path: Path, changes: dict[str, object], why: str
) -> None:
    declared = {
        "id": "EE/GOV/70000310/gw1",
        "data_dir": tmp_path,
        "anchor": tmp_path / "anchor.json",
        "subsystems": ["population-registry"],
        "services": [document_service()],
    }
    assert GatewaySettings.model_validate(declared).max_part_bytes == 256 * MB
    if changes.get("preview"):  # a preview listener, so that only the document is wrong
        declared["identity"] = {"issuer": "i", "jwks_url": "j", "portals": {"p": "EE/GOV/1/p"}}
        declared["preview"] = {"port": 1, "public_url": "http://p", "client_id": "c"}
    declared["services"] = [document_service(**changes)]
    with pytest.raises(ValueError, match=why):
        GatewaySettings.model_validate(declared)


SCAN_SHA256 = hashlib.sha256(b"%PDF-1.7 scan").digest()
STANDARD = base64.b64encode(SCAN_SHA256).decode()  # as RFC 9530 writes it: + / and =


@pytest.mark.parametrize(
    ("headers", "digest"),
    [
        ({"Repr-Digest": f"sha-512=:AAAA:, sha-256=:{STANDARD}:"}, body_digest(b"%PDF-1.7 scan")),
        ({"Content-Digest": f"sha-256=:{STANDARD}:"}, body_digest(b"%PDF-1.7 scan")),
        ({"Content-Type": "application/pdf"}, None),
    ],
)
def test_the_registry_declares_its_documents_sha256_as_rfc_9530_says(
    headers: dict[str, str], digest: str | None
) -> None:
    assert sha256_of(headers) == digest


@pytest.mark.parametrize("declared", ["sha-256=AAAA", "sha-256=:not base64!:", "sha-256=:AAAA:"])
def test_a_malformed_digest_declaration_is_the_registrys_failure(declared: str) -> None:
    with pytest.raises(ServiceFailed):
        sha256_of({"Repr-Digest": declared})
