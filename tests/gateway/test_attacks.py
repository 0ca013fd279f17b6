"""Requests the provider must refuse, each with the right X-Road error and no registry call.

These talk to the provider gateway directly, as a misbehaving or compromised consumer gateway
(or a man in the middle with its keys) would: in process, presenting a gateway's TLS certificate
as the provider's listener sees it after the handshake. The handshakes themselves are in
``test_tls.py``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from exchange.gateway.settings import GatewaySettings
from exchange.gateway.signing import REQUEST_HEADER, RequestClaims, sign_request
from exchange.trust.keys import (
    load_certificate,
    load_private_key,
)
from exchange.trust.signed import Signer, body_digest
from tests.gateway.conftest import CONSENTED_DIPLOMA, DIPLOMA, MARI, PORTAL_CLIENT, PURPOSE, Roles
from tests.gateway.registry_server import XML_BOMB
from tests.gateway.test_consent import audited

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


def send(
    roles: Roles,
    signed: RequestClaims,
    token: str,
    *,
    body: bytes = b"",
    peer: GatewaySettings | None = None,
    query: str | None = None,
) -> httpx.Response:
    """As the gateway of ``peer`` (the consumer's by default) would send it over mutual TLS."""
    with roles.as_gateway(peer or roles.consumer_settings()) as client:
        return client.request(
            signed.method,
            f"https://127.0.0.1:{roles.ports.provider_tls}{signed.path}?{query or signed.query}",
            content=body,
            headers={
                "X-Road-Client": signed.client,
                "X-Road-Id": signed.message_id,
                "X-Exchange-Purpose": PURPOSE,
                REQUEST_HEADER: token,
            },
        )


@pytest.fixture
def calls(roles: Roles) -> Iterator[None]:
    """Every test here must leave the registry untouched."""
    before = roles.registry.calls
    yield
    assert roles.registry.calls == before


def test_well_formed_request_is_served(roles: Roles) -> None:
    signed = claims()
    response = send(roles, signed, sign_request(signer_of(roles.consumer_settings()), signed))
    assert response.status_code == 200, response.text


@pytest.mark.usefixtures("calls")
def test_body_tampered_in_transit(roles: Roles) -> None:
    signed = claims(body=b'{"a": 1}', method="POST")
    token = sign_request(signer_of(roles.consumer_settings()), signed)
    response = send(roles, signed, token, body=b'{"a": 2}')
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"
    assert "body differs" in response.json()["message"]


@pytest.mark.usefixtures("calls")
def test_query_tampered_in_transit(roles: Roles) -> None:
    signed = claims()
    token = sign_request(signer_of(roles.consumer_settings()), signed)
    response = send(roles, signed, token, query="person=EE39107156021")
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"


@pytest.mark.usefixtures("calls")
def test_request_signed_with_another_members_key(roles: Roles) -> None:
    signed = claims()
    token = sign_request(signer_of(roles.provider_settings()), signed)  # the wrong member's key
    response = send(roles, signed, token)
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"
    assert "does not belong to member EE/GOV/70000001" in response.json()["message"]


@pytest.mark.usefixtures("calls")
def test_unsigned_and_garbage_signatures(roles: Roles) -> None:
    signed = claims()
    for token in ("", "not-a-jws", "a.b.c"):
        response = send(roles, signed._replace(message_id=str(uuid.uuid4())), token)
        assert response.status_code == 400
        assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"


@pytest.mark.usefixtures("calls")
def test_replayed_message_id(roles: Roles) -> None:
    signed = claims()
    token = sign_request(signer_of(roles.consumer_settings()), signed)
    assert send(roles, signed, token).status_code == 200
    roles.registry.calls -= 1  # the first delivery is meant to reach the registry
    again = send(roles, signed, token)
    assert again.status_code == 409
    assert again.json()["type"] == "Server.ServerProxy.DuplicateMessage"


@pytest.mark.usefixtures("calls")
def test_replayed_message_id_through_the_consumer_gateway(roles: Roles) -> None:
    message_id = str(uuid.uuid4())
    assert (
        roles.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Id": message_id}).status_code == 200
    )
    roles.registry.calls -= 1
    again = roles.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Id": message_id})
    assert again.status_code == 409
    assert again.headers["X-Road-Error"] == "Server.ServerProxy.DuplicateMessage"


@pytest.mark.usefixtures("calls")
@pytest.mark.parametrize("offset", [-600, 600])
def test_stale_issued_at(roles: Roles, offset: int) -> None:
    signed = claims(iat_offset=offset)
    response = send(roles, signed, sign_request(signer_of(roles.consumer_settings()), signed))
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.StaleMessage"


@pytest.mark.usefixtures("calls")
def test_tls_certificate_of_another_gateway_for_this_client(roles: Roles) -> None:
    # The provider's own TLS certificate is valid in the instance, but its gateway does not
    # serve the portal's member.
    signed = claims()
    response = send(
        roles,
        signed,
        sign_request(signer_of(roles.consumer_settings()), signed),
        peer=roles.provider_settings(),
    )
    assert response.status_code == 403
    assert response.json()["type"] == "Server.ServerProxy.AccessDenied"


@pytest.mark.usefixtures("calls")
def test_xml_bomb_and_external_entity_in_request_body(roles: Roles) -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>'
    for body in (XML_BOMB, xxe):
        started = time.perf_counter()
        response = roles.call(
            f"{DIPLOMA}?person={MARI}",
            method="POST",
            content=body,
            headers={"Content-Type": "application/xml"},
        )
        assert time.perf_counter() - started < 2
        assert response.status_code == 400
        assert response.json()["type"] == "Server.ServerProxy.InvalidXml"


@pytest.mark.usefixtures("calls")
def test_content_type_changed_in_transit(roles: Roles) -> None:
    signed = claims(body=b"{}", method="POST")
    token = sign_request(signer_of(roles.consumer_settings()), signed)
    with roles.as_gateway(roles.consumer_settings()) as client:
        response = client.post(
            f"https://127.0.0.1:{roles.ports.provider_tls}{signed.path}?{signed.query}",
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
def test_non_ascii_signature_gets_a_signed_refusal(roles: Roles) -> None:
    with roles.as_gateway(roles.consumer_settings()) as client:
        response = client.get(
            f"https://127.0.0.1:{roles.ports.provider_tls}{DIPLOMA}?person={MARI}",
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
def test_made_up_client_subsystem_is_refused(roles: Roles) -> None:
    signed = claims()._replace(client="EE/GOV/70000001/made-up")
    response = send(roles, signed, sign_request(signer_of(roles.consumer_settings()), signed))
    assert response.status_code == 403
    assert "not registered in the global configuration" in response.json()["message"]


@pytest.mark.usefixtures("calls")
def test_unlabelled_xml_body_is_still_checked(roles: Roles) -> None:
    response = roles.call(f"{DIPLOMA}?person={MARI}", method="POST", content=XML_BOMB)
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.InvalidXml"


@pytest.mark.usefixtures("calls")
@pytest.mark.parametrize(
    "rest", ["/%2e%2e/x", "/a%2Fb", "/x/%2E", "/a%252Fb", "/a%5Cb", "/%252e%252e/x"]
)  # httpx would resolve plain dots; a proxy may decode once before the backend does
def test_rest_paths_a_backend_would_read_differently(roles: Roles, rest: str) -> None:
    response = roles.call(f"{DIPLOMA}{rest}?person={MARI}")
    assert response.status_code == 400
    assert "request path segment" in response.json()["message"]


@pytest.mark.usefixtures("calls")
@pytest.mark.parametrize("person", ["../redirect", "a/../../x", "%2Fdiplomas", "%252F", "EE1\x00"])
def test_connector_path_values_a_backend_would_read_differently(roles: Roles, person: str) -> None:
    """The diploma service fills ``/diplomas/{person}``: a value the backend or a proxy in
    front of it would read as another path is refused, audited, and never reaches it."""
    response = roles.call(DIPLOMA, params={"person": person})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "Server.ServerProxy.InvalidRequest"
    assert body["detail"] == "person"
    assert response.headers["X-Road-Error"] == body["type"]
    record = audited(roles, response.headers["X-Road-Id"])
    assert (record["status"], record["fault"]) == (400, body["type"])


@pytest.mark.usefixtures("calls")
def test_a_malformed_path_value_is_refused_before_any_consent_question(roles: Roles) -> None:
    """Checked with the other request checks, before a policy could spend a consent's use."""
    response = roles.call(CONSENTED_DIPLOMA, params={"person": "../redirect"})
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "Server.ServerProxy.InvalidRequest"
