"""A real central authority on a loopback port, driven over HTTP and checked with openssl.

The authority is initialised as ``exchange central init`` leaves it and served by uvicorn in a
thread of this process; the command line itself (``central init``, ``central serve``) runs in
``tests/test_cli.py`` and under every multi-process federation.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchange.central import files
from exchange.central.app import create_app
from exchange.central.registry import Registry
from exchange.central.settings import CentralSettings
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import ConfigurationExpired, ConfigurationUnavailable
from exchange.trust.globalconf import TrustAnchor
from exchange.trust.globalconf_client import GlobalConfClient, utcnow
from exchange.trust.keys import build_csr, csr_pem, generate_key
from tests.inprocess import LoopThread, listen
from tests.servers import free_port


@dataclass
class RunningCentral:
    url: str
    data_dir: Path
    token: str
    stop: Callable[[], None]  # the authority goes away (its port refuses connections)

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def anchor(self) -> TrustAnchor:
        return TrustAnchor.load(self.data_dir / "anchor.json")


@pytest.fixture
def running_central(tmp_path: Path, database_url: str) -> Iterator[RunningCentral]:
    with serving_central(tmp_path, database_url) as central:
        yield central


@contextlib.contextmanager
def serving_central(
    tmp_path: Path, database_url: str, **settings_: Any
) -> Iterator[RunningCentral]:
    """An authority initialised in ``tmp_path``, served until the block ends (``settings_``:
    further settings, e.g. ``ocsp_delegated=True``)."""
    settings = CentralSettings(
        data_dir=tmp_path / "central", database_url=database_url, port=free_port(), **settings_
    )
    material = files.initialise(settings, instance="EE", at=utcnow())
    engine = build_engine(settings.db_url)
    migrate.upgrade("central", engine)
    Registry(engine=engine, instance="EE", clock=utcnow).seed_member_classes(actor="test")
    engine.dispose()
    files.write_anchor(settings, material)
    loop = LoopThread("central")
    listener = loop.run(listen(create_app(settings), settings.port))
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            loop.run(listener.stop())

    try:
        token = (settings.data_dir / "admin-token").read_text().strip()
        yield RunningCentral(url=settings.url, data_dir=settings.data_dir, token=token, stop=stop)
    finally:
        stop()
        loop.stop()


def test_management_api_requires_the_admin_token(running_central: RunningCentral) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {running_central.token}"},
    ):
        response = httpx.post(
            f"{running_central.url}/api/v1/members",
            json={"id": "EE/GOV/1", "name": "x"},
            headers=headers,
        )
        assert response.status_code == 401
        assert response.headers["X-Road-Error"] == "Client.Unauthenticated"
        assert response.json() == {
            "type": "Client.Unauthenticated",
            "message": "a valid admin bearer token is required",
            "detail": None,
        }
    with running_central.api() as api:
        assert api.get("/members").json() == []


def test_refused_before_the_body_is_sent(running_central: RunningCentral) -> None:
    """A client that declares 200 MB and waits for an answer before sending any of it gets one:
    401 without the token, 413 with it."""
    port = int(running_central.url.rsplit(":", 1)[1])
    for token, status in ((None, 401), (running_central.token, 413)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = "POST /api/v1/members HTTP/1.1\r\nHost: central\r\n"
            head += "Content-Type: application/json\r\nContent-Length: 200000000\r\n"
            if token is not None:
                head += f"Authorization: Bearer {token}\r\n"
            sock.sendall(f"{head}\r\n".encode())
            answer = sock.recv(65536).decode()
        assert answer.startswith(f"HTTP/1.1 {status} ")
        assert "\r\nx-road-error: client." in answer.lower()


def test_bad_input_gets_a_precise_error(running_central: RunningCentral) -> None:
    with running_central.api() as api:
        response = api.post("/members", json={"id": "EE/GOV/7000%2F310", "name": "x"})
        assert response.status_code == 400
        assert response.json()["type"] == "Client.InvalidIdentifier"
        assert "percent-encoded" in response.json()["message"]
        response = api.post("/members", json={"id": "EE/GOV/1"})
        assert response.status_code == 400
        assert response.json() == {
            "type": "Client.InvalidRequest",
            "message": "name: Field required",
            "detail": "name",
        }
        response = api.post(
            "/members", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["type"] == "Client.InvalidRequest"
        assert api.post("/members", json={"id": "EE/GOV/1", "name": "One"}).status_code == 201
        duplicate = api.post("/members", json={"id": "EE/GOV/1", "name": "One"})
        assert duplicate.status_code == 409
        assert duplicate.json()["type"] == "Client.Conflict"
        missing = api.post("/subsystems", json={"id": "EE/GOV/2/sub"})
        assert missing.status_code == 404
        assert missing.json()["type"] == "Client.NotFound"
        bad_csr = api.post("/certificates/signing", json={"owner": "EE/GOV/1", "csr": "junk"})
        assert bad_csr.status_code == 400
        assert bad_csr.json()["type"] == "Client.InvalidCertificateRequest"
    unknown = httpx.get(f"{running_central.url}/nowhere")
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "Client.NotFound"


def test_full_csr_flow_crl_and_configuration_over_http(
    running_central: RunningCentral, tmp_path: Path
) -> None:
    with running_central.api() as api:
        assert (
            api.post(
                "/members", json={"id": "EE/GOV/70000310", "name": "Population Register"}
            ).status_code
            == 201
        )
        assert (
            api.post("/subsystems", json={"id": "EE/GOV/70000310/population-registry"}).status_code
            == 201
        )
        assert (
            api.post(
                "/gateways", json={"id": "EE/GOV/70000310/gw1", "address": "https://127.0.0.1:8443"}
            ).status_code
            == 201
        )
        signing = api.post(
            "/certificates/signing",
            json={"owner": "EE/GOV/70000310", "csr": csr_pem(build_csr(generate_key(), "m"))},
        )
        tls = api.post(
            "/certificates/tls",
            json={"owner": "EE/GOV/70000310/gw1", "csr": csr_pem(build_csr(generate_key(), "g"))},
        )
        assert signing.status_code == tls.status_code == 201

        client = GlobalConfClient(anchor=running_central.anchor())
        before = client.refresh()
        assert before.member("EE/GOV/70000310") is not None
        gateway = before.gateway("EE/GOV/70000310/gw1")
        assert gateway is not None
        assert gateway.tls_certificates == [tls.json()["certificate"]]

        revoked = api.post(
            f"/certificates/{signing.json()['serial']}/revoke", json={"reason": "keyCompromise"}
        )
        assert revoked.status_code == 200
        after = client.refresh()
        assert after.version > before.version
        assert after.revoked_serials == [signing.json()["serial"]]
        events = [e["action"] for e in api.get("/events").json()]
        assert events[-2:] == ["certificate.issued.tls", "certificate.revoked"]
        assert all(e["actor"] == "api:admin" for e in api.get("/events").json()[-6:])

    ca_pem = httpx.get(f"{running_central.url}/ca.pem").text
    crl = x509.load_der_x509_crl(httpx.get(f"{running_central.url}/crl").content)
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
    (tmp_path / "signing.pem").write_text(signing.json()["certificate"])
    (tmp_path / "tls.pem").write_text(tls.json()["certificate"])
    check = [
        "openssl",
        "verify",
        "-crl_check",
        "-CAfile",
        str(tmp_path / "ca.pem"),
        "-CRLfile",
        str(tmp_path / "crl.pem"),
    ]
    bad = subprocess.run(
        [*check, str(tmp_path / "signing.pem")], capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0
    assert "certificate revoked" in bad.stdout + bad.stderr
    good = subprocess.run(
        [*check, str(tmp_path / "tls.pem")], capture_output=True, text=True, check=False
    )
    assert good.returncode == 0, good.stdout + good.stderr


def test_client_keeps_last_good_configuration_while_authority_is_down(
    running_central: RunningCentral,
) -> None:
    client = GlobalConfClient(anchor=running_central.anchor())
    held = client.refresh()
    running_central.stop()
    with pytest.raises(ConfigurationUnavailable, match="cannot be reached"):
        client.refresh()
    assert client.current().version == held.version
    with pytest.raises(ConfigurationExpired):
        client.current(at=held.expires_at + timedelta(seconds=1))
    assert client.current(at=utcnow()).version == held.version


def test_served_anchor_matches_the_file(running_central: RunningCentral) -> None:
    served = TrustAnchor.model_validate(httpx.get(f"{running_central.url}/anchor").json())
    assert served == running_central.anchor()
    assert served.configuration_url == f"{running_central.url}/globalconf"
