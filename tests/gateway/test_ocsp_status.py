"""Signing certificates checked by OCSP: a revocation refused before the next configuration,
and a responder gone for longer than the cache bound refused, never accepted.

In process (:mod:`tests.inprocess`): the gateways ask the authority's responder when told to,
as their background refresh would, and the bound is reached by moving the clock.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from exchange.consent.settings import ConsentSettings
from exchange.trust.keys import load_certificate, serial_hex
from tests.gateway.conftest import BIRTH, DIPLOMA, MARI, Roles


def revoke_signing(roles: Roles) -> None:
    revoke(roles, roles.consumer_settings().data_dir / "signing.pem")


def revoke(roles: Roles, certificate: Path) -> None:
    """The certificate in the file ``certificate`` revoked at the authority, by its admin API."""
    serial = serial_hex(load_certificate(certificate).serial_number)
    token = (roles.layout.central.data_dir / "admin-token").read_text().strip()
    response = roles.http.post(
        f"http://127.0.0.1:{roles.ports.central}/api/v1/certificates/{serial}/revoke",
        json={"reason": "keyCompromise"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text


def test_a_revoked_signing_certificate_is_refused_through_ocsp(fresh_roles: Roles) -> None:
    roles = fresh_roles
    assert roles.call(f"{DIPLOMA}?person={MARI}").status_code == 200
    version = roles.provider.trust.view().version
    revoke_signing(roles)
    calls = roles.registry.calls
    roles.roles.provider.refresh_status()  # the status refresh only: no new configuration
    assert roles.provider.trust.view().version == version
    response = roles.call(f"{DIPLOMA}?person={MARI}")
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "Server.ServerProxy.InvalidSignature"
    assert "revoked (OCSP)" in response.json()["message"]
    assert roles.registry.calls == calls


def test_a_consent_service_revoked_through_ocsp_is_refused_for_an_artefact_seen_before(
    fresh_roles: Roles,
) -> None:
    """The provider checks an artefact's signature once per configuration and remembers it;
    the consent service's certificate is still asked about at every use, so a revocation the
    responder reports refuses the artefact before the next configuration, as it would a new
    one."""
    roles = fresh_roles
    consented = roles.consented()
    for _ in range(2):  # the second use is the remembered artefact
        assert roles.call(f"{BIRTH}?person={MARI}", headers=consented).status_code == 200
    version = roles.provider.trust.view().version
    revoke(roles, ConsentSettings.load(roles.layout.consent).data_dir / "consent.pem")
    roles.roles.provider.refresh_status()  # the status refresh only: no new configuration
    assert roles.provider.trust.view().version == version
    response = roles.call(f"{BIRTH}?person={MARI}", headers=consented)
    assert response.status_code == 403, response.text
    assert "revoked (OCSP)" in response.json()["message"]


def test_a_responder_down_past_the_bound_is_a_refusal(fresh_roles: Roles) -> None:
    roles = fresh_roles
    assert roles.call(f"{DIPLOMA}?person={MARI}").status_code == 200
    bound = roles.provider.status.max_age
    central = f"http://127.0.0.1:{roles.ports.central}"
    with roles.roles.loopback.down(central):
        roles.clock.advance(bound / 2)
        roles.roles.refresh()  # fails: the answers held stay
        assert roles.call(f"{DIPLOMA}?person={MARI}").status_code == 200
        roles.clock.advance(bound / 2 + timedelta(seconds=1))
        roles.roles.refresh()
        calls = roles.registry.calls
        response = roles.call(f"{DIPLOMA}?person={MARI}")
    assert response.status_code == 503, response.text
    # The provider refuses the request; the consumer cannot vouch for the provider's signed
    # refusal either (its answers are as stale), so the caller sees the consumer's.
    assert response.json()["type"] == "Server.ClientProxy.CertificateStatusUnknown"
    assert roles.registry.calls == calls
    roles.roles.refresh()  # the responder is back: answers again
    assert roles.call(f"{DIPLOMA}?person={MARI}").status_code == 200
