"""Tables of a consent service (prefix ``consent_``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from exchange.db.types import NAMING, UTCDateTime

ID = String(1100)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Consent(Base):
    """One consent as granted; the artefact is the signed copy handed to the consumer."""

    __tablename__ = "consent_consents"
    __table_args__ = (Index("ix_consent_consents_subject", "subject", "granted_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Keyed hash of the citizen's code: who may list and revoke it, found without storing the
    # code in a column (the artefact itself names the person, for the relying parties).
    subject: Mapped[str] = mapped_column(String(64))
    consumer: Mapped[str] = mapped_column(ID)
    service: Mapped[str] = mapped_column(ID)
    purpose: Mapped[str] = mapped_column(String(100))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    preview: Mapped[bool] = mapped_column(Boolean)
    artefact: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Use(Base):
    """One release under a consent; a provider's retry of the same message counts once."""

    __tablename__ = "consent_uses"

    consent_id: Mapped[str] = mapped_column(
        ForeignKey("consent_consents.id", ondelete="CASCADE"), primary_key=True
    )
    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(ID)  # the member whose gateway redeemed it
    used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the provider gave the use back: the registry failed, nothing was released. The
    # row stays, so the message is still answered once and the history still shows it.
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Revocation(Base):
    """A revocation, numbered in commit order: what providers follow (``/api/v1/revocations``).

    ``valid_until`` is the consent's own end; past it the artefact is refused anyway, so the
    feed no longer lists it.
    """

    __tablename__ = "consent_revocations"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consent_id: Mapped[str] = mapped_column(
        ForeignKey("consent_consents.id", ondelete="CASCADE"), unique=True
    )
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
