"""revocations numbered in commit order, for the providers' feed

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 15:40:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_revocations",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("consent_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consent_consents.id"],
            name=op.f("fk_consent_revocations_consent_id_consent_consents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_consent_revocations")),
        sa.UniqueConstraint("consent_id", name=op.f("uq_consent_revocations_consent_id")),
    )
    # Consents revoked before the feed existed are its first entries.
    op.execute(
        "INSERT INTO consent_revocations (consent_id, revoked_at, valid_until) "
        "SELECT id, revoked_at, valid_until FROM consent_consents "
        "WHERE revoked_at IS NOT NULL ORDER BY revoked_at"
    )


def downgrade() -> None:
    op.drop_table("consent_revocations")
