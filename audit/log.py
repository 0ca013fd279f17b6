"""The append-only audit log of one gateway replica: one chain, group-committed.

Each record is canonical JSON naming its chain, its sequence number and the leaf hash of the
record before it, so that a record cannot be removed, inserted or moved without breaking the
chain at that position; records are also the leaves of an RFC 9162 Merkle tree whose heads the
gateway signs (:mod:`audit.heads`).

:meth:`AuditLog.append` returns only once the record is committed. Concurrent appends share one
transaction (group commit): the first waiting request starts a commit of everything queued, the
others wait for it. If the commit fails, every waiting append raises :class:`LoggingFailed` and
the caller releases nothing.

The person a record is about is stored only as HMAC-SHA256 under the gateway's audit key, so the
log can be published and proven without saying whom it is about, while the gateway can still
find a person's records.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from audit import merkle
from audit.models import AuditRecord
from exchange.errors import LoggingFailed

FORMAT = 1
GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What one side of one exchange records."""

    side: str  # "consumer" or "provider"
    message_id: str
    client: str
    service: str
    status: int
    fault: str | None
    purpose: str | None
    legal_basis: str | None
    consent: str | None
    peer: str | None
    request_digest: str | None
    response_digest: str | None
    request_signature: str | None
    response_signature: str | None


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class AuditLog:
    def __init__(
        self,
        engine: Engine,
        *,
        chain: str,
        key: bytes,
        clock: Callable[[], datetime],
        max_batch: int = 512,
    ) -> None:
        self._engine = engine
        self.chain = chain
        self._key = key
        self._clock = clock
        self._max_batch = max_batch
        # One thread: commits of this chain happen one after another, in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self._queue: asyncio.Queue[tuple[AuditEntry, str | None, asyncio.Future[int]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self.tree = merkle.Tree()  # every leaf, for roots and proofs (about 64 bytes a record)
        self._last = GENESIS
        self._load()

    def _load(self) -> None:
        """Rebuild the chain's state from the stored records (once, at start)."""
        with Session(self._engine) as session:
            bodies = session.scalars(
                select(AuditRecord.body)
                .where(AuditRecord.chain == self.chain)
                .order_by(AuditRecord.seq)
            )
            for body in bodies:
                leaf = merkle.leaf_hash(body)
                self.tree.append(leaf)
                self._last = leaf.hex()

    def subject_hash(self, person: str | None) -> str | None:
        if not person:
            return None
        return hmac.new(self._key, person.encode(), hashlib.sha256).hexdigest()

    async def append(self, entry: AuditEntry, *, subject: str | None) -> int:
        """Commit ``entry`` (about ``subject``, hashed); return its sequence number."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name=f"audit:{self.chain}")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put((entry, self.subject_hash(subject), future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                first = await loop.run_in_executor(
                    self._executor, self._commit, [(entry, subject) for entry, subject, _ in batch]
                )
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        failure = LoggingFailed(
                            "the audit log cannot be written; nothing was released"
                        )
                        failure.__cause__ = exc
                        future.set_exception(failure)
                continue
            for offset, (_, _, future) in enumerate(batch):
                if not future.done():
                    future.set_result(first + offset)

    def _commit(self, batch: list[tuple[AuditEntry, str | None]]) -> int:
        at = self._clock()
        first = self.tree.size
        rows, leaves, previous = [], [], self._last
        for offset, (entry, subject) in enumerate(batch):
            body = canonical(
                {
                    "v": FORMAT,
                    "chain": self.chain,
                    "seq": first + offset,
                    "prev": previous,
                    "at": at.isoformat(timespec="microseconds"),
                    "subject": subject,
                    **asdict(entry),
                }
            )
            leaf = merkle.leaf_hash(body)
            previous = leaf.hex()
            leaves.append(leaf)
            rows.append(
                {
                    "chain": self.chain,
                    "seq": first + offset,
                    "at": at,
                    "subject": subject,
                    "body": body,
                }
            )
        with Session(self._engine) as session:
            session.execute(insert(AuditRecord), rows)
            session.commit()
        # Only a committed batch moves the chain forward.
        for leaf in leaves:
            self.tree.append(leaf)
        self._last = previous
        return first

    async def snapshot(self) -> tuple[int, bytes]:
        """(size, root) of everything committed, taken between two commits."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: (self.tree.size, self.tree.root())
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True)
