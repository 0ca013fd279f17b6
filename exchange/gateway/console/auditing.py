"""The audit browser: this replica's audit records, found by time, service, client and
outcome; the whole chain verified as ``exchange audit verify`` does; its export as a bundle
an auditor checks offline (``exchange audit export``, :mod:`audit.bundle`).

Records are read newest first, a page at a time. The service, client and outcome live in each
record's body (the Merkle leaf), not in columns, so a filtered page reads at most
:data:`SCAN` records before it stops and offers to go on from there.

Verification and export use the trust material the gateway holds: the instance's anchor, the
last verified global configuration (``globalconf.jws``) and the member's signing certificate.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from sqlalchemy import Engine, select

from audit import bundle
from audit.models import AuditRecord
from audit.verify import Head, Report, head_signature_problem, head_timestamp_verifies, verify
from exchange.errors import NotFound
from exchange.trust import globalconf
from exchange.trust.globalconf import TrustAnchor
from exchange.trust.keys import load_certificate

PAGE = 50
SCAN = 5000
BATCH = 500
OUTCOMES = ("released", "refused")


@dataclass(frozen=True, slots=True)
class Query:
    since: datetime | None = None
    until: datetime | None = None
    service: str = ""  # a prefix of the service id
    client: str = ""  # a prefix of the client id
    outcome: str = ""  # released | refused | "" (any)
    before: int | None = None  # only records before this sequence number (the next page)


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    at: datetime
    side: str
    service: str
    client: str
    status: int
    fault: str | None
    purpose: str | None
    legal_basis: str | None
    message_id: str

    @property
    def released(self) -> bool:
        return 200 <= self.status < 300


def _matches(row: Row, query: Query) -> bool:
    return (
        row.service.startswith(query.service)
        and row.client.startswith(query.client)
        and (not query.outcome or row.released == (query.outcome == "released"))
    )


def browse(engine: Engine, chain: str, query: Query) -> tuple[list[Row], int | None]:
    """A page of records matching ``query``, newest first, and where the next page starts
    (None when no older record is left to read)."""
    found: list[Row] = []
    before, scanned = query.before, 0
    while len(found) < PAGE and scanned < SCAN:
        statement = select(AuditRecord.seq, AuditRecord.at, AuditRecord.body).where(
            AuditRecord.chain == chain
        )
        if before is not None:
            statement = statement.where(AuditRecord.seq < before)
        if query.since is not None:
            statement = statement.where(AuditRecord.at >= query.since)
        if query.until is not None:
            statement = statement.where(AuditRecord.at < query.until)
        with engine.connect() as connection:
            batch = connection.execute(
                statement.order_by(AuditRecord.seq.desc()).limit(BATCH)
            ).all()
        if not batch:
            return found, None
        for seq, at, body in batch:
            scanned += 1
            before = seq
            document = json.loads(body)
            row = Row(
                seq=seq,
                at=at,
                side=str(document.get("side", "")),
                service=str(document.get("service", "")),
                client=str(document.get("client", "")),
                status=int(document.get("status") or 0),
                fault=document.get("fault"),
                purpose=document.get("purpose"),
                legal_basis=document.get("legal_basis"),
                message_id=str(document.get("message_id", "")),
            )
            if _matches(row, query):
                found.append(row)
                if len(found) == PAGE:
                    break
        if len(batch) < BATCH and len(found) < PAGE:
            return found, None
    return found, before if before else None


def _material(
    data_dir: Path, anchor_file: Path
) -> tuple[TrustAnchor, bytes, list[x509.Certificate]]:
    """The anchor, the last verified configuration as signed, the member's signing certificate."""
    cached = data_dir / "globalconf.jws"
    if not cached.exists():
        raise NotFound("the gateway has never held a global configuration")
    return (
        TrustAnchor.load(anchor_file),
        cached.read_bytes(),
        [load_certificate(data_dir / "signing.pem")],
    )


@dataclass(frozen=True)
class Verified:
    report: Report
    newest: Head | None
    newest_signature_problem: str | None
    newest_timestamped: bool


def verify_chain(engine: Engine, chain: str, *, data_dir: Path, anchor_file: Path) -> Verified:
    """Records, hash chain, every signed head and timestamp; and the newest head on its own."""
    anchor, document, signing = _material(data_dir, anchor_file)
    configuration = globalconf.verify_archived(document, anchor)
    trust = bundle.anchors(configuration, chain, signing)
    heads = bundle.heads(engine, chain)
    report = verify(chain, bundle.stored(engine, chain), heads, trust)
    newest = heads[-1] if heads else None
    return Verified(
        report=report,
        newest=newest,
        newest_signature_problem=None
        if newest is None
        else head_signature_problem(newest, trust.signers, trust),
        newest_timestamped=newest is not None and head_timestamp_verifies(newest, trust),
    )


def export_zip(engine: Engine, chain: str, *, data_dir: Path, anchor_file: Path) -> Path:
    """The chain's bundle (see :mod:`audit.bundle`) as a zip file in a new temporary folder;
    the caller removes the folder (the file's parent) once it is sent."""
    anchor, document, signing = _material(data_dir, anchor_file)
    folder = Path(tempfile.mkdtemp(prefix="audit-export-"))
    try:
        root = folder / "bundle"
        bundle.export(
            engine,
            chain,
            configuration=document,
            anchor=anchor,
            signing=signing,
            out=root,
        )
        return Path(shutil.make_archive(str(folder / "audit-bundle"), "zip", root))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
