"""consents and their uses

Revision ID: 0001
Revises:
Create Date: 2026-11-28 12:40:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_consents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("consumer", sa.String(length=1100), nullable=False),
        sa.Column("service", sa.String(length=1100), nullable=False),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("granted_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_from", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("preview", sa.Boolean(), nullable=False),
        sa.Column("artefact", sa.Text(), nullable=False),
        sa.Column("revoked_at", exchange.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_consents")),
    )
    op.create_index(
        "ix_consent_consents_subject", "consent_consents", ["subject", "granted_at"], unique=False
    )
    op.create_table(
        "consent_uses",
        sa.Column("consent_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=1100), nullable=False),
        sa.Column("used_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consent_consents.id"],
            name=op.f("fk_consent_uses_consent_id_consent_consents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("consent_id", "message_id", name=op.f("pk_consent_uses")),
    )


def downgrade() -> None:
    op.drop_table("consent_uses")
    op.drop_index("ix_consent_consents_subject", table_name="consent_consents")
    op.drop_table("consent_consents")
