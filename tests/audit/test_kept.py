"""A log checked against heads kept outside it (``exchange audit verify --heads``): a history
rewritten and signed anew passes on its own, and is caught where it departs from what a citizen
(a receipt) or an auditor (the heads the gateway published) kept."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from audit import bundle, merkle
from audit.heads import HeadKeeper
from audit.log import GENESIS, AuditLog, canonical
from audit.models import AuditRecord, TreeHead
from audit.receipt import head_document, make_receipt
from audit.verify import Anchors, Kept
from audit.verify import verify as check
from exchange.trust import globalconf, signed
from tests.audit.test_bundle import published
from tests.audit.test_log import CHAIN, MEMBER, entry
from tests.factories import Instance
from tests.servers import exchange

NOW = datetime.now(UTC)
REWRITTEN_FROM = 25  # the record the member wants gone, and everything after it


@dataclass
class Gateway:
    """A gateway's audit log with what it needs to be exported, on a database of its own."""

    folder: Path
    engine: Engine
    keeper_for: Any
    document: bytes
    anchor: globalconf.TrustAnchor
    certificate: Any
    tree: Any = None

    def export(self, name: str) -> Path:
        out = self.folder / name
        bundle.export(
            self.engine,
            CHAIN,
            configuration=self.document,
            anchor=self.anchor,
            signing=[self.certificate],
            out=out,
        )
        return out

    def append(self, numbers: range, *, heads_every: int) -> list[TreeHead]:
        """Append the records ``numbers`` (each its own commit), signing a head every few."""

        async def run() -> list[TreeHead]:
            log = AuditLog(self.engine, chain=CHAIN, key=b"k" * 32, clock=lambda: NOW)
            keeper = self.keeper_for(log)
            heads = []
            for n in numbers:
                await log.append(entry(n), subject="EE38001085718")
                if log.tree.size % heads_every == 0:
                    heads.append(await keeper.sign_now())
            self.tree = log.tree  # for receipts, as the gateway makes them
            await log.close()
            return heads

        return asyncio.run(run())

    def receipt(self, seq: int, head: TreeHead) -> dict[str, Any]:
        with Session(self.engine) as session:
            body = session.scalar(
                select(AuditRecord.body).where(AuditRecord.chain == CHAIN, AuditRecord.seq == seq)
            )
        assert body is not None
        proof = self.tree.inclusion_proof(seq, head.size)
        return make_receipt(chain=CHAIN, seq=seq, body=body, proof=proof, head=head)


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    instance = Instance(at=NOW - timedelta(hours=1))
    key, certificate = instance.signing(MEMBER)
    configuration = instance.configuration({MEMBER: [certificate]})
    document, anchor, engine = published(tmp_path, configuration)

    def keeper_for(log: AuditLog) -> HeadKeeper:
        return HeadKeeper(
            audit=log,
            engine=engine,
            signer=signed.Signer(key, certificate),
            configuration=lambda: configuration,
            clock=lambda: NOW,
            interval=60,
            every=1000,
        )

    return Gateway(tmp_path, engine, keeper_for, document, anchor, certificate)


def rewrite(gateway: Gateway, start: int) -> None:
    """What an operator with the database can do: drop every record from ``start`` and the
    heads that pinned them, append other records in their place, sign a new head."""
    with gateway.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_records WHERE seq >= :s"), {"s": start})
        connection.execute(text("DELETE FROM audit_tree_heads WHERE size > :s"), {"s": start})
    gateway.append(range(100, 110), heads_every=10)


def keep(folder: Path, name: str, kept: Any, *, lines: bool = False) -> Path:
    path = folder / name
    if lines:
        path.write_text("".join(json.dumps(item) + "\n" for item in kept))
    else:
        path.write_text(json.dumps(kept))
    return path


def verify(gateway: Gateway, exported: Path, *more: str) -> Any:
    anchor = str(gateway.folder / "anchor.json")
    return exchange("audit", "verify", "--bundle", str(exported), "--anchor", anchor, *more)


def test_a_rewritten_history_is_found_where_it_departs_from_what_was_kept(
    gateway: Gateway,
) -> None:
    heads = gateway.append(range(30), heads_every=10)  # heads at 10, 20 and 30
    # The citizen keeps the receipt of the access at 25; an auditor keeps the published heads.
    receipt = gateway.receipt(REWRITTEN_FROM, heads[-1])
    usage = {"totalUsages": 1, "usages": [{"messageId": "m-25", "receipt": receipt}]}
    citizen = keep(gateway.folder, "usage.json", usage)  # as the usage service's /v1/records
    auditor = keep(gateway.folder, "heads.jsonl", [head_document(h) for h in heads], lines=True)
    before = gateway.export("before")
    for kept in (citizen, auditor):
        consistent = verify(gateway, before, "--heads", str(kept))
        assert consistent.returncode == 0, consistent.stderr
        assert "consistent with the head kept at size 30" in consistent.stdout

    rewrite(gateway, REWRITTEN_FROM)
    after = gateway.export("after")
    plain = verify(gateway, after)
    assert plain.returncode == 0, plain.stderr  # signed anew, the rewritten log holds together
    assert "OK, 35 records" in plain.stdout

    caught = verify(gateway, after, "--heads", str(citizen))
    assert caught.returncode == 1
    assert (
        f"FAILED at record {REWRITTEN_FROM}: the log differs from the head kept at size 30"
        f" from record {REWRITTEN_FROM}"
    ) in caught.stderr, caught.stderr

    # Heads alone pin the log at their sizes only: the first change lies between two of them.
    narrowed = verify(gateway, after, "--heads", str(auditor))
    assert narrowed.returncode == 1
    assert (
        "FAILED between record 20 and record 29: the log differs from the head kept at size 30"
        in narrowed.stderr
    ), narrowed.stderr


def test_a_truncated_log_is_short_of_the_head_kept(gateway: Gateway) -> None:
    heads = gateway.append(range(30), heads_every=10)
    receipt = gateway.receipt(29, heads[-1])
    with gateway.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_records WHERE seq >= 29"))
        connection.execute(text("DELETE FROM audit_tree_heads WHERE size > 20"))
    result = verify(
        gateway, gateway.export("short"), "--heads", str(keep(gateway.folder, "r.json", receipt))
    )
    assert result.returncode == 1
    assert "the log differs from the head kept at size 30 from record 29" in result.stderr
    assert "it ends at 29 records" in result.stderr


def test_a_kept_head_that_does_not_verify_is_refused(gateway: Gateway) -> None:
    heads = gateway.append(range(10), heads_every=10)
    forged = head_document(heads[0]) | {"root": "00" * 32}
    result = verify(
        gateway,
        gateway.export("b"),
        "--heads",
        str(keep(gateway.folder, "forged.json", [forged])),
    )
    assert result.returncode == 1
    assert "head kept at size 10" in result.stderr
    assert "does not match what its signature says" in result.stderr


def test_kept_heads_that_contradict_each_other_show_two_histories() -> None:
    records, previous = [], GENESIS
    for n in range(3):
        records.append(canonical({"chain": CHAIN, "seq": n, "prev": previous}))
        previous = merkle.leaf_hash(records[-1]).hex()
    kept = Kept()
    kept.pin_prefix(2, merkle.root([merkle.leaf_hash(r) for r in records[:2]]), head=2)
    kept.pin_prefix(2, b"\1" * 32, head=3)  # vouched for too, over another history
    anchors = Anchors(ca=Instance(at=NOW).authority.certificate, signing=[])
    report = check(CHAIN, records, [], anchors, kept)
    assert report.problem is not None
    assert report.problem.message == (
        "the heads kept contradict each other about the records before 2:"
        " the member signed two histories"
    )
