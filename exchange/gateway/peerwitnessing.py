"""The gateway's client of peer witnesses: its signed heads shown to other members' gateways.

Besides the authority (:mod:`exchange.gateway.witnessing`), a gateway may submit every head to
the gateways named in ``audit_peer_witnesses`` (off when empty), each of which runs
:mod:`exchange.gateway.peerwitness`. The two calls are the authority's: which head of the chain
the peer holds (``GET /witness/v1/heads?chain=``), then the newest head with a consistency proof
from that one (``POST``), over mutual TLS to the address the global configuration gives, with the
CRL loaded, as exchanges go. The answer must be a countersignature of exactly this head by a
signing key of the peer's member (:func:`audit.witness.verify_peer_cosignature`); it is kept
beside the head, by the peer's gateway id (``peer_cosignatures``), and travels with the head
in ``/audit/heads``, receipts and exports.

Off the request path, one loop for all peers: a peer down or slow is tried again next round and
delays no exchange. A refusal as a fork is logged as an error, counted
(``exchange_peer_witness_submissions_total{outcome="refused"}``) and shown by ``/health``
(``peer_witnesses``), as the authority's is.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import structlog
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from audit.log import AuditLog
from audit.models import TreeHead
from audit.witness import verify_peer_cosignature
from exchange.errors import Error, InvalidSignature
from exchange.gateway.transport import Transport
from exchange.trust.globalconf import Gateway as PeerGateway
from exchange.trust.view import TrustView

log = structlog.get_logger(__name__)
MAX_REPLY = 64 * 1024


class PeerWitnessing:
    def __init__(
        self,
        *,
        audit: AuditLog,
        engine: Engine,
        peers: list[str],
        view: Callable[[], TrustView],
        transport: Transport,
        tls: Callable[[TrustView, PeerGateway], ssl.SSLContext],
        interval: float,
        outcome: Callable[[str, str], None] = lambda _peer, _outcome: None,
        timeout: float = 10.0,
    ) -> None:
        self._audit = audit
        self._engine = engine
        self.peers = list(peers)
        self._view = view
        self._transport = transport
        self._tls = tls
        self._interval = interval
        self._outcome = outcome  # counts each submission's outcome, by peer (metrics)
        self._timeout = timeout
        # What health shows per peer: "ok", "pending", "unreachable", "refused".
        self.states: dict[str, str] = dict.fromkeys(self.peers, "pending")
        self.refusals: dict[str, dict[str, Any]] = {}  # each peer's last X-Road error body

    async def run(self) -> None:
        while True:
            await asyncio.sleep(min(self._interval, 1.0))
            try:
                await self.submit_pending()
            except Exception as exc:  # tried again next round; the loop must not die
                log.warning("audit.peer_witness_failed", cause=type(exc).__name__)

    async def submit_pending(self) -> TreeHead | None:
        """Show this chain's newest head to every peer that has not countersigned it."""
        head = await asyncio.to_thread(self._newest)
        if head is None:
            return None
        for peer in self.peers:
            if peer in _peer_cosignatures(head):
                self.states[peer] = "ok"
                continue
            cosignature = await self._submit(peer, head)
            if cosignature is not None:
                head = await asyncio.to_thread(self._keep, head, peer, cosignature)
        return head

    def _newest(self) -> TreeHead | None:
        with Session(self._engine, expire_on_commit=False) as session:
            return session.scalar(
                select(TreeHead)
                .where(TreeHead.chain == self._audit.chain)
                .order_by(TreeHead.size.desc())
                .limit(1)
            )

    async def _submit(self, peer: str, head: TreeHead) -> dict[str, Any] | None:
        view = self._view()
        gateway = next((g for g in view.configuration.gateways if g.id == peer), None)
        if gateway is None:
            self._unreachable(peer, head, "the configuration names no such gateway")
            return None
        base = f"{gateway.address.rstrip('/')}/witness/v1/heads"
        tls = self._tls(view, gateway)
        try:
            held = await self._call("GET", f"{base}?chain={quote(head.chain, safe='')}", tls)
            from_size = None
            if held.status == 200:
                from_size = int(json.loads(held.body)["size"])
            elif held.status != 404:
                self._refused(peer, head, held.status, held.body)
                return None
            proof: list[bytes] = []
            if from_size is not None and 0 < from_size < head.size:
                proof = self._audit.tree.consistency_proof(from_size, head.size)
            document = {
                "head": {
                    "chain": head.chain,
                    "size": head.size,
                    "root": head.root,
                    "signature": head.signature,
                },
                "from_size": from_size,
                "proof": [p.hex() for p in proof],
            }
            reply = await self._call("POST", base, tls, json.dumps(document).encode())
        except (Error, ValueError, KeyError, TypeError) as exc:
            self._unreachable(peer, head, type(exc).__name__)
            return None
        if reply.status != 200:
            self._refused(peer, head, reply.status, reply.body)
            return None
        try:
            cosignature = json.loads(reply.body)["cosignature"]
            if not isinstance(cosignature, dict):
                raise InvalidSignature("the peer cosignature is malformed")
            member = verify_peer_cosignature(
                cosignature,
                chain=head.chain,
                size=head.size,
                root=head.root,
                head_signature=head.signature,
                ca=view.ca,
                revoked=view.revoked,
            )
            if not peer.startswith(f"{member}/"):
                raise InvalidSignature("the cosignature is by another member than the peer's")
        except (ValueError, KeyError, TypeError):
            self._unreachable(peer, head, "malformed answer")
            return None
        except InvalidSignature as exc:
            # Another head's, or not the peer's: kept nowhere, shown as a refusal.
            self.states[peer], self.refusals[peer] = "refused", exc.body()
            self._outcome(peer, "refused")
            log.error(
                "audit.peer_cosignature_invalid", peer=peer, chain=head.chain, problem=exc.message
            )
            return None
        self.states[peer] = "ok"
        self.refusals.pop(peer, None)
        self._outcome(peer, "witnessed")
        log.info("audit.peer_witnessed", peer=peer, chain=head.chain, size=head.size)
        return cosignature

    async def _call(self, method: str, url: str, tls: ssl.SSLContext, body: bytes = b"") -> Any:
        headers = {"Content-Type": "application/json"} if body else {}
        return await self._transport.request(
            method,
            url,
            what="peer witness",
            headers=headers,
            body=body,
            tls=tls,
            timeout=self._timeout,
            max_bytes=MAX_REPLY,
        )

    def _keep(self, head: TreeHead, peer: str, cosignature: dict[str, Any]) -> TreeHead:
        """Add ``peer``'s countersignature to the head's, leaving the others' as they are."""
        with Session(self._engine, expire_on_commit=False) as session:
            stored = session.get(TreeHead, (head.chain, head.size))
            if stored is None or stored.signature != head.signature:
                return head  # signed anew meanwhile: the next round shows the new one
            held = _peer_cosignatures(stored) | {peer: cosignature}
            # Only over the head as it was read: one signed anew since (another process) keeps
            # no countersignature of this one.
            kept = session.execute(
                update(TreeHead)
                .where(
                    TreeHead.chain == head.chain,
                    TreeHead.size == head.size,
                    TreeHead.signature == head.signature,
                    # Nor over another peer's countersignature stored meanwhile (a replica).
                    TreeHead.peer_cosignatures.is_(None)
                    if stored.peer_cosignatures is None
                    else TreeHead.peer_cosignatures == stored.peer_cosignatures,
                )
                .values(peer_cosignatures=json.dumps(held, sort_keys=True))
            )
            session.commit()
            if not getattr(kept, "rowcount", 0):
                return head  # the next round shows what changed
            stored.peer_cosignatures = json.dumps(held, sort_keys=True)
            return stored

    def _unreachable(self, peer: str, head: TreeHead, cause: str) -> None:
        self.states[peer] = "unreachable"
        self._outcome(peer, "unreachable")
        log.warning("audit.peer_witness_unreachable", peer=peer, chain=head.chain, cause=cause)
        return

    def _refused(self, peer: str, head: TreeHead, status: int, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"type": f"HTTP {status}", "message": None, "detail": None}
        kind = str(body.get("type", "")) if isinstance(body, dict) else ""
        if kind.endswith("StaleConsistencyProof") or status >= 500:
            self.states[peer] = "unreachable" if status >= 500 else "pending"
            self._outcome(peer, "retry")
            return
        self.states[peer] = "refused"
        self.refusals[peer] = body if isinstance(body, dict) else {}
        self._outcome(peer, "refused")
        log.error("audit.peer_witness_refused", peer=peer, chain=head.chain, refusal=body)
        return


def _peer_cosignatures(head: TreeHead) -> dict[str, Any]:
    held = json.loads(head.peer_cosignatures) if head.peer_cosignatures else {}
    return held if isinstance(held, dict) else {}
