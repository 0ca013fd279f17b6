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
sharing it witness as one, and a restart keeps what was seen. How it is kept and decided is
:class:`audit.witnessstore.WitnessStore`'s, as for the authority's witness, over the tables
``gw_peer_witnessed_heads`` and ``gw_peer_witness_forks``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from audit.verify import Anchors, Head, head_signature_problem
from audit.witness import Submitted, member_of_chain, parse_head, parse_proof
from audit.witnessstore import WitnessStore
from exchange.errors import AccessDenied, InvalidIdentifier, InvalidSignature
from exchange.gateway.models import PeerWitnessedHead, PeerWitnessFork
from exchange.identifiers import check_segment
from exchange.trust.signed import Signer
from exchange.trust.view import TrustView


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
        self._member = member
        self._view = view
        self._store = WitnessStore(
            session=lambda: Session(engine),
            heads=PeerWitnessedHead,
            forks=PeerWitnessFork,
            signer=signer,
            clock=clock,
            outcome=outcome,  # counts each head's outcome (metrics)
            event="peer_witness",
        )

    def submit(
        self, raw: Mapping[str, Any], *, from_size: int | None, proof: Sequence[Any]
    ) -> dict[str, str]:
        """This gateway's countersignature of the head ``raw``, once it verifies and extends
        the chain's latest head held here; raises as the module docstring says."""
        head, nodes = parse_head(raw), parse_proof(proof)
        gateway_id = self._check_signature(head)
        return self._store.accept(head, gateway=gateway_id, from_size=from_size, proof=nodes)

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
            self._store.outcome("refused")
            raise AccessDenied("the chain is not a registered gateway's audit log")
        if member == self._member:
            self._store.outcome("refused")
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
            self._store.outcome("refused")
            raise InvalidSignature(problem)
        return gateway_id

    def latest(self, chain: str) -> dict[str, Any] | None:
        return self._store.latest(chain)

    def fork_count(self) -> int:
        return self._store.fork_count()

    def forks(self, *, limit: int = 100) -> list[dict[str, Any]]:
        return self._store.forks(limit=limit)
