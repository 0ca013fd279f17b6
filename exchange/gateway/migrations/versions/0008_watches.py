"""watches: the releases about a person a portal is told of, at the person's request

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_watches",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("portal", sa.String(length=1100), nullable=False),
        sa.Column("created_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gw_watches")),
    )
    with op.batch_alter_table("gw_watches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gw_watches_portal"), ["portal"], unique=False)
        batch_op.create_index(batch_op.f("ix_gw_watches_subject"), ["subject"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gw_watches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gw_watches_subject"))
        batch_op.drop_index(batch_op.f("ix_gw_watches_portal"))
    op.drop_table("gw_watches")
