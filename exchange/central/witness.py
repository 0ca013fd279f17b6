"""The authority as witness of the gateways' audit logs (Certificate Transparency style).

Each gateway submits its signed tree heads (:mod:`audit.heads`) with an RFC 9162 consistency
proof from the last head the witness accepted from that chain. The witness checks the head's
signature against the member's signing certificates as the configuration publishes them (issued
by the instance CA, live, unrevoked) and that the chain belongs to a registered gateway of that
member; the chain is ``<gateway id>/<replica>``, the replica a valid identifier segment, and a
gateway has at most :data:`MAX_CHAINS_PER_GATEWAY` chains. The first head of a chain is accepted
as its start. A later head must extend the one held: a larger size with a proof that verifies.
Then the witness keeps it as the chain's latest (in the authority's database, so a restart keeps
it) and countersigns it (:mod:`audit.witness`) with its own key, certified by the instance CA.
The held head sent again gets its countersignature as held; nothing is written. The same size
and root signed again later (a gateway restarted re-signs its current size) is countersigned
and held instead.

Signed heads are public (``GET /witness/v1/heads``, forks, receipts), so a head older than the
one held is no evidence by itself: smaller and signed (its ``at``) no later than the held head,
or the held size and root signed anew no later than it, it is stale
(:class:`~exchange.errors.StaleConsistencyProof`, 409), stored nowhere and raises no alarm.

A head that contradicts the one held (another root at the same size, a smaller size signed after
the held head, or a proof that fails) is a fork: whoever holds the member's key rewrote or
rolled back the log. It is refused (:class:`~exchange.errors.AuditLogForked`, 409), kept once
(per chain and contradicting head) with the head it contradicts as evidence, logged as an error,
counted in the metrics and shown by ``/health`` and ``/witness/v1/forks``. A head whose
signature does not verify is refused as such (400) and raises no alarm: anyone can send garbage.

What the witness holds and how it decides is :class:`audit.witnessstore.WitnessStore`'s, over
the tables ``ca_witnessed_heads`` and ``ca_witness_forks``; a gateway's peer witness keeps the
same over its own (:mod:`exchange.gateway.peerwitness`).

The witness key lives in the data folder (``witness.key``, ``witness.pem``) and is made at the
first start that lacks it, so authorities initialised before witnessing gain one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import select

from audit.verify import Anchors, Head, head_signature_problem
from audit.witness import Submitted, parse_head, parse_proof, witness_subject
from audit.witnessstore import MAX_CHAINS_PER_GATEWAY, WitnessStore
from exchange import keyfolder
from exchange.central import models
from exchange.central.registry import Registry
from exchange.errors import AccessDenied, InvalidIdentifier, InvalidSignature
from exchange.identifiers import check_segment
from exchange.trust import ca
from exchange.trust.keys import certificate_pem, generate_key, load_certificate
from exchange.trust.signed import Signer

__all__ = ["MAX_CHAINS_PER_GATEWAY", "Witness", "WitnessMetrics", "load_signer"]
WITNESS_VALIDITY = timedelta(days=5 * 365)


def load_signer(
    folder: Path, authority: ca.CertificateAuthority, *, instance: str, at: datetime
) -> Signer:
    """The witness key and certificate from ``folder``, made (and certified) if missing."""
    key_path, certificate_path = folder / "witness.key", folder / "witness.pem"
    if not key_path.exists() or not certificate_path.exists():
        key = generate_key()
        certificate = authority.issue(
            public_key=key.public_key(),
            subject=witness_subject(instance),
            profile=ca.Profile.SIGNING,
            at=at,
            validity=WITNESS_VALIDITY,
        )
        keyfolder.write_key(key_path, key)
        certificate_path.write_text(certificate_pem(certificate))
    return Signer(keyfolder.ec_key(key_path), load_certificate(certificate_path))


class WitnessMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """``registry``: the authority's (``/metrics``); by default one of their own."""
        self.registry = CollectorRegistry() if registry is None else registry
        self.heads = Counter(
            "exchange_witness_heads",
            "Tree heads submitted to the witness, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.forks = Gauge(
            "exchange_witness_forks",
            "Forked audit logs the witness has refused heads of (0 unless a log was rewritten)",
            registry=self.registry,
        )


class Witness:
    def __init__(
        self,
        *,
        registry: Registry,
        authority: ca.CertificateAuthority,
        signer: Signer,
        metrics: WitnessMetrics,
    ) -> None:
        self._registry = registry
        self._authority = authority
        self.metrics = metrics
        self.certificate = signer.certificate
        self._store = WitnessStore(
            session=registry.session,
            heads=models.WitnessedHead,
            forks=models.WitnessFork,
            signer=signer,
            clock=registry.clock,
            outcome=lambda outcome: metrics.heads.labels(outcome).inc(),
            event="witness",
        )
        # Read from the database at each scrape: a restarted authority still shows old forks.
        metrics.forks.set_function(lambda: float(self.fork_count()))

    def submit(
        self, raw: Mapping[str, Any], *, from_size: int | None, proof: Sequence[str]
    ) -> dict[str, str]:
        """The cosignature of the head ``raw``, once it verifies and extends the chain's
        latest witnessed head (``proof``: from ``from_size``, the size the gateway believes the
        witness holds). Raises as the module docstring says."""
        head, nodes = parse_head(raw), parse_proof(proof)
        gateway_id = self._check_signature(head)
        return self._store.accept(head, gateway=gateway_id, from_size=from_size, proof=nodes)

    def _check_signature(self, head: Submitted) -> str:
        """The gateway whose chain ``head`` is, once the member's key signed it."""
        parts = head.chain.split("/")
        gateway_id = "/".join(parts[:4])
        at = self._registry.clock()
        try:
            replica_ok = len(parts) == 5 and bool(check_segment(parts[4], "replica"))
        except InvalidIdentifier:
            replica_ok = False
        with self._registry.session() as session:
            gateway = session.scalar(
                select(models.Gateway).where(models.Gateway.identifier == gateway_id)
            )
            if not replica_ok or gateway is None:
                self._store.outcome("refused")
                raise AccessDenied("the chain is not a registered gateway's audit log")
            consent_keys = set(session.scalars(select(models.ConsentService.certificate_serial)))
            certificates = session.scalars(
                select(models.Certificate).where(
                    models.Certificate.member_id == gateway.member_id,
                    models.Certificate.profile == ca.Profile.SIGNING.value,
                    models.Certificate.revoked_at.is_(None),
                    models.Certificate.not_before <= at,
                    models.Certificate.not_after > at,
                )
            ).all()
        # As the configuration publishes them: a consent service's key signs no message.
        signing = [
            x509.load_pem_x509_certificate(c.pem.encode())
            for c in certificates
            if c.serial not in consent_keys
        ]
        anchors = Anchors(ca=self._authority.certificate, signing=signing)
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
