"""witnessed heads: a tree head's countersignature by the witness

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 20:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_tree_heads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cosignature", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_tree_heads", schema=None) as batch_op:
        batch_op.drop_column("cosignature")
