"""Per-exchange records: X-Road operational monitoring fields plus both signatures."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from audit.log import AuditEntry
from exchange.db.batch import GroupCommit
from exchange.db.bulk import BulkInsert, KeptConnection
from exchange.gateway import models
from exchange.trust.signed import detached

log = structlog.get_logger(__name__)


@dataclass
class ExchangeRecord:
    side: str  # "client" (consumer gateway) or "producer" (provider gateway)
    method: str
    message_id: str
    client: str
    service: str
    request_in: datetime
    user_id: str | None = None
    issue: str | None = None
    purpose: str | None = None
    consent: str | None = None  # the consent's id, never the artefact (it names the person)
    legal_basis: str | None = None
    peer: str | None = None
    request_out: datetime | None = None
    response_in: datetime | None = None
    request_size: int = 0
    response_size: int = 0
    status: int = 0
    fault_code: str | None = None
    fault_string: str | None = None
    request_hash: str | None = None
    request_signature: str | None = None
    response_signature: str | None = None
    subject: str | None = None  # the person the exchange is about; hashed before it is logged
    response_digest: str | None = None
    replay_of: str | None = None  # the message id whose stored answer this one gives again
    edm_outcome: str | None = None  # what an EDM answer said (exchange.gateway.edm_consumer)
    parts: str | None = None  # the streamed parts the response signature binds, if any

    @classmethod
    def arriving(
        cls, side: str, method: str, headers: Mapping[str, str], at: datetime
    ) -> ExchangeRecord:
        """The record of a request as it arrives (``headers`` lower-cased), nothing checked."""
        return cls(
            side=side,
            method=method,
            message_id=headers.get("x-road-id", ""),
            client=headers.get("x-road-client", ""),
            service="",
            request_in=at,
        )


# How long a batch of operational records waits for more before it is committed: at low load
# each exchange would otherwise pay a transaction (and a thread hand-off) of its own; nobody
# waits for these records, and a crash may lose the last few anyway.
LINGER = 0.2
# The stored columns, in the order ExchangeLog._insert gives them.
COLUMNS = (
    "side",
    "message_id",
    "client",
    "service",
    "user_id",
    "issue",
    "purpose",
    "consent",
    "legal_basis",
    "peer",
    "request_in",
    "request_out",
    "response_in",
    "response_out",
    "request_size",
    "response_size",
    "status",
    "succeeded",
    "fault_code",
    "fault_string",
    "request_hash",
    "request_signature",
    "response_signature",
)


class ExchangeLog:
    """Operational monitoring records, written in batches off the request path.

    Unlike the audit log these are operational data: a response does not wait for them, and a
    crash may lose the last few (the audit log, committed before every release, does not).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Compiled once; run by the writer thread on the connection it keeps (exchange.db.bulk).
        self._statement = BulkInsert(engine, models.Exchange, COLUMNS)
        self._connection = KeptConnection(engine)
        self._writer: GroupCommit[tuple[ExchangeRecord, datetime], None] = GroupCommit(
            self._insert, name="opmon", linger=LINGER
        )
        self._pending: set[asyncio.Future[None]] = set()

    def write(self, record: ExchangeRecord, *, response_out: datetime) -> None:
        written = self._writer.put((record, response_out))
        self._pending.add(written)
        written.add_done_callback(self._done)

    def _done(self, written: asyncio.Future[None]) -> None:
        self._pending.discard(written)
        if not written.cancelled() and written.exception() is not None:
            log.warning("opmon.write_failed", cause=type(written.exception()).__name__)

    def _insert(
        self, batch: Sequence[tuple[ExchangeRecord, datetime]]
    ) -> list[BaseException | None]:
        rows = [
            (
                r.side,
                r.message_id,
                r.client,
                r.service,
                r.user_id,
                r.issue,
                r.purpose,
                r.consent,
                r.legal_basis,
                r.peer,
                r.request_in,
                r.request_out,
                r.response_in,
                out,
                r.request_size,
                r.response_size,
                r.status,
                r.fault_code is None and 200 <= r.status < 400,
                r.fault_code,
                (r.fault_string or "")[:2048] or None,
                r.request_hash,
                r.request_signature,
                r.response_signature,
            )
            for r, out in batch
        ]
        # Through the DBAPI cursor, not Core's execute (nor a session, which added a fifth).
        self._connection.transaction(lambda connection: self._statement.execute(connection, rows))
        return [None] * len(batch)

    def recent(self, limit: int = 100) -> list[models.Exchange]:
        with Session(self._engine) as session:
            query = select(models.Exchange).order_by(models.Exchange.id.desc()).limit(limit)
            return list(session.scalars(query))

    async def drain(self, timeout: float = 5) -> None:
        """Wait until the records written so far are stored (or ``timeout`` passes)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)

    async def close(self) -> None:
        await self.drain()
        await self._writer.close()
        self._connection.close()


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def opmon_fields(row: models.Exchange) -> dict[str, object]:
    """A stored exchange with X-Road's operational monitoring field names."""
    client = row.client.split("/")
    service = row.service.split("/")
    return {
        "monitoringDataTs": int(row.response_out.timestamp()),
        "securityServerType": "Client" if row.side == "client" else "Producer",
        "requestInTs": _ms(row.request_in),
        "requestOutTs": _ms(row.request_out),
        "responseInTs": _ms(row.response_in),
        "responseOutTs": _ms(row.response_out),
        "clientXRoadInstance": client[0] if len(client) > 0 else None,
        "clientMemberClass": client[1] if len(client) > 1 else None,
        "clientMemberCode": client[2] if len(client) > 2 else None,
        "clientSubsystemCode": client[3] if len(client) > 3 else None,
        "serviceXRoadInstance": service[0] if len(service) > 0 else None,
        "serviceMemberClass": service[1] if len(service) > 1 else None,
        "serviceMemberCode": service[2] if len(service) > 2 else None,
        "serviceSubsystemCode": service[3] if len(service) > 3 else None,
        "serviceCode": service[4] if len(service) > 4 else None,
        "messageId": row.message_id,
        "messageUserId": row.user_id,
        "messageIssue": row.issue,
        "messageProtocolVersion": "1",
        "serviceSecurityServerAddress": row.peer if row.side == "client" else None,
        "clientSecurityServerAddress": row.peer if row.side != "client" else None,
        "requestSize": row.request_size,
        "responseSize": row.response_size,
        "succeeded": row.succeeded,
        "faultCode": row.fault_code,
        "faultString": row.fault_string,
        "statusCode": row.status,
        "serviceType": "REST",
    }


def audit_entry(record: ExchangeRecord) -> AuditEntry:
    """What the audit log keeps of an exchange: no personal data, no credentials.

    The person goes separately, to be hashed; the request signature is kept detached, with only
    the digest of its claims (which name the person and the query).
    """
    request_signature = claims_digest = None
    if record.request_signature and record.request_signature.count(".") == 2:
        request_signature, claims_digest = detached(record.request_signature)
    return AuditEntry(
        side="consumer" if record.side == "client" else "provider",
        message_id=record.message_id,
        client=record.client,
        service=record.service,
        status=record.status,
        fault=record.fault_code,
        purpose=record.purpose,
        legal_basis=record.legal_basis,
        consent=record.consent,
        peer=record.peer,
        request_digest=record.request_hash,
        response_digest=record.response_digest,
        request_signature=request_signature,
        request_claims_digest=claims_digest,
        response_signature=record.response_signature,
        replay_of=record.replay_of,
        edm_outcome=record.edm_outcome,
        parts=record.parts,
    )
