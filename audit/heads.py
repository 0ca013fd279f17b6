"""Signed tree heads: the gateway's periodic, timestamped commitment to its whole log.

A head is a JWS (``typ`` ``exchange-treehead+jws``) by the member's signing key over
``{"chain", "size", "root", "at"}``, where ``root`` is the RFC 9162 root of the chain's first
``size`` records. Each head is sent to a timestamping authority from the global configuration;
the RFC 3161 token covers the SHA-256 of the JWS bytes, so ``openssl ts -verify -data head.jws``
checks it. Heads are made every ``interval`` seconds, and sooner once ``every`` records have
accumulated, but only when the log has grown.

Receipts are proven against the newest head a witness countersigned (:class:`ReceiptHeads`), so
that what a citizen keeps carries a party other than the member; a record newer than that head is
proven against the newest head, and its receipt says that witnessing is pending.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
import structlog
from cryptography import x509
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from audit import timestamp
from audit.log import AuditLog
from audit.models import TreeHead
from exchange.db.engine import insert_or_replace
from exchange.errors import Error
from exchange.trust.globalconf import GlobalConfiguration
from exchange.trust.signed import Signer

log = structlog.get_logger(__name__)
HEAD_TYPE = "exchange-treehead+jws"


@dataclass(frozen=True, slots=True)
class ReceiptHeads:
    """The heads of one chain that its receipts are proven against."""

    witnessed: TreeHead | None  # the newest one a witness countersigned
    newest: TreeHead | None

    def covering(self, seq: int) -> TreeHead | None:
        """The head for record ``seq``'s receipt: the newest witnessed one if it covers the
        record, else the newest one if that does (witnessing pending), else none yet."""
        for head in (self.witnessed, self.newest):
            if head is not None and head.size > seq:
                return head
        return None


def receipt_heads(session: Session, chain: str) -> ReceiptHeads:
    """Two index lookups on the heads' key, newest first; recent heads are mostly witnessed."""
    newest = select(TreeHead).where(TreeHead.chain == chain).order_by(TreeHead.size.desc())
    return ReceiptHeads(
        witnessed=session.scalar(newest.where(TreeHead.cosignature.is_not(None)).limit(1)),
        newest=session.scalar(newest.limit(1)),
    )


class HeadKeeper:
    def __init__(
        self,
        *,
        audit: AuditLog,
        engine: Engine,
        signer: Signer,
        configuration: Callable[[], GlobalConfiguration],
        clock: Callable[[], datetime],
        interval: float,
        every: int,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._audit = audit
        self._engine = engine
        self._signer = signer
        self._configuration = configuration
        self._clock = clock
        self._interval = interval
        self._every = every
        self._transport = transport  # how timestamping authorities are reached (tests inject)
        self._stopping = False
        with Session(engine) as session:
            latest = session.scalar(
                select(TreeHead)
                .where(TreeHead.chain == audit.chain)
                .order_by(TreeHead.size.desc())
                .limit(1)
            )
        self.last_size = latest.size if latest else 0
        self._last_at = latest.at if latest else None

    def due(self, size: int, at: datetime) -> bool:
        if size <= self.last_size:
            return False
        if size - self.last_size >= self._every or self._last_at is None:
            return True
        return (at - self._last_at).total_seconds() >= self._interval

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(min(self._interval, 1.0))
                try:
                    if self.due(self._audit.tree.size, self._clock()):
                        await self.sign_now()
                except Exception as exc:  # a failed head is retried; the loop must not die
                    log.warning("audit.head_failed", cause=type(exc).__name__)
        except asyncio.CancelledError:
            # A timestamp under way in its thread goes on; if the authority went down with this
            # process (the demo runs both), its failure is the shutdown's, not the authority's.
            self._stopping = True
            raise

    async def sign_now(self) -> TreeHead:
        size, root = await self._audit.snapshot()
        at = self._clock()
        claims = {
            "chain": self._audit.chain,
            "size": size,
            "root": root.hex(),
            "at": at.isoformat(),
        }
        signature = self._signer.sign(claims, HEAD_TYPE)
        token, tsa = await asyncio.to_thread(self._stamp, signature)
        values = {
            "chain": self._audit.chain,
            "size": size,
            "root": root.hex(),
            "at": at,
            "signature": signature,
            "timestamp": token,
            "tsa": tsa,
            # A head signed again at a size already signed (a restart, or `exchange audit head`
            # beside the serving process) is a new JWS: a witness's countersignature of the one
            # it replaces does not carry over, nor do peers', even one stored meanwhile.
            "cosignature": None,
            "peer_cosignatures": None,
        }
        with self._engine.begin() as connection:
            connection.execute(insert_or_replace(self._engine, TreeHead, values))
        head = TreeHead(**values)
        self.last_size, self._last_at = size, at
        return head

    def _stamp(self, signature: str) -> tuple[bytes | None, str | None]:
        """A token from the first listed authority whose token checks out, or none."""
        digest = hashlib.sha256(signature.encode()).digest()
        configuration = self._configuration()
        ca = x509.load_pem_x509_certificate(configuration.ca_certificates[0].encode())
        for authority in configuration.timestamping_authorities:
            try:
                token = timestamp.stamp(str(authority["url"]), digest, transport=self._transport)
                tsa = x509.load_pem_x509_certificate(str(authority["certificate"]).encode())
                timestamp.verify(token, digest=digest, tsa=tsa, ca=ca)
            except (Error, ValueError) as error:
                if self._stopping:  # the next head, after the next start, is stamped
                    log.info("audit.timestamp_cut_short", tsa=authority.get("name"))
                else:
                    log.warning(
                        "audit.timestamp_failed", tsa=authority.get("name"), reason=str(error)
                    )
                continue
            return token, str(authority["name"])
        return None, None
