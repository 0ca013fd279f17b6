"""Tables of the audit log (prefix ``audit_``), kept in the gateway's database.

Only the canonical record bytes are stored; leaf hashes are recomputed by whoever verifies, so
there is no second copy that could be altered consistently with the first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from exchange.db.types import NAMING, UTCDateTime

Sequence = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class AuditRecord(Base):
    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_usage", "subject", "listed", "released", "at"),)
    chain: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(Sequence, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    subject: Mapped[str | None] = mapped_column(String(64))  # keyed hash of the person's id
    # Shown in the subject's usage view: this member's answers to requests about them, releases
    # and attempts (not, say, their own reading of that view). Found by index, so that what is
    # not shown is not read.
    listed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Of those, the ones that released data (the rest are refused attempts): kept apart in the
    # index, so that no number of refusals can push a release out of the citizen's view.
    released: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    body: Mapped[bytes] = mapped_column(LargeBinary)  # canonical JSON, the Merkle leaf


class Probe(Base):
    """One row per chain that health checks rewrite to learn whether the database takes writes
    now. Apart from the records, so the gateway needs no right to delete or alter those."""

    __tablename__ = "audit_probes"
    chain: Mapped[str] = mapped_column(String(255), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class TreeHead(Base):
    __tablename__ = "audit_tree_heads"
    chain: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(Sequence, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    signature: Mapped[str] = mapped_column(Text)  # JWS by the member's signing key
    timestamp: Mapped[bytes | None] = mapped_column(LargeBinary)  # RFC 3161 token over the JWS
    tsa: Mapped[str | None] = mapped_column(String(255))
    # A witness's countersignature (JSON, :mod:`audit.witness`) once one accepted the head.
    cosignature: Mapped[str | None] = mapped_column(Text)
    # Peer gateways' countersignatures (JSON object, by the witnessing gateway's id), if any.
    peer_cosignatures: Mapped[str | None] = mapped_column(Text)
