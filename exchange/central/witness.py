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

The witness key lives in the data folder (``witness.key``, ``witness.pem``) and is made at the
first start that lacks it, so authorities initialised before witnessing gain one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import structlog
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.verify import Anchors, Head, head_signature_problem
from audit.witness import (
    Submitted,
    contradiction,
    cosign,
    parse_head,
    parse_proof,
    witness_subject,
)
from exchange import keyfolder
from exchange.central import models
from exchange.central.registry import Registry
from exchange.errors import (
    AccessDenied,
    AuditLogForked,
    InvalidIdentifier,
    InvalidSignature,
    StaleConsistencyProof,
)
from exchange.identifiers import check_segment
from exchange.trust import ca
from exchange.trust.keys import certificate_pem, generate_key, load_certificate
from exchange.trust.signed import Signer

log = structlog.get_logger(__name__)
WITNESS_VALIDITY = timedelta(days=5 * 365)
MAX_CHAINS_PER_GATEWAY = 64  # replicas and workers of one gateway, each with its own chain


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
        self._signer = signer
        self.metrics = metrics
        self.certificate = signer.certificate
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
        at = self._registry.clock()
        with self._registry.session() as session:
            latest = session.get(models.WitnessedHead, head.chain)
            if latest is None:
                self._check_room(session, gateway_id)
            else:
                if head.signature == latest.signature:
                    # This very head again (its answer was lost, or a replay): as held.
                    self.metrics.heads.labels("repeated").inc()
                    held: dict[str, str] = json.loads(latest.cosignature)
                    return held
                reason = contradiction(
                    latest, head, from_size, nodes, stale=self.metrics.heads.labels("stale").inc
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
                session.add(models.WitnessedHead(chain=head.chain, **values))
            else:
                # Only over the head this decision was made against: a concurrent submission
                # of the same chain makes this one stale, never lets it jump the check.
                moved = session.execute(
                    update(models.WitnessedHead)
                    .where(
                        models.WitnessedHead.chain == head.chain,
                        models.WitnessedHead.size == latest.size,
                        models.WitnessedHead.root == latest.root,
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
        self.metrics.heads.labels("accepted").inc()
        log.info("witness.accepted", chain=head.chain, size=head.size)
        return cosignature

    def _check_room(self, session: Session, gateway_id: str) -> None:
        """Refuse a new chain once the gateway has :data:`MAX_CHAINS_PER_GATEWAY` of them."""
        held = session.scalar(
            select(func.count())
            .select_from(models.WitnessedHead)
            .where(models.WitnessedHead.chain.startswith(f"{gateway_id}/", autoescape=True))
        )
        if int(held or 0) >= MAX_CHAINS_PER_GATEWAY:
            self.metrics.heads.labels("refused").inc()
            raise AccessDenied(
                f"the gateway has {MAX_CHAINS_PER_GATEWAY} witnessed audit chains already",
                detail=gateway_id,
            )

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
                self.metrics.heads.labels("refused").inc()
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
            self.metrics.heads.labels("refused").inc()
            raise InvalidSignature(problem)
        return gateway_id

    def _fork(
        self, latest: models.WitnessedHead, head: Submitted, reason: str, at: datetime
    ) -> NoReturn:
        refusal = AuditLogForked(
            "the tree head is not consistent with the last one witnessed for this log",
            detail=f"{reason}: witnessed size {latest.size}, presented size {head.size}",
        )
        with self._registry.session() as session:
            known = session.scalar(
                select(models.WitnessFork.id).where(
                    models.WitnessFork.chain == head.chain,
                    models.WitnessFork.signature == head.signature,
                )
            )
            if known is not None:  # this evidence is held already: refused, not stored again
                self.metrics.heads.labels("forked").inc()
                raise refusal
            session.add(
                models.WitnessFork(
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
                self.metrics.heads.labels("forked").inc()
                raise refusal from None
        self.metrics.heads.labels("forked").inc()
        log.error(
            "witness.fork",
            chain=head.chain,
            reason=reason,
            witnessed_size=latest.size,
            size=head.size,
        )
        raise refusal

    def latest(self, chain: str) -> dict[str, Any] | None:
        with self._registry.session() as session:
            row = session.get(models.WitnessedHead, chain)
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
        with self._registry.session() as session:
            return int(session.scalar(select(func.count()).select_from(models.WitnessFork)) or 0)

    def forks(self, *, limit: int = 100) -> list[dict[str, Any]]:
        with self._registry.session() as session:
            rows = session.scalars(
                select(models.WitnessFork).order_by(models.WitnessFork.id.desc()).limit(limit)
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
