"""An exported bundle, checked with nothing but the trust anchor: by our verifier and by openssl."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine

from audit import bundle
from audit.heads import HeadKeeper
from audit.log import AuditLog
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.trust import ca, globalconf, signed
from exchange.trust.keys import certificate_pem
from exchange.tsa import files as tsa_files
from tests.audit.test_log import CHAIN, MEMBER, entry
from tests.factories import Instance, Signer
from tests.servers import exchange, free_port, serving

NOW = datetime.now(UTC)  # openssl checks the TSA certificate against the real clock


def published(
    folder: Path, configuration: globalconf.GlobalConfiguration
) -> tuple[bytes, globalconf.TrustAnchor, Engine]:
    """``configuration`` signed under an anchor (written to ``folder``/anchor.json), and an
    empty gateway database in ``folder``."""
    signer = Signer(instance="EE", at=NOW - timedelta(hours=1))
    document = globalconf.sign(configuration, signer.key, signer.certificate)
    anchor = signer.anchor()
    (folder / "anchor.json").write_bytes(anchor.dump())
    engine = build_engine(f"sqlite:///{folder / 'gateway.db'}")
    migrate.upgrade("gateway", engine)
    return document, anchor, engine


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    instance = Instance(at=NOW - timedelta(hours=1))
    tsa_files.initialise(tmp_path / "tsa", "tsa1")
    tsa_cert = instance.authority.issue(
        public_key=ca.public_key_from_csr((tmp_path / "tsa" / "tsa.csr").read_text()),
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsa1")]),
        profile=ca.Profile.TIMESTAMPING,
        at=NOW - timedelta(hours=1),
        validity=timedelta(days=1),
    )
    (tmp_path / "tsa" / "tsa.pem").write_text(certificate_pem(tsa_cert))
    key, cert = instance.signing(MEMBER)
    port = free_port()
    configuration = instance.configuration({MEMBER: [cert]}).model_copy(
        update={
            "timestamping_authorities": [
                {
                    "name": "tsa1",
                    "url": f"http://127.0.0.1:{port}/",
                    "certificate": certificate_pem(tsa_cert),
                }
            ]
        }
    )
    document, anchor, engine = published(tmp_path, configuration)

    async def record() -> None:
        log = AuditLog(engine, chain=CHAIN, key=b"k" * 32, clock=lambda: datetime.now(UTC))
        keeper = HeadKeeper(
            audit=log,
            engine=engine,
            signer=signed.Signer(key, cert),
            configuration=lambda: configuration,
            clock=lambda: datetime.now(UTC),
            interval=60,
            every=1000,
        )
        for batch in range(3):
            await asyncio.gather(
                *(log.append(entry(batch * 10 + n), subject="EE38001085718") for n in range(10))
            )
            head = await keeper.sign_now()
            assert head.tsa == "tsa1"
        await log.close()

    with serving(
        ["tsa", "serve", "--data-dir", str(tmp_path / "tsa"), "--port", str(port)],
        health_url=f"http://127.0.0.1:{port}/health",
        log=tmp_path / "tsa.log",
    ):
        asyncio.run(record())
    bundle.export(
        engine,
        CHAIN,
        configuration=document,
        anchor=anchor,
        signing=[cert],
        out=tmp_path / "bundle",
    )
    return tmp_path


def test_bundle_verifies_with_the_anchor_alone(exported: Path) -> None:
    result = exchange(
        "audit",
        "verify",
        "--bundle",
        str(exported / "bundle"),
        "--anchor",
        str(exported / "anchor.json"),
    )
    assert result.returncode == 0, result.stderr
    assert "OK, 30 records, 3 signed heads, 3 timestamped" in result.stdout


def test_openssl_accepts_every_head_timestamp(exported: Path) -> None:
    heads = sorted((exported / "bundle" / "heads").glob("*.jws"))
    assert [h.stem for h in heads] == ["10", "20", "30"]
    folder = exported / "bundle"
    for head in heads:
        result = subprocess.run(
            [
                "openssl",
                "ts",
                "-verify",
                "-data",
                str(head),
                "-in",
                str(head.with_suffix(".tst")),
                "-token_in",
                "-CAfile",
                str(folder / "ca.pem"),
                "-untrusted",
                str(folder / "tsa-tsa1.pem"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_tampered_bundle_fails_at_the_right_record(exported: Path) -> None:
    lines = (exported / "bundle" / "records.jsonl").read_bytes().splitlines()
    lines[13] = lines[13].replace(b'"m-13"', b'"m-14"')
    (exported / "bundle" / "records.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = exchange(
        "audit",
        "verify",
        "--bundle",
        str(exported / "bundle"),
        "--anchor",
        str(exported / "anchor.json"),
    )
    assert result.returncode == 1
    assert "FAILED at record 13" in result.stderr


def test_bundle_with_a_foreign_anchor_is_refused(exported: Path, tmp_path: Path) -> None:
    other = Signer(instance="EE", at=NOW - timedelta(hours=1))
    (tmp_path / "other.json").write_bytes(other.anchor().dump())
    result = exchange(
        "audit",
        "verify",
        "--bundle",
        str(exported / "bundle"),
        "--anchor",
        str(tmp_path / "other.json"),
    )
    assert result.returncode == 1
    assert "not a readable audit bundle" in result.stderr or "anchor does not hold" in result.stderr
