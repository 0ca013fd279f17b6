"""One witness store over either role's tables, on SQLite and PostgreSQL: the authority's witness
(``ca_witnessed_*``) and a gateway's peer witness (``gw_peer_witness*``) keep and decide alike."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from audit import merkle
from audit.witness import Submitted
from audit.witnessstore import WitnessStore
from exchange.central import models as central
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import AuditLogForked, StaleConsistencyProof
from exchange.gateway import models as gateway
from exchange.trust.signed import Signer
from tests.factories import Signer as SigningKey

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CHAIN = "EE/GOV/70000310/gw1/main"
LEAVES = [merkle.leaf_hash(f"record {i}".encode()) for i in range(6)]
TABLES: dict[str, tuple[Any, Any]] = {
    "central": (central.WitnessedHead, central.WitnessFork),
    "gateway": (gateway.PeerWitnessedHead, gateway.PeerWitnessFork),
}


def head(size: int, *, at: datetime = NOW, root: str | None = None) -> Submitted:
    """A head of ``size`` records. Its signature's payload carries ``at`` only: the store is
    handed heads whose signature the role checked, and reads nothing else of it."""
    payload = base64.urlsafe_b64encode(json.dumps({"at": at.isoformat()}).encode()).decode()
    signature = f"e30.{payload.rstrip('=')}.{size}-{root or ''}"
    return Submitted(CHAIN, size, root or merkle.root(LEAVES[:size]).hex(), signature)


@pytest.fixture(params=sorted(TABLES))
def store(request: pytest.FixtureRequest, database_url: str) -> tuple[WitnessStore, list[str]]:
    role = request.param
    engine: Engine = build_engine(database_url)
    migrate.upgrade(role, engine)
    key = SigningKey(instance="EE", at=NOW - timedelta(hours=1))
    heads, forks = TABLES[role]
    outcomes: list[str] = []
    made = WitnessStore(
        session=lambda: Session(engine, expire_on_commit=False),
        heads=heads,
        forks=forks,
        signer=Signer(key.key, key.certificate),
        clock=lambda: NOW,
        outcome=outcomes.append,
        event=f"{role}.witness",
    )
    return made, outcomes


def test_heads_are_kept_extended_repeated_and_forks_kept_once(
    store: tuple[WitnessStore, list[str]],
) -> None:
    witness, outcomes = store
    first = witness.accept(head(2), gateway="EE/GOV/70000310/gw1", from_size=None, proof=[])
    assert witness.accept(head(2), gateway="EE/GOV/70000310/gw1", from_size=2, proof=[]) == first
    later = head(4, at=NOW + timedelta(seconds=1))
    proof = merkle.consistency_proof(2, LEAVES[:4])
    witness.accept(later, gateway="EE/GOV/70000310/gw1", from_size=2, proof=proof)
    held = witness.latest(CHAIN)
    assert held is not None
    assert (held["size"], held["root"], held["signature"]) == (4, later.root, later.signature)
    assert witness.latest("EE/GOV/70000310/gw1/other") is None

    with pytest.raises(StaleConsistencyProof):  # an old head, signed before: public, no fork
        witness.accept(head(2), gateway="EE/GOV/70000310/gw1", from_size=2, proof=[])

    forged = head(4, at=NOW + timedelta(seconds=2), root="ab" * 32)
    for _ in range(2):
        with pytest.raises(AuditLogForked):
            witness.accept(forged, gateway="EE/GOV/70000310/gw1", from_size=4, proof=[])
    assert witness.fork_count() == 1  # the same evidence kept once
    [fork] = witness.forks()
    assert fork["witnessed"] == {"size": 4, "root": later.root, "signature": later.signature}
    assert fork["presented"] == {"size": 4, "root": forged.root, "signature": forged.signature}
    assert outcomes == ["accepted", "repeated", "accepted", "stale", "forked", "forked"]
    still = witness.latest(CHAIN)
    assert still is not None
    assert still["size"] == 4
    assert still["root"] == later.root  # a fork changes nothing held
