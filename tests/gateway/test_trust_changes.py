"""Trust that changes while gateways run: revocation, an authority that goes away, restarts.

In process (:mod:`tests.inprocess`): the gateways fetch the authority's configuration when
told to, as their timer would, and expiry is reached by moving the clock.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from exchange.gateway.settings import GatewaySettings
from exchange.trust.keys import load_certificate, serial_hex
from tests.gateway.conftest import DIPLOMA, MARI, Roles
from tests.servers import exchange


def versions(roles: Roles) -> set[int]:
    return {g.trust.view().version for g in roles.roles.gateways.values()}


def revoke(roles: Roles, settings: GatewaySettings, name: str) -> None:
    """Revoke a gateway's certificate over the management API; the gateways then refresh."""
    serial = serial_hex(load_certificate(settings.data_dir / name).serial_number)
    token = (roles.layout.central.data_dir / "admin-token").read_text().strip()
    [before] = versions(roles)
    response = roles.http.post(
        f"http://127.0.0.1:{roles.ports.central}/api/v1/certificates/{serial}/revoke",
        json={"reason": "keyCompromise"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    roles.roles.refresh()
    assert versions(roles) == {before + 1}


def test_revoked_signing_certificate_is_refused(fresh_roles: Roles) -> None:
    assert fresh_roles.call(f"{DIPLOMA}?person={MARI}").status_code == 200
    calls = fresh_roles.registry.calls
    revoke(fresh_roles, fresh_roles.consumer_settings(), "signing.pem")
    response = fresh_roles.call(f"{DIPLOMA}?person={MARI}")
    assert response.status_code == 400
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"
    assert (
        "not list" in response.json()["message"]
    )  # a revoked certificate leaves the configuration
    assert fresh_roles.registry.calls == calls


def test_revoked_tls_certificate_is_refused(fresh_roles: Roles) -> None:
    calls = fresh_roles.registry.calls
    revoke(fresh_roles, fresh_roles.consumer_settings(), "tls.pem")
    response = fresh_roles.call(f"{DIPLOMA}?person={MARI}")
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "Server.ServerProxy.AccessDenied"
    assert "TLS certificate" in response.json()["message"]
    assert fresh_roles.registry.calls == calls


def test_a_provider_without_a_valid_tls_certificate_is_not_the_callers_fault(
    fresh_roles: Roles,
) -> None:
    revoke(fresh_roles, fresh_roles.provider_settings(), "tls.pem")
    response = fresh_roles.call(f"{DIPLOMA}?person={MARI}")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["type"] == "Server.ClientProxy.ServiceUnavailable"
    assert body["detail"] == "EE/GOV/70000310"
    assert "no gateway of EE/GOV/70000310 holds a valid TLS certificate" in body["message"]


def test_replay_is_refused_after_a_provider_restart(fresh_roles: Roles) -> None:
    message_id = str(uuid.uuid4())
    first = fresh_roles.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Id": message_id})
    assert first.status_code == 200
    fresh_roles.roles.restart("provider")  # a new gateway object on the same database
    calls = fresh_roles.registry.calls
    again = fresh_roles.call(f"{DIPLOMA}?person={MARI}", headers={"X-Road-Id": message_id})
    assert again.status_code == 409
    assert again.json()["type"] == "Server.ServerProxy.DuplicateMessage"
    assert fresh_roles.registry.calls == calls


def test_expired_global_configuration_fails_closed(fresh_roles: Roles) -> None:
    assert fresh_roles.call(f"{DIPLOMA}?person={MARI}").status_code == 200
    calls = fresh_roles.registry.calls
    central = f"http://127.0.0.1:{fresh_roles.ports.central}"
    with fresh_roles.roles.loopback.down(central):  # the authority goes away: nothing refreshes
        fresh_roles.clock.advance(timedelta(hours=2))  # past the configuration's validity (PT1H)
        response = fresh_roles.call(f"{DIPLOMA}?person={MARI}")
        assert response.status_code == 503
        assert response.json()["type"] == "Server.ClientProxy.OutdatedGlobalConf"
        assert fresh_roles.registry.calls == calls
        health = fresh_roles.http.get(f"{fresh_roles.consumer_url}/health")
        assert health.status_code == 503
        assert health.json()["status"] == "FAIL"
        # Without a reachable authority a refresh keeps the expired copy: still refused.
        fresh_roles.roles.refresh()
        assert fresh_roles.call(f"{DIPLOMA}?person={MARI}").status_code == 503
    fresh_roles.roles.refresh()  # the authority is back: a new version, valid from now
    assert fresh_roles.call(f"{DIPLOMA}?person={MARI}").status_code == 200


def test_enrol_and_publish_over_the_management_api(fresh_roles: Roles, tmp_path: Path) -> None:
    """A new gateway of an existing member: keys made locally, CSRs sent, certificates installed."""
    token_file = fresh_roles.layout.central.data_dir / "admin-token"
    config = tmp_path / "gw2.toml"
    config.write_text(
        fresh_roles.layout.provider.read_text()
        .replace('id = "EE/GOV/70000310/gw1"', 'id = "EE/GOV/70000310/gw2"')
        .replace('data_dir = "data"', f'data_dir = "{tmp_path / "gw2"}"')
        .replace(
            'anchor = "../central/anchor.json"',
            f'anchor = "{fresh_roles.layout.central.data_dir / "anchor.json"}"',
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
        str(fresh_roles.layout.central.data_dir),
    )
    assert registered.returncode == 0, registered.stderr
    enrolled = exchange("gateway", "enrol", "-c", str(config), "--token-file", str(token_file))
    assert enrolled.returncode == 0, enrolled.stderr
    assert (tmp_path / "gw2" / "tls.pem").exists()
    assert (tmp_path / "gw2" / "signing.key").stat().st_mode & 0o777 == 0o600
    # Signed with the signing key just enrolled: publishing needs no token.
    published = exchange("gateway", "publish", "-c", str(config))
    assert published.returncode == 0, published.stderr
    assert "published 4 service(s) of EE/GOV/70000310/population-registry" in published.stdout
    catalogue = fresh_roles.http.get(
        f"http://127.0.0.1:{fresh_roles.ports.central}/api/v1/services",
        headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
    ).json()
    assert {s["id"] for s in catalogue} == {
        "EE/GOV/70000310/population-registry/birth-certificate/v1",
        "EE/GOV/70000310/population-registry/residence-record/v1",
        "EE/GOV/70000310/population-registry/diploma",
        "EE/GOV/70000310/population-registry/consented-diploma",
    }
