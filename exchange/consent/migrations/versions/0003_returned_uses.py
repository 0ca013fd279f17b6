"""uses given back by the provider when nothing was released

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consent_uses") as batch:
        batch.add_column(
            sa.Column("returned_at", exchange.db.types.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("consent_uses") as batch:
        batch.drop_column("returned_at")
