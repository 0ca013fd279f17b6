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

On a SQLite file, the pair of a safe request is first inserted on the event loop itself
(:mod:`exchange.db.inline`: a one-row commit without an fsync, cheaper than the hand-off to the
writer thread and back). That attempt never waits: if another writer holds the database, or
anything else fails, the pair goes to the writer thread as before. Either way the same unique
key decides, in one committed transaction, whether the pair is new.

Entries are kept until the request signature's expiry plus the clock skew has passed; after
that the signature check alone rejects the message, and the entry is pruned.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from exchange.db import inline
from exchange.db.batch import GroupCommit
from exchange.db.bulk import KeptConnection
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
        # Built once, compiled once (_Insert); its RETURNING names the pairs that were new.
        self._statement = insert_or_skip(engine, SeenMessage).returning(
            SeenMessage.client, SeenMessage.message_id, sort_by_parameter_order=True
        )
        # The writer threads insert through the DBAPI cursor on connections they keep
        # (exchange.db.bulk): Core's execute with RETURNING cost more than the insert itself.
        self._insert = _Insert(engine, self._statement)
        self._kept = KeptConnection(engine)
        self._kept_unflushed = KeptConnection(unflushed)
        self._flushed: GroupCommit[Pair, None] = GroupCommit(
            lambda batch: self._accept(self._kept, batch), name="replay-guard"
        )
        self._unflushed: GroupCommit[Pair, None] = GroupCommit(
            lambda batch: self._accept(self._kept_unflushed, batch, opening=True),
            name="replay-guard-reads",
        )
        self._on_loop = _OnTheLoop(unflushed, self._insert) if inline.suits(unflushed) else None

    async def accept_once(
        self, *, client: str, message_id: str, keep_until: datetime, safe: bool
    ) -> None:
        """Return if the pair is new (and now committed); raise DuplicateMessage if not.

        ``safe``: the request's method changes nothing (see the module docstring)."""
        if safe and self._on_loop is not None:
            fresh = self._on_loop.accept(client, message_id, keep_until)
            if fresh is not None:
                if not fresh:
                    raise _duplicate(client, message_id)
                return
        writer = self._unflushed if safe else self._flushed
        await writer.submit((client, message_id, keep_until))

    def _accept(
        self, connection: KeptConnection, batch: Sequence[Pair], *, opening: bool = False
    ) -> list[BaseException | None]:
        first: dict[tuple[str, str], datetime] = {}
        for client, message_id, keep_until in batch:
            first.setdefault((client, message_id), keep_until)
        found: list[set[tuple[str, str]]] = []

        def insert(dbapi: Any) -> None:
            # Replaced, not added to: an attempt on a connection found dead says nothing.
            found[:] = [self._insert.run(dbapi, first)]

        connection.transaction(insert)
        fresh = found[0]
        outcomes: list[BaseException | None] = []
        for client, message_id, _ in batch:
            if (client, message_id) in fresh:
                fresh.discard((client, message_id))  # a second copy in the same batch is a replay
                outcomes.append(None)
            else:
                outcomes.append(_duplicate(client, message_id))
        if opening and self._on_loop is not None:
            self._on_loop.open()  # on this thread: the next pairs are tried on the loop
        return outcomes

    def prune(self, *, at: datetime) -> int:
        with Session(self._engine) as session:
            result = session.execute(delete(SeenMessage).where(SeenMessage.expires_at < at))
            session.commit()
            return int(getattr(result, "rowcount", 0) or 0)

    async def close(self) -> None:
        if self._on_loop is not None:
            self._on_loop.close()
        await self._flushed.close()
        await self._unflushed.close()
        self._kept.close()
        self._kept_unflushed.close()


class _Insert:
    """The guard's ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, compiled once, run through
    the DBAPI cursor: which of the pairs were new."""

    def __init__(self, engine: Engine, statement: Any) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self._order = tuple(compiled.positiontup or ())
        # Times stored exactly as SQLAlchemy stores them, so that pruning compares like with like.
        self._expires = SeenMessage.__table__.c.expires_at.type.dialect_impl(
            engine.dialect
        ).bind_processor(engine.dialect)
        self._postgresql = engine.dialect.name == "postgresql"

    def parameters(self, client: str, message_id: str, keep_until: datetime) -> Any:
        expires = self._expires(keep_until) if self._expires is not None else keep_until
        values = {"client": client, "message_id": message_id, "expires_at": expires}
        return [values[name] for name in self._order] if self._order else values

    def run(self, connection: Any, pairs: dict[tuple[str, str], datetime]) -> set[tuple[str, str]]:
        rows = [self.parameters(c, m, k) for (c, m), k in pairs.items()]
        fresh: set[tuple[str, str]] = set()
        cursor = connection.cursor()
        try:
            if self._postgresql and len(rows) > 1:  # one round trip for the batch (a pipeline)
                cursor.executemany(self.sql, rows, returning=True)
                while True:
                    fresh.update((row[0], row[1]) for row in cursor.fetchall())
                    if not cursor.nextset():
                        break
            else:  # SQLite's executemany returns no rows; it runs in process anyway
                for row in rows:
                    cursor.execute(self.sql, row)
                    fresh.update((found[0], found[1]) for found in cursor.fetchall())
        finally:
            cursor.close()
        return fresh


class _OnTheLoop:
    """The unflushed insert of one pair on the event loop's own connection (module docstring)."""

    def __init__(self, engine: Engine, statement: _Insert) -> None:
        self._statement = statement
        self._engine = engine
        self._connection: Any = None
        self._opening = threading.Lock()

    def open(self) -> None:
        with self._opening:
            if self._connection is None:
                self._connection = inline.open_for_the_loop(self._engine)

    def accept(self, client: str, message_id: str, keep_until: datetime) -> bool | None:
        """Whether the pair was new (now committed), or None if it could not be tried at once."""
        connection = self._connection
        if connection is None:
            return None
        values = self._statement.parameters(client, message_id, keep_until)
        try:
            fresh = connection.execute(self._statement.sql, values).fetchall()
            connection.commit()
        except inline.Error:
            with contextlib.suppress(inline.Error):
                connection.rollback()
            return None
        return bool(fresh)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
