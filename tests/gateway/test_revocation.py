"""Revocation in real time: a revoked TLS certificate fails the handshake after one refresh.

Real sockets (the provider's mutual-TLS listener as ``exchange gateway serve`` runs it, inside
an in-process federation of its own per test): OpenSSL decides at the handshake, on the wall
clock, so the handshake is retried briefly rather than the test clock moved.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from exchange.errors import SslAuthenticationFailed
from exchange.gateway.settings import GatewaySettings
from exchange.trust.crl import RevocationList
from exchange.trust.keys import load_certificate, serial_hex
from tests.gateway.conftest import Roles
from tests.gateway.test_tls import as_consumer_pinned_to, send, tls_context

REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)


def revoke(roles: Roles, settings: GatewaySettings) -> None:
    serial = serial_hex(load_certificate(settings.data_dir / "tls.pem").serial_number)
    token = (roles.layout.central.data_dir / "admin-token").read_text().strip()
    response = roles.http.post(
        f"http://127.0.0.1:{roles.ports.central}/api/v1/certificates/{serial}/revoke",
        json={"reason": "keyCompromise"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text


def refused(attempt: object) -> bool:
    try:
        attempt()  # type: ignore[operator]
    except (*REFUSED, SslAuthenticationFailed):
        return True
    return False


def test_a_client_certificate_revoked_after_start_fails_the_next_handshake_after_the_refresh(
    fresh_roles: Roles,
) -> None:
    roles = fresh_roles
    roles.roles.listen_tls()
    settings = roles.consumer_settings()
    context = tls_context(roles, settings.data_dir / "tls.pem", settings.data_dir / "tls.key")
    assert send(roles, context).status_code == 200
    revoke(roles, settings)
    calls = roles.registry.calls
    roles.roles.refresh()  # the configuration and, with it, the CRL
    roles.eventually(lambda: refused(lambda: send(roles, context)), what="handshake refused")
    with pytest.raises(REFUSED):
        send(roles, context)
    assert roles.registry.calls == calls


def test_a_provider_certificate_revoked_fails_the_consumers_handshake(fresh_roles: Roles) -> None:
    roles = fresh_roles
    roles.roles.listen_tls()
    assert as_consumer_pinned_to(roles, roles.provider_settings().id) == 200
    consumer = roles.roles.consumer
    view = consumer.trust.view()
    peer = view.configuration.gateway(roles.provider_settings().id)
    assert peer is not None
    held = consumer.outbound_ssl(view, peer)  # pinned to a certificate about to be revoked
    revoke(roles, roles.provider_settings())
    consumer.refresh_crl()
    assert held.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF

    def through_held() -> None:
        consumer.outbound_ssl = lambda *_: held  # type: ignore[method-assign]
        as_consumer_pinned_to(roles, roles.provider_settings().id)

    roles.eventually(lambda: refused(through_held), what="consumer refuses the provider")


def test_without_a_crl_every_handshake_fails(fresh_roles: Roles, tmp_path: Path) -> None:
    roles = fresh_roles
    provider = roles.roles.provider
    # As after a start with neither the authority nor a CRL kept on disk.
    provider.crl = RevocationList(
        path=tmp_path / "none.pem", fetch=lambda _: b"", clock=roles.clock
    )
    roles.roles.listen_tls()
    settings = roles.consumer_settings()
    context = tls_context(roles, settings.data_dir / "tls.pem", settings.data_dir / "tls.key")
    with pytest.raises(REFUSED):
        send(roles, context)
