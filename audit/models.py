"""Tables of the audit log (prefix ``audit_``), kept in the gateway's database.

Only the canonical record bytes are stored; leaf hashes are recomputed by whoever verifies, so
there is no second copy that could be altered consistently with the first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from exchange.central.models import NAMING
from exchange.db.types import UTCDateTime

Sequence = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class AuditRecord(Base):
    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_subject", "subject", "at"),)
    chain: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(Sequence, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    subject: Mapped[str | None] = mapped_column(String(64))  # keyed hash of the person's id
    body: Mapped[bytes] = mapped_column(LargeBinary)  # canonical JSON, the Merkle leaf


class TreeHead(Base):
    __tablename__ = "audit_tree_heads"
    chain: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(Sequence, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    signature: Mapped[str] = mapped_column(Text)  # JWS by the member's signing key
    timestamp: Mapped[bytes | None] = mapped_column(LargeBinary)  # RFC 3161 token over the JWS
    tsa: Mapped[str | None] = mapped_column(String(255))
