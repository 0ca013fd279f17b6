"""The timestamping authority, checked by the real ``openssl ts`` and by our own verifier."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from audit import timestamp
from audit.timestamp import TimestampInvalid
from exchange.trust import ca
from exchange.trust.keys import certificate_pem, generate_key
from exchange.trust.tsp import TimeStampResp
from exchange.tsa import files
from exchange.tsa.tokens import Authority
from tests.servers import exchange, free_port, serving

NOW = datetime.now(UTC)  # openssl checks against the real clock


@dataclass
class Setup:
    folder: Path
    authority: Authority
    root: x509.Certificate

    def openssl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "ts", *args], capture_output=True, text=True, check=False, cwd=self.folder
        )


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    key = generate_key()
    root = ca.create_root(key, instance="EE", at=NOW, validity=timedelta(days=30))
    issuer = ca.CertificateAuthority(key=key, certificate=root)
    files.initialise(tmp_path, "tsa1")
    cert = issuer.issue(
        public_key=ca.public_key_from_csr((tmp_path / "tsa.csr").read_text()),
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsa1")]),
        profile=ca.Profile.TIMESTAMPING,
        at=NOW,
        validity=timedelta(days=10),
    )
    (tmp_path / "tsa.pem").write_text(certificate_pem(cert))
    (tmp_path / "ca.pem").write_text(certificate_pem(root))
    (tmp_path / "data").write_bytes(b"tree head 42: size 1000, root 9f86d081...")
    return Setup(tmp_path, files.load(tmp_path), root)


def test_openssl_query_gets_a_token_openssl_accepts(setup: Setup) -> None:
    assert (
        setup.openssl("-query", "-data", "data", "-sha256", "-cert", "-out", "req.tsq").returncode
        == 0
    )
    (setup.folder / "resp.tsr").write_bytes(
        setup.authority.respond((setup.folder / "req.tsq").read_bytes(), at=NOW)
    )
    verified = setup.openssl(
        "-verify", "-data", "data", "-in", "resp.tsr", "-CAfile", "ca.pem", "-untrusted", "tsa.pem"
    )
    assert verified.returncode == 0, verified.stderr
    assert "Verification: OK" in verified.stdout
    (setup.folder / "other").write_bytes(b"tree head 42: size 1000, root 9f86d082...")
    tampered = setup.openssl(
        "-verify", "-data", "other", "-in", "resp.tsr", "-CAfile", "ca.pem", "-untrusted", "tsa.pem"
    )
    assert tampered.returncode != 0
    assert "message imprint mismatch" in tampered.stdout + tampered.stderr


def test_our_verifier_agrees_with_openssl(setup: Setup) -> None:
    digest = hashlib.sha256((setup.folder / "data").read_bytes()).digest()
    reply = TimeStampResp.load(setup.authority.respond(timestamp.query(digest, 7), at=NOW))
    token = reply["time_stamp_token"].dump()
    stamped = timestamp.verify(token, digest=digest, tsa=setup.authority.certificate, ca=setup.root)
    assert abs((stamped - NOW).total_seconds()) < 1
    with pytest.raises(TimestampInvalid, match="message imprint mismatch"):
        timestamp.verify(
            token,
            digest=hashlib.sha256(b"other").digest(),
            tsa=setup.authority.certificate,
            ca=setup.root,
        )
    other_key = generate_key()
    other_root = ca.create_root(other_key, instance="EE", at=NOW, validity=timedelta(days=1))
    with pytest.raises(TimestampInvalid):
        timestamp.verify(token, digest=digest, tsa=setup.authority.certificate, ca=other_root)
    data = bytearray(token)
    data[-10] ^= 0x01  # inside the signature
    with pytest.raises(TimestampInvalid):
        timestamp.verify(bytes(data), digest=digest, tsa=setup.authority.certificate, ca=setup.root)


@pytest.mark.parametrize(
    ("request_der", "reason"),
    [
        (b"garbage", "bad_data_format"),
        (timestamp.query(b"\x00" * 20, 1), "bad_alg"),  # a SHA-1 sized imprint labelled SHA-256
    ],
)
def test_bad_queries_are_rejected_not_crashed(
    setup: Setup, request_der: bytes, reason: str
) -> None:
    reply = TimeStampResp.load(setup.authority.respond(request_der, at=NOW))
    assert reply["status"]["status"].native == "rejection"
    assert reason in reply["status"]["fail_info"].native


@pytest.fixture
def served(setup: Setup, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with serving(
        ["tsa", "serve", "--data-dir", str(setup.folder), "--port", str(port)],
        health_url=f"http://127.0.0.1:{port}/health",
        log=tmp_path / "tsa.log",
    ):
        yield f"http://127.0.0.1:{port}/"


def test_served_over_http(setup: Setup, served: str) -> None:
    digest = hashlib.sha256(b"tree head").digest()
    token = timestamp.stamp(served, digest)
    assert timestamp.verify(token, digest=digest, tsa=setup.authority.certificate, ca=setup.root)
    assert (
        setup.openssl("-query", "-data", "data", "-sha256", "-cert", "-out", "req.tsq").returncode
        == 0
    )
    reply = httpx.post(
        served,
        content=(setup.folder / "req.tsq").read_bytes(),
        headers={"Content-Type": "application/timestamp-query"},
    )
    assert reply.headers["content-type"] == "application/timestamp-reply"
    (setup.folder / "resp.tsr").write_bytes(reply.content)
    verified = setup.openssl(
        "-verify", "-data", "data", "-in", "resp.tsr", "-CAfile", "ca.pem", "-untrusted", "tsa.pem"
    )
    assert verified.returncode == 0, verified.stderr
    wrong_type = httpx.post(served, content=b"x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415


def test_central_certifies_and_publishes_a_tsa(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "c")]
    assert exchange("central", "init", "--instance", "EE", *data).returncode == 0
    assert (
        exchange(
            "central",
            "member",
            "add",
            "EE/GOV/70000000",
            "--name",
            "Information System Authority",
            *data,
        ).returncode
        == 0
    )
    assert (
        exchange("tsa", "init", "--data-dir", str(tmp_path / "t"), "--name", "tsa1").returncode == 0
    )
    added = exchange(
        "central",
        "tsa",
        "add",
        "tsa1",
        "--member",
        "EE/GOV/70000000",
        "--url",
        "http://127.0.0.1:4430/",
        "--csr",
        str(tmp_path / "t" / "tsa.csr"),
        "-o",
        str(tmp_path / "t" / "tsa.pem"),
        *data,
    )
    assert added.returncode == 0, added.stderr
    verified = subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            "timestampsign",
            "-CAfile",
            str(tmp_path / "c" / "ca.pem"),
            str(tmp_path / "t" / "tsa.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    again = exchange(
        "central",
        "tsa",
        "add",
        "tsa1",
        "--member",
        "EE/GOV/70000000",
        "--url",
        "http://x/",
        "--csr",
        str(tmp_path / "t" / "tsa.csr"),
        *data,
    )
    assert again.returncode == 1
    assert "already registered" in again.stderr

    from exchange.central.service import build
    from exchange.central.settings import CentralSettings
    from exchange.trust import globalconf
    from exchange.trust.globalconf import TrustAnchor

    central = build(CentralSettings(data_dir=tmp_path / "c"))
    anchor = TrustAnchor.load(tmp_path / "c" / "anchor.json")
    conf = globalconf.verify(central.publisher.document(), anchor, at=datetime.now(UTC))
    [listed] = conf.timestamping_authorities
    assert listed["name"] == "tsa1"
    assert listed["url"] == "http://127.0.0.1:4430/"
    assert listed["certificate"] == (tmp_path / "t" / "tsa.pem").read_text()
