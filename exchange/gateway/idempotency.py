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

A batch touches its rows key after key, in one order (client, service, key) for every process,
so that two processes' batches sharing keys wait for each other without deadlocking (a retry
arriving beside another process's answer, takeovers of the same abandoned keys). Should two
still meet (a deadlock or serialization failure, which rolls the whole batch back), the batch is
written again, at most ``BATCH_ATTEMPTS`` times in all. Any other failure (a value the database
refuses) is not the batch's: its items are then written one by one, and only the one that fails
gets the error. Such a claim's request is refused (``500 InternalError``, ``503
ServiceUnavailable`` if the database cannot be used: :func:`exchange.faults.error_of`), and
audited as any refusal; such an answer is only logged (the answer still leaves,
:meth:`~exchange.gateway.provider.Provider.keep`), its key stays held, and a retry is asked to
wait, then executes again after ``TAKEOVER_AFTER``. Once the database cannot be used at all, the
items left get that error without each trying again.

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

import structlog
from sqlalchemy import Connection, Engine, Table, bindparam, delete, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from exchange.db.batch import GroupCommit
from exchange.db.engine import insert_or_skip
from exchange.errors import IdempotencyKeyReused, RequestInProgress
from exchange.gateway.models import IdempotentAnswer
from exchange.gateway.signing import REQUEST_FIELDS, RequestClaims

log = structlog.get_logger(__name__)

LIFETIME = timedelta(hours=24)
TAKEOVER_AFTER = timedelta(seconds=300)  # longer than any registry's timeout may be
NOT_KEPT = frozenset({428, 429})
# A batch rolled back by a deadlock or a serialization failure is written again at most this
# many times in all; with the rows locked in key order such a failure should not happen.
BATCH_ATTEMPTS = 3
# PostgreSQL's SQLSTATEs for a transaction rolled back because it met another: safe to run again.
CROSSED = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


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
        # Only the request that holds the key (its message id, no answer yet) may keep or give
        # up its answer.
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
        """Write ``batch`` in one transaction (:meth:`_together`). Two batches that still meet
        in a deadlock (or a serialization failure) were rolled back whole: the batch is written
        again, a few times. Any other failure is not the batch's: its items are written one by
        one, so that only the item that fails gets the error (module docstring)."""
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                return self._together(batch)
            except Exception as failed:
                if _crossed(failed) and attempt < BATCH_ATTEMPTS:
                    # Only counts and the class: a failed statement's message quotes its keys.
                    log.warning("idempotency.batch_crossed", items=len(batch), attempt=attempt)
                    continue
                if len(batch) == 1:
                    return [failed]
                log.warning(
                    "idempotency.batch_failed", items=len(batch), cause=type(failed).__name__
                )
                break
        return self._one_by_one(batch)

    def _one_by_one(self, batch: Sequence[_Claim | _Answer]) -> list[_Outcome | BaseException]:
        """Each item of a failed batch written alone, the answers first (as in a batch). Once
        the database cannot be used at all (its connection fails), the items left get that
        error without each trying again."""
        outcomes: list[_Outcome | BaseException] = [None] * len(batch)
        unusable: BaseException | None = None
        for index in sorted(range(len(batch)), key=lambda i: isinstance(batch[i], _Claim)):
            outcomes[index] = unusable or self._write([batch[index]])[0]
            if _unusable(outcomes[index]):
                unusable = cast(BaseException, outcomes[index])
        return outcomes

    def _together(self, batch: Sequence[_Claim | _Answer]) -> list[_Outcome | BaseException]:
        """One transaction for ``batch``, one key after the other in key order, every statement
        about a key before the next key: two processes writing at once lock the rows they share
        in the same order, so they cannot deadlock (PostgreSQL makes an insert wait for another
        transaction's update of the same key, so the inserts alone in order would not do).

        For each key, its answers first (a retry beside its first request's answer is given
        that answer), then its claims in arrival order: the first inserts the key's row, and
        the others (or the first, if the row was there) are decided against it, like any key
        found taken."""
        outcomes: list[_Outcome | BaseException] = [None] * len(batch)
        scopes: dict[tuple[str, str, str], list[int]] = {}
        for index, item in enumerate(batch):
            scopes.setdefault(_scope(item.held), []).append(index)
        with self._engine.begin() as connection:
            for scope in sorted(scopes):
                items = [(index, batch[index]) for index in scopes[scope]]
                for _, item in items:
                    if isinstance(item, _Answer) and item.kept:
                        connection.execute(self._keep, _answer_row(item))
                    elif isinstance(item, _Answer):
                        connection.execute(self._give_up, _held_row(item.held))
                claims = [(index, item) for index, item in items if isinstance(item, _Claim)]
                if not claims:
                    continue
                first_index, first = claims[0]
                if connection.execute(self._claim, self._fresh(first)).first() is not None:
                    outcomes[first_index] = first.held
                    claims = claims[1:]
                for index, item in claims:
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


def _crossed(failed: object) -> bool:
    """Whether ``failed`` rolled the transaction back only because it met another."""
    return isinstance(failed, DBAPIError) and getattr(failed.orig, "sqlstate", None) in CROSSED


def _unusable(failed: object) -> bool:
    """Whether ``failed`` says the database cannot be used now (down, unreachable, locked),
    not that one write was refused."""
    return isinstance(failed, OperationalError | InterfaceError) and not _crossed(failed)


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
