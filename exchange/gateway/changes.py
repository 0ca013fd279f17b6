"""The change log: every change made to what the gateway's database decides, with its actor.

A change is written in the same transaction as what it records (:func:`record` takes the
caller's session), so the log cannot miss a change that was committed nor name one that was
not. Access rights and groups are changed through :class:`~exchange.gateway.access.AccessRights`
(from the console or the command line), which records each change here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from exchange.gateway import models

MAX_ACTOR = 255


@dataclass(frozen=True, slots=True)
class Change:
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, object]


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, object],
) -> None:
    """Add the change to ``session``: committed with what it records, or not at all."""
    if not actor or len(actor) > MAX_ACTOR:
        raise ValueError("a change names its actor (at most 255 characters)")
    session.add(
        models.Change(
            at=at,
            actor=actor,
            action=action,
            target=target,
            detail=json.dumps(dict(detail), sort_keys=True, ensure_ascii=False),
        )
    )


class ChangeLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def newest(self, *, limit: int = 50, offset: int = 0) -> tuple[list[Change], int]:
        """A page of changes, newest first, and how many there are in all."""
        with Session(self._engine) as session:
            total = session.scalar(select(func.count()).select_from(models.Change)) or 0
            rows = session.scalars(
                select(models.Change).order_by(models.Change.id.desc()).limit(limit).offset(offset)
            )
            return [
                Change(r.at, r.actor, r.action, r.target, json.loads(r.detail)) for r in rows
            ], total
