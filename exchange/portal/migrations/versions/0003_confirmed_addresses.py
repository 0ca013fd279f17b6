"""notifications: an address receives notices only once its owner confirmed it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:15:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("portal_subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("confirmed_at", exchange.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("confirm_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                "confirm_sent_at", exchange.db.types.UTCDateTime(timezone=True), nullable=True
            )
        )
    # Subscriptions made before confirmation existed keep working as their owners chose.
    op.execute("UPDATE portal_subscriptions SET confirmed_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("portal_subscriptions", schema=None) as batch_op:
        batch_op.drop_column("confirm_sent_at")
        batch_op.drop_column("confirm_digest")
        batch_op.drop_column("confirmed_at")
