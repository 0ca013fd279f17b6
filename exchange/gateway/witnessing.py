"""The gateway's client of the witness: every signed tree head shown to the central authority.

Off the request path: a loop (:meth:`Witnessing.run`) takes this chain's newest head that no
witness has countersigned yet, asks the witness which head of the chain it holds
(``GET /witness/v1/heads?chain=``), sends the head with an RFC 9162 consistency proof from that
one (``POST /witness/v1/heads``), checks the countersignature against the instance CA
(:func:`audit.witness.verify_cosignature`) and stores it beside the head. Older heads
left unwitnessed (the witness was down) need no round of their own: the newest one's proof covers
them. A witness that cannot be reached is tried again at the next round; exchanges never wait.

A refusal as a fork (409 ``AuditLogForked``) means this log contradicts what the witness saw
before: someone rewrote it, or the database was restored from an older copy. It is logged as an
error, counted (``exchange_witness_submissions{outcome="refused"}``) and shown by ``/health``.
A countersignature that does not verify (another head's, not the instance witness's) is treated
the same way and stored nowhere. A 409 ``StaleConsistencyProof`` (the witness holds a newer
head, or moved on meanwhile) is tried again at the next round.

Peer gateways as further witnesses take the same two calls
(:mod:`exchange.gateway.peerwitnessing`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from cryptography import x509
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from audit.log import AuditLog
from audit.models import TreeHead
from audit.receipt import head_document
from audit.witness import verify_cosignature
from exchange.errors import Error, InvalidSignature
from exchange.trust.globalconf import GlobalConfiguration

log = structlog.get_logger(__name__)
MAX_REPLY = 64 * 1024


class Witnessing:
    def __init__(
        self,
        *,
        audit: AuditLog,
        engine: Engine,
        configuration: Callable[[], GlobalConfiguration],
        interval: float,
        transport: httpx.BaseTransport | None = None,
        outcome: Callable[[str], None] = lambda _: None,
        timeout: float = 10.0,
    ) -> None:
        self._audit = audit
        self._engine = engine
        self._configuration = configuration
        self._interval = interval
        self._transport = transport
        self._outcome = outcome  # counts each submission's outcome (metrics)
        self._timeout = timeout
        # What health shows: "ok" (newest head witnessed), "pending", "unreachable", "refused".
        self.state = "pending"
        self.refusal: dict[str, Any] | None = None  # the witness's last X-Road error body
        self._stopping = False

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(min(self._interval, 1.0))
                try:
                    await self.submit_pending()
                except Exception as exc:  # tried again next round; the loop must not die
                    log.warning("audit.witness_failed", cause=type(exc).__name__)
        except asyncio.CancelledError:
            # A submission under way in its thread goes on; if the witness went down with this
            # process (the demo runs both), its failure is the shutdown's, not the witness's.
            self._stopping = True
            raise

    async def submit_pending(self) -> TreeHead | None:
        """Submit this chain's newest head if no witness countersigned it; the head, updated."""
        head = await asyncio.to_thread(self._newest)
        if head is None:
            return None
        if head.cosignature is not None:
            self.state = "ok"
            return head
        return await asyncio.to_thread(self._submit, head)

    def _newest(self) -> TreeHead | None:
        with Session(self._engine, expire_on_commit=False) as session:
            return session.scalar(
                select(TreeHead)
                .where(TreeHead.chain == self._audit.chain)
                .order_by(TreeHead.size.desc())
                .limit(1)
            )

    def _submit(self, head: TreeHead) -> TreeHead:
        base = self._configuration().central_url.rstrip("/") + "/witness/v1"
        document = head_document(head)
        try:
            with httpx.Client(
                transport=self._transport, timeout=self._timeout, follow_redirects=False
            ) as client:
                held = client.get(f"{base}/heads", params={"chain": head.chain})
                from_size = None
                if held.status_code == 200:
                    from_size = int(held.json()["size"])
                elif held.status_code != 404:
                    raise httpx.HTTPStatusError("witness", request=held.request, response=held)
                proof: list[bytes] = []
                if from_size is not None and 0 < from_size < head.size:
                    proof = self._audit.tree.consistency_proof(from_size, head.size)
                reply = client.post(
                    f"{base}/heads",
                    json={
                        "head": {k: document[k] for k in ("chain", "size", "root", "signature")},
                        "from_size": from_size,
                        "proof": [p.hex() for p in proof],
                    },
                )
        except (httpx.HTTPError, Error, ValueError, KeyError) as exc:
            self.state = "unreachable"
            self._outcome("unreachable")
            if self._stopping:  # tried again at the next start
                log.info("audit.witness_cut_short", chain=head.chain, cause=type(exc).__name__)
            else:
                log.warning("audit.witness_unreachable", chain=head.chain, cause=type(exc).__name__)
            return head
        if reply.status_code != 200 or len(reply.content) > MAX_REPLY:
            return self._refused(head, reply)
        try:
            cosignature = reply.json()["cosignature"]
        except (ValueError, KeyError, TypeError):
            self.state = "unreachable"
            self._outcome("unreachable")
            return head
        try:
            self._verify(head, cosignature)
        except Error as exc:
            return self._rejected(head, exc)
        head.cosignature = json.dumps(cosignature)
        with Session(self._engine, expire_on_commit=False) as session:
            # This column only: peer witnesses' countersignatures are kept beside it.
            session.execute(
                update(TreeHead)
                .where(
                    TreeHead.chain == head.chain,
                    TreeHead.size == head.size,
                    TreeHead.signature == head.signature,
                )
                .values(cosignature=head.cosignature)
            )
            session.commit()
        self.state, self.refusal = "ok", None
        self._outcome("witnessed")
        log.info("audit.witnessed", chain=head.chain, size=head.size)
        return head

    def _verify(self, head: TreeHead, cosignature: Any) -> None:
        """Raise unless ``cosignature`` is the instance witness's, of exactly this head."""
        if not isinstance(cosignature, dict):
            raise InvalidSignature("the witness cosignature is malformed")
        configuration = self._configuration()
        if not configuration.ca_certificates:
            raise InvalidSignature("the configuration names no instance CA")
        try:
            authority = x509.load_pem_x509_certificate(configuration.ca_certificates[0].encode())
        except ValueError as exc:
            raise InvalidSignature("the instance CA certificate is malformed") from exc
        verify_cosignature(
            cosignature,
            chain=head.chain,
            size=head.size,
            root=head.root,
            head_signature=head.signature,
            ca=authority,
            revoked=frozenset(configuration.revoked_serials),
        )

    def _rejected(self, head: TreeHead, exc: Error) -> TreeHead:
        """A countersignature that does not verify: kept nowhere, shown as a refusal."""
        self.state, self.refusal = "refused", exc.body()
        self._outcome("refused")
        log.error(
            "audit.witness_cosignature_invalid",
            chain=head.chain,
            size=head.size,
            problem=exc.message,
        )
        return head

    def _refused(self, head: TreeHead, reply: httpx.Response) -> TreeHead:
        try:
            body = reply.json()
        except ValueError:
            body = {"type": f"HTTP {reply.status_code}", "message": None, "detail": None}
        kind = str(body.get("type", "")) if isinstance(body, dict) else ""
        if kind.endswith("StaleConsistencyProof") or reply.status_code >= 500:
            # The witness moved on meanwhile, or cannot answer now: try again next round.
            self.state = "unreachable" if reply.status_code >= 500 else "pending"
            self._outcome("retry")
            return head
        self.state, self.refusal = "refused", body if isinstance(body, dict) else None
        self._outcome("refused")
        log.error("audit.witness_refused", chain=head.chain, size=head.size, refusal=body)
        return head
