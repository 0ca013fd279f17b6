"""witness forks: one row per contradicting head (chain and signature)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00

Rows that repeat a (chain, signature) pair, left by heads replayed before this revision, are
dropped first: the oldest of each is kept, it is the same evidence.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    forks = sa.table(
        "ca_witness_forks",
        sa.column("id", sa.Integer()),
        sa.column("chain", sa.String()),
        sa.column("signature", sa.Text()),
    )
    kept = sa.select(sa.func.min(forks.c.id)).group_by(forks.c.chain, forks.c.signature)
    op.execute(forks.delete().where(forks.c.id.not_in(kept)))
    with op.batch_alter_table("ca_witness_forks", schema=None) as batch_op:
        batch_op.create_index("ix_ca_witness_forks_evidence", ["chain", "signature"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("ca_witness_forks", schema=None) as batch_op:
        batch_op.drop_index("ix_ca_witness_forks_evidence")
