"""Mutual TLS at the provider's listener, on a real socket: who may complete the handshake.

The provider's listener runs as ``exchange gateway serve`` runs it (uvicorn, a client
certificate from the instance CA required, the peer certificate handed to the app); the
federation around it is in process. The provider's checks after the handshake are in
``test_attacks.py``. The gateways' own databases play no part here, so one backend is enough.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from exchange.gateway.signing import sign_request
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
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roles]:
    with build_roles(tmp_path_factory.mktemp("federation")) as made:
        made.roles.listen_tls()
        yield made


def tls_context(running: Roles, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(running.layout.central.data_dir / "ca.pem"))
    context.load_cert_chain(cert, key)
    return context


def send(running: Roles, context: ssl.SSLContext) -> httpx.Response:
    signed = claims()
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(
            f"https://127.0.0.1:{running.ports.provider_tls}{signed.path}?{signed.query}",
            headers={
                "X-Road-Client": signed.client,
                "X-Road-Id": signed.message_id,
                "X-Exchange-Purpose": "service-check",
                "X-Exchange-Signature": sign_request(
                    signer_of(running.consumer_settings()), signed
                ),
            },
        )


def test_a_registered_gateway_completes_the_handshake_and_is_served(running: Roles) -> None:
    settings = running.consumer_settings()
    context = tls_context(running, settings.data_dir / "tls.pem", settings.data_dir / "tls.key")
    assert send(running, context).status_code == 200


def test_client_certificate_from_a_foreign_ca_fails_the_handshake(
    running: Roles, tmp_path: Path
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
    before = running.registry.calls
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        send(running, tls_context(running, tmp_path / "c.pem", tmp_path / "c.key"))
    assert running.registry.calls == before


def test_no_client_certificate_fails_the_handshake(running: Roles) -> None:
    context = ssl.create_default_context(cafile=str(running.layout.central.data_dir / "ca.pem"))
    with (
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
        httpx.Client(verify=context) as client,
    ):
        client.get(f"https://127.0.0.1:{running.ports.provider_tls}/health")


def test_openssl_accepts_gateway_certificates(running: Roles) -> None:
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
