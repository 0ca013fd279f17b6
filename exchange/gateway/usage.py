"""The citizen usage service ("who used my data"), compatible with Data Tracker usage v2.

Every provider gateway offers the built-in service ``usage`` on each of its subsystems, called
like any X-Road service through the caller's own gateway::

    GET /r1/{provider subsystem}/usage/v2/findUsage?userCode=EE38001085718
        X-Road-UserId: EE38001085718
        X-Exchange-Identity: <the citizen's OIDC ID token>

- ``/v2/findUsage`` (``userCode`` required; ``periodStart``, ``periodEnd`` ISO date-times;
  ``offset`` default 0; ``limit`` default and at most 1000): ``{"totalUsages", "usages":
  [{"logtime", "action", "receiverCode", "receiverName", "receiverSystem"}]}``, newest first;
- ``/v2/usagePeriod``: ``{"periodStart", "periodEnd"}``, the period the log covers;
- ``/v2/heartbeat``: ``{"status": "OK"|"FAIL", "message"}`` (no identity needed);
- ``/v1/records``: the same usages with purpose, legal basis, consent, message id, and each
  record's receipt (its bytes and inclusion proof against a signed tree head); and the
  attempts, grouped by who asked for what and how it ended (``attempts``);
- ``/v1/watches`` (``POST``, ``DELETE``) and ``/v1/events``: a portal told of each release
  about a citizen who asked it to be (:mod:`exchange.gateway.watches`).

A usage is an answer that released data about the person; any other answer to a request about
them (refused, or failed at the provider) is an attempt. Each kind is read by its own index
lookup, so no number of attempts can push a release out of view.

A citizen reads only their own usage: the ID token must verify (issuer, audience of a trusted
portal, signature, times) and its subject, ``userCode`` and ``X-Road-UserId`` must be one and
the same person. A portal subsystem that the provider names in ``usage.trusted_portals`` may
instead ask ``/v2`` with ``X-Road-UserId`` alone, as state portals ask Data Tracker. The record
of each question says which way it was authorised. Records are found by the keyed hash of the
person's code, across every replica's chain in this gateway's database. The usage service's own
calls are not listed.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import merkle
from audit.heads import ReceiptHeads, receipt_heads
from audit.log import TREE_HEIGHT, USAGE_SERVICE, leaf_reader, listed, released
from audit.models import AuditRecord, TreeHead
from audit.receipt import make_receipt
from exchange.errors import AccessDenied, Error, InvalidRequest, InvalidToken, NotFound
from exchange.gateway.node import Gateway
from exchange.gateway.records import ExchangeRecord
from exchange.gateway.watches import MAX_EVENTS, Watches, chains, watch_id
from exchange.gateway.xroad import XRoadHeaders
from exchange.identifiers import SubsystemId, unversioned

SERVICE = USAGE_SERVICE
MAX_LIMIT = 1000
SCAN_LIMIT = 10000  # a person's newest records of each kind read per request: bounds the work


_NUMBER = re.compile(r"[0-9]{1,12}")


def _time(parameters: dict[str, str], name: str) -> datetime | None:
    raw = parameters.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an ISO 8601 date-time", detail=name) from exc
    if value.tzinfo is None:
        raise InvalidRequest(f"{name} needs a time zone", detail=name)
    return value


def _count(parameters: dict[str, str], name: str, default: int, most: int | None = None) -> int:
    raw = parameters.get(name)
    if raw is None:
        return default
    if not _NUMBER.fullmatch(raw) or (most is not None and int(raw) > most):
        limit = f" up to {most}" if most is not None else ""
        raise InvalidRequest(f"{name} must be a whole number{limit}", detail=name)
    return int(raw)


class Usage:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._trees: dict[str, merkle.Tree] = {}
        self._trees_lock = threading.Lock()  # queries run on several threads
        self.watches = Watches(gateway, self)

    @staticmethod
    def methods(rest_path: str) -> tuple[str, ...]:
        """The HTTP methods a path of the usage service takes."""
        return ("POST", "DELETE") if rest_path == "/v1/watches" else ("GET", "HEAD")

    async def answer(
        self,
        *,
        subsystem: SubsystemId,
        rest_path: str,
        parameters: dict[str, str],
        xroad: XRoadHeaders,
        record: ExchangeRecord,
        method: str = "GET",
    ) -> tuple[bytes, str]:
        """The answer to one usage question; ``record`` notes how the asker was authorised."""
        if rest_path == "/v2/heartbeat":
            return _json(await self._heartbeat())
        client = str(xroad.client)
        if rest_path == "/v1/events":  # the portal's own watches: no person is named
            cursor, limit = parameters.get("cursor"), _count(parameters, "limit", MAX_EVENTS)
            events = self.watches.events
            return _json(
                await self._gateway.in_thread(
                    events, portal=client, cursor=cursor, limit=min(limit, MAX_EVENTS) or 1
                )
            )
        if rest_path == "/v1/watches" and method == "DELETE":
            watch = watch_id(parameters)
            return _json(
                await self._gateway.in_thread(self.watches.cancel, portal=client, watch=watch)
            )
        # On a worker thread: checking the token may fetch the issuer's keys over HTTP.
        person, record.legal_basis = await self._gateway.in_thread(
            self._authenticate, rest_path, parameters, xroad
        )
        if rest_path == "/v2/usagePeriod":
            return _json(await self._gateway.in_thread(self._period))
        if rest_path == "/v1/watches":
            watch = watch_id(parameters)
            register = self.watches.register
            return _json(
                await self._gateway.in_thread(register, person=person, portal=client, watch=watch)
            )
        if rest_path in ("/v2/findUsage", "/v1/records"):
            start, end = _time(parameters, "periodStart"), _time(parameters, "periodEnd")
            offset = _count(parameters, "offset", 0)
            limit = _count(parameters, "limit", MAX_LIMIT, MAX_LIMIT)
            rich = rest_path == "/v1/records"
            found = await self._gateway.in_thread(
                self._find, person, start, end, offset, limit, rich
            )
            return _json(found)
        raise NotFound(f"{subsystem}/usage has no {rest_path or '/'}")

    def _authenticate(
        self, rest_path: str, parameters: dict[str, str], xroad: XRoadHeaders
    ) -> tuple[str, str]:
        """The person asked about, and how the asker was authorised to ask.

        A trusted portal's word (``X-Road-UserId`` alone) opens only what Data Tracker gives
        (``/v2``); the rich records, with message and consent ids and receipts, need the
        citizen's own ID token.
        """
        validator, client = self._gateway.citizens, str(xroad.client)
        portals = self._gateway.settings.usage.trusted_portals
        if validator is None and not portals:
            raise NotFound("this gateway does not offer the usage service")
        if xroad.identity:
            if validator is None:
                raise InvalidToken("this gateway accepts no ID tokens; ask as a trusted portal")
            claims = validator.validate(xroad.identity, at=self._gateway.clock())
            self._check_portal(claims, client)
            person, how = str(claims["sub"]), "the citizen's ID token"
        elif client in portals and rest_path.startswith("/v2/"):
            if not xroad.user_id:
                raise InvalidRequest("X-Road-UserId is required", detail="X-Road-UserId")
            person, how = xroad.user_id, f"trusted portal {client}, for X-Road-UserId"
        else:
            raise InvalidToken("the citizen's ID token is required (X-Exchange-Identity)")
        asked = parameters.get("userCode")
        if rest_path != "/v2/usagePeriod" and not asked:
            raise InvalidRequest("userCode is required", detail="userCode")
        if not xroad.user_id:
            raise InvalidRequest("X-Road-UserId is required", detail="X-Road-UserId")
        if xroad.user_id != person or (asked is not None and asked != person):
            raise AccessDenied("a citizen may read only their own usage")
        return person, how

    def _check_portal(self, claims: dict[str, Any], client: str) -> None:
        """The token must have been issued to the very portal that calls: a token leaked from
        one system is of no use to another member."""
        identity = self._gateway.settings.identity
        mine = {
            cid
            for cid, subsystem in (identity.portals if identity else {}).items()
            if subsystem == client
        }
        audience = claims.get("aud")
        audiences = {audience} if isinstance(audience, str) else set(audience or [])
        if not mine & audiences:
            raise AccessDenied(f"{client} is not the portal this citizen signed in to")
        if len(audiences) > 1 and claims.get("azp") not in mine:
            raise AccessDenied("a token for several audiences must name this portal as azp")

    async def _heartbeat(self) -> dict[str, str]:
        try:
            await self._gateway.in_thread(self._period)
            self._gateway.trust.view()
        except Error as error:
            return {"status": "FAIL", "message": error.message}
        return {"status": "OK", "message": "usage data is available"}

    def _period(self) -> dict[str, str | None]:
        # The first record of each chain, found by walking the primary key (chain, seq) from
        # chain to chain: a handful of index lookups, where min(at) would read every record.
        with Session(self._gateway.engine) as session:
            starts = [
                session.scalar(
                    select(AuditRecord.at)
                    .where(AuditRecord.chain == chain)
                    .order_by(AuditRecord.seq)
                    .limit(1)
                )
                for chain in chains(session)
            ]
        first = min((s for s in starts if s is not None), default=None)
        return {
            "periodStart": first.isoformat() if first else None,
            "periodEnd": self._gateway.clock().isoformat(),
        }

    def _find(
        self,
        person: str,
        start: datetime | None,
        end: datetime | None,
        offset: int,
        limit: int,
        rich: bool,
    ) -> dict[str, Any]:
        subject = self._gateway.audit.subject_hash(person)

        def newest(session: Session, *, releases: bool) -> list[tuple[AuditRecord, Any]]:
            query = select(AuditRecord).where(
                AuditRecord.subject == subject,
                AuditRecord.listed.is_(True),
                AuditRecord.released.is_(releases),
            )
            if start is not None:
                query = query.where(AuditRecord.at >= start)
            if end is not None:
                query = query.where(AuditRecord.at <= end)
            query = query.order_by(AuditRecord.at.desc(), AuditRecord.seq.desc()).limit(SCAN_LIMIT)
            found = []
            for row in session.scalars(query):
                record = json.loads(row.body)
                # The index found them; the record itself has the last word.
                shown = listed(record.get("side"), record.get("service"), record.get("subject"))
                if shown and released(record.get("status")) == releases:
                    found.append((row, record))
            return found

        with Session(self._gateway.engine) as session:
            usages = newest(session, releases=True)
            page = usages[offset : offset + limit]
            heads = self._heads(session, {row.chain for row, _ in page}) if rich else None
            attempts = newest(session, releases=False) if rich else []
        members = self._gateway.trust.view().members
        found: dict[str, Any] = {
            "totalUsages": len(usages),
            "usages": [self._usage(row, record, members, heads) for row, record in page],
        }
        if rich:
            found["totalAttempts"] = len(attempts)
            # Only the newest SCAN_LIMIT attempts are read: say so when there may be more.
            found["moreAttempts"] = len(attempts) >= SCAN_LIMIT
            found["attempts"] = self._grouped(attempts, members)
        return found

    def _grouped(
        self, attempts: list[tuple[AuditRecord, Any]], members: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Attempts (refused, or failed at the provider), one entry per asker, service and
        outcome, newest first."""
        groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row, record in attempts:  # newest first
            service = unversioned(str(record.get("service", "")))
            outcome = str(record.get("fault") or record.get("status"))
            key = (str(record.get("client", "")), service, outcome)
            group = groups.get(key)
            if group is None:
                group = groups[key] = {
                    **self.receiver(record, members),
                    "action": self.action(service),
                    "service": service,
                    "outcome": outcome,
                    "status": record.get("status"),
                    "count": 0,
                    "last": row.at.isoformat(),
                }
            group["count"] += 1
            group["first"] = row.at.isoformat()
        return list(groups.values())

    def _usage(
        self,
        row: AuditRecord,
        record: dict[str, Any],
        members: dict[str, Any],
        heads: dict[str, ReceiptHeads] | None,
    ) -> dict[str, Any]:
        service = str(record.get("service", ""))
        entry: dict[str, Any] = {
            "logtime": row.at.isoformat(),
            "action": self.action(service),
            **self.receiver(record, members),
        }
        if heads is None:
            return entry
        entry.update(
            {
                "service": service,
                "status": record.get("status"),
                "purpose": record.get("purpose"),
                "legalBasis": record.get("legal_basis"),
                "consent": record.get("consent"),
                "messageId": record.get("message_id"),
                "receipt": self._receipt(row, heads[row.chain].covering(row.seq)),
            }
        )
        return entry

    @staticmethod
    def receiver(record: dict[str, Any], members: dict[str, Any]) -> dict[str, str | None]:
        """Data Tracker's fields for the member and subsystem that asked."""
        client = str(record.get("client", "")).split("/")
        member = members.get("/".join(client[:3]))
        return {
            "receiverCode": client[2] if len(client) > 2 else None,
            "receiverName": member.name if member else None,
            "receiverSystem": client[3] if len(client) > 3 else None,
        }

    def action(self, service: str) -> str:
        code = service.split("/")[4] if service.count("/") >= 4 else service
        try:
            descriptions = self._gateway.trust.view().descriptions
        except Error:
            return code
        return descriptions.get(unversioned(service), code)

    def _heads(self, session: Session, chains: set[str]) -> dict[str, ReceiptHeads]:
        return {chain: receipt_heads(session, chain) for chain in chains}

    def _receipt(self, row: AuditRecord, head: TreeHead | None) -> dict[str, Any] | None:
        if head is None:
            return None  # not yet covered by a signed head; the next one will
        tree = self._tree(row.chain, head.size)
        return make_receipt(
            chain=row.chain,
            seq=row.seq,
            body=row.body,
            proof=tree.inclusion_proof(row.seq, head.size),
            head=head,
        )

    def _tree(self, chain: str, size: int) -> merkle.Tree:
        if chain == self._gateway.audit.chain:
            return self._gateway.audit.tree
        with self._trees_lock:
            return self._extend(chain, size)

    def _extend(self, chain: str, size: int) -> merkle.Tree:
        tree = self._trees.get(chain)
        if tree is None:
            tree = self._trees[chain] = merkle.Tree(
                height=TREE_HEIGHT, read=leaf_reader(self._gateway.engine, chain)
            )
        if tree.size < size:  # another replica's chain: read what is new since last time
            with Session(self._gateway.engine) as session:
                bodies = session.scalars(
                    select(AuditRecord.body)
                    .where(AuditRecord.chain == chain, AuditRecord.seq >= tree.size)
                    .order_by(AuditRecord.seq)
                )
                for body in bodies:
                    tree.append(merkle.leaf_hash(body))
        return tree


def _json(value: Any) -> tuple[bytes, str]:
    return json.dumps(value).encode(), "application/json"
