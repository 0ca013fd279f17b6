"""citizens' ratings of procedures, as tallies, and the tickets that let each run count once

Revision ID: 0001
Revises:
Create Date: 2026-12-03 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_rating_tickets",
        sa.Column("ticket", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.PrimaryKeyConstraint("ticket", name=op.f("pk_portal_rating_tickets")),
    )
    with op.batch_alter_table("portal_rating_tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_portal_rating_tickets_month"), ["month"], unique=False)
    op.create_table(
        "portal_ratings",
        sa.Column("procedure", sa.String(length=255), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("brought", sa.String(length=3), nullable=False),
        sa.Column("document", sa.String(length=255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "procedure", "month", "score", "brought", "document", name=op.f("pk_portal_ratings")
        ),
    )


def downgrade() -> None:
    op.drop_table("portal_ratings")
    with op.batch_alter_table("portal_rating_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_portal_rating_tickets_month"))
    op.drop_table("portal_rating_tickets")
