"""A gateway as witness of other members' audit logs (``audit_peer_witness``, off by default).

The authority's witness (``exchange/central/witness.py``) is one party: an authority colluding
with a gateway could hide that gateway's fork. Gateways of other members may witness too. One
that is configured to serves the authority's protocol on its provider listener, where only
gateways of the instance reach it (mutual TLS)::

    POST /witness/v1/heads   {"head": {"chain", "size", "root", "signature"}, "from_size", "proof"}
    GET  /witness/v1/heads?chain=
    GET  /witness/v1/forks

It makes the same decisions (:func:`audit.witness.contradiction`): the head must be signed by a
signing key the global configuration publishes for the member whose registered gateway owns the
chain; the first head of a chain starts it; a later one must extend the one held by a
consistency proof. A head that contradicts the held one is a fork: refused (409
``AuditLogForked``), kept once as evidence, logged as an error, counted
(``exchange_peer_witness_heads_total{outcome="forked"}``) and shown by ``/health``. The
countersignature is made with this member's own signing key (:func:`audit.witness.cosign`); a
verifier counts it as one more witness only if that member is not the log's own. A gateway does
not witness its own member's chains (403).

State is kept in this gateway's database (the latest head per chain, the forks), so replicas
sharing it witness as one, and a restart keeps what was seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

import structlog
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.verify import Anchors, Head, head_signature_problem
from audit.witness import (
    Submitted,
    contradiction,
    cosign,
    member_of_chain,
    parse_head,
    parse_proof,
)
from exchange.errors import (
    AccessDenied,
    AuditLogForked,
    InvalidIdentifier,
    InvalidSignature,
    StaleConsistencyProof,
)
from exchange.gateway.models import PeerWitnessedHead, PeerWitnessFork
from exchange.identifiers import check_segment
from exchange.trust.signed import Signer
from exchange.trust.view import TrustView

log = structlog.get_logger(__name__)
MAX_CHAINS_PER_GATEWAY = 64  # as the authority's witness holds


class PeerWitness:
    def __init__(
        self,
        *,
        engine: Engine,
        signer: Signer,
        member: str,
        view: Callable[[], TrustView],
        clock: Callable[[], datetime],
        outcome: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._member = member
        self._view = view
        self._clock = clock
        self._outcome = outcome  # counts each head's outcome (metrics)

    def submit(
        self, raw: Mapping[str, Any], *, from_size: int | None, proof: Sequence[Any]
    ) -> dict[str, str]:
        """This gateway's countersignature of the head ``raw``, once it verifies and extends
        the chain's latest head held here; raises as the module docstring says."""
        head, nodes = parse_head(raw), parse_proof(proof)
        gateway_id = self._check_signature(head)
        at = self._clock()
        with Session(self._engine) as session:
            latest = session.get(PeerWitnessedHead, head.chain)
            if latest is None:
                self._check_room(session, gateway_id)
            else:
                if head.signature == latest.signature:  # this very head again: as held
                    self._outcome("repeated")
                    held: dict[str, str] = json.loads(latest.cosignature)
                    return held
                reason = contradiction(latest, head, from_size, nodes, stale=self._stale)
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
                session.add(PeerWitnessedHead(chain=head.chain, **values))
            else:
                # Only over the head decided against: a concurrent submission makes this stale.
                moved = session.execute(
                    update(PeerWitnessedHead)
                    .where(
                        PeerWitnessedHead.chain == head.chain,
                        PeerWitnessedHead.size == latest.size,
                        PeerWitnessedHead.root == latest.root,
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
        self._outcome("accepted")
        log.info("peer_witness.accepted", chain=head.chain, size=head.size)
        return cosignature

    def _stale(self) -> None:
        self._outcome("stale")

    def _check_signature(self, head: Submitted) -> str:
        """The gateway whose chain ``head`` is, once its member's key signed it."""
        parts = head.chain.split("/")
        gateway_id, member = "/".join(parts[:4]), member_of_chain(head.chain)
        try:
            replica_ok = len(parts) == 5 and bool(check_segment(parts[4], "replica"))
        except InvalidIdentifier:
            replica_ok = False
        view = self._view()
        registered = any(g.id == gateway_id for g in view.configuration.gateways)
        if not replica_ok or not registered:
            self._outcome("refused")
            raise AccessDenied("the chain is not a registered gateway's audit log")
        if member == self._member:
            self._outcome("refused")
            raise AccessDenied("a gateway does not witness its own member's audit logs")
        anchors = Anchors(
            ca=view.ca,
            signing=[e.certificate for e in view.signing.values() if e.member == member],
            revoked=frozenset(view.revoked),
        )
        problem = head_signature_problem(
            Head(head.chain, head.size, head.root, head.signature, None), anchors.signers, anchors
        )
        if problem is not None:
            self._outcome("refused")
            raise InvalidSignature(problem)
        return gateway_id

    def _check_room(self, session: Session, gateway_id: str) -> None:
        held = session.scalar(
            select(func.count())
            .select_from(PeerWitnessedHead)
            .where(PeerWitnessedHead.chain.startswith(f"{gateway_id}/", autoescape=True))
        )
        if int(held or 0) >= MAX_CHAINS_PER_GATEWAY:
            self._outcome("refused")
            raise AccessDenied(
                f"the gateway has {MAX_CHAINS_PER_GATEWAY} witnessed audit chains already",
                detail=gateway_id,
            )

    def _fork(
        self, latest: PeerWitnessedHead, head: Submitted, reason: str, at: datetime
    ) -> NoReturn:
        refusal = AuditLogForked(
            "the tree head is not consistent with the last one witnessed for this log",
            detail=f"{reason}: witnessed size {latest.size}, presented size {head.size}",
        )
        self._outcome("forked")
        with Session(self._engine) as session:
            session.add(
                PeerWitnessFork(
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
            except IntegrityError:  # this evidence is held already: refused, not kept again
                raise refusal from None
        log.error(
            "peer_witness.fork",
            chain=head.chain,
            reason=reason,
            witnessed_size=latest.size,
            size=head.size,
        )
        raise refusal

    def latest(self, chain: str) -> dict[str, Any] | None:
        with Session(self._engine) as session:
            row = session.get(PeerWitnessedHead, chain)
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
        with Session(self._engine) as session:
            return int(session.scalar(select(func.count()).select_from(PeerWitnessFork)) or 0)

    def forks(self, *, limit: int = 100) -> list[dict[str, Any]]:
        with Session(self._engine) as session:
            rows = session.scalars(
                select(PeerWitnessFork).order_by(PeerWitnessFork.id.desc()).limit(limit)
            ).all()
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
