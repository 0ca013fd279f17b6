"""Trust that changes while gateways run: revocation, an authority that goes away, restarts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exchange.gateway.settings import GatewaySettings
from exchange.trust.keys import load_certificate, serial_hex
from tests.gateway.conftest import DIPLOMA, MARI, Running, run_federation
from tests.servers import exchange


def revoke(running: Running, settings: GatewaySettings, name: str) -> None:
    serial = serial_hex(load_certificate(settings.data_dir / name).serial_number)
    token = (running.layout.central.data_dir / "admin-token").read_text().strip()
    before = running.globalconf_version("provider")
    response = httpx.post(
        f"http://127.0.0.1:{running.ports.central}/api/v1/certificates/{serial}/revoke",
        json={"reason": "keyCompromise"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    running.wait_for_version(before + 1)


def test_revoked_signing_certificate_is_refused(fresh: Running) -> None:
    assert fresh.call(f"{DIPLOMA}?person={MARI}").status_code == 200
    calls = fresh.registry.calls
    revoke(fresh, fresh.consumer_settings(), "signing.pem")
    response = fresh.call(f"{DIPLOMA}?person={MARI}")
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"
    assert (
        "not list" in response.json()["message"]
    )  # a revoked certificate leaves the configuration
    assert fresh.registry.calls == calls


def test_revoked_tls_certificate_is_refused(fresh: Running) -> None:
    calls = fresh.registry.calls
    revoke(fresh, fresh.consumer_settings(), "tls.pem")
    response = fresh.call(f"{DIPLOMA}?person={MARI}")
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "Server.ServerProxy.AccessDenied"
    assert "TLS certificate" in response.json()["message"]
    assert fresh.registry.calls == calls


def test_replay_is_refused_after_a_provider_restart(fresh: Running) -> None:
    message_id = str(uuid.uuid4())
    assert (
        fresh.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Id": message_id}).status_code == 200
    )
    with fresh.restarted("provider"):
        calls = fresh.registry.calls
        again = fresh.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Id": message_id})
        assert again.status_code == 409
        assert again.json()["type"] == "Server.ServerProxy.DuplicateMessage"
        assert fresh.registry.calls == calls


@pytest.fixture
def short_lived(tmp_path: Path) -> Iterator[Running]:
    with run_federation(tmp_path, configuration_validity="PT4S") as made:
        yield made


def test_expired_global_configuration_fails_closed(short_lived: Running) -> None:
    # Wait until the gateways hold a version signed with the short validity.
    short_lived.wait_for_version(2)
    assert short_lived.call(f"{DIPLOMA}?person={MARI}").status_code == 200
    central = short_lived.processes["central"]
    central.terminate()
    central.wait(15)
    calls = short_lived.registry.calls
    deadline = time.monotonic() + 15
    while True:
        response = short_lived.call(f"{DIPLOMA}?person={MARI}")
        if response.status_code != 200 or time.monotonic() > deadline:
            break
        calls = short_lived.registry.calls
        time.sleep(0.2)
    assert response.status_code == 503
    # Whichever gateway's copy expires first refuses: the consumer's, or the provider's.
    assert response.json()["type"] in {
        "Server.ClientProxy.OutdatedGlobalConf",
        "Server.ServerProxy.OutdatedGlobalConf",
    }
    assert short_lived.registry.calls == calls
    while (health := httpx.get(f"{short_lived.consumer_url}/health")).status_code == 200:
        assert time.monotonic() < deadline + 10
        time.sleep(0.2)
    assert health.status_code == 503
    assert health.json()["status"] == "FAIL"


def test_enrol_and_publish_over_the_management_api(fresh: Running, tmp_path: Path) -> None:
    """A new gateway of an existing member: keys made locally, CSRs sent, certificates installed."""
    token_file = fresh.layout.central.data_dir / "admin-token"
    config = tmp_path / "gw2.toml"
    config.write_text(
        fresh.layout.provider.read_text()
        .replace('id = "EE/GOV/70000310/gw1"', 'id = "EE/GOV/70000310/gw2"')
        .replace('data_dir = "data"', f'data_dir = "{tmp_path / "gw2"}"')
        .replace(
            'anchor = "../central/anchor.json"',
            f'anchor = "{fresh.layout.central.data_dir / "anchor.json"}"',
        )
    )
    refused = exchange("gateway", "enrol", "-c", str(config), "--token-file", str(token_file))
    assert refused.returncode == 1
    assert "gw2.csr" in refused.stderr or "missing" in refused.stderr
    assert exchange("gateway", "init", "-c", str(config)).returncode == 0
    unregistered = exchange("gateway", "enrol", "-c", str(config), "--token-file", str(token_file))
    assert unregistered.returncode == 1
    assert "gateway EE/GOV/70000310/gw2 is not registered" in unregistered.stderr
    registered = exchange(
        "central",
        "gateway",
        "add",
        "EE/GOV/70000310/gw2",
        "--address",
        "https://127.0.0.1:1",
        "--data-dir",
        str(fresh.layout.central.data_dir),
    )
    assert registered.returncode == 0, registered.stderr
    enrolled = exchange("gateway", "enrol", "-c", str(config), "--token-file", str(token_file))
    assert enrolled.returncode == 0, enrolled.stderr
    assert (tmp_path / "gw2" / "tls.pem").exists()
    assert (tmp_path / "gw2" / "signing.key").stat().st_mode & 0o777 == 0o600
    published = exchange("gateway", "publish", "-c", str(config), "--token-file", str(token_file))
    assert published.returncode == 0, published.stderr
    assert "published 4 service(s) of EE/GOV/70000310/population-registry" in published.stdout
    catalogue = httpx.get(
        f"http://127.0.0.1:{fresh.ports.central}/api/v1/services",
        headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
    ).json()
    assert {s["id"] for s in catalogue} == {
        "EE/GOV/70000310/population-registry/birth-certificate/v1",
        "EE/GOV/70000310/population-registry/residence-record/v1",
        "EE/GOV/70000310/population-registry/diploma",
        "EE/GOV/70000310/population-registry/consented-diploma",
    }
