"""The append-only audit log of one gateway replica: one chain, group-committed.

Each record is canonical JSON naming its chain, its sequence number and the leaf hash of the
record before it, so that a record cannot be removed, inserted or moved without breaking the
chain at that position; records are also the leaves of an RFC 9162 Merkle tree whose heads the
gateway signs (:mod:`audit.heads`).

:meth:`AuditLog.append` returns only once the record is committed. Concurrent appends share one
transaction (group commit): the first waiting request starts a commit of everything queued, the
others wait for it. If the commit fails, every waiting append raises :class:`LoggingFailed` and
the caller releases nothing. :attr:`AuditLog.writable` says how the last write went, so that the
gateway's health can say it cannot audit (and so refuses everything); :meth:`AuditLog.probe`
tries a write that leaves nothing behind, so that a gateway that gets no traffic still finds out
when writing works again.

The person a record is about is stored only as HMAC-SHA256 under the gateway's audit key, so the
log can be published and proven without saying whom it is about, while the gateway can still
find a person's records.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import orjson
import structlog
from sqlalchemy import Engine, insert, select, update

from audit import merkle
from audit.models import AuditRecord, Probe
from exchange.db.batch import GroupCommit
from exchange.db.bulk import BulkInsert, KeptConnection
from exchange.errors import LoggingFailed

log = structlog.get_logger(__name__)
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
    request_signature: str | None  # detached: header..signature
    request_claims_digest: str | None  # base64url SHA-256 of the detached payload
    response_signature: str | None
    # An answer given again for an Idempotency-Key: the message id of the exchange that first
    # gave it. Kept in the body only when set, so records without it read as before.
    replay_of: str | None = None
    # What an OOTS EDM answer said, on the consumer's side: "evidence", "preview-required" or
    # the EDM error code. Kept in the body only when set, as replay_of.
    edm_outcome: str | None = None
    # The large parts the answer streamed, as its signature binds them (offset:length:SHA-256,
    # docs/protocol.md); the response digest is then that of the bytes around them. Kept in
    # the body only when set.
    parts: str | None = None


def canonical(record: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 unescaped: the bytes ``json.dumps(record, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False).encode()`` gives for the strings, integers,
    booleans and nulls a record holds (tests/audit/test_log.py), at a fifth of its cost."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def _logging_failed(cause: BaseException) -> LoggingFailed:
    failure = LoggingFailed("the audit log cannot be written; nothing was released")
    failure.__cause__ = cause
    return failure


USAGE_SERVICE = "usage"  # the built-in service with which citizens read their usage


def released(status: object) -> bool:
    """Whether a provider's answer with this status released the data asked for."""
    return isinstance(status, int) and 200 <= status < 300


def listed(side: object, service: object, subject: object) -> bool:
    """Whether the subject's usage view shows a record: a provider's answer to a request about
    the person (a release or a refused attempt), except the person's own reading of that view
    (the usage service)."""
    if side != "provider" or subject is None:
        return False
    text = str(service)
    if "/" + USAGE_SERVICE not in text:  # the common case, found without splitting
        return True
    parts = text.split("/")  # instance/class/member/subsystem/service[/version]
    return len(parts) < 5 or parts[4] != USAGE_SERVICE


ENTRY_FIELDS = tuple(f.name for f in fields(AuditEntry))  # flat: no deep copy needed
# In a record's body only when set.
OPTIONAL_FIELDS = ("replay_of", "edm_outcome", "parts")
REQUIRED_FIELDS = tuple(name for name in ENTRY_FIELDS if name not in OPTIONAL_FIELDS)
Pending = tuple[AuditEntry, str | None]  # entry, hashed subject
TREE_HEIGHT = 5  # the tree keeps nodes of blocks of 32 records and up (see merkle.Tree)
LOAD_BATCH = 1000  # records read at a time when the chain's state is rebuilt at start
RECORD_COLUMNS = ("chain", "seq", "at", "subject", "listed", "released", "body")


def leaf_reader(engine: Engine, chain: str) -> Callable[[int, int], list[bytes]]:
    """Leaf hashes of records ``lo`` to ``hi`` (excluded) of ``chain``, from the table."""

    def read(lo: int, hi: int) -> list[bytes]:
        query = (
            select(AuditRecord.body)
            .where(AuditRecord.chain == chain, AuditRecord.seq >= lo, AuditRecord.seq < hi)
            .order_by(AuditRecord.seq)
        )
        with engine.connect() as connection:
            return [merkle.leaf_hash(body) for body in connection.execute(query).scalars()]

    return read


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
        # Compiled once; run by the writer thread on the connection it keeps (exchange.db.bulk).
        self._append = BulkInsert(engine, AuditRecord, RECORD_COLUMNS)
        self._connection = KeptConnection(engine)
        self.chain = chain
        self._key = key
        self._clock = clock
        # One worker: commits of this chain happen one after another, in order.
        self._writer: GroupCommit[Pending, int] = GroupCommit(
            self.commit_batch,
            name=f"audit:{chain}",
            max_batch=max_batch,
            on_error=_logging_failed,
        )
        # For roots and proofs: about 2 bytes a record; proofs read leaves back from the table.
        self.tree = merkle.Tree(height=TREE_HEIGHT, read=leaf_reader(engine, chain))
        self._last = GENESIS
        self.writable = True  # whether the last write (a commit or a probe) succeeded
        self._succeeded_at = time.monotonic()  # when a write last committed
        self._probing: asyncio.Future[bool] | None = None
        self._load()

    def _load(self) -> None:
        """Rebuild the chain's state from the stored records (once, at start)."""
        query = (
            select(AuditRecord.body)
            .where(AuditRecord.chain == self.chain)
            .order_by(AuditRecord.seq)
        )
        leaf = None
        with self._engine.connect() as connection:
            # Rows come in batches of LOAD_BATCH: the memory a batch took stays with the process
            # (10,000 rows of ~1 KB left ~7 MB more resident than 1,000 do, at no cost in time).
            batches = connection.execution_options(yield_per=LOAD_BATCH)
            for body in batches.execute(query).scalars():
                leaf = merkle.leaf_hash(body)
                self.tree.append(leaf)
        if leaf is not None:
            self._last = leaf.hex()

    def subject_hash(self, person: str | None) -> str | None:
        if not person:
            return None
        return hmac.new(self._key, person.encode(), hashlib.sha256).hexdigest()

    async def append(self, entry: AuditEntry, *, subject: str | None) -> int:
        """Commit ``entry`` (about ``subject``, hashed); return its sequence number."""
        return await self._writer.submit((entry, self.subject_hash(subject)))

    def commit_batch(self, batch: Sequence[Pending]) -> list[int]:
        """Append and commit ``batch`` (entries with hashed subjects) now, on this thread.

        The group committer's worker calls this; so may a bulk load while nothing else appends
        to the chain."""
        at = self._clock()
        stamp = at.isoformat(timespec="microseconds")
        first = self.tree.size
        rows, leaves, previous = [], [], self._last
        for seq, (entry, subject) in enumerate(batch, start=first):
            fields = {name: getattr(entry, name) for name in REQUIRED_FIELDS}
            for name in OPTIONAL_FIELDS:
                value = getattr(entry, name)
                if value is not None:
                    fields[name] = value
            fields.update(v=FORMAT, chain=self.chain, seq=seq, prev=previous, at=stamp)
            fields["subject"] = subject
            body = canonical(fields)
            leaf = merkle.leaf_hash(body)
            previous = leaf.hex()
            shown = listed(entry.side, entry.service, subject)
            leaves.append(leaf)
            rows.append(
                (self.chain, seq, at, subject, shown, shown and released(entry.status), body)
            )
        # Through the DBAPI cursor on the writer thread's kept connection, not Core's execute
        # (nor an ORM session, which cost more than twice Core): exchange.db.bulk.
        with self._writing():
            self._connection.transaction(lambda connection: self._append.execute(connection, rows))
        # Only a committed batch moves the chain forward.
        for leaf in leaves:
            self.tree.append(leaf)
        self._last = previous
        return list(range(first, first + len(batch)))

    async def can_write(self, *, known_within: float) -> bool:
        """Whether the log can be written now: the last write's outcome if one committed within
        ``known_within`` seconds, else a probe (a failing log, or an idle one whose database may
        have gone since)."""
        if self.writable and time.monotonic() - self._succeeded_at < known_within:
            return True
        return await self.probe()

    async def probe(self) -> bool:
        """Whether a write commits now: the chain's row of the probe table rewritten and
        committed, so the database and its disk are both tried. Runs between two commits; one
        probe at a time (a hanging database does not pile them up)."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._writer.run_in_worker(self._probe))
        return await asyncio.shield(self._probing)

    def _probe(self) -> bool:
        try:
            with self._writing(), self._engine.begin() as connection:
                rewritten = connection.execute(
                    update(Probe).where(Probe.chain == self.chain).values(at=self._clock())
                )
                if not rewritten.rowcount:
                    connection.execute(insert(Probe), [{"chain": self.chain, "at": self._clock()}])
        except Exception:  # the probe's answer; the cause was logged when writing first failed
            return False
        return True

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Note in :attr:`writable` whether the block's write succeeded; log the changes."""
        try:
            yield
        except Exception as exc:
            if self.writable:
                log.error("audit.unwritable", chain=self.chain, cause=type(exc).__name__)
            self.writable = False
            raise
        if not self.writable:
            log.info("audit.writable_again", chain=self.chain)
        self.writable = True
        self._succeeded_at = time.monotonic()

    async def snapshot(self) -> tuple[int, bytes]:
        """(size, root) of everything committed, taken between two commits."""
        return await self._writer.run_in_worker(lambda: (self.tree.size, self.tree.root()))

    async def close(self) -> None:
        await self._writer.close()
        self._connection.close()
