"""Export an audit chain as a self-contained bundle, and read one back for verification.

::

    bundle/
      README.txt            how to check it, with our verifier and with openssl alone
      anchor.json           the instance's trust anchor (compare its SHA-256 out of band)
      globalconf.jws        the signed configuration: CA, member certificates, TSAs
      chain.json            {"chain": ..., "records": n, "heads": m}
      records.jsonl         the records, one canonical JSON document per line, in order
      heads.jsonl           the signed tree heads (JWS) with their timestamp tokens (base64)
      heads/<size>.jws      each head's JWS ...
      heads/<size>.tst      ... and its RFC 3161 token, for `openssl ts -verify -token_in`
      ca.pem, tsa-<name>.pem, signing-<n>.pem   certificates, for openssl

The verifier trusts nothing in the bundle except through the anchor: the configuration must
verify against it, and certificates are taken from that configuration (plus signing
certificates that the instance CA issued to the chain's member, for heads signed with a key that
has since been rotated out).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from audit.models import AuditRecord, TreeHead
from audit.verify import Anchors, Head, Stored
from exchange.errors import InvalidRequest
from exchange.trust import globalconf
from exchange.trust.globalconf import GlobalConfiguration, TrustAnchor
from exchange.trust.keys import certificate_pem

README = """Audit bundle of chain {chain}: {records} records, {heads} signed tree heads.

Check everything (records, hash chain, heads, signatures, timestamps):
    exchange audit verify --bundle . --anchor anchor.json
Check it against signed heads or receipts kept earlier (JSON, as the gateway hands them out):
    exchange audit verify --bundle . --anchor anchor.json --heads kept.json
Compare the anchor's SHA-256 with the one the instance publishes:
    sha256sum anchor.json
Check one head's timestamp with openssl alone:
    openssl ts -verify -data heads/<size>.jws -in heads/<size>.tst -token_in \\
        -CAfile ca.pem -untrusted tsa-<name>.pem
"""


def rows(engine: Engine, chain: str) -> Iterator[bytes]:
    """The chain's record bodies in order, streamed (Core, not the ORM: 3-4x the rate)."""
    query = select(AuditRecord.body).where(AuditRecord.chain == chain).order_by(AuditRecord.seq)
    with engine.connect() as connection:
        yield from connection.execution_options(yield_per=10000).execute(query).scalars()


def stored(engine: Engine, chain: str) -> Iterator[Stored]:
    """The chain's records in order with the columns the usage view finds them by, so that the
    verifier can check those against the records (see :func:`audit.verify.verify`).

    Rows come straight from the driver, streamed (a server-side cursor on PostgreSQL):
    SQLAlchemy's per-row work cost a quarter of the verifier's rate. ``listed`` and ``released``
    are then 0/1 on SQLite and bools on PostgreSQL; both compare equal to the verifier's bools."""
    columns = "SELECT body, subject, listed, released FROM audit_records WHERE chain = "
    with engine.connect() as connection:
        driver: Any = connection.connection.driver_connection
        if engine.dialect.name == "postgresql":
            cursor = driver.cursor(name="audit_verify")
            cursor.execute(columns + "%(chain)s ORDER BY seq", {"chain": chain})
        else:
            cursor = driver.cursor()
            cursor.execute(columns + "? ORDER BY seq", (chain,))
        try:
            while batch := cursor.fetchmany(10000):
                yield from batch  # bytea and BLOB both arrive as bytes
        finally:
            cursor.close()


def heads(engine: Engine, chain: str) -> list[Head]:
    with Session(engine) as session:
        stored = session.scalars(
            select(TreeHead).where(TreeHead.chain == chain).order_by(TreeHead.size)
        )
        return [
            Head(
                h.chain,
                h.size,
                h.root,
                h.signature,
                h.timestamp,
                json.loads(h.cosignature) if h.cosignature else None,
                json.loads(h.peer_cosignatures) if h.peer_cosignatures else None,
            )
            for h in stored
        ]


def member_of_chain(chain: str) -> str:
    return "/".join(chain.split("/")[:3])


def anchors(
    configuration: GlobalConfiguration, chain: str, extra_signing: list[x509.Certificate]
) -> Anchors:
    ca = x509.load_pem_x509_certificate(configuration.ca_certificates[0].encode())
    member = configuration.member(member_of_chain(chain))
    signing = [
        x509.load_pem_x509_certificate(p.encode())
        for p in (member.signing_certificates if member else [])
    ]
    for certificate in extra_signing:
        owner = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)]
        if owner == [member_of_chain(chain)] and certificate not in signing:
            signing.append(certificate)  # its issuer is checked when a head is verified
    tsa = [
        x509.load_pem_x509_certificate(str(t["certificate"]).encode())
        for t in configuration.timestamping_authorities
    ]
    return Anchors(
        ca=ca, signing=signing, tsa=tsa, revoked=frozenset(configuration.revoked_serials)
    )


def export(
    engine: Engine,
    chain: str,
    *,
    configuration: bytes,
    anchor: TrustAnchor,
    signing: list[x509.Certificate],
    out: Path,
) -> tuple[int, int]:
    out.mkdir(parents=True, exist_ok=False)
    (out / "heads").mkdir()
    count = 0
    with (out / "records.jsonl").open("wb") as records:
        for body in rows(engine, chain):
            records.write(body + b"\n")
            count += 1
    signed = heads(engine, chain)
    with (out / "heads.jsonl").open("w") as lines:
        for head in signed:
            token = base64.b64encode(head.timestamp).decode() if head.timestamp else None
            lines.write(
                json.dumps(
                    {
                        "chain": head.chain,
                        "size": head.size,
                        "root": head.root,
                        "signature": head.signature,
                        "timestamp": token,
                        "cosignature": dict(head.cosignature) if head.cosignature else None,
                        "peer_cosignatures": dict(head.peer_cosignatures or {}),
                    }
                )
                + "\n"
            )
            (out / "heads" / f"{head.size}.jws").write_text(head.signature)
            if head.timestamp:
                (out / "heads" / f"{head.size}.tst").write_bytes(head.timestamp)
    (out / "anchor.json").write_bytes(anchor.dump())
    (out / "globalconf.jws").write_bytes(configuration)
    parsed = globalconf.verify_archived(configuration, anchor)
    (out / "ca.pem").write_text(parsed.ca_certificates[0])
    for authority in parsed.timestamping_authorities:
        (out / f"tsa-{authority['name']}.pem").write_text(str(authority["certificate"]))
    for index, certificate in enumerate(signing):
        (out / f"signing-{index}.pem").write_text(certificate_pem(certificate))
    (out / "chain.json").write_text(
        json.dumps({"chain": chain, "records": count, "heads": len(signed)}) + "\n"
    )
    (out / "README.txt").write_text(README.format(chain=chain, records=count, heads=len(signed)))
    return count, len(signed)


def load(folder: Path, anchor: TrustAnchor) -> tuple[str, Iterator[bytes], list[Head], Anchors]:
    """Read a bundle; its configuration must verify against ``anchor`` (not the bundle's own)."""
    try:
        chain = json.loads((folder / "chain.json").read_text())["chain"]
        configuration = globalconf.verify_archived((folder / "globalconf.jws").read_bytes(), anchor)
        signed = [
            Head(
                h["chain"],
                h["size"],
                h["root"],
                h["signature"],
                base64.b64decode(h["timestamp"]) if h["timestamp"] else None,
                h.get("cosignature"),  # bundles from before witnessing have none
                h.get("peer_cosignatures"),
            )
            for h in map(json.loads, (folder / "heads.jsonl").read_text().splitlines())
        ]
        extra = [
            x509.load_pem_x509_certificate(p.read_bytes())
            for p in sorted(folder.glob("signing-*.pem"))
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"{folder} is not a readable audit bundle") from exc

    def bodies() -> Iterator[bytes]:
        with (folder / "records.jsonl").open("rb") as lines:
            for line in lines:
                yield line.rstrip(b"\n")

    return chain, bodies(), signed, anchors(configuration, chain, extra)
