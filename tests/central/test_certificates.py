"""Issuance from CSRs and revocation, persisted, checked with the real openssl binary."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchange.central.service import Central
from exchange.errors import Conflict, InvalidCertificateRequest, InvalidRequest, NotFound
from exchange.identifiers import GatewayId, MemberId
from exchange.trust.keys import build_csr, csr_pem, generate_key
from tests.conftest import Clock

MEMBER = MemberId.parse("EE/GOV/70000310")
GATEWAY = GatewayId(MEMBER, "gw1")


@pytest.fixture
def registered(central: Central) -> Central:
    central.registry.register_member(MEMBER, "Population Register", actor="t")
    central.registry.register_gateway(GATEWAY, "https://127.0.0.1:8443", actor="t")
    return central


def new_csr() -> str:
    return csr_pem(build_csr(generate_key(), "whatever the member asks"))


def openssl_verify(
    tmp_path: Path, central: Central, pem: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "cert.pem").write_text(pem)
    ca_file = central.settings.data_dir / "ca.pem"
    return subprocess.run(
        ["openssl", "verify", *extra, "-CAfile", str(ca_file), str(tmp_path / "cert.pem")],
        capture_output=True,
        text=True,
        check=False,
    )


def test_signing_certificate_names_the_member(registered: Central, tmp_path: Path) -> None:
    issued = registered.certificates.issue_signing(MEMBER, new_csr(), actor="t")
    cert = x509.load_pem_x509_certificate(issued.pem.encode())
    serial = cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value
    assert serial == "EE/GOV/70000310"
    assert (
        cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value
        == "Population Register"
    )
    assert openssl_verify(tmp_path, registered, issued.pem).returncode == 0
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name is not None
    assert points[0].full_name[0].value == "http://127.0.0.1:4401/crl"


def test_tls_certificate_carries_the_gateway_host(registered: Central, tmp_path: Path) -> None:
    issued = registered.certificates.issue_tls(GATEWAY, new_csr(), actor="t")
    cert = x509.load_pem_x509_certificate(issued.pem.encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    result = openssl_verify(
        tmp_path, registered, issued.pem, "-purpose", "sslserver", "-verify_ip", "127.0.0.1"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_revoked_certificate_is_reported_by_openssl_with_published_crl(
    registered: Central, tmp_path: Path
) -> None:
    revoked = registered.certificates.issue_signing(MEMBER, new_csr(), actor="t")
    kept = registered.certificates.issue_signing(MEMBER, new_csr(), actor="t")
    registered.certificates.revoke(revoked.serial.lower(), "keyCompromise", actor="t")
    crl = x509.load_der_x509_crl(registered.certificates.crl_der())
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
    crl_args = ("-crl_check", "-CRLfile", str(tmp_path / "crl.pem"))
    bad = openssl_verify(tmp_path, registered, revoked.pem, *crl_args)
    assert bad.returncode != 0
    assert "certificate revoked" in bad.stdout + bad.stderr
    assert openssl_verify(tmp_path, registered, kept.pem, *crl_args).returncode == 0
    entry = crl.get_revoked_certificate_by_serial_number(int(revoked.serial, 16))
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )


def test_crl_is_reissued_after_a_change_with_a_larger_number(
    registered: Central, clock: Clock
) -> None:
    first = x509.load_der_x509_crl(registered.certificates.crl_der())
    assert registered.certificates.crl_der() == first.public_bytes(Encoding.DER)  # cached
    issued = registered.certificates.issue_signing(MEMBER, new_csr(), actor="t")
    clock.advance(timedelta(seconds=1))
    registered.certificates.revoke(issued.serial, "superseded", actor="t")
    second = x509.load_der_x509_crl(registered.certificates.crl_der())
    number = second.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert len(list(second)) == 1


def test_revocation_errors(registered: Central) -> None:
    issued = registered.certificates.issue_signing(MEMBER, new_csr(), actor="t")
    with pytest.raises(InvalidRequest, match="unknown revocation reason 'bored'"):
        registered.certificates.revoke(issued.serial, "bored", actor="t")
    with pytest.raises(NotFound):
        registered.certificates.revoke("ABCDEF", "unspecified", actor="t")
    registered.certificates.revoke(issued.serial, "unspecified", actor="t")
    with pytest.raises(Conflict, match="already revoked"):
        registered.certificates.revoke(issued.serial, "unspecified", actor="t")


def test_issuance_needs_registration_and_a_good_csr(registered: Central) -> None:
    with pytest.raises(NotFound):
        registered.certificates.issue_signing(MemberId.parse("EE/GOV/1"), new_csr(), actor="t")
    with pytest.raises(NotFound):
        registered.certificates.issue_tls(GatewayId(MEMBER, "nope"), new_csr(), actor="t")
    with pytest.raises(InvalidCertificateRequest):
        registered.certificates.issue_signing(MEMBER, "junk", actor="t")
    assert registered.certificates.list() == []
