"""quotas: limits on access rights, and the counts the provider's processes share

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gw_access_rights", schema=None) as batch_op:
        batch_op.add_column(sa.Column("per_second", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("per_day", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("persons_per_day", sa.Integer(), nullable=True))
    op.create_table(
        "gw_quota_counts",
        sa.Column("client", sa.String(length=1100), nullable=False),
        sa.Column("service", sa.String(length=1100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("expires_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "client", "service", "kind", "window", name=op.f("pk_gw_quota_counts")
        ),
    )
    with op.batch_alter_table("gw_quota_counts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gw_quota_counts_expires_at"), ["expires_at"], unique=False
        )
    op.create_table(
        "gw_quota_persons",
        sa.Column("client", sa.String(length=1100), nullable=False),
        sa.Column("service", sa.String(length=1100), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("expires_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "client", "service", "day", "subject", name=op.f("pk_gw_quota_persons")
        ),
    )
    with op.batch_alter_table("gw_quota_persons", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gw_quota_persons_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gw_quota_persons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gw_quota_persons_expires_at"))
    op.drop_table("gw_quota_persons")
    with op.batch_alter_table("gw_quota_counts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gw_quota_counts_expires_at"))
    op.drop_table("gw_quota_counts")
    with op.batch_alter_table("gw_access_rights", schema=None) as batch_op:
        batch_op.drop_column("persons_per_day")
        batch_op.drop_column("per_day")
        batch_op.drop_column("per_second")
