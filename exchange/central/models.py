"""Tables of the central authority (prefix ``ca_``, so roles may share one database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from exchange.db.types import NAMING, UTCDateTime

ID = String(1100)  # four segments of at most 255 characters and their separators


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class MemberClass(Base):
    __tablename__ = "ca_member_classes"
    code: Mapped[str] = mapped_column(String(255), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")


class Member(Base):
    __tablename__ = "ca_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(ID, unique=True)
    member_class: Mapped[str] = mapped_column(ForeignKey("ca_member_classes.code"))
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    subsystems: Mapped[list[Subsystem]] = relationship(
        back_populates="member", order_by="Subsystem.identifier"
    )
    gateways: Mapped[list[Gateway]] = relationship(
        back_populates="member", order_by="Gateway.identifier"
    )


class Subsystem(Base):
    __tablename__ = "ca_subsystems"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("ca_members.id"), index=True)
    identifier: Mapped[str] = mapped_column(ID, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    member: Mapped[Member] = relationship(back_populates="subsystems")


class Gateway(Base):
    __tablename__ = "ca_gateways"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("ca_members.id"), index=True)
    identifier: Mapped[str] = mapped_column(ID, unique=True)
    address: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    member: Mapped[Member] = relationship(back_populates="gateways")


class Certificate(Base):
    __tablename__ = "ca_certificates"
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[int] = mapped_column(ForeignKey("ca_members.id"), index=True)
    gateway_id: Mapped[int | None] = mapped_column(ForeignKey("ca_gateways.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    pem: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    member: Mapped[Member] = relationship()
    gateway: Mapped[Gateway | None] = relationship()


class ConfigurationVersion(Base):
    """Each signed global configuration ever served, newest last."""

    __tablename__ = "ca_configuration_versions"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The newest change event this version reflects: a newer event makes it stale.
    basis_event: Mapped[int] = mapped_column(Integer)
    document: Mapped[bytes] = mapped_column(LargeBinary)


class Event(Base):
    """Every change to the registry or the PKI, with who made it."""

    __tablename__ = "ca_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(1100))
    details: Mapped[str] = mapped_column(Text, default="{}")


class Service(Base):
    """The service catalogue: what each subsystem offers, as its gateway last published it."""

    __tablename__ = "ca_services"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subsystem_id: Mapped[int] = mapped_column(ForeignKey("ca_subsystems.id"), index=True)
    identifier: Mapped[str] = mapped_column(String(1400), unique=True)
    evidence_type: Mapped[str] = mapped_column(String(255))
    consent_policy: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[str] = mapped_column(Text, default="{}")  # methods, parameters (JSON)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TimestampingAuthority(Base):
    """A timestamping authority of the instance, run by a member, listed in the configuration."""

    __tablename__ = "ca_timestamping_authorities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("ca_members.id"), index=True)
    url: Mapped[str] = mapped_column(String(1000))
    certificate_serial: Mapped[str] = mapped_column(ForeignKey("ca_certificates.serial"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    certificate: Mapped[Certificate] = relationship()


class ConsentService(Base):
    """A consent service of the instance, run by a member, listed in the configuration.

    Its certificate has the signing profile, because what it signs (consent records) is
    checked like any signed document; it is not one of the member's message-signing keys.
    """

    __tablename__ = "ca_consent_services"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("ca_members.id"), index=True)
    url: Mapped[str] = mapped_column(String(1000))
    certificate_serial: Mapped[str] = mapped_column(ForeignKey("ca_certificates.serial"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    member: Mapped[Member] = relationship()
    certificate: Mapped[Certificate] = relationship()


class Application(Base):
    """An agency's application to become a member, or to add a subsystem to its membership:
    pending until an operator of the authority approves or rejects it (``decided_*``)."""

    __tablename__ = "ca_applications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # "member" or "subsystem"
    identifier: Mapped[str] = mapped_column(ID, index=True)  # the member or subsystem asked for
    name: Mapped[str] = mapped_column(String(255), default="")  # a member's name
    contact: Mapped[str] = mapped_column(String(255), default="")
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending, approved, rejected
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    # The X25519 public key of the applicant's receipt (hex): codes for the member's gateways
    # are sealed to it, so that only the receipt's holder reads them (exchange.central.receipts).
    receipt_key: Mapped[str | None] = mapped_column(String(64))


class EnrolmentCode(Base):
    """A one-time code that lets one registered gateway enrol: its operator types it into the
    gateway's console, which sends both CSRs with it, and the authority issues the member's
    signing and the gateway's TLS certificate once. Only the code's SHA-256 is kept (it is
    random, 120 bits: a plain hash is enough); ``withdrawn_at`` is set when a newer code for the
    same gateway replaces it."""

    __tablename__ = "ca_enrolment_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("ca_gateways.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_by: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sealed: Mapped[str | None] = mapped_column(Text)  # the code, for the applicant's receipt only
    # What the code was used for: a retry with the same keys is answered with these again.
    signing_serial: Mapped[str | None] = mapped_column(String(64))
    tls_serial: Mapped[str | None] = mapped_column(String(64))
    gateway: Mapped[Gateway] = relationship()


class WitnessedHead(Base):
    """The latest signed tree head the witness accepted from each gateway's audit chain, with
    its countersignature: what the next head of that chain must be consistent with."""

    __tablename__ = "ca_witnessed_heads"
    chain: Mapped[str] = mapped_column(String(1400), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    root: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)  # the gateway's head JWS
    cosignature: Mapped[str] = mapped_column(Text)  # JSON: the witness's countersignature
    witnessed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WitnessFork(Base):
    """A head the witness refused because it contradicts one it accepted before: evidence that
    a log was rewritten (both heads are signed by the member). One row per contradicting head:
    the same evidence presented again is not stored again."""

    __tablename__ = "ca_witness_forks"
    __table_args__ = (Index("ix_ca_witness_forks_evidence", "chain", "signature", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(1400), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(255))
    known_size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    known_root: Mapped[str] = mapped_column(String(64))
    known_signature: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    root: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)


class SignedPublication(Base):
    """Each catalogue a gateway published signed with its member's key
    (:mod:`exchange.central.catalogue`): the same JWS again is a replay, one issued before the
    newest of its subsystem would roll the catalogue back; and it says which key published what."""

    __tablename__ = "ca_signed_publications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the JWS, hex
    subsystem_id: Mapped[int] = mapped_column(ForeignKey("ca_subsystems.id"), index=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("ca_gateways.id"), index=True)
    certificate_serial: Mapped[str] = mapped_column(ForeignKey("ca_certificates.serial"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the JWS's iat
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
