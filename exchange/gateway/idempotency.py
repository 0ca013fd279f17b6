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

A replayed answer skips the release policy: it gives the same client, for the same request,
what it was given already (consent revoked since does not take it back, as it cannot take back
the first copy).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update

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
        self._claim = insert_or_skip(engine, IdempotentAnswer).returning(IdempotentAnswer.key)

    def begin(
        self, *, client: str, service: str, key: str, fingerprint: str, message_id: str
    ) -> Held | Stored:
        """Claim ``key`` for this request, or the answer kept for it; raise
        :class:`IdempotencyKeyReused` or :class:`RequestInProgress` (see the module docstring).
        Blocking: call it in a worker thread."""
        now = self._clock()
        held = Held(client, service, key, message_id)
        fresh = {
            "fingerprint": fingerprint,
            "message_id": message_id,
            "status": None,
            "content_type": None,
            "error_type": None,
            "payload": None,
            "legal_basis": None,
            "consent": None,
            "created_at": now,
            "expires_at": now + self._lifetime,
        }
        mine = (
            IdempotentAnswer.client == client,
            IdempotentAnswer.service == service,
            IdempotentAnswer.key == key,
        )
        with self._engine.begin() as connection:
            claimed = connection.execute(
                self._claim, {"client": client, "service": service, "key": key, **fresh}
            ).first()
            if claimed is not None:
                return held
            row = connection.execute(select(IdempotentAnswer.__table__).where(*mine)).one()
            expired = row.expires_at <= now
            if not expired and row.fingerprint != fingerprint:
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
                    .values(**fresh)
                )
                if getattr(taken, "rowcount", 0):
                    return held
            if expired or row.status is None:
                raise RequestInProgress(
                    "a request with this Idempotency-Key is being answered; ask again shortly",
                    detail="Idempotency-Key",
                )
            return Stored(
                message_id=row.message_id,
                status=row.status,
                content_type=row.content_type,
                payload=row.payload or b"",
                error_type=row.error_type,
                legal_basis=row.legal_basis,
                consent=row.consent,
            )

    def finish(
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
        mine = (
            IdempotentAnswer.client == held.client,
            IdempotentAnswer.service == held.service,
            IdempotentAnswer.key == held.key,
            IdempotentAnswer.message_id == held.message_id,
            IdempotentAnswer.status.is_(None),
        )
        with self._engine.begin() as connection:
            if status >= 500 or status in NOT_KEPT:
                connection.execute(delete(IdempotentAnswer).where(*mine))
                return
            connection.execute(
                update(IdempotentAnswer)
                .where(*mine)
                .values(
                    status=status,
                    content_type=content_type,
                    payload=payload,
                    error_type=error_type,
                    legal_basis=legal_basis,
                    consent=consent,
                )
            )

    def prune(self, *, at: datetime) -> int:
        with self._engine.begin() as connection:
            result = connection.execute(
                delete(IdempotentAnswer).where(IdempotentAnswer.expires_at < at)
            )
        return int(getattr(result, "rowcount", 0) or 0)
