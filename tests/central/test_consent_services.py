"""Consent services: certified for signing consent records, listed in the configuration."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from exchange.central.service import Central, build
from exchange.central.settings import CentralSettings
from exchange.errors import Conflict, InvalidRequest, NotFound
from exchange.identifiers import MemberId
from exchange.trust import ca, globalconf
from exchange.trust.globalconf import TrustAnchor
from exchange.trust.keys import build_csr, csr_pem, generate_key
from tests.central.test_certificates import openssl_verify
from tests.conftest import Clock
from tests.servers import exchange

MEMBER = MemberId.parse("EE/GOV/70000310")
URL = "https://consent.example.org/"


@pytest.fixture
def registered(central: Central) -> Central:
    central.registry.register_member(MEMBER, "Population Register", actor="t")
    return central


def new_csr() -> str:
    return csr_pem(build_csr(generate_key(), "whatever the operator asks"))


def verified(central: Central, clock: Clock) -> globalconf.GlobalConfiguration:
    anchor = TrustAnchor.load(central.settings.data_dir / "anchor.json")
    return globalconf.verify(central.publisher.document(), anchor, at=clock())


def test_certificate_is_for_signing_documents(registered: Central, tmp_path: Path) -> None:
    issued = registered.certificates.issue_consent_service(
        MEMBER, "consent1", URL, new_csr(), actor="t"
    )
    cert = x509.load_pem_x509_certificate(issued.pem.encode())
    assert [(a.oid, a.value) for a in cert.subject] == [
        (NameOID.ORGANIZATION_NAME, "Population Register"),
        (NameOID.COMMON_NAME, "consent1"),
        (NameOID.SERIAL_NUMBER, "EE/GOV/70000310"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ca.DOCUMENT_SIGNING]
    result = openssl_verify(tmp_path, registered, issued.pem)
    assert result.returncode == 0, result.stdout + result.stderr
    [listed] = registered.certificates.consent_services()
    assert (listed.name, listed.member.identifier, listed.url) == ("consent1", str(MEMBER), URL)
    assert listed.certificate_serial == issued.serial
    registered_event = registered.registry.events()[-1]
    assert (registered_event.action, registered_event.subject) == (
        "consent_service.registered",
        "consent1",
    )
    assert json.loads(registered_event.details) == {"url": URL}


def test_a_taken_name_is_a_conflict(registered: Central) -> None:
    registered.certificates.issue_consent_service(MEMBER, "consent1", URL, new_csr(), actor="t")
    with pytest.raises(Conflict, match="consent service consent1 is already registered"):
        registered.certificates.issue_consent_service(
            MEMBER, "consent1", "https://other.example.org/", new_csr(), actor="t"
        )
    assert len(registered.certificates.list()) == 1
    assert len(registered.certificates.consent_services()) == 1


def test_refusals_leave_nothing_behind(registered: Central) -> None:
    with pytest.raises(InvalidRequest):
        registered.certificates.issue_consent_service(MEMBER, "a/b", URL, new_csr(), actor="t")
    with pytest.raises(InvalidRequest, match="http"):
        registered.certificates.issue_consent_service(
            MEMBER, "consent1", "ftp://consent.example.org/", new_csr(), actor="t"
        )
    with pytest.raises(NotFound):
        registered.certificates.issue_consent_service(
            MemberId.parse("EE/GOV/1"), "consent1", URL, new_csr(), actor="t"
        )
    assert registered.certificates.list() == []
    assert registered.certificates.consent_services() == []


def test_listed_in_the_configuration_but_not_as_a_message_signing_key(
    registered: Central, clock: Clock
) -> None:
    signing = registered.certificates.issue_signing(MEMBER, new_csr(), actor="t")
    issued = registered.certificates.issue_consent_service(
        MEMBER, "consent1", URL, new_csr(), actor="t"
    )
    conf = verified(registered, clock)
    assert conf.consent_services == [
        {"name": "consent1", "member": "EE/GOV/70000310", "url": URL, "certificate": issued.pem}
    ]
    member = conf.member(str(MEMBER))
    assert member is not None
    assert member.signing_certificates == [signing.pem]


def test_revoked_consent_service_leaves_the_configuration(
    registered: Central, clock: Clock
) -> None:
    issued = registered.certificates.issue_consent_service(
        MEMBER, "consent1", URL, new_csr(), actor="t"
    )
    before = verified(registered, clock)
    registered.certificates.revoke(issued.serial, "keyCompromise", actor="t")
    after = verified(registered, clock)
    assert after.version == before.version + 1
    assert after.consent_services == []
    assert after.revoked_serials == [issued.serial]


def test_command_line_certifies_and_lists(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "c")]
    assert exchange("central", "init", "--instance", "EE", *data).returncode == 0
    added_member = exchange(
        "central", "member", "add", str(MEMBER), "--name", "Population Register", *data
    )
    assert added_member.returncode == 0, added_member.stderr
    (tmp_path / "consent.csr").write_text(new_csr())
    add = [
        "central",
        "consent-service",
        "add",
        "--member",
        str(MEMBER),
        "--name",
        "consent1",
        "--url",
        URL,
        "--csr",
        str(tmp_path / "consent.csr"),
        *data,
    ]
    added = exchange(*add, "--out", str(tmp_path / "consent.pem"))
    assert added.returncode == 0, added.stderr
    assert "issued consent service certificate serial" in added.stderr
    verified_pem = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(tmp_path / "c" / "ca.pem"),
            str(tmp_path / "consent.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified_pem.returncode == 0, verified_pem.stderr
    again = exchange(*add)
    assert again.returncode == 1
    assert "already registered" in again.stderr

    listed = exchange("central", "consent-service", "list", *data)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "MEMBER", "URL", "SERIAL", "EXPIRES", "REVOKED"]
    assert row.split()[:3] == ["consent1", str(MEMBER), URL]

    central = build(CentralSettings(data_dir=tmp_path / "c"))
    anchor = TrustAnchor.load(tmp_path / "c" / "anchor.json")
    conf = globalconf.verify(central.publisher.document(), anchor, at=datetime.now(UTC))
    [entry] = conf.consent_services
    assert entry["certificate"] == (tmp_path / "consent.pem").read_text()
