"""Certificates issued by the instance CA, checked by the real ``openssl`` binary."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.errors import InvalidCertificateRequest
from exchange.trust import ca
from exchange.trust.keys import build_csr, certificate_pem, csr_pem, generate_key

AT = datetime.now(UTC)  # openssl checks validity against the real clock
SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "70000310")])


@pytest.fixture
def authority() -> ca.CertificateAuthority:
    key = generate_key()
    return ca.CertificateAuthority(
        key=key,
        certificate=ca.create_root(key, instance="EE", at=AT, validity=timedelta(days=3650)),
    )


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def write(path: Path, cert: x509.Certificate) -> Path:
    path.write_text(certificate_pem(cert))
    return path


def issue(
    authority: ca.CertificateAuthority, profile: ca.Profile, **kwargs: object
) -> x509.Certificate:
    public_key = ca.public_key_from_csr(csr_pem(build_csr(generate_key(), "x")))
    return authority.issue(
        public_key=public_key,
        subject=SUBJECT,
        profile=profile,
        at=AT,
        validity=timedelta(days=365),
        **kwargs,  # type: ignore[arg-type]
    )


def test_openssl_accepts_signing_certificate(
    authority: ca.CertificateAuthority, tmp_path: Path
) -> None:
    cert = issue(authority, ca.Profile.SIGNING)
    result = openssl(
        "verify",
        "-CAfile",
        str(write(tmp_path / "ca.pem", authority.certificate)),
        str(write(tmp_path / "c.pem", cert)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.content_commitment
    assert not usage.value.key_cert_sign
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ca.DOCUMENT_SIGNING
    ]


def test_openssl_accepts_tls_certificate_for_server_and_client(
    authority: ca.CertificateAuthority, tmp_path: Path
) -> None:
    cert = issue(authority, ca.Profile.TLS, hosts=["127.0.0.1", "gw1.example.org"])
    ca_file = str(write(tmp_path / "ca.pem", authority.certificate))
    cert_file = str(write(tmp_path / "c.pem", cert))
    for purpose in ("sslserver", "sslclient"):
        result = openssl("verify", "-purpose", purpose, "-CAfile", ca_file, cert_file)
        assert result.returncode == 0, (purpose, result.stderr)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["gw1.example.org"]


def test_signing_certificate_is_not_good_for_tls(
    authority: ca.CertificateAuthority, tmp_path: Path
) -> None:
    cert = issue(authority, ca.Profile.SIGNING)
    result = openssl(
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        str(write(tmp_path / "ca.pem", authority.certificate)),
        str(write(tmp_path / "c.pem", cert)),
    )
    assert result.returncode != 0


def test_timestamping_profile_has_critical_eku(
    authority: ca.CertificateAuthority, tmp_path: Path
) -> None:
    cert = issue(authority, ca.Profile.TIMESTAMPING)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    result = openssl(
        "verify",
        "-purpose",
        "timestampsign",
        "-CAfile",
        str(write(tmp_path / "ca.pem", authority.certificate)),
        str(write(tmp_path / "c.pem", cert)),
    )
    assert result.returncode == 0, result.stderr


def test_openssl_reports_revoked_certificate_with_crl(
    authority: ca.CertificateAuthority, tmp_path: Path
) -> None:
    revoked = issue(authority, ca.Profile.SIGNING)
    kept = issue(authority, ca.Profile.SIGNING)
    crl = authority.crl(
        [
            ca.Revocation(
                serial=revoked.serial_number, revoked_at=AT, reason=x509.ReasonFlags.key_compromise
            )
        ],
        at=AT,
        validity=timedelta(days=1),
        number=1,
    )
    crl_file = tmp_path / "crl.pem"
    crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    ca_file = str(write(tmp_path / "ca.pem", authority.certificate))
    bad = openssl(
        "verify",
        "-crl_check",
        "-CAfile",
        ca_file,
        "-CRLfile",
        str(crl_file),
        str(write(tmp_path / "r.pem", revoked)),
    )
    assert bad.returncode != 0
    assert "certificate revoked" in bad.stdout + bad.stderr
    good = openssl(
        "verify",
        "-crl_check",
        "-CAfile",
        ca_file,
        "-CRLfile",
        str(crl_file),
        str(write(tmp_path / "k.pem", kept)),
    )
    assert good.returncode == 0, good.stderr


def test_certificate_from_another_ca_is_rejected_by_openssl(
    authority: ca.CertificateAuthority, tmp_path: Path
) -> None:
    other_key = generate_key()
    other = ca.CertificateAuthority(
        key=other_key,
        certificate=ca.create_root(other_key, instance="EE", at=AT, validity=timedelta(days=30)),
    )
    cert = issue(other, ca.Profile.SIGNING)
    result = openssl(
        "verify",
        "-CAfile",
        str(write(tmp_path / "ca.pem", authority.certificate)),
        str(write(tmp_path / "c.pem", cert)),
    )
    assert result.returncode != 0


def test_csr_with_broken_signature_is_refused() -> None:
    csr = build_csr(generate_key(), "x")
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(InvalidCertificateRequest, match="signature does not verify"):
        ca.public_key_from_csr(tampered)


def test_weak_keys_are_refused() -> None:
    weak_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the point of the test)
    with pytest.raises(InvalidCertificateRequest, match="1024 bits is too short"):
        ca.public_key_from_csr(csr_pem(build_csr(weak_rsa, "x")))
    odd_curve = ec.generate_private_key(ec.SECP256K1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(SUBJECT)
        .sign(odd_curve, hashes.SHA256())
    )
    with pytest.raises(InvalidCertificateRequest, match="curve secp256k1 is not allowed"):
        ca.public_key_from_csr(csr.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "x" * 20000,
    ],
)
def test_garbage_csr_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidCertificateRequest):
        ca.public_key_from_csr(garbage)


def test_issued_certificate_never_outlives_the_root(authority: ca.CertificateAuthority) -> None:
    cert = authority.issue(
        public_key=generate_key().public_key(),
        subject=SUBJECT,
        profile=ca.Profile.SIGNING,
        at=AT,
        validity=timedelta(days=100 * 365),
    )
    assert cert.not_valid_after_utc == authority.certificate.not_valid_after_utc
