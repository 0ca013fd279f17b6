"""Requests the provider must refuse, each with the right X-Road error and no registry call.

These talk to the provider gateway directly over mutual TLS, as a misbehaving or compromised
consumer gateway (or a man in the middle with its keys) would.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from exchange.gateway.settings import GatewaySettings
from exchange.gateway.signing import REQUEST_HEADER, RequestClaims, sign_request
from exchange.trust import ca
from exchange.trust.keys import (
    build_csr,
    certificate_pem,
    csr_pem,
    generate_key,
    load_certificate,
    load_private_key,
    private_key_pem,
)
from exchange.trust.signed import Signer, body_digest
from tests.gateway.conftest import DIPLOMA, MARI, PORTAL_CLIENT, PURPOSE, Running
from tests.gateway.registry_server import XML_BOMB
from tests.servers import exchange

SERVICE = "EE/GOV/70000310/population-registry/diploma"


def signer_of(settings: GatewaySettings) -> Signer:
    key = load_private_key(settings.data_dir / "signing.key")
    return Signer(key, load_certificate(settings.data_dir / "signing.pem"))  # type: ignore[arg-type]


def claims(
    *, body: bytes = b"", message_id: str | None = None, iat_offset: int = 0, method: str = "GET"
) -> RequestClaims:
    now = int(time.time()) + iat_offset
    return RequestClaims(
        method=method,
        path=DIPLOMA,
        query=f"person={MARI}",
        body=body_digest(body),
        client=PORTAL_CLIENT,
        service=SERVICE,
        message_id=message_id or str(uuid.uuid4()),
        user_id=None,
        issue=None,
        purpose=PURPOSE,
        consent=None,
        content_type=None,
        accept="*/*",  # what httpx sends unless told otherwise
        identity=None,
        iat=now,
        exp=now + 60,
    )


def tls_context(running: Running, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(running.layout.central.data_dir / "ca.pem"))
    context.load_cert_chain(cert, key)
    return context


def send(
    running: Running,
    signed: RequestClaims,
    token: str,
    *,
    body: bytes = b"",
    context: ssl.SSLContext | None = None,
    query: str | None = None,
) -> httpx.Response:
    settings = running.consumer_settings()
    context = context or tls_context(
        running, settings.data_dir / "tls.pem", settings.data_dir / "tls.key"
    )
    with httpx.Client(verify=context, timeout=10) as client:
        return client.request(
            signed.method,
            f"https://127.0.0.1:{running.ports.provider_tls}{signed.path}?{query or signed.query}",
            content=body,
            headers={
                "X-Road-Client": signed.client,
                "X-Road-Id": signed.message_id,
                "X-Exchange-Purpose": PURPOSE,
                REQUEST_HEADER: token,
            },
        )


@pytest.fixture
def calls(running: Running) -> Iterator[None]:
    """Every test here must leave the registry untouched."""
    before = running.registry.calls
    yield
    assert running.registry.calls == before


def test_well_formed_request_is_served(running: Running) -> None:
    signed = claims()
    response = send(running, signed, sign_request(signer_of(running.consumer_settings()), signed))
    assert response.status_code == 200, response.text


@pytest.mark.usefixtures("calls")
def test_body_tampered_in_transit(running: Running) -> None:
    signed = claims(body=b'{"a": 1}', method="POST")
    token = sign_request(signer_of(running.consumer_settings()), signed)
    response = send(running, signed, token, body=b'{"a": 2}')
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"
    assert "body differs" in response.json()["message"]


@pytest.mark.usefixtures("calls")
def test_query_tampered_in_transit(running: Running) -> None:
    signed = claims()
    token = sign_request(signer_of(running.consumer_settings()), signed)
    response = send(running, signed, token, query="person=EE39107156021")
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"


@pytest.mark.usefixtures("calls")
def test_request_signed_with_another_members_key(running: Running) -> None:
    signed = claims()
    token = sign_request(signer_of(running.provider_settings()), signed)  # the wrong member's key
    response = send(running, signed, token)
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"
    assert "does not belong to member EE/GOV/70000001" in response.json()["message"]


@pytest.mark.usefixtures("calls")
def test_unsigned_and_garbage_signatures(running: Running) -> None:
    signed = claims()
    for token in ("", "not-a-jws", "a.b.c"):
        response = send(running, replace(signed, message_id=str(uuid.uuid4())), token)
        assert response.status_code == 400
        assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"


@pytest.mark.usefixtures("calls")
def test_replayed_message_id(running: Running) -> None:
    signed = claims()
    token = sign_request(signer_of(running.consumer_settings()), signed)
    assert send(running, signed, token).status_code == 200
    running.registry.calls -= 1  # the first delivery is meant to reach the registry
    again = send(running, signed, token)
    assert again.status_code == 409
    assert again.json()["type"] == "Server.ServerProxy.DuplicateMessage"


@pytest.mark.usefixtures("calls")
def test_replayed_message_id_through_the_consumer_gateway(running: Running) -> None:
    message_id = str(uuid.uuid4())
    assert (
        running.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Id": message_id}).status_code
        == 200
    )
    running.registry.calls -= 1
    again = running.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Id": message_id})
    assert again.status_code == 409
    assert again.headers["X-Road-Error"] == "Server.ServerProxy.DuplicateMessage"


@pytest.mark.usefixtures("calls")
@pytest.mark.parametrize("offset", [-600, 600])
def test_stale_issued_at(running: Running, offset: int) -> None:
    signed = claims(iat_offset=offset)
    response = send(running, signed, sign_request(signer_of(running.consumer_settings()), signed))
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.StaleMessage"


@pytest.mark.usefixtures("calls")
def test_tls_certificate_of_another_gateway_for_this_client(running: Running) -> None:
    # The provider's own TLS certificate is valid in the instance, but its gateway does not
    # serve the portal's member.
    provider = running.provider_settings()
    signed = claims()
    context = tls_context(running, provider.data_dir / "tls.pem", provider.data_dir / "tls.key")
    response = send(
        running,
        signed,
        sign_request(signer_of(running.consumer_settings()), signed),
        context=context,
    )
    assert response.status_code == 403
    assert response.json()["type"] == "Server.ServerProxy.AccessDenied"


@pytest.mark.usefixtures("calls")
def test_client_certificate_from_a_foreign_ca_fails_the_handshake(
    running: Running, tmp_path: Path
) -> None:
    key = generate_key()
    foreign = ca.CertificateAuthority(
        key=key,
        certificate=ca.create_root(
            key, instance="EE", at=datetime.now(UTC), validity=timedelta(days=1)
        ),
    )
    mine = generate_key()
    cert = foreign.issue(
        public_key=ca.public_key_from_csr(csr_pem(build_csr(mine, "x"))),
        subject=load_certificate(running.consumer_settings().data_dir / "tls.pem").subject,
        profile=ca.Profile.TLS,
        at=datetime.now(UTC),
        validity=timedelta(days=1),
        hosts=["127.0.0.1"],
    )
    (tmp_path / "c.pem").write_text(certificate_pem(cert))
    (tmp_path / "c.key").write_bytes(private_key_pem(mine))
    signed = claims()
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        send(
            running,
            signed,
            sign_request(signer_of(running.consumer_settings()), signed),
            context=tls_context(running, tmp_path / "c.pem", tmp_path / "c.key"),
        )


@pytest.mark.usefixtures("calls")
def test_no_client_certificate_fails_the_handshake(running: Running) -> None:
    context = ssl.create_default_context(cafile=str(running.layout.central.data_dir / "ca.pem"))
    with (
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
        httpx.Client(verify=context) as client,
    ):
        client.get(f"https://127.0.0.1:{running.ports.provider_tls}/health")


@pytest.mark.usefixtures("calls")
def test_xml_bomb_and_external_entity_in_request_body(running: Running) -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>'
    for body in (XML_BOMB, xxe):
        started = time.perf_counter()
        response = running.call(
            f"{DIPLOMA}?person={MARI}",
            method="POST",
            content=body,
            headers={"Content-Type": "application/xml"},
        )
        assert time.perf_counter() - started < 2
        assert response.status_code == 400
        assert response.json()["type"] == "Server.ServerProxy.InvalidXml"


def test_openssl_accepts_gateway_certificates(running: Running) -> None:
    ca_file = running.layout.central.data_dir / "ca.pem"
    for settings in (running.consumer_settings(), running.provider_settings()):
        for name in ("signing.pem", "tls.pem"):
            result = subprocess.run(
                ["openssl", "verify", "-CAfile", str(ca_file), str(settings.data_dir / name)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr
    assert exchange("version").returncode == 0


@pytest.mark.usefixtures("calls")
def test_content_type_changed_in_transit(running: Running) -> None:
    signed = claims(body=b"{}", method="POST")
    token = sign_request(signer_of(running.consumer_settings()), signed)
    settings = running.consumer_settings()
    context = tls_context(running, settings.data_dir / "tls.pem", settings.data_dir / "tls.key")
    with httpx.Client(verify=context, timeout=10) as client:
        response = client.post(
            f"https://127.0.0.1:{running.ports.provider_tls}{signed.path}?{signed.query}",
            content=b"{}",
            headers={
                "X-Road-Client": signed.client,
                "X-Road-Id": signed.message_id,
                "X-Exchange-Purpose": PURPOSE,
                REQUEST_HEADER: token,
                "Content-Type": "text/plain",
            },
        )
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"
    assert "content type differs" in response.json()["message"]


@pytest.mark.usefixtures("calls")
def test_non_ascii_signature_gets_a_signed_refusal(running: Running) -> None:
    settings = running.consumer_settings()
    context = tls_context(running, settings.data_dir / "tls.pem", settings.data_dir / "tls.key")
    with httpx.Client(verify=context, timeout=10) as client:
        response = client.get(
            f"https://127.0.0.1:{running.ports.provider_tls}{DIPLOMA}?person={MARI}",
            headers={
                "X-Road-Client": PORTAL_CLIENT,
                "X-Road-Id": "x-1",
                REQUEST_HEADER: b"\xff\xfe",
            },
        )
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"
    assert "X-Exchange-Response-Signature" in response.headers


@pytest.mark.usefixtures("calls")
def test_made_up_client_subsystem_is_refused(running: Running) -> None:
    signed = replace(claims(), client="EE/GOV/70000001/made-up")
    response = send(running, signed, sign_request(signer_of(running.consumer_settings()), signed))
    assert response.status_code == 403
    assert "not registered in the global configuration" in response.json()["message"]


@pytest.mark.usefixtures("calls")
def test_unlabelled_xml_body_is_still_checked(running: Running) -> None:
    response = running.call(f"{DIPLOMA}?person={MARI}", method="POST", content=XML_BOMB)
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.InvalidXml"


@pytest.mark.usefixtures("calls")
@pytest.mark.parametrize(
    "rest", ["/%2e%2e/x", "/a%2Fb", "/x/%2E"]
)  # httpx would resolve plain dots
def test_rest_paths_a_backend_would_read_differently(running: Running, rest: str) -> None:
    response = running.call(f"{DIPLOMA}{rest}?person={MARI}")
    assert response.status_code == 400
    assert "dot segments or encoded slashes" in response.json()["message"]
