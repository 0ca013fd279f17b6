"""The authority's OCSP responder, asked by ``openssl ocsp`` over a real loopback socket."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from exchange.trust.keys import build_csr, csr_pem, generate_key
from tests.central import test_server
from tests.central.test_server import RunningCentral

running_central = test_server.running_central  # the authority on a real loopback port


def issue(central: RunningCentral) -> dict[str, str]:
    with central.api() as api:
        api.post("/members", json={"id": "EE/GOV/70000310", "name": "Population Register"})
        signing = api.post(
            "/certificates/signing",
            json={"owner": "EE/GOV/70000310", "csr": csr_pem(build_csr(generate_key(), "m"))},
        )
        assert signing.status_code == 201, signing.text
        return dict(signing.json())


def openssl_ocsp(central: RunningCentral, tmp_path: Path, certificate: str) -> str:
    (tmp_path / "ca.pem").write_text(httpx.get(f"{central.url}/ca.pem").text)
    (tmp_path / "cert.pem").write_text(certificate)
    ca = str(tmp_path / "ca.pem")
    result = subprocess.run(
        [
            *("openssl", "ocsp", "-issuer", ca, "-cert", str(tmp_path / "cert.pem")),
            *("-url", f"{central.url}/ocsp", "-CAfile", ca),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr, result.stderr
    return result.stdout


def test_openssl_accepts_good_then_revoked(running_central: RunningCentral, tmp_path: Path) -> None:
    signing = issue(running_central)
    good = openssl_ocsp(running_central, tmp_path, signing["certificate"])
    assert ": good" in good
    assert "Next Update:" in good
    with running_central.api() as api:
        revoked = api.post(
            f"/certificates/{signing['serial']}/revoke", json={"reason": "keyCompromise"}
        )
        assert revoked.status_code == 200
    answer = openssl_ocsp(running_central, tmp_path, signing["certificate"])
    assert ": revoked" in answer
    assert "Reason: keyCompromise" in answer


def request_for(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA256())
    return builder.build().public_bytes(serialization.Encoding.DER)


def test_get_per_appendix_a_and_unknown_serials(running_central: RunningCentral) -> None:
    signing = issue(running_central)
    issuer = x509.load_pem_x509_certificate(httpx.get(f"{running_central.url}/ca.pem").content)
    certificate = x509.load_pem_x509_certificate(signing["certificate"].encode())
    encoded = base64.b64encode(request_for(certificate, issuer)).decode()
    reply = httpx.get(f"{running_central.url}/ocsp/{encoded}")
    assert reply.headers["content-type"] == "application/ocsp-response"
    answer = ocsp.load_der_ocsp_response(reply.content)
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    # A certificate the authority never issued (its own CA certificate, self-issued): unknown.
    stranger = ocsp.load_der_ocsp_response(
        httpx.post(f"{running_central.url}/ocsp", content=request_for(issuer, issuer)).content
    )
    assert stranger.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    garbage = ocsp.load_der_ocsp_response(
        httpx.post(f"{running_central.url}/ocsp", content=b"junk").content
    )
    assert garbage.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.fixture
def delegated_central(tmp_path: Path, database_url: str) -> Iterator[RunningCentral]:
    """The authority with a delegated OCSP responder (EXCHANGE_CENTRAL_OCSP_DELEGATED)."""
    with test_server.serving_central(tmp_path, database_url, ocsp_delegated=True) as central:
        yield central


def test_a_delegated_responder_signs_and_openssl_accepts_it(
    delegated_central: RunningCentral, tmp_path: Path
) -> None:
    signing = issue(delegated_central)
    good = openssl_ocsp(delegated_central, tmp_path, signing["certificate"])
    assert ": good" in good
    issuer = x509.load_pem_x509_certificate(httpx.get(f"{delegated_central.url}/ca.pem").content)
    certificate = x509.load_pem_x509_certificate(signing["certificate"].encode())
    answer = ocsp.load_der_ocsp_response(
        httpx.post(
            f"{delegated_central.url}/ocsp", content=request_for(certificate, issuer)
        ).content
    )
    # Signed by the responder certificate it carries, not by the CA: RFC 6960 4.2.2.2.
    [responder] = answer.certificates
    assert responder != issuer
    responder.verify_directly_issued_by(issuer)
    usage = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert (
        answer.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(responder.public_key()).digest
    )
    # The responder's key is in the data folder, kept across restarts.
    assert (delegated_central.data_dir / "ocsp.key").exists()
    with delegated_central.api() as api:
        api.post(f"/certificates/{signing['serial']}/revoke", json={"reason": "keyCompromise"})
    revoked = openssl_ocsp(delegated_central, tmp_path, signing["certificate"])
    assert ": revoked" in revoked
