"""notifications: citizens' subscriptions, their watches at registers, cursors and the outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 10:00:00
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
        "portal_subscriptions",
        sa.Column("citizen", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("created_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("digest_due", exchange.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("citizen", name=op.f("pk_portal_subscriptions")),
    )
    op.create_table(
        "portal_watches",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=1100), nullable=False),
        sa.Column("citizen", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_watches")),
    )
    with op.batch_alter_table("portal_watches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_portal_watches_citizen"), ["citizen"], unique=False)
        batch_op.create_index(batch_op.f("ix_portal_watches_provider"), ["provider"], unique=False)
    op.create_table(
        "portal_cursors",
        sa.Column("provider", sa.String(length=1100), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_portal_cursors")),
    )
    op.create_table(
        "portal_notices",
        sa.Column("provider", sa.String(length=1100), nullable=False),
        sa.Column("chain", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("citizen", sa.String(length=64), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("received_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_try", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", exchange.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["citizen"],
            ["portal_subscriptions.citizen"],
            name=op.f("fk_portal_notices_citizen_portal_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("provider", "chain", "seq", name=op.f("pk_portal_notices")),
    )
    with op.batch_alter_table("portal_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_portal_notices_citizen"), ["citizen"], unique=False)
        batch_op.create_index(batch_op.f("ix_portal_notices_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_portal_notices_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    op.drop_table("portal_notices")
    op.drop_table("portal_cursors")
    op.drop_table("portal_watches")
    op.drop_table("portal_subscriptions")
