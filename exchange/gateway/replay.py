"""The durable replay guard: a (client, message id) pair is accepted once, across restarts.

The pair is committed before the provider acts on the request, so a crash can only ever turn
a first delivery into a rejected retry, never let a replay through. Entries are kept until the
request signature's expiry plus the clock skew has passed; after that the signature check
alone rejects the message, and the entry is pruned.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange.errors import DuplicateMessage
from exchange.gateway.models import SeenMessage


class ReplayGuard:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def accept_once(self, *, client: str, message_id: str, keep_until: datetime) -> None:
        with Session(self._engine) as session:
            session.add(SeenMessage(client=client, message_id=message_id, expires_at=keep_until))
            try:
                session.commit()
            except IntegrityError as exc:
                raise DuplicateMessage(
                    f"message id {message_id!r} from {client} was already accepted",
                    detail=message_id,
                ) from exc

    def prune(self, *, at: datetime) -> int:
        with Session(self._engine) as session:
            result = session.execute(delete(SeenMessage).where(SeenMessage.expires_at < at))
            session.commit()
            return int(getattr(result, "rowcount", 0) or 0)
