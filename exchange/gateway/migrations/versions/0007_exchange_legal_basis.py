"""the legal basis of each exchange in its operational record, for the public figures

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gw_exchanges", schema=None) as batch_op:
        batch_op.add_column(sa.Column("legal_basis", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gw_exchanges", schema=None) as batch_op:
        batch_op.drop_column("legal_basis")
