"""changes: the change log, every change with its actor

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 10:00:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=1100), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gw_changes")),
    )
    with op.batch_alter_table("gw_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gw_changes_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gw_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gw_changes_at"))
    op.drop_table("gw_changes")
