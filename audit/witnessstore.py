"""What a witness keeps, in its role's database: the latest head it accepted from each chain with
its countersignature, and the forks it refused, kept once each as evidence.

The authority's witness (:mod:`exchange.central.witness`, tables ``ca_witnessed_heads`` and
``ca_witness_forks``) and a gateway's peer witness (:mod:`exchange.gateway.peerwitness`,
``gw_peer_witnessed_heads`` and ``gw_peer_witness_forks``) keep the same rows and decide the same
way (:func:`audit.witness.contradiction`). Each checks who signed a head its own way (the
registry, the global configuration) and hands the head here with the gateway whose chain it is;
:class:`WitnessStore` does the rest, over the two tables it is given:

- a new chain is taken as its start, unless the gateway has :data:`MAX_CHAINS_PER_GATEWAY`
  chains already (403);
- the held head sent again gets its countersignature as held, nothing written;
- a later head must extend the held one; it is countersigned and replaces it, only over the
  head the decision was made against (a concurrent submission makes this one stale, 409);
- a head that contradicts the held one is a fork: refused (409 ``AuditLogForked``), kept once
  per chain and contradicting head, logged as an error the first time.

Each outcome (``accepted``, ``repeated``, ``stale``, ``refused``, ``forked``) is told to the
role's counter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NoReturn

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.witness import Held, Submitted, contradiction, cosign
from exchange.errors import AccessDenied, AuditLogForked, StaleConsistencyProof
from exchange.trust.signed import Signer

log = structlog.get_logger(__name__)
MAX_CHAINS_PER_GATEWAY = 64  # replicas and workers of one gateway, each with its own chain


# The two tables of a witness, as SQLAlchemy mapped classes: heads with ``chain`` (the key),
# ``size``, ``root``, ``signature`` (the gateway's head JWS), ``cosignature`` (JSON) and
# ``witnessed_at``; forks with ``id``, ``chain``, ``at``, ``reason``, ``known_size``,
# ``known_root``, ``known_signature``, ``size``, ``root`` and ``signature``, unique by chain and
# signature. Typed loosely: mypy reads a Protocol of ``Mapped`` columns as neither the class
# nor its rows.
MappedTable = type[Any]


class WitnessStore:
    def __init__(
        self,
        *,
        session: Callable[[], Session],
        heads: MappedTable,
        forks: MappedTable,
        signer: Signer,
        clock: Callable[[], datetime],
        outcome: Callable[[str], None],
        event: str,
    ) -> None:
        """``session``: a new session of the role's database; ``heads``, ``forks``: its tables;
        ``signer``: the witness's key; ``outcome``: counts each head's outcome; ``event``: the
        prefix of the log events (``witness.accepted``, ``witness.fork``)."""
        self._session = session
        self._heads = heads
        self._forks = forks
        self._signer = signer
        self._clock = clock
        self.outcome = outcome
        self._event = event

    def accept(
        self, head: Submitted, *, gateway: str, from_size: int | None, proof: Sequence[bytes]
    ) -> dict[str, str]:
        """The countersignature of ``head``, whose signature by ``gateway``'s member was
        checked, once it extends the chain's held head (``proof``: from ``from_size``)."""
        table = self._heads
        at = self._clock()
        with self._session() as session:
            latest = session.get(table, head.chain)
            if latest is None:
                self._check_room(session, gateway)
            else:
                if head.signature == latest.signature:
                    # This very head again (its answer was lost, or a replay): as held.
                    self.outcome("repeated")
                    held: dict[str, str] = json.loads(latest.cosignature)
                    return held
                reason = contradiction(
                    latest, head, from_size, proof, stale=lambda: self.outcome("stale")
                )
                if reason is not None:
                    self._fork(latest, head, reason, at)
            cosignature = cosign(
                self._signer,
                chain=head.chain,
                size=head.size,
                root=head.root,
                head_signature=head.signature,
                at=at,
            )
            values = {
                "size": head.size,
                "root": head.root,
                "signature": head.signature,
                "cosignature": json.dumps(cosignature),
                "witnessed_at": at,
            }
            if latest is None:
                session.add(table(chain=head.chain, **values))
            else:
                # Only over the head this decision was made against: a concurrent submission
                # of the same chain makes this one stale, never lets it jump the check.
                moved = session.execute(
                    update(table)
                    .where(
                        table.chain == head.chain,
                        table.size == latest.size,
                        table.root == latest.root,
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if not getattr(moved, "rowcount", 0):
                    raise StaleConsistencyProof("the witness's latest head changed meanwhile")
            try:
                session.commit()
            except IntegrityError as exc:
                raise StaleConsistencyProof("the witness's latest head changed meanwhile") from exc
        self.outcome("accepted")
        log.info(f"{self._event}.accepted", chain=head.chain, size=head.size)
        return cosignature

    def _check_room(self, session: Session, gateway: str) -> None:
        """Refuse a new chain once the gateway has :data:`MAX_CHAINS_PER_GATEWAY` of them."""
        held = session.scalar(
            select(func.count())
            .select_from(self._heads)
            .where(self._heads.chain.startswith(f"{gateway}/", autoescape=True))
        )
        if int(held or 0) >= MAX_CHAINS_PER_GATEWAY:
            self.outcome("refused")
            raise AccessDenied(
                f"the gateway has {MAX_CHAINS_PER_GATEWAY} witnessed audit chains already",
                detail=gateway,
            )

    def _fork(self, latest: Held, head: Submitted, reason: str, at: datetime) -> NoReturn:
        refusal = AuditLogForked(
            "the tree head is not consistent with the last one witnessed for this log",
            detail=f"{reason}: witnessed size {latest.size}, presented size {head.size}",
        )
        self.outcome("forked")
        table = self._forks
        with self._session() as session:
            known = session.scalar(
                select(table.id).where(table.chain == head.chain, table.signature == head.signature)
            )
            if known is not None:  # this evidence is held already: refused, not stored again
                raise refusal
            session.add(
                table(
                    chain=head.chain,
                    at=at,
                    reason=reason,
                    known_size=latest.size,
                    known_root=latest.root,
                    known_signature=latest.signature,
                    size=head.size,
                    root=head.root,
                    signature=head.signature,
                )
            )
            try:
                session.commit()
            except IntegrityError:  # the same evidence, stored meanwhile
                raise refusal from None
        log.error(
            f"{self._event}.fork",
            chain=head.chain,
            reason=reason,
            witnessed_size=latest.size,
            size=head.size,
        )
        raise refusal

    def latest(self, chain: str) -> dict[str, Any] | None:
        with self._session() as session:
            row = session.get(self._heads, chain)
            if row is None:
                return None
            return {
                "chain": row.chain,
                "size": row.size,
                "root": row.root,
                "signature": row.signature,
                "cosignature": json.loads(row.cosignature),
                "witnessed_at": row.witnessed_at.isoformat(),
            }

    def fork_count(self) -> int:
        with self._session() as session:
            return int(session.scalar(select(func.count()).select_from(self._forks)) or 0)

    def forks(self, *, limit: int = 100) -> list[dict[str, Any]]:
        table = self._forks
        with self._session() as session:
            rows = session.scalars(select(table).order_by(table.id.desc()).limit(limit)).all()
            return [
                {
                    "id": f.id,
                    "chain": f.chain,
                    "at": f.at.isoformat(),
                    "reason": f.reason,
                    "witnessed": {
                        "size": f.known_size,
                        "root": f.known_root,
                        "signature": f.known_signature,
                    },
                    "presented": {"size": f.size, "root": f.root, "signature": f.signature},
                }
                for f in rows
            ]
