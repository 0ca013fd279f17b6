"""The authority's global configuration: contents, versioning and re-signing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy.orm import Session

from exchange.central.service import Central, build
from exchange.central.settings import CentralSettings
from exchange.identifiers import GatewayId, MemberId, SubsystemId
from exchange.trust import globalconf
from exchange.trust.globalconf import TrustAnchor
from exchange.trust.keys import build_csr, csr_pem, generate_key
from tests.conftest import Clock

MEMBER = MemberId.parse("EE/GOV/70000310")


def verified(central: Central, clock: Clock) -> globalconf.GlobalConfiguration:
    anchor = TrustAnchor.load(central.settings.data_dir / "anchor.json")
    return globalconf.verify(central.publisher.document(), anchor, at=clock())


def test_configuration_lists_the_registry(central: Central, clock: Clock) -> None:
    central.registry.register_member(MEMBER, "Population Register", actor="t")
    central.registry.register_subsystem(SubsystemId(MEMBER, "population-registry"), actor="t")
    central.registry.register_gateway(GatewayId(MEMBER, "gw1"), "https://127.0.0.1:8443", actor="t")
    signing = central.certificates.issue_signing(
        MEMBER, csr_pem(build_csr(generate_key(), "m")), actor="t"
    )
    tls = central.certificates.issue_tls(
        GatewayId(MEMBER, "gw1"), csr_pem(build_csr(generate_key(), "g")), actor="t"
    )

    conf = verified(central, clock)
    assert conf.instance == "EE"
    assert conf.member_classes == ["COM", "GOV", "NEE", "NGO"]
    member = conf.member("EE/GOV/70000310")
    assert member is not None
    assert member.subsystems == ["population-registry"]
    assert member.signing_certificates == [signing.pem]
    gateway = conf.gateway("EE/GOV/70000310/gw1")
    assert gateway is not None
    assert gateway.address == "https://127.0.0.1:8443"
    assert gateway.tls_certificates == [tls.pem]
    ca_cert = x509.load_pem_x509_certificate(conf.ca_certificates[0].encode())
    assert ca_cert == central.material.authority.certificate
    assert conf.expires_at - conf.generated_at == central.settings.configuration_validity
    assert conf.services == []


def test_version_is_reused_until_a_change(central: Central, clock: Clock) -> None:
    first = central.publisher.document()
    assert central.publisher.document() == first
    central.registry.register_member(MEMBER, "Population Register", actor="t")
    assert verified(central, clock).version == 2


def test_revocation_reaches_the_next_version(central: Central, clock: Clock) -> None:
    central.registry.register_member(MEMBER, "Population Register", actor="t")
    issued = central.certificates.issue_signing(
        MEMBER, csr_pem(build_csr(generate_key(), "m")), actor="t"
    )
    before = verified(central, clock)
    central.certificates.revoke(issued.serial, "keyCompromise", actor="t")
    after = verified(central, clock)
    assert after.version == before.version + 1
    assert after.revoked_serials == [issued.serial]
    member = after.member(str(MEMBER))
    assert member is not None
    assert member.signing_certificates == []


def test_resigned_well_before_expiry(central: Central, clock: Clock) -> None:
    first = verified(central, clock)
    clock.advance(central.settings.configuration_validity / 4 - timedelta(seconds=1))
    assert verified(central, clock).version == first.version
    clock.advance(timedelta(seconds=1))
    second = verified(central, clock)
    assert second.version == first.version + 1
    assert second.expires_at == clock() + central.settings.configuration_validity


def restarted(settings: CentralSettings, clock: Clock, validity: timedelta) -> Central:
    """The authority started again on the same folder and database with another validity."""
    return build(settings.model_copy(update={"configuration_validity": validity}), clock=clock)


def test_a_restart_never_serves_an_expired_version(
    central: Central, central_settings: CentralSettings, clock: Clock
) -> None:
    """Signed under a two-minute validity, down for three minutes, back with the default hour:
    the authority signs anew rather than serve what expired while it was down."""
    first = verified(restarted(central_settings, clock, timedelta(minutes=2)), clock)
    clock.advance(timedelta(minutes=3))
    again = restarted(central_settings, clock, timedelta(hours=1))
    served = verified(again, clock)  # an expired document would fail here
    assert served.version == first.version + 1
    assert served.expires_at == clock() + timedelta(hours=1)


def test_a_stored_version_is_judged_by_its_own_validity(
    central: Central, central_settings: CentralSettings, clock: Clock
) -> None:
    """A version is reused for a quarter of the validity it was signed with, whatever the
    setting of the process serving it."""
    first = verified(restarted(central_settings, clock, timedelta(minutes=2)), clock)
    again = restarted(central_settings, clock, timedelta(hours=1))
    clock.advance(timedelta(seconds=29))
    assert verified(again, clock).version == first.version
    clock.advance(timedelta(seconds=1))
    assert verified(again, clock).version == first.version + 1
    longer = restarted(central_settings, clock, timedelta(minutes=2))
    clock.advance(timedelta(minutes=14))  # the hour-long version has most of its life ahead
    assert verified(longer, clock).version == first.version + 1


def test_a_version_from_a_clock_that_ran_ahead_is_replaced(central: Central, clock: Clock) -> None:
    """The authority's clock is set back (it ran ahead): what it signed then would be refused as
    generated in the future by every relying party on the right time, so it signs anew."""
    clock.advance(timedelta(minutes=20))
    ahead = verified(central, clock)
    clock.advance(-timedelta(minutes=10))
    assert verified(central, clock).version == ahead.version + 1


def test_expired_certificates_leave_the_configuration(central: Central, clock: Clock) -> None:
    central.registry.register_member(MEMBER, "Population Register", actor="t")
    central.certificates.issue_signing(MEMBER, csr_pem(build_csr(generate_key(), "m")), actor="t")
    clock.advance(central.settings.signing_certificate_validity + timedelta(days=1))
    member = verified(central, clock).member(str(MEMBER))
    assert member is not None
    assert member.signing_certificates == []


def test_a_version_published_meanwhile_by_another_process_is_served(
    central: Central,
    central_settings: CentralSettings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes of the authority answer /globalconf at once and both find a version due:
    the one that stores it second serves the first one's instead of failing (it used to fail
    with a 500 when the clash surfaced before the commit, and a gateway starting then had no
    configuration to start on)."""
    other = build(central_settings, clock=clock)
    build_now = central.publisher._build
    published: list[bytes] = []

    def meanwhile(session: Session, *, version: int, at: datetime) -> Any:
        if not published:  # between this process's look at the latest version and its write
            published.append(other.publisher.document())
        return build_now(session, version=version, at=at)

    monkeypatch.setattr(central.publisher, "_build", meanwhile)
    assert central.publisher.document() == published[0]
    assert verified(central, clock).version == 1
