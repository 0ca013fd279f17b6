"""Mutual TLS at the provider's listener, on a real socket: who may complete the handshake.

The provider's listener runs as ``exchange gateway serve`` runs it (uvicorn, a client
certificate from the instance CA required, the peer certificate handed to the app); the
federation around it is in process. The provider's checks after the handshake are in
``test_attacks.py``. The gateways' own databases play no part here, so one backend is enough.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from exchange.errors import SslAuthenticationFailed
from exchange.gateway.pooled import PooledTransport
from exchange.gateway.signing import sign_request
from exchange.gateway.transport import AiohttpTransport, Transport
from exchange.trust import ca
from exchange.trust.keys import (
    build_csr,
    certificate_pem,
    csr_pem,
    generate_key,
    load_certificate,
    private_key_pem,
)
from tests.gateway.conftest import Roles, build_roles
from tests.gateway.test_attacks import claims, signer_of
from tests.servers import exchange


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roles]:
    with build_roles(tmp_path_factory.mktemp("federation")) as made:
        made.roles.listen_tls()
        yield made


def tls_context(roles: Roles, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(roles.layout.central.data_dir / "ca.pem"))
    context.load_cert_chain(cert, key)
    return context


def send(roles: Roles, context: ssl.SSLContext) -> httpx.Response:
    signed = claims()
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(
            f"https://127.0.0.1:{roles.ports.provider_tls}{signed.path}?{signed.query}",
            headers={
                "X-Road-Client": signed.client,
                "X-Road-Id": signed.message_id,
                "X-Exchange-Purpose": "service-check",
                "X-Exchange-Signature": sign_request(signer_of(roles.consumer_settings()), signed),
            },
        )


def test_a_registered_gateway_completes_the_handshake_and_is_served(roles: Roles) -> None:
    settings = roles.consumer_settings()
    context = tls_context(roles, settings.data_dir / "tls.pem", settings.data_dir / "tls.key")
    assert send(roles, context).status_code == 200


def test_client_certificate_from_a_foreign_ca_fails_the_handshake(
    roles: Roles, tmp_path: Path
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
        subject=load_certificate(roles.consumer_settings().data_dir / "tls.pem").subject,
        profile=ca.Profile.TLS,
        at=datetime.now(UTC),
        validity=timedelta(days=1),
        hosts=["127.0.0.1"],
    )
    (tmp_path / "c.pem").write_text(certificate_pem(cert))
    (tmp_path / "c.key").write_bytes(private_key_pem(mine))
    before = roles.registry.calls
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        send(roles, tls_context(roles, tmp_path / "c.pem", tmp_path / "c.key"))
    assert roles.registry.calls == before


def test_no_client_certificate_fails_the_handshake(roles: Roles) -> None:
    context = ssl.create_default_context(cafile=str(roles.layout.central.data_dir / "ca.pem"))
    with (
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
        httpx.Client(verify=context) as client,
    ):
        client.get(f"https://127.0.0.1:{roles.ports.provider_tls}/health")


def test_openssl_accepts_gateway_certificates(roles: Roles) -> None:
    ca_file = roles.layout.central.data_dir / "ca.pem"
    for settings in (roles.consumer_settings(), roles.provider_settings()):
        for name in ("signing.pem", "tls.pem"):
            result = subprocess.run(
                ["openssl", "verify", "-CAfile", str(ca_file), str(settings.data_dir / name)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr
    assert exchange("version").returncode == 0


TRANSPORTS = pytest.mark.parametrize("client", [PooledTransport, AiohttpTransport])


def as_consumer_pinned_to(
    roles: Roles, gateway_id: str, client: Callable[..., Transport] = PooledTransport
) -> int:
    """The provider's listener asked through a gateway transport (``client``: the consumer's
    own by default), with the TLS context the consumer would use towards ``gateway_id``
    (trusting exactly that gateway's certificates)."""
    consumer = roles.roles.consumer
    view = consumer.trust.view()
    peer = view.configuration.gateway(gateway_id)
    assert peer is not None
    context = consumer.outbound_ssl(view, peer)

    async def ask() -> int:
        transport = client(timeout=5)
        try:
            reply = await transport.request(
                "GET",
                f"https://127.0.0.1:{roles.ports.provider_tls}/health",
                what=f"gateway {gateway_id}",
                headers={},
                tls=context,
                max_bytes=10_000,
            )
        finally:
            await transport.close()
        return reply.status

    return roles.roles.run(ask())


@TRANSPORTS
def test_the_consumer_reaches_the_provider_it_pins(
    roles: Roles, client: Callable[..., Transport]
) -> None:
    assert as_consumer_pinned_to(roles, roles.provider_settings().id, client) == 200


@TRANSPORTS
def test_a_listener_presenting_another_gateways_certificate_is_refused(
    roles: Roles, client: Callable[..., Transport]
) -> None:
    # The provider's listener, reached while pinning another registered gateway (the consumer's
    # own): its certificate is the instance CA's, valid for the host, and still refused.
    with pytest.raises(SslAuthenticationFailed):
        as_consumer_pinned_to(roles, roles.consumer_settings().id, client)
