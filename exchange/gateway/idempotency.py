"""Idempotent retries at the provider: a request with an ``Idempotency-Key`` is executed once.

After the IETF httpapi ``Idempotency-Key`` draft. The key is scoped to the client subsystem and
the service; the request it names is the signed request without its message id and times (its
*fingerprint*: method, path, query, body digest, the X-Road headers, the consent artefact's
digest, content type, accept, and the key itself).

- The first request with a key claims it (a row without an answer) and is executed; its answer
  is kept for ``lifetime`` (24 h) and pruned after.
- A retry with the same key and the same request gets the kept answer without the registry
  being asked, the consent service being asked or a consent use being spent, and without
  counting against quotas. It is a new exchange: a new message id (the replay guard sees a new
  pair), a new request signature, and the answer is signed again bound to *it*; its audit
  record names the message id that first got the answer (``replay_of``).
- The same key with another request is refused: ``422 IdempotencyKeyReused``.
- While the first is being answered, a duplicate is refused at once: ``409 RequestInProgress``
  (the draft's choice; the caller asks again). Processes and replicas share the claim through
  the database, so of concurrent duplicates exactly one executes. A claim whose process died
  before answering is taken over after ``TAKEOVER_AFTER`` seconds (that retry executes again).

Answers that say "not now" are not kept (their retries execute again): the provider's own
failures (5xx), ``428 PreviewRequired`` and ``429 QuotaExceeded``. Every other answer is.

The rows are written without waiting for the disk (the unflushed engine): the answer's audit
record, committed flushed after its row and before the answer leaves, makes it durable. A power
loss can only take the row of an answer that never left, whose retry then executes again.

Claims and answers that arrive together are written in one transaction (a group commit, as the
replay guard's pairs): a key costs a request a share of one commit, not two commits of its own
each waiting for the database's one writer. Within a batch each request still gets the outcome
it would have had alone: the unique key decides each claim (a key claimed twice in one batch is
held by the first; the second finds it in progress), and a refused claim leaves the others be.
The caller still waits for its row to be committed, so the order above (claim before the
registry is asked, answer before the audit record) holds.

A replayed answer skips the release policy: it gives the same client, for the same request,
what it was given already (consent revoked since does not take it back, as it cannot take back
the first copy).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, delete, select, update

from exchange.db.batch import GroupCommit
from exchange.db.engine import insert_or_skip
from exchange.errors import IdempotencyKeyReused, RequestInProgress
from exchange.gateway.models import IdempotentAnswer
from exchange.gateway.signing import REQUEST_FIELDS, RequestClaims

LIFETIME = timedelta(hours=24)
TAKEOVER_AFTER = timedelta(seconds=300)  # longer than any registry's timeout may be
NOT_KEPT = frozenset({428, 429})


def fingerprint(signed: RequestClaims) -> str:
    """The request a key names: every signed claim but the message id and the times."""
    named = {
        name: getattr(signed, name)
        for name in REQUEST_FIELDS
        if name not in ("message_id", "iat", "exp")
    }
    return hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Held:
    """This request holds the key: execute it, then :meth:`Idempotency.finish`."""

    client: str
    service: str
    key: str
    message_id: str


@dataclass(frozen=True, slots=True)
class Stored:
    """The answer kept for the key, to be given again."""

    message_id: str
    status: int
    content_type: str | None
    payload: bytes
    error_type: str | None
    legal_basis: str | None
    consent: str | None


@dataclass(frozen=True, slots=True)
class _Claim:
    """A request claiming its key (see :meth:`Idempotency.begin`)."""

    held: Held
    fingerprint: str
    at: datetime


@dataclass(frozen=True, slots=True)
class _Answer:
    """The answer to keep for a held key, or ``kept=False`` to give the key up."""

    held: Held
    kept: bool
    status: int
    content_type: str | None
    payload: bytes
    error_type: str | None
    legal_basis: str | None
    consent: str | None


_Outcome = Held | Stored | None


class Idempotency:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime],
        lifetime: timedelta = LIFETIME,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._lifetime = lifetime
        table = cast(Table, IdempotentAnswer.__table__)
        self._claim = insert_or_skip(engine, IdempotentAnswer).returning(
            table.c.client, table.c.service, table.c.key
        )
        # Executed with many parameter sets at once: the answers of a batch. Only the request
        # that holds the key (its message id, no answer yet) may keep or give up its answer.
        held = (
            table.c.client == bindparam("held_client"),
            table.c.service == bindparam("held_service"),
            table.c.key == bindparam("held_key"),
            table.c.message_id == bindparam("held_message_id"),
            table.c.status.is_(None),
        )
        self._keep = (
            update(table).where(*held).values({name: bindparam(name) for name in ANSWER_FIELDS})
        )
        self._give_up = delete(table).where(*held)
        # One transaction for the claims and answers that arrive together (module docstring).
        self._writer: GroupCommit[_Claim | _Answer, _Outcome] = GroupCommit(
            self._write, name="idempotency"
        )

    async def begin(
        self, *, client: str, service: str, key: str, fingerprint: str, message_id: str
    ) -> Held | Stored:
        """Claim ``key`` for this request, or the answer kept for it; raise
        :class:`IdempotencyKeyReused` or :class:`RequestInProgress` (see the module docstring)."""
        held = Held(client, service, key, message_id)
        outcome = await self._writer.submit(_Claim(held, fingerprint, self._clock()))
        return cast(Held | Stored, outcome)

    async def finish(
        self,
        held: Held,
        *,
        status: int,
        content_type: str | None,
        payload: bytes,
        error_type: str | None,
        legal_basis: str | None,
        consent: str | None,
    ) -> None:
        """Keep the answer for the key's retries, or give the key up if it is not kept."""
        kept = status < 500 and status not in NOT_KEPT
        answer = _Answer(
            held, kept, status, content_type, payload, error_type, legal_basis, consent
        )
        await self._writer.submit(answer)

    def _write(self, batch: Sequence[_Claim | _Answer]) -> list[_Outcome | BaseException]:
        """One transaction for ``batch``: the answers first (a retry beside its first request's
        answer is given that answer), then the claims, one row per key in key order (so that
        processes claiming at once cannot deadlock); a key claimed twice in the batch is claimed
        by the first, and the others are decided against its row, like any key found taken."""
        outcomes: list[_Outcome | BaseException] = [None] * len(batch)
        answers = [item for item in batch if isinstance(item, _Answer)]
        first: dict[tuple[str, str, str], int] = {}
        for index, item in enumerate(batch):
            if isinstance(item, _Claim):
                first.setdefault(_scope(item.held), index)
        with self._engine.begin() as connection:
            kept = [_answer_row(a) for a in answers if a.kept]
            if kept:
                connection.execute(self._keep, kept)
            given_up = [_held_row(a.held) for a in answers if not a.kept]
            if given_up:
                connection.execute(self._give_up, given_up)
            rows = [self._fresh(cast(_Claim, batch[first[scope]])) for scope in sorted(first)]
            claimed: set[tuple[str, ...]] = set()
            if rows:
                claimed = {tuple(row) for row in connection.execute(self._claim, rows)}
            for index, item in enumerate(batch):
                if not isinstance(item, _Claim):
                    continue
                scope = _scope(item.held)
                if first[scope] == index and scope in claimed:
                    outcomes[index] = item.held
                    continue
                try:
                    outcomes[index] = self._decide(connection, item)
                except (IdempotencyKeyReused, RequestInProgress) as refused:
                    outcomes[index] = refused
        return outcomes

    def _fresh(self, claim: _Claim) -> dict[str, Any]:
        """The row of a key claimed by ``claim``'s request."""
        held = claim.held
        return {
            "client": held.client,
            "service": held.service,
            "key": held.key,
            "fingerprint": claim.fingerprint,
            "message_id": held.message_id,
            "status": None,
            "content_type": None,
            "error_type": None,
            "payload": None,
            "legal_basis": None,
            "consent": None,
            "created_at": claim.at,
            "expires_at": claim.at + self._lifetime,
        }

    def _decide(self, connection: Connection, claim: _Claim) -> Held | Stored:
        """For a key found claimed: its kept answer, a takeover, or a refusal."""
        held, now = claim.held, claim.at
        mine = (
            IdempotentAnswer.client == held.client,
            IdempotentAnswer.service == held.service,
            IdempotentAnswer.key == held.key,
        )
        row = connection.execute(select(IdempotentAnswer.__table__).where(*mine)).first()
        if row is None:  # given up by its holder since (PostgreSQL, another process): ask again
            raise _in_progress()
        expired = row.expires_at <= now
        if not expired and row.fingerprint != claim.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for another request",
                detail="Idempotency-Key",
            )
        abandoned = row.status is None and row.created_at <= now - TAKEOVER_AFTER
        if expired or abandoned:
            # Taken over on the condition that nobody else took it over first.
            taken = connection.execute(
                update(IdempotentAnswer)
                .where(*mine, IdempotentAnswer.created_at == row.created_at)
                .values(**{k: v for k, v in self._fresh(claim).items() if k not in KEY_FIELDS})
            )
            if getattr(taken, "rowcount", 0):
                return held
        if expired or row.status is None:
            raise _in_progress()
        return Stored(
            message_id=row.message_id,
            status=row.status,
            content_type=row.content_type,
            payload=row.payload or b"",
            error_type=row.error_type,
            legal_basis=row.legal_basis,
            consent=row.consent,
        )

    def prune(self, *, at: datetime) -> int:
        with self._engine.begin() as connection:
            result = connection.execute(
                delete(IdempotentAnswer).where(IdempotentAnswer.expires_at < at)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def close(self) -> None:
        await self._writer.close()


KEY_FIELDS = ("client", "service", "key")
ANSWER_FIELDS = ("status", "content_type", "payload", "error_type", "legal_basis", "consent")


def _in_progress() -> RequestInProgress:
    return RequestInProgress(
        "a request with this Idempotency-Key is being answered; ask again shortly",
        detail="Idempotency-Key",
    )


def _scope(held: Held) -> tuple[str, str, str]:
    return held.client, held.service, held.key


def _held_row(held: Held) -> dict[str, str]:
    return {
        "held_client": held.client,
        "held_service": held.service,
        "held_key": held.key,
        "held_message_id": held.message_id,
    }


def _answer_row(answer: _Answer) -> dict[str, Any]:
    return {
        **_held_row(answer.held),
        **{name: getattr(answer, name) for name in ANSWER_FIELDS},
    }
