"""The durable replay guard: a (client, message id) pair is accepted once, across restarts.

The pair is committed before the provider acts on the request, so a crash can only ever turn
a first delivery into a rejected retry, never let a replay through. Concurrent requests share
one transaction (group commit); within it, ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
tells each request whether its pair was new.

For requests with a safe method (GET, HEAD) the commit does not wait for the disk
(``build_engine(flushed=False)``): every answer's audit record is committed, flushed, after it
and before the answer leaves, and the database's log is written in order, so a pair whose
request was answered is on disk. A power loss can only take pairs of requests that were never
answered, whose retry then reads again. Any other method may have changed something at the
registry before the answer's audit record: its pair is flushed before the registry is asked.

Entries are kept until the request signature's expiry plus the clock skew has passed; after
that the signature check alone rejects the message, and the entry is pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from exchange.db.batch import GroupCommit
from exchange.db.engine import insert_or_skip
from exchange.errors import DuplicateMessage
from exchange.gateway.models import SeenMessage

Pair = tuple[str, str, datetime]  # client, message id, keep until


def _duplicate(client: str, message_id: str) -> DuplicateMessage:
    return DuplicateMessage(
        f"message id {message_id!r} from {client} was already accepted", detail=message_id
    )


class ReplayGuard:
    def __init__(self, engine: Engine, *, unflushed: Engine) -> None:
        self._engine = engine
        # Built once; executed with many parameter sets (SQLAlchemy batches them with RETURNING).
        self._statement = insert_or_skip(engine, SeenMessage).returning(
            SeenMessage.client, SeenMessage.message_id, sort_by_parameter_order=True
        )
        self._flushed: GroupCommit[Pair, None] = GroupCommit(
            lambda batch: self._accept(engine, batch), name="replay-guard"
        )
        self._unflushed: GroupCommit[Pair, None] = GroupCommit(
            lambda batch: self._accept(unflushed, batch), name="replay-guard-reads"
        )

    async def accept_once(
        self, *, client: str, message_id: str, keep_until: datetime, safe: bool
    ) -> None:
        """Return if the pair is new (and now committed); raise DuplicateMessage if not.

        ``safe``: the request's method changes nothing (see the module docstring)."""
        writer = self._unflushed if safe else self._flushed
        await writer.submit((client, message_id, keep_until))

    def _accept(self, engine: Engine, batch: Sequence[Pair]) -> list[BaseException | None]:
        first: dict[tuple[str, str], datetime] = {}
        for client, message_id, keep_until in batch:
            first.setdefault((client, message_id), keep_until)
        rows = [{"client": c, "message_id": m, "expires_at": k} for (c, m), k in first.items()]
        with engine.begin() as connection:
            fresh = {(row[0], row[1]) for row in connection.execute(self._statement, rows)}
        outcomes: list[BaseException | None] = []
        for client, message_id, _ in batch:
            if (client, message_id) in fresh:
                fresh.discard((client, message_id))  # a second copy in the same batch is a replay
                outcomes.append(None)
            else:
                outcomes.append(_duplicate(client, message_id))
        return outcomes

    def prune(self, *, at: datetime) -> int:
        with Session(self._engine) as session:
            result = session.execute(delete(SeenMessage).where(SeenMessage.expires_at < at))
            session.commit()
            return int(getattr(result, "rowcount", 0) or 0)

    async def close(self) -> None:
        await self._flushed.close()
        await self._unflushed.close()
