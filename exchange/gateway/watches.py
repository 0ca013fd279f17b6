"""Watches: a portal is told of each release about a citizen who asked it to be.

Part of the usage service (:mod:`exchange.gateway.usage`), called through the portal's own
gateway like ``findUsage``::

    POST   /r1/{provider subsystem}/usage/v1/watches?userCode=...&watch=<id>   (ID token)
    DELETE /r1/{provider subsystem}/usage/v1/watches?watch=<id>
    GET    /r1/{provider subsystem}/usage/v1/events?cursor=<cursor>&limit=<n>

- registering needs the citizen's own ID token, issued to the very portal that calls, as
  ``/v1/records`` does: no member can watch a person without that person. The watch keeps the
  audit log's keyed hash of the person, the id the portal chose (random, at most 64 characters
  of ``A-Z a-z 0-9 - _``) and the portal's subsystem; nothing else. It answers the watch id
  and the ``cursor`` of the log's end now, from which the portal reads if it has no cursor yet.
- cancelling is for the portal that registered the watch (the citizen opted out there).
- ``/v1/events`` answers the portal's releases about watched people since its ``cursor``:
  ``{"events": [{"watch", "chain", "seq", "logtime", "action", "service", "receiverCode",
  "receiverName", "receiverSystem", "purpose", "legalBasis"}], "cursor", "more"}``, oldest
  first. No person code: the watch id stands for the person, and only the portal can map it.

Events are derived from committed audit records, read by their primary key (chain, seq) from
the portal's cursor on: the exchange path writes nothing more for them (docs/notifications.md).
A cursor is the last sequence number read in each chain of this gateway's database (one per
replica), so a portal that asks again with the same cursor gets the same events, and one that
stored its new cursor with what it did with them never misses or repeats one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from audit.log import listed, released
from audit.models import AuditRecord
from exchange.errors import AccessDenied, InvalidRequest
from exchange.gateway.models import Watch

if TYPE_CHECKING:
    from exchange.gateway.node import Gateway
    from exchange.gateway.usage import Usage

MAX_EVENTS = 500
SCAN = 20_000  # audit records one question about events reads at most, per chain
_WATCH_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def chains(session: Session) -> list[str]:
    """Every chain of the log, found by walking the primary key (chain, seq) from chain to
    chain: a handful of index lookups, where DISTINCT would read every record."""
    found = []
    chain = session.scalar(select(func.min(AuditRecord.chain)))
    while chain is not None:
        found.append(chain)
        chain = session.scalar(
            select(AuditRecord.chain)
            .where(AuditRecord.chain > chain)
            .order_by(AuditRecord.chain)
            .limit(1)
        )
    return found


def encode_cursor(positions: dict[str, int]) -> str:
    raw = json.dumps(positions, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, int]:
    try:
        positions = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise InvalidRequest("cursor is not one this gateway gave", detail="cursor") from exc
    if not isinstance(positions, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in positions.items()
    ):
        raise InvalidRequest("cursor is not one this gateway gave", detail="cursor")
    return positions


def watch_id(parameters: dict[str, str]) -> str:
    chosen = parameters.get("watch", "")
    if not _WATCH_ID.fullmatch(chosen):
        raise InvalidRequest("watch must be 16 to 64 of A-Z a-z 0-9 - _", detail="watch")
    return chosen


class Watches:
    """The watches of one gateway and the events its portals read (see the module's text)."""

    def __init__(self, gateway: Gateway, usage: Usage) -> None:
        self._gateway = gateway
        self._usage = usage

    def register(self, *, person: str, portal: str, watch: str) -> dict[str, str]:
        subject = self._gateway.audit.subject_hash(person)
        with Session(self._gateway.engine) as session, session.begin():
            held = session.get(Watch, watch)
            if held is not None and (held.portal != portal or held.subject != subject):
                raise AccessDenied("that watch id is taken")
            if held is None:
                session.add(Watch(id=watch, subject=subject, portal=portal, created_at=self._now()))
            ends = self._ends(session)
        return {"watch": watch, "cursor": encode_cursor(ends)}

    def cancel(self, *, portal: str, watch: str) -> dict[str, Any]:
        with Session(self._gateway.engine) as session, session.begin():
            gone = session.execute(delete(Watch).where(Watch.id == watch, Watch.portal == portal))
        return {"watch": watch, "cancelled": bool(getattr(gone, "rowcount", 0))}

    def events(self, *, portal: str, cursor: str | None, limit: int) -> dict[str, Any]:
        members = self._gateway.trust.view().members
        with Session(self._gateway.engine) as session:
            ends = self._ends(session)
            if cursor is None:  # a portal's first question: from now on
                return {"events": [], "cursor": encode_cursor(ends), "more": False}
            positions = decode_cursor(cursor)
            events: list[dict[str, Any]] = []
            more = False
            for chain, end in ends.items():
                start = positions.get(chain, -1)
                if start >= end:
                    continue
                # However old the cursor, one question reads a bounded stretch of the log.
                stop = min(end, max(start, -1) + SCAN)
                rows = session.execute(
                    select(AuditRecord.seq, AuditRecord.at, AuditRecord.body, Watch.id)
                    .join(Watch, Watch.subject == AuditRecord.subject)
                    .where(
                        AuditRecord.chain == chain,
                        AuditRecord.seq > start,
                        AuditRecord.seq <= stop,  # committed when the question began
                        AuditRecord.listed.is_(True),
                        AuditRecord.released.is_(True),
                        Watch.portal == portal,
                        AuditRecord.at >= Watch.created_at,
                    )
                    .order_by(AuditRecord.seq)
                    .limit(limit - len(events) + 1)
                ).all()
                if len(rows) > limit - len(events):
                    rows = rows[: limit - len(events)]
                    more = True
                for seq, at, body, watch in rows:
                    record = json.loads(body)
                    if released(record.get("status")) and listed(
                        record.get("side"), record.get("service"), record.get("subject")
                    ):
                        events.append(self._event(watch, chain, seq, at, record, members))
                positions[chain] = rows[-1][0] if more else stop
                if more or stop < end:
                    more = True
                    break
        return {"events": events, "cursor": encode_cursor(positions), "more": more}

    def _event(
        self,
        watch: str,
        chain: str,
        seq: int,
        at: datetime,
        record: dict[str, Any],
        members: dict[str, Any],
    ) -> dict[str, Any]:
        service = str(record.get("service", ""))
        return {
            "watch": watch,
            "chain": chain,
            "seq": seq,
            "logtime": at.isoformat(),
            "action": self._usage.action(service),
            "service": service,
            **self._usage.receiver(record, members),
            "purpose": record.get("purpose"),
            "legalBasis": record.get("legal_basis"),
        }

    @staticmethod
    def _ends(session: Session) -> dict[str, int]:
        """The last sequence number of each chain now."""
        return {
            chain: int(
                session.scalar(select(func.max(AuditRecord.seq)).where(AuditRecord.chain == chain))
                or 0
            )
            for chain in chains(session)
        }

    def _now(self) -> datetime:
        return self._gateway.clock()
