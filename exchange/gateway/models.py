"""Tables of a gateway (prefix ``gw_``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from exchange.db.types import NAMING, UTCDateTime

ID = String(1100)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SeenMessage(Base):
    """(client, message id) pairs already accepted: the durable replay guard."""

    __tablename__ = "gw_seen_messages"
    client: Mapped[str] = mapped_column(ID, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Group(Base):
    __tablename__ = "gw_groups"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")


class GroupMember(Base):
    __tablename__ = "gw_group_members"
    group: Mapped[str] = mapped_column(
        ForeignKey("gw_groups.name", ondelete="CASCADE"), primary_key=True
    )
    client: Mapped[str] = mapped_column(ID, primary_key=True)


class AccessRight(Base):
    """One grant: ``subject`` (a client id, or ``group:NAME``) may call ``service``.

    ``method`` and ``path`` narrow a grant to one REST method and a path pattern (``*`` matches
    within a segment, ``**`` across segments); empty means any.
    """

    __tablename__ = "gw_access_rights"
    __table_args__ = (UniqueConstraint("service", "subject", "method", "path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(ID, index=True)
    subject: Mapped[str] = mapped_column(ID)
    method: Mapped[str] = mapped_column(String(16), default="")
    path: Mapped[str] = mapped_column(String(1000), default="")
    legal_basis: Mapped[str | None] = mapped_column(String(500))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Quotas of each client the grant covers, per service (exchange.gateway.quotas); none: no
    # limit.
    per_second: Mapped[int | None] = mapped_column(Integer)
    per_day: Mapped[int | None] = mapped_column(Integer)
    persons_per_day: Mapped[int | None] = mapped_column(Integer)


class QuotaCount(Base):
    """How much of one limit's window the provider's processes have leased between them."""

    __tablename__ = "gw_quota_counts"
    client: Mapped[str] = mapped_column(ID, primary_key=True)
    service: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # per-second, per-day, ...
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch second or UTC day
    used: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class QuotaPerson(Base):
    """A person a client asked a service about on one UTC day, as the audit log's keyed hash."""

    __tablename__ = "gw_quota_persons"
    client: Mapped[str] = mapped_column(ID, primary_key=True)
    service: Mapped[str] = mapped_column(ID, primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class IdempotentAnswer(Base):
    """The answer to a request that carried an ``Idempotency-Key``, for its retries.

    Scoped to the client and the service; ``fingerprint`` is the digest of the signed request
    (without message id and times), so a retry must be the same request. ``status`` is null
    while the first request is being answered.
    """

    __tablename__ = "gw_idempotent_answers"
    client: Mapped[str] = mapped_column(ID, primary_key=True)
    service: Mapped[str] = mapped_column(ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(255))  # of the request that was executed
    status: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(255))
    error_type: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    legal_basis: Mapped[str | None] = mapped_column(String(500))
    consent: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Preview(Base):
    """Evidence held back until the citizen has looked at it (approve or refuse).

    The person appears only as the audit log's keyed hash; the evidence is kept just until it is
    released, refused, or the preview expires.
    """

    __tablename__ = "gw_previews"
    __table_args__ = (Index("ix_gw_previews_request", "consent_id", "client", "service", "query"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    consent_id: Mapped[str] = mapped_column(String(255))
    client: Mapped[str] = mapped_column(ID)
    service: Mapped[str] = mapped_column(ID)
    query: Mapped[str] = mapped_column(String(64))  # digest of the parameters asked with
    subject: Mapped[str] = mapped_column(String(64))
    evidence: Mapped[str] = mapped_column(Text)  # JSON of the registry's answer
    # JSON of the document distribution the person approves with it (an EDM PDF), if any:
    # its media type, length and SHA-256, as the registry declared them.
    document: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    decision: Mapped[str | None] = mapped_column(String(16))  # approved | refused
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Exchange(Base):
    """One exchange as seen by this gateway: operational monitoring fields and both signatures."""

    __tablename__ = "gw_exchanges"
    __table_args__ = (Index("ix_gw_exchanges_message", "client", "message_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    side: Mapped[str] = mapped_column(String(8))  # "client" (consumer) or "producer"
    message_id: Mapped[str] = mapped_column(String(255))
    client: Mapped[str] = mapped_column(ID)
    service: Mapped[str] = mapped_column(ID)
    user_id: Mapped[str | None] = mapped_column(String(255))
    issue: Mapped[str | None] = mapped_column(String(1000))
    purpose: Mapped[str | None] = mapped_column(String(255))
    consent: Mapped[str | None] = mapped_column(Text)
    legal_basis: Mapped[str | None] = mapped_column(String(500))  # the grant's or consent's
    peer: Mapped[str | None] = mapped_column(String(1000))
    request_in: Mapped[datetime] = mapped_column(UTCDateTime)
    request_out: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_in: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_out: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    request_size: Mapped[int] = mapped_column(Integer)
    response_size: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    fault_code: Mapped[str | None] = mapped_column(String(255))
    fault_string: Mapped[str | None] = mapped_column(String(2048))
    request_hash: Mapped[str | None] = mapped_column(String(128))
    request_signature: Mapped[str | None] = mapped_column(Text)
    response_signature: Mapped[str | None] = mapped_column(Text)


class Watch(Base):
    """A portal asked, with a citizen's ID token, to be told of each release about them.

    Only the audit log's keyed hash of the person, an opaque id the portal chose and the
    portal's subsystem are kept: no address, no language, no person code
    (:mod:`exchange.gateway.watches`, docs/notifications.md).
    """

    __tablename__ = "gw_watches"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)
    portal: Mapped[str] = mapped_column(ID, index=True)  # the subsystem that registered it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Change(Base):
    """One change to what this gateway's database decides (access rights, groups), or an audit
    export, with who made it: ``console:<subject>`` for staff signed in to the console,
    ``cli:<user>`` for the command line."""

    __tablename__ = "gw_changes"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))  # e.g. access.grant
    target: Mapped[str] = mapped_column(ID)  # what it changed: a service, a group, a chain
    detail: Mapped[str] = mapped_column(Text)  # JSON: the change's fields


class DeclaredService(Base):
    """A service declared from the console (or ``exchange gateway service declare``) rather than
    in the settings file: its declaration as the settings file's ``[[services]]`` entry would
    hold it (JSON), whether it is served, and a revision that each change raises, so that every
    process of the gateway rebuilds what changed (:mod:`exchange.gateway.declared`)."""

    __tablename__ = "gw_declared_services"
    __table_args__ = (UniqueConstraint("subsystem", "code"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    subsystem: Mapped[str] = mapped_column(String(255))
    code: Mapped[str] = mapped_column(String(255))
    declaration: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean)
    revision: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    changed_by: Mapped[str] = mapped_column(String(255))


class PeerWitnessedHead(Base):
    """As a peer witness (``audit_peer_witness``): the latest head accepted from each other
    gateway's audit chain, with this gateway's countersignature of it."""

    __tablename__ = "gw_peer_witnessed_heads"
    chain: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    root: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)  # the other gateway's head JWS
    cosignature: Mapped[str] = mapped_column(Text)  # JSON: this gateway's countersignature
    witnessed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PeerWitnessFork(Base):
    """As a peer witness: a head refused because it contradicts one accepted before (both
    signed by that member), kept once per contradicting head as evidence."""

    __tablename__ = "gw_peer_witness_forks"
    __table_args__ = (
        Index("ix_gw_peer_witness_forks_evidence", "chain", "signature", unique=True),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(255))
    known_size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    known_root: Mapped[str] = mapped_column(String(64))
    known_signature: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    root: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)
